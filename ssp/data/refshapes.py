"""RefShapes: a synthetic referring-segmentation data set that needs no download.

Coloured shapes are drawn on real photographs (the sample images bundled with scikit-image and
scikit-learn, randomly cropped, flipped and colour-jittered). Each scene supports expressions of five
types: ``attribute`` (colour / shape / size), ``position`` (leftmost, at the top, ...), ``relation``
(left of, right of, above, below, next to, between), ``ordinal`` ("the second circle from the left")
and ``no_target`` (names an object that is not in the scene -> empty mask). Every meaning has several
phrasings. Everything is a pure function of (split, index): train/val/test draw from disjoint seed
streams, so a sample is reproducible on any machine.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ..errors import SSPError
from .sample import Sample

__all__ = [
    "write_moving_video",
    "COLOURS",
    "SHAPES",
    "TYPES",
    "POSITIVE_TYPES",
    "SPLITS",
    "Obj",
    "Scene",
    "RefShapes",
    "render_scene",
    "describe",
    "render_video",
]

COLOURS: dict[str, tuple[int, int, int]] = {  # RGB
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 225),
    "yellow": (245, 215, 30),
    "purple": (140, 50, 190),
    "orange": (250, 135, 20),
    "white": (248, 248, 248),
    "black": (15, 15, 15),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon", "diamond")
SIZES: dict[str, tuple[float, float]] = {"small": (0.045, 0.06), "big": (0.095, 0.125)}  # radius / image side
TYPES: tuple[str, ...] = ("attribute", "position", "relation", "ordinal", "no_target")
POSITIVE_TYPES: tuple[str, ...] = TYPES[:4]
SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2, "calib": 3, "demo": 4}

_SIZE_WORDS = {"small": ("small", "little", "tiny"), "big": ("big", "large")}
_SHAPE_WORDS = {s: (s,) for s in SHAPES}
_SHAPE_WORDS["square"] = ("square", "box")
_SHAPE_WORDS["circle"] = ("circle", "disc", "round shape")
_GENERIC = ("shape", "object", "one")


@dataclass
class Obj:
    """One drawn shape: centre (x, y) and radius in pixels."""

    colour: str
    shape: str
    size: str
    x: float
    y: float
    r: float


@dataclass
class Scene:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    objects: list[Obj]
    instances: np.ndarray  # (H, W) uint8: 0 background, i + 1 for objects[i]
    rng_state: dict = field(default_factory=dict, repr=False)


# ----------------------------------------------------------------------------- backgrounds


@lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    """The real photographs bundled with scikit-image and scikit-learn (RGB uint8)."""
    import skimage.data as skd
    from sklearn.datasets import load_sample_images

    out: list[np.ndarray] = []
    for name in (
        "astronaut",
        "coffee",
        "chelsea",
        "rocket",
        "hubble_deep_field",
        "immunohistochemistry",
        "retina",
        "camera",
        "moon",
        "coins",
        "brick",
        "grass",
        "gravel",
        "page",
    ):
        try:
            im = getattr(skd, name)()
        except Exception:  # pragma: no cover - depends on the scikit-image build
            continue
        if im.ndim == 2:
            im = np.repeat(im[:, :, None], 3, axis=2)
        out.append(np.ascontiguousarray(im[:, :, :3].astype(np.uint8)))
    out.extend(np.ascontiguousarray(im) for im in load_sample_images().images)
    if not out:
        raise SSPError("RefShapes found no background photos (scikit-image / scikit-learn sample data missing)")
    return tuple(out)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    photos = _photos()
    im = photos[int(rng.integers(len(photos)))]
    h, w = im.shape[:2]
    side = int(rng.uniform(0.45, 1.0) * min(h, w))
    y0 = int(rng.integers(0, h - side + 1))
    x0 = int(rng.integers(0, w - side + 1))
    crop = cv2.resize(im[y0 : y0 + side, x0 : x0 + side], (size, size), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.3:
        crop = crop[::-1]
    f = crop.astype(np.float32)
    gray = f.mean(axis=2, keepdims=True)
    sat = rng.uniform(0.3, 1.0)  # desaturate a little so shapes stay the most colourful things
    f = gray + (f - gray) * sat
    f = (f - 128) * rng.uniform(0.6, 1.1) + 128 + rng.uniform(-25, 25)
    f = f * rng.uniform(0.9, 1.1, size=3)
    return np.clip(f, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- shapes


def _polygon(shape: str, x: float, y: float, r: float, rot: float) -> np.ndarray | None:
    if shape == "circle":
        return None
    if shape == "square":
        a = [math.pi / 4 + k * math.pi / 2 for k in range(4)]
        rr = [r * 1.0] * 4
    elif shape == "diamond":
        a = [k * math.pi / 2 for k in range(4)]
        rr = [r * 1.15, r * 0.85, r * 1.15, r * 0.85]
    elif shape == "triangle":
        a = [-math.pi / 2 + k * 2 * math.pi / 3 for k in range(3)]
        rr = [r * 1.15] * 3
    elif shape == "hexagon":
        a = [k * math.pi / 3 for k in range(6)]
        rr = [r] * 6
    elif shape == "star":
        a = [-math.pi / 2 + k * math.pi / 5 for k in range(10)]
        rr = [r * 1.2 if k % 2 == 0 else r * 0.5 for k in range(10)]
    else:  # pragma: no cover
        raise ValueError(shape)
    pts = [(x + ri * math.cos(ai + rot), y + ri * math.sin(ai + rot)) for ai, ri in zip(a, rr)]
    return np.round(np.array(pts) * 16).astype(np.int32)


def _draw(canvas: np.ndarray, o: Obj, value: int | tuple[int, int, int], rot: float) -> None:
    poly = _polygon(o.shape, o.x, o.y, o.r, rot)
    if poly is None:
        cv2.circle(canvas, (int(round(o.x * 16)), int(round(o.y * 16))), int(round(o.r * 16)), value, -1, cv2.LINE_8, 4)
    else:
        cv2.fillPoly(canvas, [poly], value, cv2.LINE_8, 4)


def render_scene(
    objects: Sequence[Obj],
    background: np.ndarray,
    rots: Sequence[float] | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw objects on a background. Returns (image RGB uint8, instance map uint8)."""
    img = background.copy()
    inst = np.zeros(background.shape[:2], np.uint8)
    rots = rots if rots is not None else [0.0] * len(objects)
    for i, (o, rot) in enumerate(zip(objects, rots)):
        m = np.zeros_like(inst)
        _draw(m, o, 1, rot)
        colour = np.array(COLOURS[o.colour], np.float32)
        if rng is not None:
            colour = np.clip(colour * rng.uniform(0.85, 1.1) + rng.uniform(-12, 12, 3), 0, 255)
        sel = m > 0
        img[sel] = colour.astype(np.uint8)
        inst[sel] = i + 1
    return img, inst


