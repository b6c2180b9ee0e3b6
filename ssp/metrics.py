"""Referring-segmentation metrics: oIoU (cumulative I / cumulative U), mIoU, Prec@0.5..0.9, and GRES
no-target metrics N-acc (no-target expressions predicted empty) and T-acc (target expressions not
predicted empty). IoU metrics are over positive (target) expressions; ``gIoU`` counts a correct empty
prediction on a no-target expression as IoU 1 (GRES); ``cIoU`` is GRES's cumulative IoU over every expression
(the pixels predicted for a no-target expression count in the union)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

__all__ = ["THRESHOLDS", "SegMeter", "iou"]

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def iou(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int]:
    """(intersection, union) pixel counts of two binary masks."""
    p, g = pred.astype(bool), gt.astype(bool)
    return int(np.logical_and(p, g).sum()), int(np.logical_or(p, g).sum())


@dataclass
class SegMeter:
    """Accumulates predictions; :meth:`summary` returns the metric dict printed by ``ssp eval``."""

    cum_i: int = 0
    cum_u: int = 0
    ious: list[float] = field(default_factory=list)
    by_type: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    g_ious: list[float] = field(default_factory=list)
    n_total: int = 0
    nt_correct: int = 0  # no-target expressions predicted empty
    nt_total: int = 0
    t_correct: int = 0  # target expressions predicted non-empty
    t_total: int = 0
    nt_cum_u: int = 0  # pixels predicted on no-target expressions (the union part of GRES cIoU)

    def update(self, pred: np.ndarray, gt: np.ndarray, exists: bool | None = None, type: str = "all") -> None:
        """Add one sample. ``exists`` defaults to ``gt.any()``; an empty ``pred`` means "no target"."""
        exists = bool(gt.any()) if exists is None else exists
        empty = not pred.any()
        self.n_total += 1
        if not exists:
            self.nt_total += 1
            self.nt_correct += int(empty)
            self.g_ious.append(1.0 if empty else 0.0)
            self.nt_cum_u += int(pred.astype(bool).sum())
            return
        self.t_total += 1
        self.t_correct += int(not empty)
        i, u = iou(pred, gt)
        self.cum_i += i
        self.cum_u += u
        v = i / u if u else 1.0
        self.ious.append(v)
        self.by_type[type].append(v)
        self.g_ious.append(v)

    def summary(self) -> dict:
        ious = np.array(self.ious, np.float64)
        out: dict = {
            "n": self.n_total,
            "n_target": self.t_total,
            "n_no_target": self.nt_total,
            "oIoU": self.cum_i / self.cum_u if self.cum_u else 0.0,
            "mIoU": float(ious.mean()) if len(ious) else 0.0,
            "gIoU": float(np.mean(self.g_ious)) if self.g_ious else 0.0,
            "cIoU": self.cum_i / (self.cum_u + self.nt_cum_u) if self.cum_u + self.nt_cum_u else 0.0,
        }
        for t in THRESHOLDS:
            out[f"prec@{t}"] = float((ious >= t).mean()) if len(ious) else 0.0
        out["N-acc"] = self.nt_correct / self.nt_total if self.nt_total else None
        out["T-acc"] = self.t_correct / self.t_total if self.t_total else None
        out["by_type"] = {k: float(np.mean(v)) for k, v in sorted(self.by_type.items())}
        return out
