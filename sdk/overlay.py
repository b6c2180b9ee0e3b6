"""Draw results on a frame: tinted mask, contour, prompt with its score, FPS."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .segmenter import Result

__all__ = ["COLOURS", "draw"]

#: BGR colours, one per prompt (cycled)
COLOURS = ((60, 220, 60), (255, 140, 0), (0, 200, 255), (220, 60, 220), (60, 60, 255), (255, 255, 80))


def draw(frame: np.ndarray, results: Sequence[Result], fps: float | None = None, alpha: float = 0.45) -> np.ndarray:
    """A copy of ``frame`` with every result drawn in its own colour."""
    out = frame.copy()
    for i, r in enumerate(results):
        colour = np.array(COLOURS[i % len(COLOURS)], np.float32)
        # only the mask's bounding box is blended and traced (a small object on a large frame costs its own size)
        x, y, w, h = cv2.boundingRect(np.ascontiguousarray(r.mask, np.uint8))
        if w and h:
            roi, m = out[y : y + h, x : x + w], np.ascontiguousarray(r.mask[y : y + h, x : x + w], np.uint8)
            tinted = (roi.astype(np.float32) * np.float32(1 - alpha) + colour * np.float32(alpha)).astype(np.uint8)
            cv2.copyTo(tinted, m, roi)  # in place: roi is a view of out
            contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(x, y))
            cv2.drawContours(out, contours, -1, tuple(int(c) for c in colour), 2)
        label = f"{r.prompt} ({r.score:.2f})" if r.exists else f"{r.prompt}: not found ({r.score:.2f})"
        _text(out, label, (8, 22 + 20 * i), tuple(int(c) for c in colour))
    if fps is not None:
        _text(out, f"{fps:.1f} FPS", (8, out.shape[0] - 10), (255, 255, 255))
    return out


_FONT, _SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.5
_RING = np.ones((3, 3), np.uint8)


def _text(img: np.ndarray, text: str, org: tuple[int, int], colour: tuple[int, ...]) -> None:
    """Coloured text with a 1-px black outline, readable on any background. The label is rendered once as an
    anti-aliased coverage mask on a patch the size of the text; the outline is that mask dilated by one pixel (the
    same 1-px text shifted by one pixel in every direction, as thick strokes would drift: Hershey glyph advances
    grow with the stroke thickness), and both are blended into the patch only (one putText instead of nine)."""
    (tw, th), base = cv2.getTextSize(text, _FONT, _SCALE, 1)
    x, y = org
    h, w = img.shape[:2]
    x0, y0, x1, y1 = max(0, x - 2), max(0, y - th - 2), min(w, x + tw + 2), min(h, y + base + 2)
    if x1 <= x0 or y1 <= y0:
        return
    cov = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.putText(cov, text, (x - x0, y - y0), _FONT, _SCALE, 255, 1, cv2.LINE_AA)
    a_text = cov.astype(np.float32)[..., None] * (1.0 / 255.0)
    a_ring = cv2.dilate(cov, _RING).astype(np.float32)[..., None] * (1.0 / 255.0)
    patch = img[y0:y1, x0:x1].astype(np.float32) * (1.0 - a_ring)
    patch = patch * (1.0 - a_text) + np.asarray(colour[: img.shape[2]], np.float32) * a_text
    img[y0:y1, x0:x1] = np.clip(patch + 0.5, 0, 255).astype(np.uint8)
