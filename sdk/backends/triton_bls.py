"""A :class:`~ssp_edge.sdk.backends.base.Backend` whose graphs are other models of the same Triton server, run by
BLS requests from inside the python backend (``triton_python_backend_utils``), so the ``ssp_segment`` model is just
a :class:`~ssp_edge.sdk.segmenter.Segmenter` over this backend: the SDK's own letterbox, prompt validation, decoder
feeds and postprocessing, never a copy of them.

* Feeds and outputs by the manifest's tensor names; host feeds are checked against the graph's specs
  (:func:`~ssp_edge.sdk.io_spec.check_feeds`) before a request is sent.
* ``to_host=False``: outputs stay where the model left them (``pb_utils.Tensor``; on the GPU when the engines run
  there) and go into the next request as they are.
* The text encoder gets one request per prompt, so Triton's response cache keys each prompt alone (every prompt
  encoded once for every client); ``text_lock`` (a context manager) serialises those requests across the
  python backend's instance processes, since the cache does not merge concurrent misses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from ..bundle import GRAPHS, GraphEntry, Manifest
from ..errors import SDKError
from ..io_spec import check_feeds

__all__ = ["TritonBLSBackend", "graph_entry_by_file"]


def _pb() -> Any:
    import triton_python_backend_utils as pb_utils  # only inside Triton's python backend

    return pb_utils


def graph_entry_by_file(manifest: Manifest, graph: str, file: str | None) -> GraphEntry:
    """The manifest's entry of ``graph`` whose file is ``file`` (the graph a repository model was written from),
    else its portable fp32 entry (repositories written before the file was recorded)."""
    cands = [g for g in manifest.graphs if g.name == graph]
    for g in cands:
        if file and g.file == file:
            return g
    for g in cands:
        if g.flavour == "portable" and g.precision == "fp32":
            return g
    if not cands:
        raise SDKError(f"the manifest has no {graph} graph; re-run `ssp convert triton` on a complete bundle")
    return cands[0]


class TritonBLSBackend:
    """Runs ``text_encoder`` / ``image_encoder`` / ``mask_decoder`` as BLS requests to the Triton models ``models``
    names (graph -> model name); ``entries``: the manifest entry each model was written from."""

    name = "triton-bls"

    def __init__(
        self,
        models: Mapping[str, str],
        entries: Mapping[str, GraphEntry],
        dynamic_axes: Mapping[str, Any],
        text_lock: AbstractContextManager[Any] | None = None,
    ):
        missing = [g for g in GRAPHS if g not in models or g not in entries]
        if missing:
            raise SDKError(
                f"the ssp_segment model's config names no Triton model for {', '.join(missing)}; "
                "re-run `ssp convert triton`"
            )
        self.models = dict(models)
        self.entries: dict[str, GraphEntry] = dict(entries)
        self.precisions: dict[str, str] = {g: e.precision for g, e in self.entries.items()}
        self.dynamic_axes = dict(dynamic_axes)
        self._text_lock = text_lock
        self._outputs = {g: [t.name for t in e.outputs] for g, e in self.entries.items()}

    def run(self, graph: str, feeds: Mapping[str, Any], to_host: bool = True) -> dict[str, Any]:
        if graph not in self.models:
            raise SDKError(f"unknown graph {graph!r}; the graphs are {', '.join(GRAPHS)}")
        if all(isinstance(v, np.ndarray) for v in feeds.values()):
            check_feeds(self.entries[graph], feeds, self.dynamic_axes)
        if graph != "text_encoder":
            return self._request(graph, feeds, to_host)
        k = len(next(iter(feeds.values())))
        with self._text_lock or contextlib.nullcontext():
            rows = [self._request(graph, {n: v[i : i + 1] for n, v in feeds.items()}, True) for i in range(k)]
        return {n: np.concatenate([r[n] for r in rows]) for n in self._outputs[graph]}

    def _request(self, graph: str, feeds: Mapping[str, Any], to_host: bool) -> dict[str, Any]:
        """One BLS request; host outputs as numpy arrays, else the response's tensors as they are."""
        pb = _pb()
        tensors = [self._tensor(pb, n, v) for n, v in feeds.items()]
        kw = {}
        if to_host and hasattr(pb, "PreferredMemory"):
            kw["preferred_memory"] = pb.PreferredMemory(pb.TRITONSERVER_MEMORY_CPU, 0)
        model = self.models[graph]
        resp = pb.InferenceRequest(
            model_name=model, inputs=tensors, requested_output_names=self._outputs[graph], **kw
        ).exec()
        if resp.has_error():
            raise SDKError(f"{model}: {resp.error().message()}")
        out = {n: pb.get_output_tensor_by_name(resp, n) for n in self._outputs[graph]}
        return {n: t.as_numpy() for n, t in out.items()} if to_host else out

    @staticmethod
    def _tensor(pb: Any, name: str, value: Any) -> Any:
        if isinstance(value, pb.Tensor):  # another model's output, passed on where it is
            return value if value.name() == name else pb.Tensor.from_dlpack(name, value.to_dlpack())
        return pb.Tensor(name, np.ascontiguousarray(value))

    def close(self) -> None:
        pass
