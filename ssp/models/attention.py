"""Transformer pieces shared by PWT, SWT and EPT: 2-D sine position encodings, masked multi-head
attention written with MatMul/Softmax only (portable to ONNX and TensorRT), pre-norm layers."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

__all__ = ["pos2d", "Attention", "FFN", "FusionLayer"]


def pos2d(h: int, w: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine/cosine position encoding (h*w, dim): half the channels for y, half for x."""
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

    def forward(self, x: torch.Tensor, mem: torch.Tensor, mem_v: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
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

    def forward(self, x: torch.Tensor, pos: torch.Tensor, mem: torch.Tensor, mem_pos: torch.Tensor | None = None,
                mem_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.n1(x)
        x = x + self.cross(h + pos, mem if mem_pos is None else mem + mem_pos, mem, mem_mask)
        if self.self_attn:
            h = self.n2(x)
            x = x + self.attn(h + pos, h + pos, h)
        return x + self.ffn(self.n3(x))
