"""Evaluate a checkpoint on a data set: batched PyTorch inference with letterboxing and its inverse."""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from .config import SSPConfig
from .data.sample import Sample
from .data.transforms import letterbox, normalize, pad_value, unletterbox
from .metrics import SegMeter
from .models.ssp import SSP
from .models.text import Tokenizer

__all__ = ["Predictor", "evaluate", "tune_thresholds"]


class Predictor:
    """Image + expressions -> probability maps and target scores at the source resolution."""

    def __init__(self, model: SSP, cfg: SSPConfig, mask_threshold: float = 0.5, exists_threshold: float = 0.5):
        self.model = model.eval()
        self.cfg = cfg
        self.tok = Tokenizer(cfg.max_tokens)
        self.mask_threshold = mask_threshold
        self.exists_threshold = exists_threshold
        self.pad = pad_value(cfg.mean)

    @classmethod
    def with_thresholds(cls, model: SSP, cfg: SSPConfig, thresholds: dict[str, float] | None) -> "Predictor":
        """A predictor using {"mask": p, "exists": p} (each defaults to 0.5), e.g. a checkpoint's tuned ones."""
        th = thresholds or {}
        return cls(model, cfg, th.get("mask", 0.5), th.get("exists", 0.5))

    def prepare(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, list]:
        xs, lbs = [], []
        for im in images:
            lb_im, lb = letterbox(im, self.cfg.input_size, self.pad)  # type: ignore[arg-type]
            xs.append(normalize(lb_im, self.cfg.mean, self.cfg.std))
            lbs.append(lb)
        return torch.from_numpy(np.stack(xs)), lbs

    @torch.no_grad()
    def predict(self, images: Sequence[np.ndarray], expressions: Sequence[str]) -> list[tuple[np.ndarray, float]]:
        """One (probability map (H,W) float32, target probability) per (image, expression) pair."""
        x, lbs = self.prepare(images)
        t = self.tok(expressions)
        dev = next(self.model.parameters()).device  # training validates on its GPU
        out = self.model(x.to(dev), t.input_ids.to(dev), t.attention_mask.to(dev))
        probs = torch.sigmoid(out.mask_logits[:, 0].float()).cpu().numpy()
        tp = torch.sigmoid(out.target_logit.float()).cpu().numpy()
        return [(unletterbox(p, lb), float(s)) for p, lb, s in zip(probs, lbs, tp)]

    def binarize(self, prob: np.ndarray, target_prob: float) -> np.ndarray:
        if target_prob < self.exists_threshold:
            return np.zeros(prob.shape, np.uint8)
        return (prob > self.mask_threshold).astype(np.uint8)


def _batches(samples: Iterable[Sample], n: int) -> Iterable[list[Sample]]:
    buf: list[Sample] = []
    for s in samples:
        buf.append(s)
        if len(buf) == n:
            yield buf
            buf = []
    if buf:
        yield buf


def evaluate(model: SSP, cfg: SSPConfig, data, limit: int | None = None, batch: int = 8,
             progress: bool = True, thresholds: dict[str, float] | None = None) -> dict:
    """Metrics (see :class:`ssp.metrics.SegMeter`) over the first ``limit`` samples of ``data``.

    ``thresholds`` ({"mask": p, "exists": p}) default to 0.5 / 0.5."""
    pred = Predictor.with_thresholds(model, cfg, thresholds)
    n = len(data) if limit is None else min(limit, len(data))
    meter = SegMeter()
    it = (data[i] for i in range(n))
    with tqdm(total=n, desc="eval", disable=not progress, unit="sample") as bar:
        for chunk in _batches(it, batch):
            res = pred.predict([s.image for s in chunk], [s.expression for s in chunk])
            for s, (p, tp) in zip(chunk, res):
                meter.update(pred.binarize(p, tp), s.mask, s.exists, s.type)
            bar.update(len(chunk))
    return meter.summary()


def tune_thresholds(model: SSP, cfg: SSPConfig, data, limit: int = 300, batch: int = 8,
                    mask_grid: Sequence[float] = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6),
                    exists_grid: Sequence[float] = (0.3, 0.4, 0.5, 0.6, 0.7)) -> dict:
    """Pick the mask / target-exists thresholds that maximise gIoU on a validation set (GRES: mIoU on
    target expressions and correct empty masks on no-target ones count alike). Returns the chosen pair
    and the score of every pair."""
    pred = Predictor(model, cfg)
    n = min(limit, len(data))
    cached: list[tuple[np.ndarray, float, Sample]] = []
    for chunk in _batches((data[i] for i in range(n)), batch):
        for s, (p, tp) in zip(chunk, pred.predict([s.image for s in chunk], [s.expression for s in chunk])):
            cached.append((p, tp, s))
    scores = {}
    for mt in mask_grid:
        for et in exists_grid:
            meter = SegMeter()
            pred.mask_threshold, pred.exists_threshold = mt, et
            for p, tp, s in cached:
                meter.update(pred.binarize(p, tp), s.mask, s.exists, s.type)
            scores[(mt, et)] = meter.summary()["gIoU"]
    best = max(scores, key=lambda k: (round(scores[k], 4), -abs(k[0] - 0.5) - abs(k[1] - 0.5)))
    return {"mask": best[0], "exists": best[1], "gIoU": scores[best], "n": n,
            "grid": {f"{a}/{b}": round(v, 4) for (a, b), v in scores.items()}}
