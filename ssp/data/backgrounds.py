"""Backgrounds for RefShapes v2: crops of the sample photos bundled with scikit-image / scikit-learn and
procedural textures, in families that are disjoint between splits (no test background is seen in training).

Photos are partitioned by name (``PHOTO_SETS``), textures by generator family (``TEXTURE_SETS``); every
background is a pure function of a NumPy generator, so a sample stays reproducible. All textures are drawn
with muted palettes so that the shapes stay the most saturated things in a scene (as with the photos, which
are desaturated a little).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import cv2
import numpy as np

from ..errors import SSPError

__all__ = ["PHOTO_SETS", "TEXTURE_SETS", "FAMILY_OF_SPLIT", "TEXTURES", "photo", "texture", "background"]

# disjoint photo sets; the two motorcycle stereo views are near-identical, so they stay in one set
PHOTO_SETS: dict[str, tuple[str, ...]] = {
    "train": (
        "astronaut",
        "coffee",
        "chelsea",
        "rocket",
        "retina",
        "camera",
        "coins",
        "brick",
        "grass",
        "page",
        "clock",
        "china",
    ),
    "val": ("immunohistochemistry", "moon", "text"),
    "test": ("hubble_deep_field", "gravel", "cell", "motorcycle_left", "motorcycle_right", "flower"),
}
# disjoint texture families
TEXTURE_SETS: dict[str, tuple[str, ...]] = {
    "train": ("noise", "stripes", "gradient", "checker", "blobs"),
    "val": ("plaid", "streaks"),
    "test": ("waves", "voronoi", "rings", "mosaic"),
}
# which background family each data split draws from (calibration data looks like training data; the
# demo video uses held-out backgrounds)
FAMILY_OF_SPLIT: dict[str, str] = {"train": "train", "calib": "train", "val": "val", "test": "test", "demo": "test"}


# ----------------------------------------------------------------------------- photos


def _load_photo(name: str) -> np.ndarray | None:
    import skimage.data as skd

    try:
        if name in ("china", "flower"):
            from sklearn.datasets import load_sample_image

            im = load_sample_image(f"{name}.jpg")
        elif name.startswith("motorcycle_"):
            left, right, _ = skd.stereo_motorcycle()
            im = left if name.endswith("left") else right
        else:
            im = getattr(skd, name)()
    except Exception:  # pragma: no cover - depends on the scikit-image / scikit-learn build
        return None
    im = np.asarray(im)
    if im.dtype != np.uint8:
        im = (np.clip(im, 0, 1) * 255).astype(np.uint8) if im.dtype.kind == "f" else im.astype(np.uint8)
    if im.ndim == 2:
        im = np.repeat(im[:, :, None], 3, axis=2)
    return np.ascontiguousarray(im[:, :, :3])


@lru_cache(maxsize=4)
def _photos(family: str) -> tuple[tuple[str, np.ndarray], ...]:
    out = tuple((n, im) for n in PHOTO_SETS[family] if (im := _load_photo(n)) is not None)
    if not out:
        raise SSPError(
            f"RefShapes v2 found no {family} background photos (scikit-image / scikit-learn sample "
            "data missing); reinstall scikit-image and scikit-learn"
        )
    return out


def photo(rng: np.random.Generator, size: int, family: str) -> tuple[np.ndarray, str]:
    """A random crop (20-100 % of the short side, any quarter turn, flips, colour jitter) of a photo."""
    name, im = (ps := _photos(family))[int(rng.integers(len(ps)))]
    h, w = im.shape[:2]
    side = max(16, int(rng.uniform(0.2, 1.0) * min(h, w)))
    y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = im[y0 : y0 + side, x0 : x0 + side]
    crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if side >= size else cv2.INTER_LINEAR)
    crop = np.rot90(crop, int(rng.integers(4)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    tint = rng.uniform(0.75, 1.1, 3) if (_is_grey(im) and rng.random() < 0.6) else np.ones(3)
    return _finish(rng, np.ascontiguousarray(crop), sat=(0.3, 1.0), tint=tint), f"photo:{name}"


def _is_grey(im: np.ndarray) -> bool:
    return bool(np.array_equal(im[::7, ::7, 0], im[::7, ::7, 1]) and np.array_equal(im[::7, ::7, 1], im[::7, ::7, 2]))


# ----------------------------------------------------------------------------- textures


def _palette(rng: np.random.Generator, k: int) -> np.ndarray:
    return rng.uniform(20, 235, (k, 3)).astype(np.float32)


@lru_cache(maxsize=8)
def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    ys.setflags(write=False)
    xs.setflags(write=False)
    return xs, ys


def _ramp(pal: np.ndarray, n: int = 256) -> np.ndarray:
    """A piecewise-linear palette (K, 3) sampled at n points -> (n, 3) float32."""
    k = len(pal) - 1
    u = np.linspace(0, k, n, dtype=np.float32)
    i = np.minimum(u.astype(np.int32), k - 1)
    f = (u - i)[:, None]
    return (pal[i] * (1 - f) + pal[i + 1] * f).astype(np.float32)


def _lerp(t: np.ndarray, pal: np.ndarray) -> np.ndarray:
    """Map t in [0, 1] (H, W) through a piecewise-linear palette (K, 3) -> (H, W, 3) uint8 (a 256-entry LUT)."""
    idx = cv2.convertScaleAbs(np.asarray(t, np.float32), alpha=255.0)  # rounds and saturates to [0, 255]
    return np.clip(_ramp(pal), 0, 255).astype(np.uint8)[idx]


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    g = rng.random((cells + 1, cells + 1), dtype=np.float32)
    return cv2.resize(g, (size, size), interpolation=cv2.INTER_CUBIC)


def _rotated(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = _coords(size)
    a = rng.uniform(0, math.pi)
    c, s = math.cos(a), math.sin(a)
    return xs * c + ys * s, -xs * s + ys * c


def _tex_noise(rng, size):
    t = sum(_smooth_noise(rng, size, c) * (0.55**o) for o, c in enumerate((3, 6, 12, 24, 48)))
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    return _lerp(t, _palette(rng, int(rng.integers(2, 4))))


def _tex_stripes(rng, size):
    u, _ = _rotated(size, rng)
    period = rng.uniform(0.03, 0.25) * size
    w = np.sin(u * (2 * math.pi / period) + rng.uniform(0, 6.3))
    if rng.random() < 0.5:  # hard-edged stripes
        w = np.tanh(w * rng.uniform(3, 12))
    return _lerp(w * 0.5 + 0.5, _palette(rng, 2))


def _tex_gradient(rng, size):
    xs, ys = _coords(size)
    if rng.random() < 0.5:
        u, _ = _rotated(size, rng)
        t = (u - u.min()) / max(float(np.ptp(u)), 1e-6)
    else:
        cx, cy = rng.uniform(-0.2, 1.2, 2) * size
        d = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
        t = d / max(float(d.max()), 1e-6)
    return _lerp(t, _palette(rng, int(rng.integers(2, 4))))


def _tex_checker(rng, size):
    u, v = _rotated(size, rng) if rng.random() < 0.5 else _coords(size)
    c = rng.uniform(0.04, 0.2) * size
    par = (np.floor(u / c) + np.floor(v / c)) % 2
    return _lerp(par.astype(np.float32), _palette(rng, 2))


def _tex_blobs(rng, size):
    n = _smooth_noise(rng, size, int(rng.integers(3, 9)))
    t = 1 / (1 + np.exp(-(n - np.median(n)) * rng.uniform(10, 40)))
    return _lerp(t.astype(np.float32), _palette(rng, 2))


def _tex_plaid(rng, size):
    u, v = _rotated(size, rng)
    pu, pv = rng.uniform(0.04, 0.2, 2) * size
    a = np.sin(u * 2 * math.pi / pu) * 0.5 + 0.5
    b = np.sin(v * 2 * math.pi / pv) * 0.5 + 0.5
    pal = _palette(rng, 3)
    f = pal[0] * (1 - a[..., None]) * (1 - b[..., None]) + pal[1] * a[..., None] + pal[2] * b[..., None] * 0.6
    return np.clip(f, 0, 255).astype(np.uint8)


def _tex_streaks(rng, size):
    """Brushed / wood-like streaks: noise stretched along one axis."""
    coarse = rng.random((int(rng.integers(2, 6)), int(rng.integers(24, 96))), dtype=np.float32)
    fine = rng.random((size // 8, size), dtype=np.float32)
    t = 0.8 * cv2.resize(coarse, (size, size)) + 0.2 * cv2.resize(fine, (size, size))
    return _lerp(t if rng.random() < 0.5 else np.ascontiguousarray(t.T), _palette(rng, 2))


def _tex_waves(rng, size):
    xs, ys = _coords(size)
    t = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(3, 6))):
        a = rng.uniform(0, 2 * math.pi)
        f = rng.uniform(1.5, 8) * 2 * math.pi / size
        t += np.sin((xs * math.cos(a) + ys * math.sin(a)) * f + rng.uniform(0, 6.3))
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    return _lerp(t, _palette(rng, 3))


def _tex_voronoi(rng, size):
    n = int(rng.integers(8, 40))
    low = max(8, size // 2)
    pts = rng.uniform(0, low, (n, 2)).astype(np.float32)
    ys, xs = np.mgrid[0:low, 0:low].astype(np.float32)
    d = (xs[None] - pts[:, 0, None, None]) ** 2 + (ys[None] - pts[:, 1, None, None]) ** 2
    lab = d.argmin(axis=0)
    pal = _palette(rng, 2)
    cols = _lerp(rng.random(n, dtype=np.float32)[None], pal)[0]
    img = np.ascontiguousarray(cols[lab])
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_NEAREST)


def _tex_rings(rng, size):
    xs, ys = _coords(size)
    cx, cy = rng.uniform(-0.3, 1.3, 2) * size
    d = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
    w = np.sin(d * (2 * math.pi / (rng.uniform(0.03, 0.2) * size)))
    if rng.random() < 0.5:
        w = np.tanh(w * 6)
    return _lerp(w * 0.5 + 0.5, _palette(rng, 2))


def _tex_mosaic(rng, size):
    rows = np.sort(rng.uniform(0, size, int(rng.integers(2, 10))))
    cols = np.sort(rng.uniform(0, size, int(rng.integers(2, 10))))
    ri = np.searchsorted(rows, np.arange(size))
    ci = np.searchsorted(cols, np.arange(size))
    pal = _palette(rng, 2)
    tiles = _lerp(rng.random((len(rows) + 1, len(cols) + 1), dtype=np.float32), pal)
    return tiles[ri[:, None], ci[None, :]]


TEXTURES: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "noise": _tex_noise,
    "stripes": _tex_stripes,
    "gradient": _tex_gradient,
    "checker": _tex_checker,
    "blobs": _tex_blobs,
    "plaid": _tex_plaid,
    "streaks": _tex_streaks,
    "waves": _tex_waves,
    "voronoi": _tex_voronoi,
    "rings": _tex_rings,
    "mosaic": _tex_mosaic,
}


def texture(rng: np.random.Generator, size: int, family: str) -> tuple[np.ndarray, str]:
    """A procedural texture of one of the family's generators, muted and (half the time) grainy."""
    name = TEXTURE_SETS[family][int(rng.integers(len(TEXTURE_SETS[family])))]
    img = TEXTURES[name](rng, size)
    if rng.random() < 0.5:  # grain: one noise field, the same on every channel
        grain = rng.standard_normal((size, size), dtype=np.float32) * float(rng.uniform(2, 10))
        img = cv2.add(img, cv2.merge([grain] * 3), dtype=cv2.CV_8U)
    return _finish(rng, img, sat=(0.2, 0.7)), f"texture:{name}"


