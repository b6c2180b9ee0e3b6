"""Small CUDA runtime helpers over cuda-python (the bindings TensorRT's own samples moved to; pycuda
needs a driver to build): error checking and the GPU's compute capability. Imported lazily."""

from __future__ import annotations

from typing import Any

from .errors import SDKError

__all__ = ["cudart", "check", "compute_capability"]


def cudart() -> Any:
    """The ``cuda.bindings.runtime`` module (or ``cuda.cudart`` of cuda-python < 12.6)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime  # type: ignore[no-redef]
        except ImportError:
            raise SDKError("the TensorRT backend needs cuda-python: pip install 'ssp-edge[trt]'") from None
    return runtime


def check(result: Any, what: str = "CUDA call") -> Any:
    """cuda-python calls return (error, value...): raise on error, return the value(s)."""
    if not isinstance(result, tuple):
        result = (result,)
    err, rest = result[0], result[1:]
    if int(err) != 0:
        raise SDKError(f"{what} failed: {err}")
    return rest[0] if len(rest) == 1 else rest


def compute_capability(device: int = 0) -> str:
    """``"8.7"`` for a CUDA device, or an SDKError saying there is no usable GPU."""
    rt = cudart()
    attr = rt.cudaDeviceAttr
    try:
        major = check(rt.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMajor, device), "query GPU")
        minor = check(rt.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMinor, device), "query GPU")
    except SDKError as e:
        raise SDKError(f"no usable CUDA GPU {device} ({e}); use backend='onnxruntime'") from None
    return f"{major}.{minor}"
