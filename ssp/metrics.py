"""Referring-segmentation metrics: oIoU (cumulative I / cumulative U), mIoU, Prec@0.5..0.9, and GRES
no-target metrics N-acc (no-target expressions predicted empty) and T-acc (target expressions not
predicted empty). IoU metrics are over positive (target) expressions; ``gIoU`` counts a correct empty
prediction on a no-target expression as IoU 1 (GRES).

Added for generalized expressions (RefShapes v2): a boundary F-score (``bF@2px``: boundary pixels matched
within 2 px), multi-target metrics (expressions with >= 2 targets), GRES metrics per expression type
(``by_type_gres``, no-target expressions included) and per reported tag (``by_tag``: e.g. trivially unique
vs ambiguous noun phrases, interior vs end ordinals), from the per-sample ``tags`` passed to
:meth:`SegMeter.update`. ``cIoU`` is GRES's cumulative IoU over every expression (the pixels predicted for a
no-target expression count in the union)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

__all__ = ["THRESHOLDS", "BOUNDARY_TOL", "REPORTED_TAGS", "SegMeter", "iou", "mask_boundary", "boundary_f"]

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
BOUNDARY_TOL = 2  # pixels: the tolerance of the boundary F-score reported as bF@2px
# tags reported apart in ``by_tag`` (as "TYPE.TAG=VALUE"); other tags (template, background, ...) are ignored
REPORTED_TAGS = ("unique", "ordinal_pos", "relation", "kind", "why")


def iou(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int]:
    """(intersection, union) pixel counts of two binary masks."""
    p, g = pred.astype(bool), gt.astype(bool)
    return int(np.logical_and(p, g).sum()), int(np.logical_or(p, g).sum())


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    """The boundary of a binary mask: its pixels with a 4-neighbour outside it (outside the image counts as
    outside), as a bool array."""
    m = np.pad(mask.astype(bool), 1).astype(np.uint8)
    inner = cv2.erode(
        m, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)), borderType=cv2.BORDER_CONSTANT, borderValue=0
    )
    return (m > inner)[1:-1, 1:-1]


def _disk(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return ((r[:, None] ** 2 + r[None, :] ** 2) <= radius * radius).astype(np.uint8)


def boundary_f(pred: np.ndarray, gt: np.ndarray, tol: int = BOUNDARY_TOL) -> float:
    """Boundary F-score: precision = share of predicted boundary pixels within ``tol`` px (Euclidean) of a
    ground-truth boundary pixel, recall the other way round, F = 2PR / (P + R). Two empty masks score 1, one
    empty mask 0."""
    bp, bg = mask_boundary(pred), mask_boundary(gt)
    n_p, n_g = int(bp.sum()), int(bg.sum())
    if n_p == 0 or n_g == 0:
        return 1.0 if n_p == n_g else 0.0
    k = _disk(tol)
    near_g = cv2.dilate(bg.astype(np.uint8), k) > 0
    near_p = cv2.dilate(bp.astype(np.uint8), k) > 0
    prec = float(np.logical_and(bp, near_g).sum()) / n_p
    rec = float(np.logical_and(bg, near_p).sum()) / n_g
    return 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0


@dataclass
class _Group:
    """GRES counts of one group of samples (an expression type, a tag value, the multi-target ones)."""

    ious: list[float] = field(default_factory=list)  # target expressions
    bfs: list[float] = field(default_factory=list)  # target expressions
    g_ious: list[float] = field(default_factory=list)  # all expressions (no-target: 1 if predicted empty)
    nt_total: int = 0
    nt_correct: int = 0
    t_correct: int = 0

    def add(self, exists: bool, empty: bool, v: float | None, bf: float | None) -> None:
        if not exists:
            self.nt_total += 1
            self.nt_correct += int(empty)
            self.g_ious.append(1.0 if empty else 0.0)
            return
        self.t_correct += int(not empty)
        self.ious.append(float(v))  # type: ignore[arg-type]
        if bf is not None:
            self.bfs.append(bf)
        self.g_ious.append(float(v))  # type: ignore[arg-type]

    def summary(self) -> dict:
        ious = np.array(self.ious, np.float64)
        nt = len(ious)
        return {
            "n": len(self.g_ious),
            "n_target": nt,
            "n_no_target": self.nt_total,
            "mIoU": float(ious.mean()) if nt else None,
            "gIoU": float(np.mean(self.g_ious)) if self.g_ious else None,
            "prec@0.9": float((ious >= 0.9).mean()) if nt else None,
            f"bF@{BOUNDARY_TOL}px": float(np.mean(self.bfs)) if self.bfs else None,
            "N-acc": self.nt_correct / self.nt_total if self.nt_total else None,
            "T-acc": self.t_correct / nt if nt else None,
        }


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
    boundary: bool = True  # compute the boundary F-score (a few morphology ops per target expression)
    bfs: list[float] = field(default_factory=list)
    groups: dict[str, _Group] = field(default_factory=lambda: defaultdict(_Group))
    multi: _Group = field(default_factory=_Group)  # target expressions with >= 2 targets
    nt_cum_u: int = 0  # pixels predicted on no-target expressions (the union part of GRES cIoU)

    def update(
        self,
        pred: np.ndarray,
        gt: np.ndarray,
        exists: bool | None = None,
        type: str = "all",
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        """Add one sample. ``exists`` defaults to ``gt.any()``; an empty ``pred`` means "no target".
        ``tags`` (optional, e.g. ``Sample.tags``): ``n_targets`` (>= 2: counted as multi-target; without it a
        ``multi``-type target expression is) and the :data:`REPORTED_TAGS`, reported apart in ``by_tag``."""
        exists = bool(gt.any()) if exists is None else exists
        empty = not pred.any()
        self.n_total += 1
        v: float | None = None
        bf: float | None = None
        if not exists:
            self.nt_total += 1
            self.nt_correct += int(empty)
            self.g_ious.append(1.0 if empty else 0.0)
            self.nt_cum_u += int(pred.astype(bool).sum())
        else:
            self.t_total += 1
            self.t_correct += int(not empty)
            i, u = iou(pred, gt)
            self.cum_i += i
            self.cum_u += u
            v = i / u if u else 1.0
            self.ious.append(v)
            self.by_type[type].append(v)
            self.g_ious.append(v)
            if self.boundary:
                bf = boundary_f(pred, gt)
                self.bfs.append(bf)
        self._add_groups(type, dict(tags or {}), exists, empty, v, bf)

    def _add_groups(self, type: str, tags: dict, exists: bool, empty: bool, v: float | None, bf: float | None) -> None:
        self.groups[f"type:{type}"].add(exists, empty, v, bf)
        for k in REPORTED_TAGS:
            if k in tags and tags[k] is not None:
                val = tags[k]
                val = str(val).lower() if isinstance(val, bool) else str(val)
                self.groups[f"tag:{type}.{k}={val}"].add(exists, empty, v, bf)
        n_t = tags.get("n_targets")
        if exists and (n_t >= 2 if n_t is not None else type == "multi"):
            self.multi.add(exists, empty, v, bf)

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
        out.update(self.gres_summary())
        return out

    def gres_summary(self) -> dict:
        """The generalized-expression part of :meth:`summary`: ``bF@2px``, ``gIoU_multi_target`` (mean IoU
        over expressions with >= 2 targets) and ``multi_target`` (its counts), ``by_type_gres`` (per type,
        no-target expressions included: n, mIoU, gIoU, prec@0.9, bF, N-acc, T-acc) and ``by_tag`` (the same
        per "TYPE.TAG=VALUE", e.g. ``ordinal.ordinal_pos=interior``, ``position.unique=true``)."""
        multi = self.multi.summary()
        return {
            f"bF@{BOUNDARY_TOL}px": float(np.mean(self.bfs)) if self.bfs else None,
            "gIoU_multi_target": multi["gIoU"],
            "multi_target": multi,
            "by_type_gres": {k[5:]: g.summary() for k, g in sorted(self.groups.items()) if k.startswith("type:")},
            "by_tag": {k[4:]: g.summary() for k, g in sorted(self.groups.items()) if k.startswith("tag:")},
        }
