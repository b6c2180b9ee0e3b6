"""Letterbox preprocessing (keep aspect, pad to a square), its exact inverse for masks, normalisation.
numpy + OpenCV only; the reference model (training, evaluation, export checks) uses these same
functions, so the SDK's inputs are the model's inputs bit for bit."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Letterbox", "letterbox", "unletterbox", "normalize", "pad_value"]


@dataclass(frozen=True)
class Letterbox:
    """Where the resized frame sits in the square input: scale, offsets and resized size."""

    scale: float
    left: int
    top: int
    width: int  # resized content width
    height: int
    src_width: int
    src_height: int


def letterbox(
    image: np.ndarray,
    size: int,
    pad_value: tuple[int, int, int] = (127, 127, 127),
    interpolation: int = cv2.INTER_LINEAR,
) -> tuple[np.ndarray, Letterbox]:
    """Resize ``image (H,W,C)`` to fit ``size x size``, centred, padded with ``pad_value``."""
    h, w = image.shape[:2]
    s = size / max(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    left, top = (size - nw) // 2, (size - nh) // 2
    out = np.empty((size, size) + image.shape[2:], image.dtype)
    out[...] = np.array(pad_value[: image.shape[2]] if image.ndim == 3 else pad_value[0], image.dtype)
    resized = image if (nw, nh) == (w, h) else cv2.resize(image, (nw, nh), interpolation=interpolation)
    out[top : top + nh, left : left + nw] = resized.reshape(nh, nw, *image.shape[2:])
    return out, Letterbox(s, left, top, nw, nh, w, h)


def unletterbox(
    x: np.ndarray, lb: Letterbox, interpolation: int = cv2.INTER_LINEAR, out_size: tuple[int, int] | None = None
) -> np.ndarray:
    """Map a (size, size) map (probabilities or logits) back to the source frame (H, W), or to ``out_size``
    (width, height), e.g. a smaller copy of a huge frame."""
    crop = np.ascontiguousarray(x[lb.top : lb.top + lb.height, lb.left : lb.left + lb.width])
    w, h = out_size or (lb.src_width, lb.src_height)
    if (lb.width, lb.height) == (w, h):
        return crop
    return cv2.resize(crop, (w, h), interpolation=interpolation)


def normalize(image: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """uint8 RGB (H,W,3) -> float32 (3,H,W) normalized: ``(x / 255 - mean) / std`` as one multiply-add per value
    (``x * 1 / (255 std) - mean / std``), written channel by channel into the (3,H,W) result (one pass instead of
    four full-size temporaries and a transposing copy: ~0.1 ms instead of ~1.6 ms at 320x320)."""
    std_ = np.asarray(std, np.float64)
    scale = (1.0 / (255.0 * std_)).astype(np.float32)
    offset = (-np.asarray(mean, np.float64) / std_).astype(np.float32)
    x = image if image.ndim == 3 else image[..., None]
    out = np.empty((x.shape[2],) + x.shape[:2], np.float32)
    for c in range(x.shape[2]):
        np.multiply(x[:, :, c], scale[c % len(scale)], out=out[c], dtype=np.float32, casting="unsafe")
        out[c] += offset[c % len(offset)]
    return out


def pad_value(mean: tuple[float, ...] | list[float]) -> tuple[int, int, int]:
    """Letterbox fill colour: the normalisation mean in 0..255, so padding normalises to ~0."""
    return tuple(int(round(m * 255)) for m in mean)  # type: ignore[return-value]