def _place(rng: np.random.Generator, size: int, n: int) -> list[Obj]:
    objs: list[Obj] = []
    tries = 0
    colours, shapes = list(COLOURS), list(SHAPES)
    # few distinct colours/shapes per scene so that descriptions must combine attributes
    cpool = list(rng.choice(colours, size=int(rng.integers(2, 5)), replace=False))
    spool = list(rng.choice(shapes, size=int(rng.integers(2, 5)), replace=False))
    while len(objs) < n and tries < 400:
        tries += 1
        sz = "big" if rng.random() < 0.4 else "small"
        lo, hi = SIZES[sz]
        r = rng.uniform(lo, hi) * size
        m = r * 1.25 + 2
        x, y = rng.uniform(m, size - m), rng.uniform(m, size - m)
        if any(math.hypot(x - o.x, y - o.y) < (r + o.r) * 1.3 + 6 for o in objs):
            continue
        objs.append(Obj(str(rng.choice(cpool)), str(rng.choice(spool)), sz, x, y, r))
    return objs


# ----------------------------------------------------------------------------- language

Desc = tuple  # (size|None, colour|None, shape|None)


def _matches(o: Obj, d: Desc) -> bool:
    return (d[0] is None or o.size == d[0]) and (d[1] is None or o.colour == d[1]) and (d[2] is None or o.shape == d[2])


