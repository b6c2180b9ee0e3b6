"""torch -> ONNX (plugin and portable flavours), onnxsim, parity checks, ONNX -> TensorRT engines, and
the per-module parameter / FLOPs report. The bundle format itself lives in :mod:`sdk.bundle`."""

__all__: list[str] = []
