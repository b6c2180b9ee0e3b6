"""PyTorch reference implementations of the three SSP custom ops (ARCHITECTURE.md §3b).

These are the single source of truth for the math that the ONNX `ssp::` nodes and the TensorRT
plugins implement. They are written with export-friendly ops only (pad, slice, avg-pool, expand),
so the portable ONNX flavour is just these functions traced.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "NEIGHBOURS",
    "superpixel_aggregate",
    "superpixel_propagate",
    "replication_upsample",
    "nearest_replicate",
]

#: (dy, dx) of neighbour index k = (dy + 1) * 3 + (dx + 1).
NEIGHBOURS: tuple[tuple[int, int], ...] = tuple((k // 3 - 1, k % 3 - 1) for k in range(9))


def nearest_replicate(x: torch.Tensor, s: int) -> torch.Tensor:
    """Replicate every pixel of ``x (B,C,h,w)`` to an ``s x s`` block (exact nearest upsampling)."""
    b, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(b, c, h, s, w, s).reshape(b, c, h * s, w * s)


def _cell_sum(x: torch.Tensor, cell: int) -> torch.Tensor:
    return F.avg_pool2d(x, cell, cell) * float(cell * cell)


def _check(x: torch.Tensor, q: torch.Tensor, cell: int) -> None:
    h, w = int(q.shape[-2]), int(q.shape[-1])
    if q.shape[1] != 9 or h % cell or w % cell or tuple(x.shape[-2:]) != (h, w):
        raise ValueError(f"superpixel op: Q must be (B,9,H,W) with H, W divisible by cell={cell} and X of the same "
                         f"H, W; got X {tuple(x.shape)}, Q {tuple(q.shape)}")


def superpixel_aggregate(x: torch.Tensor, q: torch.Tensor, cell: int, eps: float = 1e-8) -> torch.Tensor:
    """Soft superpixel pooling: ``Z = sum_p Q x / (sum_p Q + eps)`` over the 3x3 cell neighbourhoods.

    x: (B,C,H4,W4) features, q: (B,9,H4,W4) associations -> (B,C,H4/cell,W4/cell).
    """
    _check(x, q, cell)
    num = None
    den = None
    for k, (dy, dx) in enumerate(NEIGHBOURS):
        qk = q[:, k : k + 1]
        pn = _cell_sum(qk * x, cell)
        pd = _cell_sum(qk, cell)
        # a pixel of cell (i, j) sends its k-th mass to cell (i + dy, j + dx)
        pad = (1 + dx, 1 - dx, 1 + dy, 1 - dy)
        pn = F.pad(pn, pad)
        pd = F.pad(pd, pad)
        num = pn if num is None else num + pn
        den = pd if den is None else den + pd
    assert num is not None and den is not None
    num = num[:, :, 1:-1, 1:-1]
    den = den[:, :, 1:-1, 1:-1]
    return num / (den + eps)


def superpixel_propagate(z: torch.Tensor, q: torch.Tensor, cell: int) -> torch.Tensor:
    """Superpixel-to-pixel propagation: ``X'[p] = sum_k Q[k,p] Z[cell(p) + offset_k]`` (0 outside).

    z: (B,C,h,w), q: (B,9,h*cell,w*cell) -> (B,C,h*cell,w*cell).
    """
    h, w = z.shape[-2], z.shape[-1]
    if q.shape[1] != 9 or tuple(q.shape[-2:]) != (h * cell, w * cell):
        raise ValueError(f"superpixel_propagate: Q must be (B,9,h*cell,w*cell) for Z {tuple(z.shape)} and "
                         f"cell={cell}; got Q {tuple(q.shape)}")
    zp = F.pad(z, (1, 1, 1, 1))
    out = None
    for k, (dy, dx) in enumerate(NEIGHBOURS):
        zk = zp[:, :, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        term = q[:, k : k + 1] * nearest_replicate(zk, cell)
        out = term if out is None else out + term
    assert out is not None
    return out


def replication_upsample(x: torch.Tensor, g: torch.Tensor, y: torch.Tensor, scale: int) -> torch.Tensor:
    """RUS fusion: spatial replication gated by ``g`` plus channel replication (depth-to-space of ``y``).

    x: (B,C,h,w), g: (B,1,s*h,s*w) (already a sigmoid), y: (B,C*s*s,h,w) -> (B,C,s*h,s*w).
    """
    return nearest_replicate(x, scale) * g + F.pixel_shuffle(y, scale)
