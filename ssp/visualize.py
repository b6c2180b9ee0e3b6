"""Prediction overlays for people to look at: a PNG grid of (image, expression, predicted mask, GT)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .evaluate import Predictor

__all__ = ["overlay", "save_prediction_grid"]


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    text: str,
    gt: np.ndarray | None = None,
    colour: tuple[int, int, int] = (255, 40, 40),
) -> np.ndarray:
    """RGB image with the mask tinted, the ground-truth contour in green and the text on top."""
    out = image.copy()
    m = mask.astype(bool)
    out[m] = (out[m] * 0.45 + np.array(colour) * 0.55).astype(np.uint8)
    if gt is not None and gt.any():
        cnts, _ = cv2.findContours(gt.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, cnts, -1, (0, 255, 0), 2)
    cv2.rectangle(out, (0, 0), (out.shape[1], 18), (0, 0, 0), -1)
    cv2.putText(out, text[:52], (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def save_prediction_grid(data, path: str | Path, pred: Predictor, n: int = 8, cols: int = 4, tile: int = 320) -> Path:
    """Predict the first ``n`` samples of ``data`` with ``pred`` (a checkpoint's or a bundle's Segmenter) and write a
    grid PNG (red = prediction, green = GT)."""
    tiles = []
    for i in range(min(n, len(data))):
        s = data[i]
        ((p, tp),) = pred.predict([s.image], [s.expression])
        m = pred.binarize(p, tp)
        t = overlay(s.image, m, f"{s.expression} ({tp:.2f})", s.mask)
        tiles.append(cv2.resize(t, (tile, tile)))
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[r : r + cols], 1) for r in range(0, len(tiles), cols)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))
    return path
