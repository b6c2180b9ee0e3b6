"""ONNX Runtime backend: the portable graphs (standard ops), CPU by default; CUDA / TensorRT execution
providers when the installed onnxruntime has them and they are asked for. INT8 runs the Q/DQ graphs.

:func:`create_session` is the project's one ONNX Runtime session factory: the SDK, the converter's parity check,
calibration and the benchmarks all build their sessions with it, so session options are set in one place.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from ..bundle import GRAPHS, Bundle, GraphEntry
from ..errors import SDKError
from ..io_spec import check_feeds

__all__ = ["OnnxRuntimeBackend", "create_session", "import_onnxruntime"]

DEFAULT_PROVIDERS = ("CPUExecutionProvider",)


def import_onnxruntime() -> Any:
    """``import onnxruntime`` or an SDKError naming the extra that installs it."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise SDKError("the onnxruntime backend needs onnxruntime: pip install 'ssp-edge[runtime]'") from None
    return ort


def create_session(model: bytes | str | os.PathLike[str], *, threads: int = 0, providers: Sequence[str] | None = None,
                   custom_op_libraries: Sequence[str] = (), log_severity: int = 3) -> Any:
    """An ``onnxruntime.InferenceSession`` for a model (its bytes, e.g. from :meth:`Bundle.read_bytes`, or a path).

    ``threads``: intra-op threads (0: ONNX Runtime's default); ``providers``: execution providers (default CPU;
    ones this onnxruntime build lacks are refused); ``custom_op_libraries``: shared libraries with custom-op
    kernels to register first; ``log_severity``: 3 = errors only."""
    ort = import_onnxruntime()
    available = ort.get_available_providers()
    chosen = list(providers or DEFAULT_PROVIDERS)
    missing = [p for p in chosen if p not in available]
    if missing:
        raise SDKError(f"ONNX Runtime providers {missing} are not in this onnxruntime build (has: "
                       f"{', '.join(available)}); install onnxruntime-gpu for CUDA / TensorRT providers")
    so = ort.SessionOptions()
    so.log_severity_level = log_severity
    if threads:
        so.intra_op_num_threads = threads
    for lib in custom_op_libraries:
        so.register_custom_ops_library(str(lib))
    source = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(source, so, providers=chosen)


class OnnxRuntimeBackend:
    """The bundle's graphs of one flavour on ONNX Runtime; ``run`` takes and returns tensors by the manifest's names."""

    name = "onnxruntime"

    def __init__(self, bundle: Bundle, precision: str = "fp32", providers: Sequence[str] | None = None,
                 threads: int = 0, *, flavour: str = "portable", custom_op_libraries: Sequence[str] = ()):
        """Graphs of ``flavour`` at ``precision`` (a graph without a reduced-precision version, e.g. the text
        encoder, runs in FP32); the plugin flavour needs ``custom_op_libraries`` with the ``ssp::`` kernels."""
        if precision != "fp32" and not any(bundle.has_graph(g, flavour, precision) for g in GRAPHS):
            bundle.graph("image_encoder", flavour, precision)  # raises: names what exists and the fix
        entries = {}
        for g in GRAPHS:
            entries[g] = bundle.graph(g, flavour, precision if bundle.has_graph(g, flavour, precision) else "fp32")
        self._open({g: (e, bundle.read_bytes(e.file)) for g, e in entries.items()}, bundle.manifest.dynamic_axes,
                   providers, threads, custom_op_libraries, None)

    @classmethod
    def from_graphs(cls, graphs: Mapping[str, tuple[GraphEntry, bytes | str | os.PathLike[str]]],
                    dynamic_axes: Mapping[str, Sequence[int]], *, providers: Sequence[str] | None = None,
                    threads: int = 0, custom_op_libraries: Sequence[str] = (),
                    precisions: Mapping[str, str] | None = None) -> "OnnxRuntimeBackend":
        """A backend over explicit models (graph -> (entry naming its tensors, model bytes or path)), e.g. graphs
        that are not (yet) entries of a bundle; ``precisions`` labels them (default: the entries' precision)."""
        self = cls.__new__(cls)
        self._open(graphs, dynamic_axes, providers, threads, custom_op_libraries, precisions)
        return self

    def _open(self, graphs: Mapping[str, tuple[GraphEntry, Any]], dynamic_axes: Mapping[str, Sequence[int]],
              providers: Sequence[str] | None, threads: int, custom_op_libraries: Sequence[str],
              precisions: Mapping[str, str] | None) -> None:
        self.entries: dict[str, GraphEntry] = {g: e for g, (e, _) in graphs.items()}
        self.dynamic_axes = {k: list(v) for k, v in dynamic_axes.items()}
        self.precisions: dict[str, str] = {g: e.precision for g, e in self.entries.items()}
        self.precisions.update(precisions or {})
        self.providers = list(providers or DEFAULT_PROVIDERS)
        self._outputs = {g: [t.name for t in e.outputs] for g, e in self.entries.items()}
        self._sessions = {g: create_session(src, threads=threads, providers=self.providers,
                                            custom_op_libraries=custom_op_libraries) for g, (_, src) in graphs.items()}

    def run(self, graph: str, feeds: Mapping[str, Any], to_host: bool = True) -> dict[str, Any]:
        """Outputs of ``graph`` by name (always host arrays: ONNX Runtime's outputs here are numpy)."""
        if graph not in self._sessions:
            raise SDKError(f"no graph {graph!r} in this backend (has: {', '.join(self._sessions)})")
        check_feeds(self.entries[graph], feeds, self.dynamic_axes)
        names = self._outputs[graph]
        return dict(zip(names, self._sessions[graph].run(names, dict(feeds))))

    def close(self) -> None:
        self._sessions.clear()
