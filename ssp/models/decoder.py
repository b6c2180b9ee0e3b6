"""Upsampling decoders from stride 16 to stride 1: RUS (Replication Upsampling Strategy: spatial
replication gated by the skip feature + channel replication via depth-to-space) and a bilinear variant
for ablation / FLOPs comparison. Every step is x2 and fuses the skip feature of its stride."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .ops import replication_upsample

__all__ = ["RUSBlock", "BilinearBlock", "UpDecoder"]


def _fuse(c: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c, c, k, 1, k // 2, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))


class RUSBlock(nn.Module):
    """SR (replicate x to s x s children, times gate a = sigmoid(conv(skip))) + CR (conv1x1 -> C*s^2,
    depth-to-space) + skip fusion. The first sum is the ``ssp::ReplicationUpsample`` op."""

    def __init__(self, cin: int, cout: int, cskip: int, scale: int = 2, fuse_k: int = 3):
        super().__init__()
        self.scale = scale
        self.sr = nn.Conv2d(cin, cout, 1)
        self.cr = nn.Conv2d(cin, cout * scale * scale, 1)
        self.gate = nn.Conv2d(cskip, 1, 3, 1, 1)
        self.skip = nn.Conv2d(cskip, cout, 1)
        self.fuse = _fuse(cout, fuse_k)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = replication_upsample(self.sr(x), torch.sigmoid(self.gate(skip)), self.cr(x), self.scale)
        return self.fuse(up + self.skip(skip))


class BilinearBlock(nn.Module):
    """Interpolation baseline: bilinear x2 of conv1x1(x) + skip fusion."""

    def __init__(self, cin: int, cout: int, cskip: int, scale: int = 2, fuse_k: int = 3):
        super().__init__()
        self.scale = scale
        self.proj = nn.Conv2d(cin, cout, 1)
        self.skip = nn.Conv2d(cskip, cout, 1)
        self.fuse = _fuse(cout, fuse_k)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(self.proj(x), scale_factor=self.scale, mode="bilinear", align_corners=False)
        return self.fuse(up + self.skip(skip))


class UpDecoder(nn.Module):
    """Four x2 steps (16 -> 8 -> 4 -> 2 -> 1) and a 1x1 mask head; 3x3 fusion at strides 8/4, 1x1 above."""

    def __init__(self, cin: int, channels: Sequence[int], skips: Sequence[int], kind: str = "rus"):
        super().__init__()
        block = RUSBlock if kind == "rus" else BilinearBlock
        ks = (3, 3, 1, 1)
        self.blocks = nn.ModuleList()
        for i, (c, s) in enumerate(zip(channels, skips)):
            self.blocks.append(block(cin, c, s, 2, ks[i]))
            cin = c
        self.head = nn.Conv2d(cin, 1, 1)
        nn.init.constant_(self.head.bias, -2.0)  # start from "mostly background" (p ~ 0.12)

    def forward(self, x: torch.Tensor, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        for blk, s in zip(self.blocks, skips):
            x = blk(x, s)
        return self.head(x)