def _select(objs: Sequence[Obj], d: Desc) -> list[int]:
    return [i for i, o in enumerate(objs) if _matches(o, d)]


def describe(d: Desc, rng: np.random.Generator, article: bool = True) -> str:
    """Noun phrase for a description, e.g. ('big', 'red', None) -> 'the large red shape'."""
    size, colour, shape = d
    words = []
    if size:
        words.append(str(rng.choice(_SIZE_WORDS[size])))
    if colour:
        words.append(colour)
    words.append(str(rng.choice(_SHAPE_WORDS[shape])) if shape else str(rng.choice(_GENERIC)))
    phrase = " ".join(words)
    return ("the " + phrase) if article else phrase


def _unique_desc(objs: Sequence[Obj], t: int, rng: np.random.Generator) -> Desc | None:
    """A random description that selects exactly object t (prefers short ones)."""
    o = objs[t]
    cands = [
        (None, o.colour, o.shape),
        (None, None, o.shape),
        (None, o.colour, None),
        (o.size, None, o.shape),
        (o.size, o.colour, o.shape),
        (o.size, o.colour, None),
    ]
    ok = [d for d in cands if _select(objs, d) == [t]]
    if not ok:
        return None
    ok.sort(key=lambda d: sum(v is not None for v in d))
    best = [d for d in ok if sum(v is not None for v in d) == sum(v is not None for v in ok[0])]
    # people over-specify ("the red circle" with one circle in view) about as often as not; a generator
    # that only does so for missing objects teaches "colour + shape => no target"
    if rng.random() < 0.4 and _select(objs, (None, o.colour, o.shape)) == [t]:
        return (None, o.colour, o.shape)
    pool = best if rng.random() < 0.5 else ok
    return pool[int(rng.integers(len(pool)))]


def _class_desc(objs: Sequence[Obj], t: int, rng: np.random.Generator) -> Desc:
    """A (possibly ambiguous) description that includes object t: shape, colour, both, or nothing."""
    o = objs[t]
    cands = [
        (None, None, o.shape),
        (None, o.colour, None),
        (None, o.colour, o.shape),
        (None, None, None),
        (o.size, None, o.shape),
    ]
    return cands[int(rng.integers(len(cands)))]


_DIRS = {
    # direction -> (axis, sign): sorting by sign * coordinate puts the extreme object first
    "left": (0, 1),
    "right": (0, -1),
    "top": (1, 1),
    "bottom": (1, -1),
}
_POS_TEMPL = {
    "left": ("the leftmost {n}", "{N} on the far left", "{N} furthest to the left", "{N} on the left"),
    "right": ("the rightmost {n}", "{N} on the far right", "{N} furthest to the right", "{N} on the right"),
    "top": ("the topmost {n}", "{N} at the top", "the highest {n}", "{N} nearest the top"),
    "bottom": ("the bottommost {n}", "{N} at the bottom", "the lowest {n}", "{N} nearest the bottom"),
}
_ORD = {0: ("first", "1st"), 1: ("second", "2nd"), 2: ("third", "3rd")}
_ORD_FROM = {"left": "from the left", "right": "from the right", "top": "from the top", "bottom": "from the bottom"}
_REL_WORDS = {
    "left of": ("left of", "to the left of", "on the left of"),
    "right of": ("right of", "to the right of", "on the right of"),
    "above": ("above", "over", "higher than"),
    "below": ("below", "under", "beneath"),
    "next to": ("next to", "beside", "closest to", "near"),
}


def _coord(o: Obj, axis: int) -> float:
    return o.x if axis == 0 else o.y


def _gen_attribute(objs, rng):
    t = int(rng.integers(len(objs)))
    d = _unique_desc(objs, t, rng)
    if d is None:
        return None
    n = describe(d, rng)
    forms = [n, n[4:], f"{n} in the picture", f"find {n}"]
    if d[1] and d[2] and not d[0]:
        forms.append(f"the {str(rng.choice(_SHAPE_WORDS[d[2]]))} that is {d[1]}")
    return forms[int(rng.integers(len(forms)))], t


