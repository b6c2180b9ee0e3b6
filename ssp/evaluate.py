"""Evaluate a model or a deployed bundle on a data set through the SDK's Segmenter stages (letterbox, tokenizer,
image encoder batch, decoder, inverse letterbox): a checkpoint runs on the PyTorch backend, a bundle on any backend,
so `ssp eval --checkpoint` and `ssp eval --bundle` measure the same pipeline."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np
from tqdm import tqdm

from .data.sample import Sample
from .metrics import SegMeter

if TYPE_CHECKING:
    from ssp_edge.sdk.segmenter import Segmenter

    from .config import SSPConfig
    from .models.ssp import SSP

__all__ = ["Predictor", "evaluate", "evaluate_segmenter", "tune_thresholds"]


class Predictor:
    """Images + one expression each -> probability maps and target scores at the source resolution, through a
    :class:`~ssp_edge.sdk.segmenter.Segmenter` (the PyTorch reference, or any bundle backend)."""

    def __init__(
        self,
        model: SSP | None = None,
        cfg: SSPConfig | None = None,
        mask_threshold: float = 0.5,
        exists_threshold: float = 0.5,
        *,
        segmenter: Segmenter | None = None,
    ):
        """``model`` (its config: ``cfg``, unused but checked) on the PyTorch backend, or an open ``segmenter``."""
        if segmenter is None:
            from .torch_backend import reference_segmenter

            if model is None:
                raise TypeError("Predictor needs a model or a segmenter")
            if cfg is not None and cfg != model.cfg:
                raise ValueError("Predictor: cfg is not the model's config")
            segmenter = reference_segmenter(model)  # binarize below applies this predictor's thresholds
        self.segmenter = segmenter
        self.mask_threshold = mask_threshold if model is not None else segmenter.mask_threshold
        self.exists_threshold = exists_threshold if model is not None else segmenter.exists_threshold

    @classmethod
    def with_thresholds(cls, model: SSP, cfg: SSPConfig, thresholds: dict[str, float] | None) -> Predictor:
        """A predictor using {"mask": p, "exists": p} (each defaults to 0.5), e.g. a checkpoint's tuned ones."""
        th = thresholds or {}
        return cls(model, cfg, th.get("mask", 0.5), th.get("exists", 0.5))

    def predict(self, images: Sequence[np.ndarray], expressions: Sequence[str]) -> list[tuple[np.ndarray, float]]:
        """One (probability map (H,W) float32, target probability) per (RGB image, expression) pair: text-encoder
        batches of up to the bundle's prompts, image-encoder batches of up to its frames per call, the decoder
        batched as the backend allows. A blank expression names nothing: an empty map with probability 0."""
        seg = self.segmenter
        keep = [i for i, e in enumerate(expressions) if e.strip()]
        encs = {}
        with warnings.catch_warnings():  # data sets have long expressions; truncation is the tokenizer's rule
            warnings.simplefilter("ignore", UserWarning)
            for a in range(0, len(keep), seg.max_prompts):
                part = keep[a : a + seg.max_prompts]
                enc = seg.encode_prompts([expressions[i] for i in part])
                encs.update({i: enc.subset([j]) for j, i in enumerate(part)})
        out: dict[int, tuple[np.ndarray, float]] = {
            i: (np.zeros(images[i].shape[:2], np.float32), 0.0) for i in range(len(images)) if i not in encs
        }
        for a in range(0, len(keep), seg.max_frames):
            part = keep[a : a + seg.max_frames]
            feats = seg.encode_image([cv2.cvtColor(images[i], cv2.COLOR_RGB2BGR) for i in part])
            for i, r in zip(part, seg.decode(feats, [encs[i] for i in part])):
                out[i] = (r.prob, r.score)
        return [out[i] for i in range(len(images))]

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


def _evaluate(pred: Predictor, data, limit: int | None, batch: int, progress: bool) -> dict:
    n = len(data) if limit is None else min(limit, len(data))
    meter = SegMeter()
    it = (data[i] for i in range(n))
    with tqdm(total=n, desc="eval", disable=not progress, unit="sample") as bar:
        for chunk in _batches(it, batch):
            res = pred.predict([s.image for s in chunk], [s.expression for s in chunk])
            for s, (p, tp) in zip(chunk, res):
                meter.update(pred.binarize(p, tp), s.mask, s.exists, s.type, tags=s.tags)
            bar.update(len(chunk))
    return meter.summary()


def evaluate(
    model: SSP,
    cfg: SSPConfig,
    data,
    limit: int | None = None,
    batch: int = 8,
    progress: bool = True,
    thresholds: dict[str, float] | None = None,
) -> dict:
    """Metrics (see :class:`ssp.metrics.SegMeter`) of a PyTorch model over the first ``limit`` samples of ``data``.

    ``thresholds`` ({"mask": p, "exists": p}) default to 0.5 / 0.5."""
    return _evaluate(Predictor.with_thresholds(model, cfg, thresholds), data, limit, batch, progress)


def evaluate_segmenter(seg: Segmenter, data, limit: int | None = None, batch: int = 8, progress: bool = True) -> dict:
    """The same metrics for an open Segmenter (e.g. a bundle on ONNX Runtime), at its thresholds."""
    return _evaluate(Predictor(segmenter=seg), data, limit, batch, progress)


def tune_thresholds(
    model: SSP,
    cfg: SSPConfig,
    data,
    limit: int = 300,
    batch: int = 8,
    mask_grid: Sequence[float] = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6),
    exists_grid: Sequence[float] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
) -> dict:
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
    return {
        "mask": best[0],
        "exists": best[1],
        "gIoU": scores[best],
        "n": n,
        "grid": {f"{a}/{b}": round(v, 4) for (a, b), v in scores.items()},
    }
