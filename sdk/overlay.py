"""Draw results on a frame: tinted mask, contour, prompt with its score, FPS."""
from __future__ import annotations

from typing import Sequence

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
        m = r.mask.astype(bool)
        if m.any():
            out[m] = (out[m].astype(np.float32) * (1 - alpha) + colour * alpha).astype(np.uint8)
            contours, _ = cv2.findContours(r.mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, contours, -1, tuple(int(c) for c in colour), 2)
        label = f"{r.prompt} ({r.score:.2f})" if r.exists else f"{r.prompt}: not found ({r.score:.2f})"
        _text(out, label, (8, 22 + 20 * i), tuple(int(c) for c in colour))
    if fps is not None:
        _text(out, f"{fps:.1f} FPS", (8, out.shape[0] - 10), (255, 255, 255))
    return out


#: offsets of the 1-px black outline around a label
_OUTLINE = tuple((dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if dx or dy)


def _text(img: np.ndarray, text: str, org: tuple[int, int], colour: tuple[int, ...]) -> None:
    """Coloured text with a black outline, readable on any background. The outline is the same 1-px text
    shifted by one pixel: Hershey glyph advances grow with the stroke thickness, so a thick black copy
    would drift to the right of the coloured text."""
    x, y = org
    for dx, dy in _OUTLINE:
        cv2.putText(img, text, (x + dx, y + dy), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
