"""Superpixel network (SpixelFCN-style) predicting the 9-neighbour association map Q at stride 4,
and SpixelFCN's unsupervised loss (reconstruct colour/labels and position through pool -> propagate)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .ops import superpixel_aggregate, superpixel_propagate

__all__ = ["SuperpixelNet", "spixel_loss", "rgb_to_lab"]


def _conv(cin: int, cout: int, s: int = 1, d: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, s, d, dilation=d, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SuperpixelNet(nn.Module):
    """Small conv net: image (B,3,H,W) -> Q (B,9,H/4,W/4), softmax over the 9 neighbouring cells.

    Two stride-2 convs reach stride 4; two dilated convs give a receptive field (~50 px) that covers
    the 3x3 cell neighbourhood (48 px at cell 4).
    """

    def __init__(self, width: int = 32):
        super().__init__()
        self.body = nn.Sequential(
            _conv(3, width // 2, 2), _conv(width // 2, width, 2), _conv(width, width),
            _conv(width, width, d=2), _conv(width, width, d=2),
        )
        self.head = nn.Conv2d(width, 9, 3, 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(image)).softmax(dim=1)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0,1] (B,3,H,W) -> CIELAB scaled to roughly [0,1] per channel (L/100, (a+128)/255, ...)."""
    c = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = rgb.new_tensor([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]])
    xyz = torch.einsum("ij,bjhw->bihw", m, c)
    xyz = xyz / xyz.new_tensor([0.950456, 1.0, 1.088754]).view(1, 3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-8) ** (1 / 3), 7.787 * xyz + 16 / 116)
    L = 116 * f[:, 1] - 16
    a = 500 * (f[:, 0] - f[:, 1])
    b = 200 * (f[:, 1] - f[:, 2])
    return torch.stack([L / 100, (a + 128) / 255, (b + 128) / 255], dim=1)


def spixel_loss(q: torch.Tensor, rgb4: torch.Tensor, cell: int, labels4: torch.Tensor | None = None,
                compactness: float = 0.003) -> torch.Tensor:
    """SpixelFCN unsupervised loss at stride 4.

    q: (B,9,H4,W4); rgb4: (B,3,H4,W4) in [0,1]; labels4: optional one-hot (B,K,H4,W4) region labels
    (RefShapes instance maps). Position is in cell units, weighted by ``compactness``.
    """
    b, _, h4, w4 = q.shape
    lab = rgb_to_lab(rgb4)
    ys = torch.arange(h4, dtype=q.dtype, device=q.device).view(1, 1, h4, 1).expand(b, 1, h4, w4) / cell
    xs = torch.arange(w4, dtype=q.dtype, device=q.device).view(1, 1, 1, w4).expand(b, 1, h4, w4) / cell
    feats = [lab, ys, xs]
    if labels4 is not None:
        feats.append(labels4)
    f = torch.cat(feats, dim=1)
    rec = superpixel_propagate(superpixel_aggregate(f, q, cell), q, cell)
    loss = F.mse_loss(rec[:, :3], lab) * 3 + compactness * F.mse_loss(rec[:, 3:5], f[:, 3:5]) * 2
    if labels4 is not None:
        loss = loss - (labels4 * rec[:, 5:].clamp_min(1e-6).log()).sum(1).mean()
    return loss
