"""Transformer pieces shared by PWT, SWT and EPT: 2-D sine position encodings, masked multi-head
attention written with MatMul/Softmax only (portable to ONNX and TensorRT), pre-norm layers."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

__all__ = [
    "pos2d",
    "pos2d_multiscale",
    "position_encoding",
    "fourier_coords",
    "grid_coords",
    "FOURIER_DIM",
    "Attention",
    "FFN",
    "FusionLayer",
]


def position_encoding(kind: str, h: int, w: int, dim: int) -> torch.Tensor:
    """The fixed query / key encoding of an h x w grid: ``sine8`` (v1) or ``multiscale`` (v2)."""
    return pos2d(h, w, dim) if kind == "sine8" else pos2d_multiscale(h, w, dim)


def pos2d_multiscale(h: int, w: int, dim: int, periods: tuple[float, float] = (0.5, 32.0)) -> torch.Tensor:
    """2-D sine/cosine encoding (h*w, dim) of normalised cell centres u in [0, 1], with frequencies spaced
    geometrically from ``periods[0]`` to ``periods[1]`` periods across the image (the v1 encoding spans 8 rad in all,
    so neighbouring cells were 0.997 alike). A function of u only: grids of any size (pixels, superpixels) share one
    coordinate frame, as the EPT's pixel queries and superpixel keys need."""
    assert dim % 4 == 0
    d = dim // 4
    lo, hi = periods
    freq = 2 * math.pi * lo * (hi / lo) ** (torch.arange(d, dtype=torch.float32) / max(d - 1, 1))
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
    py, px = ys[:, None] * freq[None], xs[:, None] * freq[None]
    py = torch.cat([py.sin(), py.cos()], 1)[:, None, :].expand(h, w, 2 * d)
    px = torch.cat([px.sin(), px.cos()], 1)[None, :, :].expand(h, w, 2 * d)
    return torch.cat([py, px], dim=2).reshape(h * w, dim)


#: Fourier features of a normalised (y, x): the coordinates themselves + sin / cos at 1, 2, 4, 8 half-periods
_FOURIER_OCTAVES = 4
FOURIER_DIM = 2 + 4 * _FOURIER_OCTAVES


def fourier_coords(yx: torch.Tensor) -> torch.Tensor:
    """(..., 2) normalised coordinates in [0, 1] -> (..., FOURIER_DIM) features a linear layer can read position
    from (left / right, top / bottom, and finer bands), exported as Mul / Sin / Cos / Concat."""
    f = torch.cat([yx * (math.pi * 2.0**i) for i in range(_FOURIER_OCTAVES)], -1)
    return torch.cat([yx, f.sin(), f.cos()], -1)


def grid_coords(h: int, w: int) -> torch.Tensor:
    """Normalised (y, x) centres of an h x w grid, (h*w, 2)."""
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), -1).reshape(h * w, 2)


def pos2d(h: int, w: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine/cosine position encoding (h*w, dim): half the channels for y, half for x (v1: spans at most
    8 rad across the image)."""
    assert dim % 4 == 0
    d = dim // 4
    freq = torch.exp(-math.log(10000.0) * torch.arange(d, dtype=torch.float32) / d)
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h * 2 * math.pi
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w * 2 * math.pi
    py = ys[:, None] * freq[None] * 8 / (2 * math.pi)
    px = xs[:, None] * freq[None] * 8 / (2 * math.pi)
    py = torch.cat([py.sin(), py.cos()], 1)[:, None, :].expand(h, w, 2 * d)
    px = torch.cat([px.sin(), px.cos()], 1)[None, :, :].expand(h, w, 2 * d)
    return torch.cat([py, px], dim=2).reshape(h * w, dim)


class Attention(nn.Module):
    """Multi-head attention; ``key_mask (B,M)`` with 1 = attend, 0 = ignore (additive -1e4 bias, FP16-safe)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)

    def forward(
        self,
        x: torch.Tensor,
        mem: torch.Tensor,
        mem_v: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        b, n, c = x.shape
        m = mem.shape[1]
        hd = c // self.heads
        q = self.q(x).reshape(b, n, self.heads, hd).transpose(1, 2)
        k = self.k(mem).reshape(b, m, self.heads, hd).transpose(1, 2)
        v = self.v(mem if mem_v is None else mem_v).reshape(b, m, self.heads, hd).transpose(1, 2)
        att = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        if key_mask is not None:
            att = att + (1.0 - key_mask.to(att.dtype))[:, None, None, :] * -1e4
        att = att.softmax(dim=-1)
        return self.o(torch.matmul(att, v).transpose(1, 2).reshape(b, n, c))


class FFN(nn.Sequential):
    def __init__(self, dim: int, ratio: int):
        super().__init__(nn.Linear(dim, dim * ratio), nn.GELU(), nn.Linear(dim * ratio, dim))


class FusionLayer(nn.Module):
    """Pre-norm layer: cross-attention to a memory (words or superpixels), optional self-attention, FFN."""

    def __init__(self, dim: int, heads: int, ffn_ratio: int, self_attn: bool = True):
        super().__init__()
        self.n1 = nn.LayerNorm(dim)
        self.cross = Attention(dim, heads)
        self.self_attn = self_attn
        if self_attn:
            self.n2 = nn.LayerNorm(dim)
            self.attn = Attention(dim, heads)
        self.n3 = nn.LayerNorm(dim)
        self.ffn = FFN(dim, ffn_ratio)

    def forward(
        self,
        x: torch.Tensor,
        pos: torch.Tensor,
        mem: torch.Tensor,
        mem_pos: torch.Tensor | None = None,
        mem_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h = self.n1(x)
        x = x + self.cross(h + pos, mem if mem_pos is None else mem + mem_pos, mem, mem_mask)
        if self.self_attn:
            h = self.n2(x)
            x = x + self.attn(h + pos, h + pos, h)
        return x + self.ffn(self.n3(x))
