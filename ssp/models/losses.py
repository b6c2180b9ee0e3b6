"""Training losses: BCE + Dice on the mask, BCE on target existence, auxiliary BCE on the PWT coarse
map and on the superpixel relevance r (targets = SuperpixelAggregate of the ground-truth mask)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .ops import superpixel_aggregate

__all__ = ["dice_loss", "ssp_loss"]


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice per sample (B,...) -> (B,)."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    return 1 - (2 * (p * t).sum(1) + eps) / (p.sum(1) + t.sum(1) + eps)


def ssp_loss(mask_logits: torch.Tensor, target_logit: torch.Tensor, coarse: torch.Tensor, rel: torch.Tensor,
             q: torch.Tensor, gt: torch.Tensor, exists: torch.Tensor, cell: int,
             aux_weight: float = 0.5) -> dict[str, torch.Tensor]:
    """gt: (B,1,H,W) float {0,1}; exists: (B,) float. Returns the parts and their weighted ``total``."""
    mask_logits, target_logit, coarse, rel = (t.float() for t in (mask_logits, target_logit, coarse, rel))
    bce = F.binary_cross_entropy_with_logits(mask_logits, gt)
    pos = exists > 0.5
    dice = dice_loss(mask_logits[pos], gt[pos]).mean() if pos.any() else mask_logits.sum() * 0
    ex = F.binary_cross_entropy_with_logits(target_logit, exists)
    g16 = F.adaptive_avg_pool2d(gt, coarse.shape[-2:])
    aux_c = F.binary_cross_entropy_with_logits(coarse, g16)
    g4 = F.adaptive_avg_pool2d(gt, q.shape[-2:])
    with torch.no_grad():
        gsp = superpixel_aggregate(g4, q.detach().float(), cell).clamp(0, 1)
    aux_r = F.binary_cross_entropy_with_logits(rel, gsp)
    if pos.any():  # Dice on the coarse maps gives the grounding layers a direct, well-scaled signal
        aux_c = aux_c + dice_loss(coarse[pos], g16[pos]).mean()
        aux_r = aux_r + dice_loss(rel[pos], gsp[pos]).mean()
    total = bce * 2 + dice + ex * 0.5 + aux_weight * (aux_c + aux_r)
    return {"total": total, "bce": bce, "dice": dice, "exists": ex, "coarse": aux_c, "relevance": aux_r}
