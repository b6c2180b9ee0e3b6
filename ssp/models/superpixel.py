"""Superpixel networks (SpixelFCN-style) predicting the 9-neighbour association map Q at stride 4,
SpixelFCN's unsupervised loss (reconstruct colour/labels and position through pool -> propagate), and the
superpixel quality measures (hard labels, boundary recall, achievable segmentation accuracy)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .ops import superpixel_aggregate, superpixel_propagate

__all__ = [
    "SuperpixelNet",
    "PyramidSuperpixelNet",
    "build_superpixel_net",
    "spixel_loss",
    "rgb_to_lab",
    "superpixel_labels",
    "boundary_recall",
    "achievable_accuracy",
]


def _conv(cin: int, cout: int, s: int = 1, d: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, s, d, dilation=d, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class SuperpixelNet(nn.Module):
    """Small conv net: image (B,3,H,W) -> Q (B,9,H/4,W/4), softmax over the 9 neighbouring cells.

    Two stride-2 convs reach stride 4; two dilated convs give a receptive field (~50 px) that covers
    the 3x3 cell neighbourhood (48 px at cell 4).
    """

    def __init__(self, width: int = 32):
        super().__init__()
        self.body = nn.Sequential(
            _conv(3, width // 2, 2),
            _conv(width // 2, width, 2),
            _conv(width, width),
            _conv(width, width, d=2),
            _conv(width, width, d=2),
        )
        self.head = nn.Conv2d(width, 9, 3, 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(image)).softmax(dim=1)


class PyramidSuperpixelNet(nn.Module):
    """Image (B,3,H,W) -> Q (B,9,H/4,W/4) for coarse grids (``cell`` 8: 32 px cells, a 96 px neighbourhood).

    A stride-4 branch keeps the colour edges, strided convs to strides 8 and 16 (the last one dilated) give a
    receptive field of ~120 px; their outputs are upsampled (bilinear), added, refined at stride 4 by a depthwise-
    separable conv (boundary recall at 2 px after 250 pretraining steps: 0.71 without it, 0.95 with it) and read by
    the 3x3 head: under half the multiply-adds of :class:`SuperpixelNet` (its three 3x3 convs at stride 4 cost the
    most) for twice the reach.
    """

    def __init__(self, width: int = 32):
        super().__init__()
        w, w16 = width, width * 3 // 2
        self.s4 = nn.Sequential(_conv(3, w // 2, 2), _conv(w // 2, w, 2))
        self.s8 = nn.Sequential(_conv(w, w, 2), _conv(w, w))
        self.s16 = nn.Sequential(_conv(w, w16, 2), _conv(w16, w16, d=2))
        self.lat8 = nn.Conv2d(w, w, 1)
        self.lat16 = nn.Conv2d(w16, w, 1)
        self.refine = nn.Sequential(
            nn.Conv2d(w, w, 3, 1, 1, groups=w, bias=False),
            nn.Conv2d(w, w, 1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Conv2d(w, 9, 3, 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        f4 = self.s4(image)
        f8 = self.s8(f4)
        f16 = self.s16(f8)
        up = F.interpolate(self.lat8(f8), scale_factor=2.0, mode="bilinear", align_corners=False)
        up = up + F.interpolate(self.lat16(f16), scale_factor=4.0, mode="bilinear", align_corners=False)
        return self.head(self.refine(torch.relu(f4 + up))).softmax(dim=1)


def build_superpixel_net(kind: str, width: int) -> nn.Module:
    """``dilated`` (v1, :class:`SuperpixelNet`) or ``pyramid`` (v2, :class:`PyramidSuperpixelNet`)."""
    return SuperpixelNet(width) if kind == "dilated" else PyramidSuperpixelNet(width)


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


def spixel_loss(
    q: torch.Tensor, rgb4: torch.Tensor, cell: int, labels4: torch.Tensor | None = None, compactness: float = 0.003
) -> torch.Tensor:
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


# ----------------------------------------------------------------------------- superpixel quality


def superpixel_labels(q: torch.Tensor, cell: int) -> torch.Tensor:
    """Hard superpixels: each stride-4 pixel's most associated cell, as a cell index (B,H4,W4) (int64)."""
    b, _, h4, w4 = q.shape
    gh, gw = h4 // cell, w4 // cell
    k = q.argmax(1)
    dy, dx = k // 3 - 1, k % 3 - 1
    ys = torch.arange(h4, device=q.device).view(1, h4, 1) // cell
    xs = torch.arange(w4, device=q.device).view(1, 1, w4) // cell
    i = (ys + dy).clamp(0, gh - 1)
    j = (xs + dx).clamp(0, gw - 1)
    return i * gw + j


def _edges(labels: torch.Tensor) -> torch.Tensor:
    """Pixels whose right or lower neighbour has another label (B,H,W) bool."""
    e = torch.zeros_like(labels, dtype=torch.bool)
    e[:, :, :-1] |= labels[:, :, 1:] != labels[:, :, :-1]
    e[:, :-1, :] |= labels[:, 1:, :] != labels[:, :-1, :]
    return e


def boundary_recall(sp: torch.Tensor, gt: torch.Tensor, tolerance: int = 1) -> float:
    """Share of ground-truth boundary pixels with a superpixel boundary within ``tolerance`` pixels (Chebyshev);
    ``sp`` and ``gt`` (B,H,W) integer label maps of one resolution."""
    eg, es = _edges(gt), _edges(sp).float()[:, None]
    near = F.max_pool2d(es, 2 * tolerance + 1, 1, tolerance)[:, 0] > 0
    n = int(eg.sum())
    return float((eg & near).sum()) / n if n else 1.0


def achievable_accuracy(sp: torch.Tensor, gt: torch.Tensor) -> float:
    """Achievable segmentation accuracy: the share of pixels right when every superpixel takes its majority
    ground-truth label (the best mask a superpixel-level prediction can give)."""
    b = sp.shape[0]
    n_sp, n_gt = int(sp.max()) + 1, int(gt.max()) + 1
    idx = (torch.arange(b, device=sp.device).view(b, 1, 1) * n_sp + sp) * n_gt + gt
    counts = torch.bincount(idx.flatten(), minlength=b * n_sp * n_gt).view(b * n_sp, n_gt)
    return float(counts.max(1).values.sum()) / sp.numel()
