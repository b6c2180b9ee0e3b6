"""Training augmentation for referring segmentation, applied around the SDK's letterbox (one implementation):
colour jitter on the photo (brightness / contrast / saturation only: a hue shift would falsify colour words),
then the letterbox, a horizontal flip that swaps 'left' / 'right' in every sentence, and a zoom with a shift
inside the letterbox square that keeps the whole target in view."""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["AugmentParams", "swap_left_right", "color_jitter", "hflip", "zoom_shift"]

_LR = re.compile(r"\b(left|right)(?=(?:[- ]?most|s|ward|wards|hand|-hand)?\b)", re.IGNORECASE)


@dataclass(frozen=True)
class AugmentParams:
    scale: float = 0.25  # zoom factor in [1 - scale, 1 + scale]
    color: float = 0.2  # brightness / contrast / saturation factors in [1 - color, 1 + color]
    flip: float = 0.5  # probability of a horizontal flip


def swap_left_right(text: str) -> str:
    """'left' <-> 'right' (also leftmost, left-hand, lefts, ...), keeping the capitalisation."""

    def sub(m: re.Match) -> str:
        w = m.group(1)
        r = "right" if w.lower() == "left" else "left"
        return r.upper() if w.isupper() else (r.capitalize() if w[0].isupper() else r)

    return _LR.sub(sub, text)


def color_jitter(image: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Random brightness, contrast and saturation (uint8 RGB in, uint8 RGB out)."""
    if amount <= 0:
        return image
    x = image.astype(np.float32)
    b, c, s = (float(rng.uniform(1 - amount, 1 + amount)) for _ in range(3))
    x = x * b
    mean = x.mean()
    x = (x - mean) * c + mean
    gray = x @ np.array([0.299, 0.587, 0.114], np.float32)
    x = (x - gray[..., None]) * s + gray[..., None]
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def hflip(image: np.ndarray, mask: np.ndarray, sentences: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    return (
        np.ascontiguousarray(image[:, ::-1]),
        np.ascontiguousarray(mask[:, ::-1]),
        [swap_left_right(t) for t in sentences],
    )


def _shift_range(z: float, c: float, lo: float, hi: float, size: int) -> tuple[float, float]:
    """Shifts t with z*(lo-c)+c+t >= 0 and z*(hi-c)+c+t <= size, within |t| <= |z-1|*c."""
    free = abs(z - 1) * c
    a, b = -(z * (lo - c) + c), size - (z * (hi - c) + c)
    return max(-free, a), min(free, b)


def zoom_shift(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, amount: float, pad: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Zoom the letterboxed square by z in [1-amount, 1+amount] about its centre and shift it, so that the
    target's box stays inside (a crop for z > 1, more letterbox padding for z < 1)."""
    if amount <= 0:
        return image, mask
    size = image.shape[0]
    c = size / 2.0
    z = float(rng.uniform(1 - amount, 1 + amount))
    ys, xs = np.nonzero(mask)
    box = (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) if len(xs) else (c, c, c, c)
    shifts = []
    for lo, hi in ((box[0], box[1]), (box[2], box[3])):
        a, b = _shift_range(z, c, lo, hi, size)
        if a > b:  # the zoomed target does not fit: no zoom on this sample
            return image, mask
        shifts.append(float(rng.uniform(a, b)))
    m = np.array([[z, 0, (1 - z) * c + shifts[0]], [0, z, (1 - z) * c + shifts[1]]], np.float32)
    img = cv2.warpAffine(
        image,
        m,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=tuple(int(v) for v in pad),
    )
    msk = cv2.warpAffine(mask, m, (size, size), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return img, msk
