"""ONNX Runtime backend: the portable graphs (standard ops), CPU by default; CUDA / TensorRT execution
providers when the installed onnxruntime has them and they are asked for. INT8 runs the Q/DQ graphs."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..bundle import GRAPHS, Bundle
from ..errors import SDKError

__all__ = ["OnnxRuntimeBackend"]


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, bundle: Bundle, precision: str = "fp32", providers: Sequence[str] | None = None,
                 threads: int = 0):
        try:
            import onnxruntime as ort
        except ImportError:
            raise SDKError("the onnxruntime backend needs onnxruntime: pip install 'ssp-edge[runtime]'") from None
        available = ort.get_available_providers()
        providers = list(providers or ["CPUExecutionProvider"])
        missing = [p for p in providers if p not in available]
        if missing:
            raise SDKError(f"ONNX Runtime providers {missing} are not in this onnxruntime build (has: "
                           f"{', '.join(available)}); install onnxruntime-gpu for CUDA / TensorRT providers")
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
        self.precisions: dict[str, str] = {}
        self._sessions = {}
        self._outputs: dict[str, list[str]] = {}
        if precision != "fp32" and not any(bundle.has_graph(g, "portable", precision) for g in GRAPHS):
            bundle.graph("image_encoder", "portable", precision)  # raises: names what exists and the fix
        for g in GRAPHS:
            # a graph without a reduced-precision version (e.g. the text encoder) runs in FP32
            p = precision if bundle.has_graph(g, "portable", precision) else "fp32"
            entry = bundle.graph(g, "portable", p)
            self._sessions[g] = ort.InferenceSession(bundle.read_bytes(entry.file), so, providers=providers)
            self._outputs[g] = [t.name for t in entry.outputs]
            self.precisions[g] = p
        self.providers = providers

    def run(self, graph: str, feeds: dict[str, np.ndarray], to_host: bool = True) -> Sequence[np.ndarray]:
        return self._sessions[graph].run(self._outputs[graph], feeds)

    def close(self) -> None:
        self._sessions.clear()
