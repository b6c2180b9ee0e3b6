"""The backend interface the Segmenter drives, and backend selection (``auto`` | ``tensorrt`` |
``onnxruntime``)."""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from ..bundle import Bundle
from ..errors import SDKError

__all__ = ["Backend", "open_backend", "BACKENDS", "PRECISIONS"]

BACKENDS = ("auto", "tensorrt", "onnxruntime")
PRECISIONS = ("fp32", "fp16", "int8")


class Backend(Protocol):
    """Runs the bundle's three graphs. Outputs come back in the manifest's output order; with
    ``to_host=False`` they may stay on the device (opaque handles another ``run`` accepts as feeds)."""

    name: str
    precisions: dict[str, str]  # graph -> precision actually used

    def run(self, graph: str, feeds: dict[str, np.ndarray], to_host: bool = True) -> Sequence[np.ndarray]: ...

    def close(self) -> None: ...


def open_backend(bundle: Bundle, backend: str = "auto", precision: str | None = None,
                 providers: Sequence[str] | None = None, threads: int = 0, plugin_lib: str | None = None) -> Backend:
    """``auto`` picks TensorRT when it imports, a GPU is present and the bundle has a matching engine,
    else ONNX Runtime."""
    if backend not in BACKENDS:
        raise SDKError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if precision is not None and precision not in PRECISIONS:
        raise SDKError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if backend in ("auto", "tensorrt"):
        from .tensorrt import TensorRTBackend, tensorrt_unavailable

        reason = tensorrt_unavailable(bundle, precision)
        if reason is None:
            return TensorRTBackend(bundle, precision, plugin_lib)
        if backend == "tensorrt":
            raise SDKError(reason)
    from .onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(bundle, precision or "fp32", providers, threads)
