"""The PyTorch reference model as a Segmenter backend, so evaluation, parity checks, calibration and benchmarks
run PyTorch through the same stages (letterbox, tokenizer, prompt cache, decoder batches, postprocessing) as the
deployed ONNX Runtime / TensorRT backends.

:class:`TorchBackend` runs the three graph modules of :mod:`ssp_edge.ssp.models.graphs` by name under
``torch.inference_mode``. Its mask decoder also takes ``frame_index`` (the frame of each prompt), so the prompts
of several frames share one decoder batch, as in batched evaluation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ssp_edge.sdk.backends.base import BACKENDS, Backend, open_backend
from ssp_edge.sdk.bundle import GRAPHS, Bundle, GraphEntry, Manifest, TensorSpec
from ssp_edge.sdk.errors import SDKError
from ssp_edge.sdk.io_spec import check_feeds
from ssp_edge.sdk.segmenter import Segmenter

from .config import SSPConfig
from .models.graphs import graph_io, graph_modules, run_graph
from .models.ssp import SSP

__all__ = ["TorchBackend", "reference_manifest", "reference_segmenter", "open_any_backend", "ALL_BACKENDS"]

#: what `ssp eval --bundle` can run: the SDK's backends and the PyTorch reference
ALL_BACKENDS = (*BACKENDS, "pytorch")
#: dynamic-axis ranges of the reference (no engine profiles limit it)
_AXES = {"frames": [1, 1, 64], "expressions": [1, 4, 256]}
_DTYPES = {
    torch.float32: "float32",
    torch.float16: "float16",
    torch.int64: "int64",
    torch.int32: "int32",
    torch.bool: "bool",
}


def _spec(name: str, t: torch.Tensor, axis0: str | None) -> TensorSpec:
    shape: list[int | str] = list(t.shape)
    if axis0:
        shape[0] = axis0
    return TensorSpec(name, shape, _DTYPES.get(t.dtype, str(t.dtype).replace("torch.", "")))


@torch.inference_mode()
def _probe_entries(model: SSP, cfg: SSPConfig) -> dict[str, GraphEntry]:
    """The graphs' tensor specs, read off one batch-1 pass of each module (names from :func:`graph_io`)."""
    mods = graph_modules(model)
    ids = torch.zeros(1, cfg.max_tokens, dtype=torch.int64)
    mask = torch.ones(1, cfg.max_tokens, dtype=torch.int64)
    feeds: dict[str, torch.Tensor] = {
        "input_ids": ids,
        "attention_mask": mask,
        "image": torch.zeros(1, 3, cfg.input_size, cfg.input_size),
        "frame_index": torch.zeros(1, dtype=torch.int64),
    }
    gio = graph_io(cfg)
    entries = {}
    for g in GRAPHS:
        io = gio[g]
        out = run_graph(mods[g], g, feeds)
        axis = next(iter(io.dynamic.values()), None)
        entries[g] = GraphEntry(
            g,
            "pytorch",
            "fp32",
            "",
            [_spec(n, feeds[n], io.dynamic.get(n)) for n in io.inputs],
            [_spec(n, v, axis) for n, v in out.items()],
        )
        feeds.update(out)
    return entries


