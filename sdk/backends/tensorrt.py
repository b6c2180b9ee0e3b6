"""TensorRT backend (placeholder until the engine runner lands): reports why it cannot be used."""
from __future__ import annotations

__all__ = ["tensorrt_unavailable", "TensorRTBackend"]


def tensorrt_unavailable(bundle, precision) -> str | None:
    try:
        import tensorrt  # noqa: F401
    except Exception as e:
        return f"TensorRT backend unavailable here ({type(e).__name__}: {e}); use backend='onnxruntime'"
    return "TensorRT backend: engine runner not available in this version; use backend='onnxruntime'"


class TensorRTBackend:  # pragma: no cover - replaced by the engine runner
    def __init__(self, *a, **k):
        raise NotImplementedError