def _gen_position(objs, rng, size: int):
    t = int(rng.integers(len(objs)))
    d = _class_desc(objs, t, rng)
    group = _select(objs, d)
    direction = str(rng.choice(list(_DIRS)))
    axis, sign = _DIRS[direction]
    vals = sorted((sign * _coord(objs[i], axis), i) for i in group)
    # the target is the extreme one, with a clear margin to the runner-up
    if vals[0][1] != t:
        t = vals[0][1]
    if len(vals) > 1 and vals[1][0] - vals[0][0] < 0.06 * size:
        return None
    templ = str(rng.choice(_POS_TEMPL[direction]))
    n = describe(d, rng, article=False)
    return templ.format(n=n, N="the " + n), t


def _gen_ordinal(objs, rng, size: int):
    t = int(rng.integers(len(objs)))
    d = _class_desc(objs, t, rng)
    group = _select(objs, d)
    if len(group) < 2:
        return None
    direction = str(rng.choice(list(_DIRS)))
    axis, sign = _DIRS[direction]
    order = sorted(group, key=lambda i: sign * _coord(objs[i], axis))
    k = int(rng.integers(min(3, len(order))))
    coords = [sign * _coord(objs[i], axis) for i in order]
    for a in (k - 1, k):
        if 0 <= a < len(coords) - 1 and coords[a + 1] - coords[a] < 0.05 * size:
            return None
    t = order[k]
    n = describe(d, rng, article=False)
    ordw = str(rng.choice(_ORD[k]))
    forms = [f"the {ordw} {n} {_ORD_FROM[direction]}", f"the {n} {ordw} {_ORD_FROM[direction]}"]
    return forms[int(rng.integers(len(forms)))], t


def _rel_holds(o: Obj, a: Obj, rel: str, size: float) -> bool:
    m = 0.03 * size
    if rel == "left of":
        return o.x < a.x - a.r - m and abs(o.y - a.y) < 0.35 * size
    if rel == "right of":
        return o.x > a.x + a.r + m and abs(o.y - a.y) < 0.35 * size
    if rel == "above":
        return o.y < a.y - a.r - m and abs(o.x - a.x) < 0.35 * size
    if rel == "below":
        return o.y > a.y + a.r + m and abs(o.x - a.x) < 0.35 * size
    raise ValueError(rel)


def _gen_relation(objs, rng, size: int):
    if len(objs) < 2:
        return None
    rel = str(rng.choice(list(_REL_WORDS) + ["between"]))
    t = int(rng.integers(len(objs)))
    others = [i for i in range(len(objs)) if i != t]
    if rel == "between":
        if len(objs) < 3:
            return None
        a, b = (int(v) for v in rng.choice(others, 2, replace=False))
        da, db = _unique_desc(objs, a, rng), _unique_desc(objs, b, rng)
        if da is None or db is None or da == db:
            return None

        def between(i: int) -> bool:
            p, q, o = objs[a], objs[b], objs[i]
            vx, vy = q.x - p.x, q.y - p.y
            L2 = vx * vx + vy * vy
            s = ((o.x - p.x) * vx + (o.y - p.y) * vy) / L2
            dist = abs((o.x - p.x) * vy - (o.y - p.y) * vx) / math.sqrt(L2)
            return 0.15 < s < 0.85 and dist < 0.09 * size

        if not between(t):
            return None
        dt = _class_desc(objs, t, rng)
        cands = [i for i in _select(objs, dt) if i not in (a, b) and between(i)]
        if cands != [t]:
            return None
        return f"{describe(dt, rng)} between {describe(da, rng)} and {describe(db, rng)}", t
    a = int(rng.choice(others))
    da = _unique_desc(objs, a, rng)
    if da is None:
        return None
    dt = _class_desc(objs, t, rng)
    group = [i for i in _select(objs, dt) if i != a]
    if rel == "next to":
        dist = sorted((math.hypot(objs[i].x - objs[a].x, objs[i].y - objs[a].y), i) for i in group)
        if not dist or dist[0][1] != t or (len(dist) > 1 and dist[0][0] > 0.7 * dist[1][0]):
            return None
    else:
        if [i for i in group if _rel_holds(objs[i], objs[a], rel, size)] != [t]:
            return None
    return f"{describe(dt, rng)} {str(rng.choice(_REL_WORDS[rel]))} {describe(da, rng)}", t


