"""PyTorch reference implementations of the three SSP custom ops (ARCHITECTURE.md §3b).

These are the single source of truth for the math that the ONNX `ssp::` nodes and the TensorRT
plugins implement. They are written with export-friendly ops only (pad, slice, avg-pool, resize, matmul),
so the portable ONNX flavour is just these functions traced. :data:`REFERENCE` keeps the plain formulas
(what the plugin kernels are tested against); the public functions use formulations that ONNX Runtime runs
in few passes (nearest replication as one Resize, propagation as one batched MatMul over cells), tested
equal to them.

:func:`use_implementations` swaps in other implementations for a scope (the converter uses it to emit
``ssp::`` custom nodes for the plugin flavour) without this package knowing about ONNX.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

__all__ = [
    "NEIGHBOURS",
    "superpixel_aggregate",
    "superpixel_propagate",
    "replication_upsample",
    "nearest_replicate",
    "conv_depth_to_space",
    "grouped_conv_depth_to_space",
    "use_implementations",
    "is_overridden",
    "OP_NAMES",
    "REFERENCE",
]

#: the ops that have custom-node / plugin counterparts (keys of :func:`use_implementations`)
OP_NAMES = ("superpixel_aggregate", "superpixel_propagate", "replication_upsample")
_OVERRIDES: dict[str, Callable[..., torch.Tensor]] = {}


@contextmanager
def use_implementations(**impls: Callable[..., torch.Tensor]) -> Iterator[None]:
    """Within the scope, route the named ops (see :data:`OP_NAMES`) to ``impls`` (same signatures)."""
    unknown = sorted(set(impls) - set(OP_NAMES))
    if unknown:
        raise ValueError(f"use_implementations: unknown ops {unknown}; known: {OP_NAMES}")
    saved = dict(_OVERRIDES)
    _OVERRIDES.update(impls)
    try:
        yield
    finally:
        _OVERRIDES.clear()
        _OVERRIDES.update(saved)


def is_overridden(name: str) -> bool:
    """Whether ``name`` (see :data:`OP_NAMES`) is routed to another implementation in this scope (e.g. the
    converter's ``ssp::`` custom ops): callers with a faster formulation of the same math use it only when not."""
    return name in _OVERRIDES


#: (dy, dx) of neighbour index k = (dy + 1) * 3 + (dx + 1).
NEIGHBOURS: tuple[tuple[int, int], ...] = tuple((k // 3 - 1, k % 3 - 1) for k in range(9))


def nearest_replicate(x: torch.Tensor, s: int) -> torch.Tensor:
    """Replicate every pixel of ``x (B,C,h,w)`` to an ``s x s`` block (exact nearest upsampling).

    One ONNX Resize (nearest, asymmetric, floor: exact for integer scales), which ONNX Runtime runs in one
    pass (in its blocked NCHWc layout after a convolution) instead of an Expand of a 6-D view.
    """
    return F.interpolate(x, scale_factor=float(s), mode="nearest")


def _replicate_expand(x: torch.Tensor, s: int) -> torch.Tensor:
    """The same replication as a broadcast of a 6-D view (the plain formula, kept as the reference)."""
    b, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(b, c, h, s, w, s).reshape(b, c, h * s, w * s)


def conv_depth_to_space(x: torch.Tensor, weight: torch.Tensor, s: int) -> torch.Tensor:
    """``pixel_shuffle(conv1x1(x, weight), s)`` (no bias) as one transposed convolution with kernel = stride = s:
    ONNX Runtime writes the full-resolution result in one pass (no DepthToSpace transpose).

    x: (B,Cin,h,w), weight: (C*s*s,Cin,1,1) -> (B,C,s*h,s*w).
    """
    cin = weight.shape[1]
    wt = weight.reshape(weight.shape[0] // (s * s), s, s, cin).permute(3, 0, 1, 2)  # (Cin, C, s, s)
    return F.conv_transpose2d(x, wt, stride=s)


def grouped_conv_depth_to_space(x: torch.Tensor, weight: torch.Tensor, groups: int, s: int) -> torch.Tensor:
    """``pixel_shuffle(conv1x1(x, weight, groups=groups), s)`` (no bias) as one grouped transposed convolution with
    kernel = stride = s (see :func:`conv_depth_to_space`).

    x: (B,Cin,h,w), weight: (C*s*s,Cin/groups,1,1) -> (B,C,s*h,s*w). Output channel c comes from group
    c // (C / groups), the group whose conv outputs are channels c*s*s ... c*s*s + s*s - 1 (pixel_shuffle's order,
    the ``ssp::ReplicationUpsample`` Y layout).
    """
    cpg = weight.shape[1]
    opg = weight.shape[0] // (s * s) // groups  # output channels (after depth-to-space) per group
    wt = weight.reshape(groups, opg, s, s, cpg).permute(0, 4, 1, 2, 3).reshape(groups * cpg, opg, s, s)
    return F.conv_transpose2d(x, wt, stride=s, groups=groups)


def _cell_sum(x: torch.Tensor, cell: int) -> torch.Tensor:
    return F.avg_pool2d(x, cell, cell) * float(cell * cell)


def _check(x: torch.Tensor, q: torch.Tensor, cell: int) -> None:
    h, w = int(q.shape[-2]), int(q.shape[-1])
    if q.shape[1] != 9 or h % cell or w % cell or tuple(x.shape[-2:]) != (h, w):
        raise ValueError(
            f"superpixel op: Q must be (B,9,H,W) with H, W divisible by cell={cell} and X of the same "
            f"H, W; got X {tuple(x.shape)}, Q {tuple(q.shape)}"
        )


def superpixel_aggregate(x: torch.Tensor, q: torch.Tensor, cell: int, eps: float = 1e-8) -> torch.Tensor:
    """Soft superpixel pooling: ``Z = sum_p Q x / (sum_p Q + eps)`` over the 3x3 cell neighbourhoods.

    x: (B,C,H4,W4) features, q: (B,9,H4,W4) associations -> (B,C,H4/cell,W4/cell).
    """
    _check(x, q, cell)
    if "superpixel_aggregate" in _OVERRIDES:
        return _OVERRIDES["superpixel_aggregate"](x, q, cell, eps)
    return _aggregate(x, q, cell, eps)


def _aggregate(x: torch.Tensor, q: torch.Tensor, cell: int, eps: float) -> torch.Tensor:
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
        raise ValueError(
            f"superpixel_propagate: Q must be (B,9,h*cell,w*cell) for Z {tuple(z.shape)} and "
            f"cell={cell}; got Q {tuple(q.shape)}"
        )
    if "superpixel_propagate" in _OVERRIDES:
        return _OVERRIDES["superpixel_propagate"](z, q, cell)
    return _propagate_cells(z, q, cell)


def _propagate(z: torch.Tensor, q: torch.Tensor, cell: int) -> torch.Tensor:
    h, w = z.shape[-2], z.shape[-1]
    zp = F.pad(z, (1, 1, 1, 1))
    out = None
    for k, (dy, dx) in enumerate(NEIGHBOURS):
        zk = zp[:, :, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        term = q[:, k : k + 1] * _replicate_expand(zk, cell)
        out = term if out is None else out + term
    assert out is not None
    return out


def _propagate_cells(z: torch.Tensor, q: torch.Tensor, cell: int) -> torch.Tensor:
    """:func:`_propagate` as one batched MatMul: per cell, (C, 9 neighbours) @ (9, cell*cell pixels)."""
    b, c, h, w = z.shape
    zt = F.pad(z.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))  # (B, h+2, w+2, C): cells last-but-one, channels last
    zs = torch.stack([zt[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in NEIGHBOURS], -1)
    qc = q.reshape(b, 9, h, cell, w, cell).permute(0, 2, 4, 1, 3, 5).reshape(b, h * w, 9, cell * cell)
    out = torch.matmul(zs.reshape(b, h * w, c, 9), qc)  # (B, h*w, C, cell*cell)
    return out.reshape(b, h, w, c, cell, cell).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h * cell, w * cell)


def replication_upsample(x: torch.Tensor, g: torch.Tensor, y: torch.Tensor, scale: int) -> torch.Tensor:
    """RUS fusion: spatial replication gated by ``g`` plus channel replication (depth-to-space of ``y``).

    x: (B,C,h,w), g: (B,1,s*h,s*w) (already a sigmoid), y: (B,C*s*s,h,w) -> (B,C,s*h,s*w).
    """
    if "replication_upsample" in _OVERRIDES:
        return _OVERRIDES["replication_upsample"](x, g, y, scale)
    return nearest_replicate(x, scale) * g + F.pixel_shuffle(y, scale)


def _replication(x: torch.Tensor, g: torch.Tensor, y: torch.Tensor, scale: int) -> torch.Tensor:
    return _replicate_expand(x, scale) * g + F.pixel_shuffle(y, scale)


#: the reference implementations, never overridden (kernels of the converter's custom ops call these)
REFERENCE: dict[str, Callable[..., torch.Tensor]] = {
    "superpixel_aggregate": _aggregate,
    "superpixel_propagate": _propagate,
    "replication_upsample": _replication,
}
