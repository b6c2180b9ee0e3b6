"""NumPy implementations of the ``ssp::`` ops, written from the contract in ARCHITECTURE.md §3b (index
arithmetic, not the PyTorch reference's pad/pool formulation), and ONNX Runtime sessions that run
plugin-flavour graphs with them through onnxruntime-extensions Python custom ops.

This is how plugin graphs are checked without TensorRT: the same nodes TensorRT would hand to the
plugins run here on the CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .schemas import DOMAIN

if TYPE_CHECKING:
    import onnx

__all__ = [
    "aggregate",
    "propagate",
    "replication_upsample",
    "make_session",
    "ort_backend",
    "uses_ssp_ops",
    "custom_op_libraries",
]

_OFFSETS = [(k // 3 - 1, k % 3 - 1) for k in range(9)]


def _shift_into(dst: np.ndarray, src: np.ndarray, dy: int, dx: int) -> None:
    """dst[..., i + dy, j + dx] += src[..., i, j] where the target is inside the grid."""
    h, w = src.shape[-2:]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    dst[..., yd, xd] += src[..., ys, xs]


def _cells(a: np.ndarray, cell: int) -> np.ndarray:
    """Sum over each cell x cell block: (..., H, W) -> (..., H/cell, W/cell)."""
    *lead, hh, ww = a.shape
    return a.reshape(*lead, hh // cell, cell, ww // cell, cell).sum(axis=(-3, -1))


def aggregate(x: np.ndarray, q: np.ndarray, cell: int, eps: float = 1e-8) -> np.ndarray:
    """``Z[b,c,i,j] = sum_{p,k: cell(p)+off_k=(i,j)} Q[b,k,p] X[b,c,p] / (sum Q + eps)`` (float64 inside)."""
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    b, c, hh, ww = x.shape
    h, w = hh // cell, ww // cell
    num = np.zeros((b, c, h, w))
    den = np.zeros((b, 1, h, w))
    for k, (dy, dx) in enumerate(_OFFSETS):
        qk = q64[:, k : k + 1]
        _shift_into(num, _cells(qk * x64, cell), dy, dx)
        _shift_into(den, _cells(qk, cell), dy, dx)
    return (num / (den + eps)).astype(x.dtype)


def propagate(z: np.ndarray, q: np.ndarray, cell: int) -> np.ndarray:
    """``Y[b,c,p] = sum_k Q[b,k,p] Z[b,c,cell(p)+off_k]`` (0 outside the grid)."""
    z64, q64 = z.astype(np.float64), q.astype(np.float64)
    out = np.zeros(z.shape[:2] + q.shape[2:])
    for k, (dy, dx) in enumerate(_OFFSETS):
        zk = np.zeros_like(z64)
        _shift_into(zk, z64, -dy, -dx)  # zk[i, j] = z[i + dy, j + dx]
        out += q64[:, k : k + 1] * np.repeat(np.repeat(zk, cell, axis=2), cell, axis=3)
    return out.astype(z.dtype)


def replication_upsample(x: np.ndarray, g: np.ndarray, y: np.ndarray, scale: int) -> np.ndarray:
    """``O[b,c,Y,X] = X[b,c,Y//s,X//s] G[b,0,Y,X] + y[b, c*s*s + (Y%s)*s + X%s, Y//s, X//s]``."""
    b, c, h, w = x.shape
    s = scale
    rep = np.repeat(np.repeat(x.astype(np.float64), s, axis=2), s, axis=3)
    d2s = y.astype(np.float64).reshape(b, c, s, s, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(b, c, h * s, w * s)
    return (rep * g.astype(np.float64) + d2s).astype(x.dtype)


_REGISTERED = False


def _register() -> None:
    """Declare the three ops to onnxruntime-extensions (once per process; domain ``ssp``)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from onnxruntime_extensions import PyCustomOpDef, onnx_op

    f, i64, st = PyCustomOpDef.dt_float, PyCustomOpDef.dt_int64, PyCustomOpDef.dt_string
    plugin = {"plugin_namespace": st, "plugin_version": st}  # read by TensorRT's parser; unused here
    onnx_op(
        op_type=f"{DOMAIN}::SuperpixelAggregate",
        inputs=[f, f],
        outputs=[f],
        attrs={"cell": i64, "eps": PyCustomOpDef.dt_float, **plugin},
    )(lambda x, q, **a: aggregate(x, q, int(a["cell"]), float(a.get("eps", 1e-8))))
    onnx_op(op_type=f"{DOMAIN}::SuperpixelPropagate", inputs=[f, f], outputs=[f], attrs={"cell": i64, **plugin})(
        lambda z, q, **a: propagate(z, q, int(a["cell"]))
    )
    onnx_op(op_type=f"{DOMAIN}::ReplicationUpsample", inputs=[f, f, f], outputs=[f], attrs={"scale": i64, **plugin})(
        lambda x, g, y, **a: replication_upsample(x, g, y, int(a["scale"]))
    )
    _REGISTERED = True


def uses_ssp_ops(model: bytes | str | Path | onnx.ModelProto) -> bool:
    """Whether a model imports the ``ssp`` domain (a plugin-flavour graph)."""
    import onnx

    if isinstance(model, bytes):
        m = onnx.load_from_string(model)
    elif isinstance(model, onnx.ModelProto):
        m = model
    else:
        m = onnx.load(str(model), load_external_data=False)
    return any(o.domain == DOMAIN for o in m.opset_import)


def custom_op_libraries() -> list[str]:
    """The onnxruntime-extensions library with the ``ssp::`` ops registered as Python custom ops (NumPy above)."""
    from onnxruntime_extensions import get_library_path

    _register()
    return [get_library_path()]


def make_session(model: bytes | str | Path, threads: int = 0):
    """An ONNX Runtime CPU session for a graph of either flavour (``ssp::`` nodes run the NumPy ops), made by the
    SDK's one session factory."""
    from ssp_edge.sdk.backends.onnxruntime import create_session

    libs = custom_op_libraries() if uses_ssp_ops(model) else []
    return create_session(model, threads=threads, custom_op_libraries=libs)


def ort_backend(bundle, flavour: str = "portable", precision: str = "fp32", threads: int = 0):
    """The SDK's ONNX Runtime backend over one flavour of a bundle; plugin graphs run with the NumPy ``ssp::`` ops."""
    from ssp_edge.sdk.backends.onnxruntime import OnnxRuntimeBackend

    libs = custom_op_libraries() if flavour == "plugin" else []
    return OnnxRuntimeBackend(bundle, precision, threads=threads, flavour=flavour, custom_op_libraries=libs)