def _gen_no_target(objs, rng):
    for _ in range(20):
        # the same description forms as expressions with a target (see _unique_desc), so that the form
        # alone does not tell whether the object is there
        size, colour, shape = str(rng.choice(list(SIZES))), str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES))
        forms = (
            [(None, colour, shape)] * 4
            + [(None, None, shape)] * 2
            + [(None, colour, None)] * 2
            + [(size, None, shape), (size, colour, shape)]
        )
        d = forms[int(rng.integers(len(forms)))]
        if not _select(objs, d):
            n = describe(d, rng)
            forms = [n, n[4:], f"{n} in the picture"]
            if rng.random() < 0.25:  # a positional phrase does not make a missing object exist
                forms = [f"{n} on the left", f"{n} at the top", f"the leftmost {n[4:]}", f"{n} next to the others"]
            return forms[int(rng.integers(len(forms)))], None
    return None


_GENERATORS: dict[str, Callable] = {
    "attribute": lambda o, r, s: _gen_attribute(o, r),
    "position": _gen_position,
    "relation": _gen_relation,
    "ordinal": _gen_ordinal,
    "no_target": lambda o, r, s: _gen_no_target(o, r),
}


# ----------------------------------------------------------------------------- data set


class RefShapes:
    """Deterministic RefShapes split. ``ds[i]`` is one (scene, expression) sample; ``ds.scene_samples``
    yields several expressions on one scene (training shares one image encoding across them).

    Expression types are drawn with ``type_weights`` (default: uniform over positive types, and
    ``no_target_rate`` of no-target expressions).
    """

    def __init__(
        self,
        split: str = "train",
        size: int = 320,
        length: int | None = None,
        no_target_rate: float = 0.15,
        type_weights: dict[str, float] | None = None,
        min_objects: int = 2,
        max_objects: int = 6,
    ):
        if split not in SPLITS:
            raise SSPError(f"unknown RefShapes split {split!r}; choose one of: {', '.join(SPLITS)}")
        self.split = split
        self.size = size
        self.length = length if length is not None else {"train": 10**7}.get(split, 5000)
        self.min_objects, self.max_objects = min_objects, max_objects
        w = dict(type_weights or {t: (1 - no_target_rate) / 4 for t in POSITIVE_TYPES})
        w.setdefault("no_target", no_target_rate)
        self.types = [t for t in TYPES if w.get(t, 0) > 0]
        p = np.array([w[t] for t in self.types], np.float64)
        self.type_p = p / p.sum()

    def __len__(self) -> int:
        return self.length

    def _rng(self, i: int, stream: int = 0) -> np.random.Generator:
        return np.random.default_rng([SPLITS[self.split], i, stream, 20261122])

    def scene(self, i: int) -> Scene:
        """The scene of index ``i`` (image, objects, instance map)."""
        rng = self._rng(i)
        n = int(rng.integers(self.min_objects, self.max_objects + 1))
        objs = _place(rng, self.size, n)
        bg = _background(rng, self.size)
        rots = [float(rng.uniform(-0.2, 0.2)) for _ in objs]
        img, inst = render_scene(objs, bg, rots, rng)
        img = cv2.GaussianBlur(img, (3, 3), 0) if rng.random() < 0.3 else img
        return Scene(img, objs, inst)

    def expressions(self, scene: Scene, rng: np.random.Generator, k: int) -> list[tuple[str, str, int | None]]:
        """Up to k (expression, type, target index) triples for a scene, types drawn by ``type_p``."""
        out: list[tuple[str, str, int | None]] = []
        for _ in range(k * 3):
            if len(out) >= k:
                break
            typ = str(rng.choice(self.types, p=self.type_p))
            for _ in range(25):  # many scenes admit each type; retry before falling back
                res = _GENERATORS[typ](scene.objects, rng, self.size)
                if res is not None and all(res[0] != e for e, _, _ in out):
                    out.append((res[0], typ, res[1]))
                    break
        return out

    def _sample(self, scene: Scene, expr: str, typ: str, t: int | None, idx: int) -> Sample:
        mask = (scene.instances == t + 1) if t is not None else np.zeros(scene.instances.shape, bool)
        return Sample(
            image=scene.image,
            mask=mask.astype(np.uint8),
            expression=expr,
            type=typ,
            exists=t is not None,
            instances=scene.instances,
            source=f"refshapes:{self.split}:{idx}",
        )

    def scene_samples(self, i: int, k: int) -> list[Sample]:
        """k samples (different expressions) on scene i."""
        sc = self.scene(i)
        return [self._sample(sc, e, typ, t, i) for e, typ, t in self.expressions(sc, self._rng(i, 1), k)]

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < self.length:
            raise IndexError(i)
        for attempt in range(50):
            sc = self.scene(i) if attempt == 0 else self.scene(i + 100003 * attempt)
            ex = self.expressions(sc, self._rng(i, 1 + attempt), 1)
            if ex:
                return self._sample(sc, *ex[0], i)
        raise RuntimeError(f"RefShapes could not make an expression for sample {i}")  # pragma: no cover

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]


