"""OpenVINO backend: the bundle's portable ONNX graphs on OpenVINO's CPU plugin (the Intel and AMD PCs many robots
carry), behind the same contract as the other backends: ``run(graph, feeds) -> {output name: array}``, feeds keyed
and checked by the manifest's tensor specs, model bytes from :meth:`Bundle.read_bytes` (hash-checked).

Precisions: ``fp32`` (the default; OpenVINO's CPU plugin would otherwise pick bf16 by itself on CPUs that have it,
so the FP32 inference precision hint is always set), ``bf16`` (OpenVINO's CPU inference precision hint on the FP32
graphs of the image encoder and mask decoder; the text encoder runs once per new prompt and stays FP32; only on
CPUs with bf16 units), ``int8`` / ``fp16`` (the bundle's Q/DQ / FP16 graphs from ``ssp calibrate``, run with the
FP32 hint for their float parts). Install with ``pip install 'ssp-edge[openvino]'``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..bundle import GRAPHS, Bundle, GraphEntry
from ..errors import SDKError
from ..io_spec import check_feeds

__all__ = ["OpenVINOBackend", "import_openvino", "OPENVINO_PRECISIONS"]

OPENVINO_PRECISIONS = ("fp32", "bf16", "fp16", "int8")
#: graphs that take the bf16 hint (the text encoder runs once per new prompt: no per-frame time to win)
_BF16_GRAPHS = ("image_encoder", "mask_decoder")


def import_openvino() -> Any:
    """``import openvino`` or an SDKError naming the extra that installs it."""
    try:
        import openvino as ov
    except ImportError:
        raise SDKError("the openvino backend needs OpenVINO: pip install 'ssp-edge[openvino]'") from None
    return ov


class OpenVINOBackend:
    """The bundle's portable graphs compiled by OpenVINO (CPU); ``run`` takes and returns tensors by name."""

    name = "openvino"

    def __init__(
        self,
        bundle: Bundle,
        precision: str = "fp32",
        *,
        threads: int = 0,
        device: str = "CPU",
        flavour: str = "portable",
        config: Mapping[str, Any] | None = None,
    ):
        """``threads``: OpenVINO inference threads per graph (0: one per physical core); ``config``: further
        OpenVINO properties for every compiled graph (they override the defaults below)."""
        from .onnxruntime import physical_cores

        if precision not in OPENVINO_PRECISIONS:
            raise SDKError(f"the openvino backend runs {', '.join(OPENVINO_PRECISIONS)}, not {precision!r}")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise SDKError(f"threads must be a whole number >= 0 (0: one per physical core), got {threads!r}")
        ov = import_openvino()
        self.core = ov.Core()
        if device not in self.core.available_devices:
            raise SDKError(
                f"OpenVINO device {device!r} is not available here (has: {', '.join(self.core.available_devices)})"
            )
        if precision == "bf16" and "BF16" not in self.core.get_property(device, "OPTIMIZATION_CAPABILITIES"):
            raise SDKError(
                f"this CPU has no bf16 support in OpenVINO ({device} capabilities: "
                f"{', '.join(self.core.get_property(device, 'OPTIMIZATION_CAPABILITIES'))}); "
                "use --precision fp32"
            )
        graph_precision = "fp32" if precision == "bf16" else precision
        if graph_precision != "fp32" and not any(bundle.has_graph(g, flavour, graph_precision) for g in GRAPHS):
            bundle.graph("image_encoder", flavour, graph_precision)  # raises: names what exists and the fix
        self.threads = threads or physical_cores()
        self.device = device
        self.entries: dict[str, GraphEntry] = {}
        self.precisions: dict[str, str] = {}
        self.dynamic_axes = {k: list(v) for k, v in bundle.manifest.dynamic_axes.items()}
        self._requests: dict[str, Any] = {}
        self._ports: dict[str, list[tuple[str, Any]]] = {}
        self.options: dict[str, Any] = {}
        for g in GRAPHS:
            p = graph_precision if bundle.has_graph(g, flavour, graph_precision) else "fp32"
            entry = bundle.graph(g, flavour, p)
            hint = "bf16" if precision == "bf16" and g in _BF16_GRAPHS else "f32"
            props = {
                "INFERENCE_PRECISION_HINT": hint,
                "INFERENCE_NUM_THREADS": self.threads,
                "PERFORMANCE_HINT": "LATENCY",
                "NUM_STREAMS": 1,
                **dict(config or {}),
            }
            try:
                model = self.core.read_model(bundle.read_bytes(entry.file))
                compiled = self.core.compile_model(model, device, props)
            except RuntimeError as e:
                raise SDKError(
                    f"OpenVINO could not compile the {g} graph {entry.file!r}: {str(e).splitlines()[0]}"
                ) from None
            try:
                self._ports[g] = [(t.name, compiled.output(t.name)) for t in entry.outputs]
            except RuntimeError:
                raise SDKError(
                    f"the {g} graph {entry.file!r} lacks outputs the manifest names "
                    f"({[t.name for t in entry.outputs]}); re-export the bundle"
                ) from None
            self._requests[g] = compiled.create_infer_request()
            self.entries[g] = entry
            self.precisions[g] = "bf16" if hint == "bf16" else p
            self.options[g] = {k: str(v) for k, v in props.items()}
        self.version = ov.__version__

    def run(self, graph: str, feeds: Mapping[str, Any], to_host: bool = True) -> dict[str, Any]:
        """Outputs of ``graph`` by name (host arrays, copies: the request's buffers are reused by the next run)."""
        if graph not in self._requests:
            raise SDKError(f"no graph {graph!r} in this backend (has: {', '.join(self._requests)})")
        check_feeds(self.entries[graph], feeds, self.dynamic_axes)
        req = self._requests[graph]
        res = req.infer({k: np.ascontiguousarray(v) for k, v in feeds.items()}, share_inputs=True, share_outputs=False)
        return {name: res[port] for name, port in self._ports[graph]}

    def profiling_info(self, graph: str) -> list[Any]:
        """OpenVINO's per-node profile of ``graph``'s last run (open with ``config={"PERF_COUNT": True}``)."""
        return list(self._requests[graph].get_profiling_info())

    def describe(self) -> dict[str, Any]:
        """What runs: backend, precision per graph, threads and OpenVINO properties (``ssp run`` prints this)."""
        hints = {g: o["INFERENCE_PRECISION_HINT"] for g, o in self.options.items()}
        first = next(iter(self.options.values()), {})
        return {
            "backend": self.name,
            "precisions": dict(self.precisions),
            "threads": self.threads,
            "options": {
                "openvino": self.version,
                "device": self.device,
                "inference_precision_hint": hints,
                **{k: v for k, v in first.items() if k not in ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS")},
            },
        }

    def close(self) -> None:
        self._requests.clear()
        self._ports.clear()