class TorchBackend:
    """PyTorch eager over an SSP model: ``run(graph, feeds) -> {name: array}`` like the deployed backends."""

    name = "pytorch"

    def __init__(
        self,
        model: SSP,
        entries: Mapping[str, GraphEntry] | None = None,
        *,
        dynamic_axes: Mapping[str, Sequence[int]] | None = None,
        threads: int = 0,
    ):
        """``entries``: the graphs' tensor specs (a bundle's; default: probed from the model)."""
        if threads:
            torch.set_num_threads(threads)
        self.model = model.eval()
        self.cfg: SSPConfig = model.cfg
        self._modules = graph_modules(self.model)
        self.entries = dict(entries) if entries else _probe_entries(self.model, self.cfg)
        self.dynamic_axes = {k: list(v) for k, v in (dynamic_axes or _AXES).items()}
        self.precisions = {g: "fp32" for g in GRAPHS}
        self._image_features = [t.name for t in self.entries["image_encoder"].outputs]

    @classmethod
    def from_bundle(cls, bundle: Bundle, threads: int = 0) -> TorchBackend:
        """The checkpoint (or seeded random init) the bundle was exported from, with the bundle's tensor specs."""
        from .source import load_manifest_source

        entries = {
            g: bundle.graph(g, "portable", "fp32")
            if bundle.has_graph(g, "portable", "fp32")
            else bundle.graph(g, "plugin", "fp32")
            for g in GRAPHS
        }
        axes = {
            **_AXES,
            "expressions": bundle.manifest.dynamic_axes.get("expressions", _AXES["expressions"]),
            "frames": bundle.manifest.dynamic_axes.get("frames", _AXES["frames"]),
        }
        return cls(load_manifest_source(bundle.manifest).model, entries, dynamic_axes=axes, threads=threads)

    def run(self, graph: str, feeds: Mapping[str, Any], to_host: bool = True) -> dict[str, np.ndarray]:
        if graph not in self.entries:
            raise SDKError(f"no graph {graph!r} in this backend (has: {', '.join(self.entries)})")
        check_feeds(self.entries[graph], feeds, self.dynamic_axes)
        dev = next(self._modules[graph].parameters()).device  # training validates on its GPU
        with torch.inference_mode():
            t = {k: torch.from_numpy(np.ascontiguousarray(v)).to(dev) for k, v in feeds.items()}
            out = run_graph(self._modules[graph], graph, t)
            return {
                k: (v.float() if v.dtype in (torch.bfloat16, torch.float16) else v).cpu().numpy()
                for k, v in out.items()
            }

    def close(self) -> None:
        pass


def reference_manifest(cfg: SSPConfig, thresholds: Mapping[str, float] | None, backend: TorchBackend) -> Manifest:
    """An in-memory manifest for a model that has no bundle (``ssp eval --checkpoint``): its config, input size,
    normalisation, thresholds and the backend's tensor specs."""
    th = {"mask": 0.5, "exists": 0.5, **dict(thresholds or {})}
    return Manifest(
        config=json.loads(cfg.to_json()),
        input_size=cfg.input_size,
        mean=list(cfg.mean),
        std=list(cfg.std),
        max_tokens=cfg.max_tokens,
        thresholds=th,
        source={},
        dynamic_axes=dict(backend.dynamic_axes),
        graphs=list(backend.entries.values()),
    )


def reference_segmenter(
    model: SSP, thresholds: Mapping[str, float] | None = None, threads: int = 0, **options: Any
) -> Segmenter:
    """A Segmenter over the PyTorch model itself (no bundle), with the config's tokenizer."""
    from ssp_edge.sdk.tokenizer import Tokenizer

    from .models.text import tokenizer_path

    backend = TorchBackend(model, threads=threads)
    cfg = backend.cfg
    return Segmenter(
        reference_manifest(cfg, thresholds, backend),
        backend,
        tokenizer=Tokenizer(tokenizer_path(), cfg.max_tokens),
        **options,
    )


def open_any_backend(bundle: Bundle, backend: str = "auto", precision: str | None = None, **kw: Any) -> Backend:
    """:func:`ssp_edge.sdk.backends.open_backend`, or ``pytorch``: the checkpoint the bundle was exported from."""
    if backend == "pytorch":
        if precision not in (None, "fp32"):
            raise SDKError(f"the pytorch backend runs fp32 only, not {precision!r}")
        return TorchBackend.from_bundle(bundle, threads=kw.get("threads", 0))
    if backend not in ALL_BACKENDS:
        raise SDKError(f"backend must be one of {', '.join(ALL_BACKENDS)}, got {backend!r}")
    return open_backend(bundle, backend, precision, **kw)
