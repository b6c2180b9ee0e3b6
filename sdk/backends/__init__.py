"""Inference backends behind one interface: ONNX Runtime (any machine) and TensorRT (NVIDIA GPUs)."""

from .base import Backend, open_backend

__all__ = ["Backend", "open_backend"]