def render_video(
    path: str, seed: int = 0, frames: int = 90, fps: int = 15, size: int = 320, n_objects: int = 4
) -> list[Obj]:
    """Render a short mp4 of shapes moving over a photo (for camera demos). Returns the initial objects;
    a red circle is always present so the demo prompt "the red circle" has a target. The objects of
    every frame (colour, shape, centre, radius) go to ``<path>.objects.json`` so demos can be checked."""
    rng = np.random.default_rng([SPLITS["demo"], seed])
    objs = _place(rng, size, n_objects)
    if not objs:
        raise RuntimeError("could not place objects")  # pragma: no cover
    objs[0].colour, objs[0].shape = "red", "circle"
    for o in objs[1:]:
        if o.colour == "red" and o.shape == "circle":
            o.colour = "blue"
    bg = _background(rng, size)
    write_moving_video(path, objs, bg, rng, frames, fps, size)
    return objs


def write_moving_video(
    path: str, objs: list[Obj], bg: np.ndarray, rng: np.random.Generator, frames: int, fps: int, size: int
) -> None:
    """Write ``objs`` moving over ``bg`` (random velocities, bouncing off the borders) as an mp4, and their
    per-frame positions as ``PATH.objects.json`` (the demo check reads them). ``objs`` are moved in place."""
    vel = [(float(rng.uniform(-3, 3)), float(rng.uniform(-3, 3))) for _ in objs]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    if not writer.isOpened():
        raise SSPError(f"cannot write video {path!r} (OpenCV has no mp4v encoder?)")
    track: list[list[dict]] = []
    try:
        for _ in range(frames):
            img, _ = render_scene(objs, bg)
            track.append(
                [
                    {"colour": o.colour, "shape": o.shape, "x": round(o.x, 2), "y": round(o.y, 2), "r": round(o.r, 2)}
                    for o in objs
                ]
            )
            writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            for o, (vx, vy) in zip(objs, vel):
                o.x = min(max(o.x + vx, o.r * 1.3), size - o.r * 1.3)
                o.y = min(max(o.y + vy, o.r * 1.3), size - o.r * 1.3)
            vel = [
                (
                    -vx if not o.r * 1.3 < o.x < size - o.r * 1.3 - 1 else vx,
                    -vy if not o.r * 1.3 < o.y < size - o.r * 1.3 - 1 else vy,
                )
                for o, (vx, vy) in zip(objs, vel)
            ]
    finally:
        writer.release()
    Path(f"{path}.objects.json").write_text(json.dumps({"size": size, "fps": fps, "frames": track}))