def _finish(
    rng: np.random.Generator, img: np.ndarray, sat: tuple[float, float], tint: np.ndarray | None = None
) -> np.ndarray:
    """Desaturate (so shapes stay the most colourful things), change contrast / brightness and per-channel
    gain: one affine colour map, applied with cv2.transform on uint8 (saturating)."""
    s = float(rng.uniform(*sat))
    contrast = float(rng.uniform(0.6, 1.1))
    shift = float(rng.uniform(-25, 25))
    gain = rng.uniform(0.9, 1.1, size=3) * (tint if tint is not None else 1.0)
    m = s * np.eye(3) + (1 - s) / 3 * np.ones((3, 3))  # grey + (x - grey) * s
    m = gain[:, None] * contrast * m
    b = gain * (128 * (1 - contrast) + shift)
    return cv2.transform(np.ascontiguousarray(img), np.hstack([m, b[:, None]]).astype(np.float32))


def background(rng: np.random.Generator, size: int, split: str, photo_rate: float = 0.5) -> tuple[np.ndarray, str]:
    """A (size, size, 3) uint8 RGB background of the split's family and its name (``photo:NAME`` /
    ``texture:NAME``): a photo crop with probability ``photo_rate``, else a procedural texture."""
    family = FAMILY_OF_SPLIT[split]
    if rng.random() < photo_rate:
        return photo(rng, size, family)
    return texture(rng, size, family)
