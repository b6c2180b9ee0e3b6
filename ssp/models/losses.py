"""Training losses: BCE + Dice on the mask, BCE on target existence, auxiliary BCE on the PWT coarse
map and on the superpixel relevance r (targets = SuperpixelAggregate of the ground-truth mask)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .ops import superpixel_aggregate

__all__ = ["dice_loss", "grounding_loss", "ssp_loss"]


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice per sample (B,...) -> (B,)."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    return 1 - (2 * (p * t).sum(1) + eps) / (p.sum(1) + t.sum(1) + eps)


def _grounding_terms(
    target_logit: torch.Tensor,
    coarse: torch.Tensor,
    rel: torch.Tensor,
    q: torch.Tensor,
    gt: torch.Tensor,
    exists: torch.Tensor,
    cell: int,
) -> dict[str, torch.Tensor]:
    target_logit, coarse, rel = (t.float() for t in (target_logit, coarse, rel))
    pos = exists > 0.5
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
    with torch.no_grad():  # hard IoU of the relevance map on target expressions: a free training metric
        hit, ref = rel[pos] > 0, gsp[pos] > 0.5
        inter = (hit & ref).flatten(1).sum(1).float()
        union = (hit | ref).flatten(1).sum(1).float().clamp_min(1)
        rel_iou = (inter / union).mean() if pos.any() else torch.zeros(())
    return {"exists": ex, "coarse": aux_c, "relevance": aux_r, "rel_iou": rel_iou}


def grounding_loss(
    target_logit: torch.Tensor,
    coarse: torch.Tensor,
    rel: torch.Tensor,
    q: torch.Tensor,
    gt: torch.Tensor,
    exists: torch.Tensor,
    cell: int,
) -> dict[str, torch.Tensor]:
    """The losses of the grounding phase (no upsampling decoder): target existence, the PWT coarse map
    and the superpixel relevance. ``rel_iou`` is reported, not optimized."""
    t = _grounding_terms(target_logit, coarse, rel, q, gt, exists, cell)
    t["total"] = t["exists"] * 0.5 + t["coarse"] + t["relevance"]
    return t


def ssp_loss(
    mask_logits: torch.Tensor,
    target_logit: torch.Tensor,
    coarse: torch.Tensor,
    rel: torch.Tensor,
    q: torch.Tensor,
    gt: torch.Tensor,
    exists: torch.Tensor,
    cell: int,
    aux_weight: float = 0.5,
) -> dict[str, torch.Tensor]:
    """gt: (B,1,H,W) float {0,1}; exists: (B,) float. Returns the parts and their weighted ``total``."""
    t = _grounding_terms(target_logit, coarse, rel, q, gt, exists, cell)
    mask_logits = mask_logits.float()
    bce = F.binary_cross_entropy_with_logits(mask_logits, gt)
    pos = exists > 0.5
    dice = dice_loss(mask_logits[pos], gt[pos]).mean() if pos.any() else mask_logits.sum() * 0
    total = bce * 2 + dice + t["exists"] * 0.5 + aux_weight * (t["coarse"] + t["relevance"])
    return {"total": total, "bce": bce, "dice": dice, **t}
