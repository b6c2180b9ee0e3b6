"""RefShapes v2: synthetic generalized referring segmentation (zero, one or several targets) without
text-only shortcuts.

What changed against v1 (:mod:`ssp.data.refshapes`, kept unchanged for comparison):

* **No phrasing carries the label.** Every expression is drawn as a *frame* first (type, template, which
  attributes the noun phrase names, direction, ordinal, relation word) without looking at the scene; the
  frame is then realised twice on the scene, once with a target and once without. Only frames that admit
  both are used, and the emitted one is chosen by a coin of probability ``no_target_rate``, so
  P(no target | frame) is exactly the base rate for every template of every type. Attribute values
  (colour, shape, size) are exchangeable, so the words filled in carry nothing either.
* **No-target cases of every type:** "the third circle from the left" with two circles, "the square left
  of the star" when no square is, "both triangles" with none, anchors that are missing.
* **Ambiguous noun phrases:** position and relation expressions prefer noun phrases that match several
  objects; the trivially unique ones are tagged (``tags["unique"]``) so metrics report them apart.
* **Ordinals balanced over positions** (``tags["ordinal_pos"]``: ``end`` / ``interior``, about half each)
  with **extent-aware margins**: two objects are ordered along an axis only when their extents overlap by at
  most a quarter of the smaller one and their centres are >= 4 % of the image apart.
* **Relations in stated proportions** (``RELATION_WEIGHTS``, "between" 20 %).
* **Multi-target expressions** (type ``multi``: "all the red shapes", "both circles", "the two squares on
  the left") with union masks.
* **Backgrounds disjoint between splits** (:mod:`ssp.data.backgrounds`: photo sets and texture families).

Everything is a pure function of (split, index), as in v1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..errors import SSPError
from .backgrounds import background
from .refshapes import COLOURS, SHAPES, SIZES, SPLITS, Obj, _polygon, render_scene, write_moving_video
from .sample import Sample

__all__ = [
    "TYPES",
    "TYPE_WEIGHTS",
    "RELATION_WEIGHTS",
    "SPLITS",
    "Layout",
    "Expr",
    "Scene2",
    "RefShapes2",
    "layout_objects",
    "describe",
    "expression_pair",
    "render_video",
]

TYPES: tuple[str, ...] = ("attribute", "position", "relation", "ordinal", "multi")
TYPE_WEIGHTS: dict[str, float] = {"attribute": 0.16, "position": 0.2, "relation": 0.24, "ordinal": 0.2, "multi": 0.2}
RELATION_WEIGHTS: dict[str, float] = {
    "left of": 0.15,
    "right of": 0.15,
    "above": 0.15,
    "below": 0.15,
    "next to": 0.2,
    "between": 0.2,
}
_SEED = 20260311  # v1 uses another constant: v2 scenes are not v1 scenes

_SIZE_WORDS = {"small": ("small", "little", "tiny"), "big": ("big", "large")}
_SHAPE_WORDS = {s: (s,) for s in SHAPES} | {"square": ("square", "box"), "circle": ("circle", "disc", "round shape")}
_SHAPE_PLURAL = {s: (s + "s",) for s in SHAPES} | {
    "square": ("squares", "boxes"),
    "circle": ("circles", "discs", "round shapes"),
}
_GENERIC = ("shape", "object", "one")
_GENERIC_PLURAL = ("shapes", "objects", "ones")

# description forms: which attributes a noun phrase names (z size, c colour, s shape; "" = generic "shape")
_FORM_WEIGHTS = {
    "attribute": {"cs": 0.3, "s": 0.15, "c": 0.15, "zs": 0.15, "zcs": 0.15, "zc": 0.1},
    "position": {"s": 0.35, "c": 0.25, "cs": 0.2, "zs": 0.2},
    "ordinal": {"s": 0.35, "c": 0.25, "cs": 0.2, "zs": 0.2},
    "multi": {"s": 0.35, "c": 0.3, "cs": 0.2, "zs": 0.15},
    "relation": {"s": 0.35, "c": 0.25, "cs": 0.15, "zs": 0.1, "": 0.15},
    "anchor": {"cs": 0.4, "s": 0.2, "c": 0.2, "zs": 0.1, "zcs": 0.1},
}
_VALUES = {"z": tuple(SIZES), "c": tuple(COLOURS), "s": SHAPES}
# a present position / relation expression uses a noun phrase that matches one object only when the frame
# admits no ambiguous one, and then only with this probability (else the frame is redrawn)
_P_UNIQUE_FALLBACK = {"position": 0.25, "relation": 0.12}
_P_INTERIOR = 0.75  # share of "second" / "third" ordinals asked for an interior object (first ones are ends)

_DIRS = {"left": (0, 1), "right": (0, -1), "top": (1, 1), "bottom": (1, -1)}  # axis, sign (extreme first)
_POS_T = {
    "left": (
        "the leftmost {n}",
        "{N} on the far left",
        "{N} furthest to the left",
        "{N} on the left",
        "{N} nearest the left edge",
    ),
    "right": (
        "the rightmost {n}",
        "{N} on the far right",
        "{N} furthest to the right",
        "{N} on the right",
        "{N} nearest the right edge",
    ),
    "top": ("the topmost {n}", "{N} at the top", "the highest {n}", "{N} nearest the top", "{N} at the very top"),
    "bottom": (
        "the bottommost {n}",
        "{N} at the bottom",
        "the lowest {n}",
        "{N} nearest the bottom",
        "{N} at the very bottom",
    ),
}
_ORD = {0: ("first", "1st"), 1: ("second", "2nd"), 2: ("third", "3rd")}
_FROM = {"left": "from the left", "right": "from the right", "top": "from the top", "bottom": "from the bottom"}
_ORD_T = ("the {o} {n} {f}", "the {n} {o} {f}", "counting {f}, the {o} {n}")
_REL_WORDS = {
    "left of": ("left of", "to the left of", "on the left of"),
    "right of": ("right of", "to the right of", "on the right of"),
    "above": ("above", "over", "higher than"),
    "below": ("below", "under", "beneath"),
    "next to": ("next to", "beside", "closest to", "near"),
}
_REL_T = ("{N} {r} {A}", "the {n} that is {r} {A}")
_BETWEEN_T = ("{N} between {A} and {B}", "the {n} that is between {A} and {B}", "{N} in between {A} and {B}")
_ATTR_T = ("{N}", "{n}", "{N} in the picture", "find {N}", "{N} in the image", "the {s} that is {c}")
_MULTI_T = {
    "all": ("all the {p}", "all {p}", "every {n}", "all of the {p}"),
    "both": ("both {p}", "the two {p}", "both of the {p}"),
}
_TWO_T = {
    "left": ("the two {p} on the left", "the two leftmost {p}", "the two {p} furthest to the left"),
    "right": ("the two {p} on the right", "the two rightmost {p}", "the two {p} furthest to the right"),
    "top": ("the two {p} at the top", "the two topmost {p}", "the two highest {p}"),
    "bottom": ("the two {p} at the bottom", "the two bottommost {p}", "the two lowest {p}"),
}
_MULTI_KINDS = {"all": 0.4, "both": 0.3, "two": 0.3}
_ABSENT_WHY = {"relation": 0.5, "no_match": 0.25, "anchor": 0.25}

Desc = tuple  # (size | None, colour | None, shape | None)


@dataclass
class Layout:
    """The objects of a scene before rendering, with their extents (x0, x1, y0, y1) in pixels."""

    objects: list[Obj]
    rots: list[float]
    ext: np.ndarray  # (n, 4) float
    size: int


@dataclass
class Expr:
    """One expression on a layout: text, type, the indices of the objects it refers to (empty: none), tags."""

    text: str
    type: str
    targets: tuple[int, ...]
    tags: dict = field(default_factory=dict)


@dataclass
class Scene2:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    objects: list[Obj]
    instances: np.ndarray  # (H, W) uint8: 0 background, i + 1 for objects[i]
    background: str = ""


# ----------------------------------------------------------------------------- layout


def _extent(o: Obj, rot: float) -> tuple[float, float, float, float]:
    poly = _polygon(o.shape, o.x, o.y, o.r, rot)
    if poly is None:
        return o.x - o.r, o.x + o.r, o.y - o.r, o.y + o.r
    p = poly.astype(np.float64) / 16
    return float(p[:, 0].min()), float(p[:, 0].max()), float(p[:, 1].min()), float(p[:, 1].max())


def layout_objects(objects: Sequence[Obj], rots: Sequence[float], size: int) -> Layout:
    """A :class:`Layout` of given objects (extents computed from the drawn polygons)."""
    ext = np.array([_extent(o, r) for o, r in zip(objects, rots)], np.float64).reshape(-1, 4)
    return Layout(list(objects), list(rots), ext, size)


def _place(rng: np.random.Generator, size: int, n: int) -> list[Obj]:
    objs: list[Obj] = []
    # few distinct colours / shapes per scene, so that noun phrases are ambiguous and groups exist
    cpool = list(rng.choice(list(COLOURS), size=int(rng.integers(2, 5)), replace=False))
    spool = list(rng.choice(list(SHAPES), size=int(rng.integers(2, 5)), replace=False))
    for _ in range(400):
        if len(objs) >= n:
            break
        sz = "big" if rng.random() < 0.5 else "small"
        lo, hi = SIZES[sz]
        r = rng.uniform(lo, hi) * size
        m = r * 1.25 + 2
        x, y = rng.uniform(m, size - m), rng.uniform(m, size - m)
        if any(math.hypot(x - o.x, y - o.y) < (r + o.r) * 1.25 + 5 for o in objs):
            continue
        objs.append(Obj(str(rng.choice(cpool)), str(rng.choice(spool)), sz, x, y, r))
    return objs


# ----------------------------------------------------------------------------- descriptions


def _proj(o: Obj, form: str) -> Desc:
    return (o.size if "z" in form else None, o.colour if "c" in form else None, o.shape if "s" in form else None)


def _matches(o: Obj, d: Desc) -> bool:
    return (d[0] is None or o.size == d[0]) and (d[1] is None or o.colour == d[1]) and (d[2] is None or o.shape == d[2])


def _members(L: Layout, d: Desc, exclude: Sequence[int] = ()) -> list[int]:
    return [i for i, o in enumerate(L.objects) if i not in exclude and _matches(o, d)]


def _groups(L: Layout, form: str, exclude: Sequence[int] = ()) -> dict[Desc, list[int]]:
    """Every description of this form that matches at least one object (outside ``exclude``) -> members."""
    out: dict[Desc, list[int]] = {}
    for i, o in enumerate(L.objects):
        if i not in exclude:
            out.setdefault(_proj(o, form), []).append(i)
    return out


def _absent(L: Layout, form: str, rng: np.random.Generator) -> Desc | None:
    """A random description of this form that matches no object (None if the scene has them all)."""
    if not form:
        return None
    present = {_proj(o, form) for o in L.objects}
    space = [
        (z if "z" in form else None, c if "c" in form else None, s if "s" in form else None)
        for z in (_VALUES["z"] if "z" in form else (None,))
        for c in (_VALUES["c"] if "c" in form else (None,))
        for s in (_VALUES["s"] if "s" in form else (None,))
    ]
    space = [d for d in space if d not in present]
    return space[int(rng.integers(len(space)))] if space else None


def _unique_anchors(L: Layout, form: str) -> list[int]:
    return [m[0] for m in _groups(L, form).values() if len(m) == 1]


def describe(
    d: Desc, rng: np.random.Generator, article: bool = True, plural: bool = False, generic: Sequence[str] | None = None
) -> str:
    """Noun phrase, e.g. ('big', 'red', None) -> 'the large red shape'; plural 'the large red shapes'."""
    size, colour, shape = d
    words = []
    if size:
        words.append(str(rng.choice(_SIZE_WORDS[size])))
    if colour:
        words.append(colour)
    if shape:
        words.append(str(rng.choice((_SHAPE_PLURAL if plural else _SHAPE_WORDS)[shape])))
    else:
        words.append(str(rng.choice(generic or (_GENERIC_PLURAL if plural else _GENERIC))))
    phrase = " ".join(words)
    return ("the " + phrase) if article else phrase


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], np.float64)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


# ----------------------------------------------------------------------------- geometry


def _order(L: Layout, i: int, j: int, direction: str) -> int:
    """+1 if object i clearly comes before j in ``direction`` (e.g. "from the left"), -1 if after, 0 unclear:
    centres at least 4 % of the image apart and extents overlapping by at most 1/4 of the smaller one."""
    axis, sign = _DIRS[direction]
    lo, hi = (0, 1) if axis == 0 else (2, 3)
    ci = (L.ext[i, lo] + L.ext[i, hi]) / 2
    cj = (L.ext[j, lo] + L.ext[j, hi]) / 2
    gap = sign * (cj - ci)
    ov = min(L.ext[i, hi], L.ext[j, hi]) - max(L.ext[i, lo], L.ext[j, lo])
    short = min(L.ext[i, hi] - L.ext[i, lo], L.ext[j, hi] - L.ext[j, lo])
    if abs(gap) < 0.04 * L.size or ov > 0.25 * short:
        return 0
    return 1 if gap > 0 else -1


def _rank(L: Layout, t: int, group: Sequence[int], direction: str) -> int | None:
    """Rank of t in group along direction (0 = first), or None when t is not clearly ordered against all."""
    before = 0
    for g in group:
        if g == t:
            continue
        o = _order(L, g, t, direction)
        if o == 0:
            return None
        before += o > 0
    return before


def _centre(L: Layout, i: int) -> tuple[float, float]:
    e = L.ext[i]
    return (e[0] + e[1]) / 2, (e[2] + e[3]) / 2


def _rel_status(L: Layout, o: int, a: int, rel: str) -> int:
    """+1: object o clearly stands in ``rel`` to anchor a; -1: clearly not; 0: unclear."""
    (ox, oy), (ax, ay) = _centre(L, o), _centre(L, a)
    m, band = 0.02 * L.size, 0.35 * L.size
    e = L.ext[a]
    if rel == "left of":
        d, edge, off = ax - ox, ax - e[0], abs(oy - ay)
    elif rel == "right of":
        d, edge, off = ox - ax, e[1] - ax, abs(oy - ay)
    elif rel == "above":
        d, edge, off = ay - oy, ay - e[2], abs(ox - ax)
    elif rel == "below":
        d, edge, off = oy - ay, e[3] - ay, abs(ox - ax)
    else:  # pragma: no cover
        raise ValueError(rel)
    if d > edge + m and off < band:
        return 1
    return -1 if d <= 0 else 0


def _between_status(L: Layout, o: int, a: int, b: int) -> int:
    (px, py), (qx, qy), (ox, oy) = _centre(L, a), _centre(L, b), _centre(L, o)
    vx, vy = qx - px, qy - py
    n2 = vx * vx + vy * vy
    s = ((ox - px) * vx + (oy - py) * vy) / n2
    dist = abs((ox - px) * vy - (oy - py) * vx) / math.sqrt(n2)
    if 0.15 < s < 0.85 and dist < 0.09 * L.size:
        return 1
    return -1 if (s < 0 or s > 1 or dist > 0.25 * L.size) else 0


def _nearest(L: Layout, group: Sequence[int], a: int) -> int | None:
    """The group member clearly nearest to anchor a (and near it), or None."""
    ax, ay = _centre(L, a)
    ds = sorted((math.hypot(_centre(L, i)[0] - ax, _centre(L, i)[1] - ay), i) for i in group)
    if not ds:
        return None
    d0, t = ds[0]
    if d0 - L.objects[t].r - L.objects[a].r > 0.25 * L.size:
        return None
    if len(ds) > 1 and d0 > 0.7 * ds[1][0]:
        return None
    return t


# ----------------------------------------------------------------------------- frames and realisations

Real = tuple[str, tuple[int, ...], dict]  # text, targets, tags


def _choose_ambiguous(rng: np.random.Generator, amb: list, uni: list, typ: str):
    """A candidate whose noun phrase is ambiguous; a trivially unique one only when there is none, and then
    only with probability ``_P_UNIQUE_FALLBACK`` (None: the frame fails and another is drawn)."""
    if amb:
        return amb[int(rng.integers(len(amb)))]
    if uni and rng.random() < _P_UNIQUE_FALLBACK[typ]:
        return uni[int(rng.integers(len(uni)))]
    return None


def _strata_table(typ: str) -> list[tuple[dict, float]]:
    """The parts of a frame whose proportions are stated (relation word, ordinal and its end / interior
    position, multi-target kind) with their probabilities: drawn once per expression and kept while the
    other frame parts are redrawn."""
    if typ == "relation":
        return [({"rel": r}, w / sum(RELATION_WEIGHTS.values())) for r, w in RELATION_WEIGHTS.items()]
    if typ == "ordinal":
        return [({"k": 0, "pos": "end"}, 1 / 3)] + [
            ({"k": k, "pos": pos}, p / 3)
            for k in (1, 2)
            for pos, p in (("end", 1 - _P_INTERIOR), ("interior", _P_INTERIOR))
        ]
    if typ == "multi":
        return [({"kind": k}, w / sum(_MULTI_KINDS.values())) for k, w in _MULTI_KINDS.items()]
    return [({}, 1.0)]


def _strata(typ: str, rng: np.random.Generator) -> dict:
    table = _strata_table(typ)
    return dict(table[int(rng.choice(len(table), p=np.array([p for _, p in table])))][0])


# share of training scenes on which a stratum's frames admit a pair (measured on 600 train layouts, 8 frame
# tries): ``scene_samples`` draws strata in inverse proportion, so that what it returns keeps the stated
# proportions although the scene is fixed (``ds[i]`` instead moves to another scene and needs no weights)
_PAIR_SUCCESS = {
    "relation:left of": 0.695,
    "relation:right of": 0.682,
    "relation:above": 0.652,
    "relation:below": 0.713,
    "relation:next to": 0.893,
    "relation:between": 0.398,
    "ordinal:0:end": 1.0,
    "ordinal:1:end": 0.912,
    "ordinal:1:interior": 0.605,
    "ordinal:2:end": 0.645,
    "ordinal:2:interior": 0.307,
    "multi:all": 0.992,
    "multi:both": 0.938,
    "multi:two": 0.753,
    "attribute": 0.992,
    "position": 0.998,
}


def _stratum_key(typ: str, st: dict) -> str:
    return ":".join([typ, *(str(v) for v in st.values())])


def _frame_attribute(rng, st):
    form = _pick(rng, _FORM_WEIGHTS["attribute"])
    n_t = len(_ATTR_T) if form == "cs" else len(_ATTR_T) - 1
    return {"form": form, "t": int(rng.integers(n_t))}


def _real_attribute(L, fr, want, rng) -> Real | None:
    form = fr["form"]
    if want:
        cands = [(d, m[0]) for d, m in _groups(L, form).items() if len(m) == 1]
        if not cands:
            return None
        d, t = cands[int(rng.integers(len(cands)))]
        targets: tuple[int, ...] = (t,)
    else:
        d = _absent(L, form, rng)
        if d is None:
            return None
        targets = ()
    n = describe(d, rng)
    text = _ATTR_T[fr["t"]].format(N=n, n=n[4:], s=str(rng.choice(_SHAPE_WORDS[d[2]])) if d[2] else "", c=d[1])
    return text, targets, {}


def _frame_position(rng, st):
    return {
        "form": _pick(rng, _FORM_WEIGHTS["position"]),
        "dir": str(rng.choice(list(_DIRS))),
        "t": int(rng.integers(len(_POS_T["left"]))),
    }


def _real_position(L, fr, want, rng) -> Real | None:
    form, direction = fr["form"], fr["dir"]
    tags: dict = {"direction": direction}
    if want:
        amb, uni = [], []
        for d, m in _groups(L, form).items():
            for t in m:
                if _rank(L, t, m, direction) == 0:
                    (amb if len(m) > 1 else uni).append((d, t))
        c = _choose_ambiguous(rng, amb, uni, "position")
        if c is None:
            return None
        d, t = c
        targets: tuple[int, ...] = (t,)
        tags["unique"] = len(_members(L, d)) == 1
    else:
        d = _absent(L, form, rng)
        if d is None:
            return None
        targets = ()
    n = describe(d, rng, article=False)
    return _POS_T[direction][fr["t"]].format(n=n, N="the " + n), targets, tags


def _frame_ordinal(rng, st):
    return {
        "form": _pick(rng, _FORM_WEIGHTS["ordinal"]),
        "dir": str(rng.choice(list(_DIRS))),
        "k": st["k"],
        "pos": st["pos"],
        "t": int(rng.integers(len(_ORD_T))),
    }


def _real_ordinal(L, fr, want, rng) -> Real | None:
    form, direction, k = fr["form"], fr["dir"], fr["k"]
    tags: dict = {"direction": direction, "k": k}
    groups = _groups(L, form)
    if want:
        by_pos: dict[str, list] = {"end": [], "interior": []}
        for d, m in groups.items():
            if len(m) <= k:
                continue
            for t in m:
                if _rank(L, t, m, direction) == k:
                    by_pos["end" if k in (0, len(m) - 1) else "interior"].append((d, t))
        cands = by_pos[fr["pos"]]
        if not cands:
            return None
        d, t = cands[int(rng.integers(len(cands)))]
        targets: tuple[int, ...] = (t,)
        tags["ordinal_pos"] = "end" if k in (0, len(groups[d]) - 1) else "interior"
    else:
        d = _count_or_missing(L, form, [d for d, m in groups.items() if len(m) <= k], rng, k > 0)
        if d is None:
            return None
        targets = ()
        tags["why"] = "count" if d in groups else "no_match"
    n = describe(d, rng, article=False)
    text = _ORD_T[fr["t"]].format(o=str(rng.choice(_ORD[k])), n=n, f=_FROM[direction])
    return text, targets, tags


def _count_or_missing(L: Layout, form: str, count: list, rng: np.random.Generator, countable: bool) -> Desc | None:
    """The description of a no-target ordinal / "the two ..." expression: too few matching objects ("the third
    circle" with two circles; preferred where the frame can count) or none at all. None: the frame fails."""
    if countable:
        if count and rng.random() < 0.75:
            return count[int(rng.integers(len(count)))]
        if not count and rng.random() < 0.6:
            return None  # prefer scenes / frames where too few objects match over ones where none does
    return _absent(L, form, rng)


def _frame_relation(rng, st):
    rel = st["rel"]
    na = 2 if rel == "between" else 1
    return {
        "rel": rel,
        "form": _pick(rng, _FORM_WEIGHTS["relation"]),
        "aforms": tuple(_pick(rng, _FORM_WEIGHTS["anchor"]) for _ in range(na)),
        "t": int(rng.integers(len(_BETWEEN_T) if rel == "between" else len(_REL_T))),
    }


def _anchor_sets(L: Layout, aforms: tuple[str, ...]) -> list[tuple[int, ...]]:
    if len(aforms) == 1:
        return [(a,) for a in _unique_anchors(L, aforms[0])]
    return [(a, b) for a in _unique_anchors(L, aforms[0]) for b in _unique_anchors(L, aforms[1]) if a != b]


def _status(L: Layout, o: int, anchors: tuple[int, ...], rel: str) -> int:
    return _between_status(L, o, *anchors) if rel == "between" else _rel_status(L, o, anchors[0], rel)


def _head_groups(L: Layout, form: str, anchors: tuple[int, ...]) -> dict[Desc, list[int]]:
    if not form:
        m = [i for i in range(len(L.objects)) if i not in anchors]
        return {(None, None, None): m} if m else {}
    return _groups(L, form, exclude=anchors)


def _real_relation(L, fr, want, rng) -> Real | None:
    rel, form, aforms = fr["rel"], fr["form"], fr["aforms"]
    tags: dict = {"relation": rel}
    anchor_sets = _anchor_sets(L, aforms)
    if want:
        amb, uni = [], []
        for anc in anchor_sets:
            for d, m in _head_groups(L, form, anc).items():
                if rel == "next to":
                    t = _nearest(L, m, anc[0])
                    if t is None:
                        continue
                else:
                    st = [_status(L, i, anc, rel) for i in m]
                    if st.count(1) != 1 or st.count(0):
                        continue
                    t = m[st.index(1)]
                (amb if len(m) > 1 else uni).append((anc, d, t))
        c = _choose_ambiguous(rng, amb, uni, "relation")
        if c is None:
            return None
        anc, d, t = c
        adescs = [_proj(L.objects[a], f) for a, f in zip(anc, aforms)]
        targets: tuple[int, ...] = (t,)
        tags["unique"] = len(_head_groups(L, form, anc)[d]) == 1
    else:
        why = dict(_ABSENT_WHY)
        if rel == "next to":  # "nearest" never clearly fails: only missing heads / anchors
            why.pop("relation")
        if not form:
            why.pop("no_match")
        res = None
        while why and res is None:
            reason = _pick(rng, why)
            why.pop(reason)
            res = _absent_relation(L, rel, form, aforms, anchor_sets, reason, rng)
        if res is None:
            return None
        d, adescs, tags["why"] = res
        targets = ()
    n = describe(d, rng)
    a_np = [describe(ad, rng) for ad in adescs]
    if rel == "between":
        text = _BETWEEN_T[fr["t"]].format(N=n, n=n[4:], A=a_np[0], B=a_np[1])
    else:
        text = _REL_T[fr["t"]].format(N=n, n=n[4:], r=str(rng.choice(_REL_WORDS[rel])), A=a_np[0])
    return text, targets, tags


def _absent_relation(L, rel, form, aforms, anchor_sets, reason, rng):
    """(head description, anchor descriptions, reason) of a relation expression that names nothing."""
    if reason == "relation":  # head and anchors exist, but no head object stands in that relation
        cands = [
            (anc, d)
            for anc in anchor_sets
            for d, m in _head_groups(L, form, anc).items()
            if all(_status(L, i, anc, rel) == -1 for i in m)
        ]
        if not cands:
            return None
        anc, d = cands[int(rng.integers(len(cands)))]
        return d, [_proj(L.objects[a], f) for a, f in zip(anc, aforms)], reason
    if reason == "no_match":  # the anchors exist, no object matches the head
        if not anchor_sets:
            return None
        anc = anchor_sets[int(rng.integers(len(anchor_sets)))]
        d = _absent(L, form, rng)
        if d is None:
            return None
        return d, [_proj(L.objects[a], f) for a, f in zip(anc, aforms)], reason
    # an anchor is missing (for "between": one of the two; the other exists when it can)
    miss = int(rng.integers(len(aforms)))
    adescs = []
    for j, f in enumerate(aforms):
        if j == miss:
            ad = _absent(L, f, rng)
        else:
            uniq = _unique_anchors(L, f)
            ad = _proj(L.objects[uniq[int(rng.integers(len(uniq)))]], f) if uniq else _absent(L, f, rng)
        if ad is None:
            return None
        adescs.append(ad)
    if len(adescs) == 2 and adescs[0] == adescs[1]:
        return None
    groups = _head_groups(L, form, ())
    if form and (rng.random() < 0.5 or not groups):
        d = _absent(L, form, rng)
    else:
        keys = list(groups)
        d = keys[int(rng.integers(len(keys)))] if keys else None
    if d is None:
        return None
    return d, adescs, reason


def _frame_multi(rng, st):
    kind = st["kind"]
    direction = str(rng.choice(list(_DIRS)))
    n_t = len(_TWO_T["left"]) if kind == "two" else len(_MULTI_T[kind])
    return {"kind": kind, "form": _pick(rng, _FORM_WEIGHTS["multi"]), "dir": direction, "t": int(rng.integers(n_t))}


def _top_two(L: Layout, m: list[int], direction: str) -> tuple[int, ...] | None:
    axis, sign = _DIRS[direction]
    order = sorted(m, key=lambda i: sign * _centre(L, i)[axis])
    top, rest = order[:2], order[2:]
    if all(_order(L, i, j, direction) == 1 for i in top for j in rest):
        return tuple(sorted(top))
    return None


def _real_multi(L, fr, want, rng) -> Real | None:
    kind, form, direction = fr["kind"], fr["form"], fr["dir"]
    tags: dict = {"kind": kind}
    groups = _groups(L, form)
    if want:
        cands: list[tuple[Desc, tuple[int, ...]]] = []
        for d, m in groups.items():
            if kind == "all" and len(m) >= 2:
                cands.append((d, tuple(m)))
            elif kind == "both" and len(m) == 2:
                cands.append((d, tuple(m)))
            elif kind == "two" and len(m) >= 3 and (tt := _top_two(L, m, direction)) is not None:
                cands.append((d, tt))
        if not cands:
            return None
        d, targets = cands[int(rng.integers(len(cands)))]
    else:
        d = _count_or_missing(L, form, [d for d, m in groups.items() if len(m) == 1], rng, kind == "two")
        if d is None:
            return None
        targets = ()
        tags["why"] = "count" if d in groups else "no_match"
    if kind == "two":
        tags["direction"] = direction
        text = _TWO_T[direction][fr["t"]].format(p=describe(d, rng, article=False, plural=True))
    else:
        templ = _MULTI_T[kind][fr["t"]]
        singular = describe(d, rng, article=False, generic=("shape", "object"))
        text = templ.format(p=describe(d, rng, article=False, plural=True), n=singular)
    return text, targets, tags


_FRAMES: dict[str, Callable] = {
    "attribute": _frame_attribute,
    "position": _frame_position,
    "ordinal": _frame_ordinal,
    "relation": _frame_relation,
    "multi": _frame_multi,
}
_REALISE: dict[str, Callable] = {
    "attribute": _real_attribute,
    "position": _real_position,
    "ordinal": _real_ordinal,
    "relation": _real_relation,
    "multi": _real_multi,
}


def _template_id(typ: str, fr: dict) -> str:
    parts = [typ, fr.get("kind", ""), fr.get("rel", ""), fr["form"] or "g", str(fr["t"])]
    if "k" in fr:
        parts.append(f"k{fr['k']}")
    return ":".join(p for p in parts if p)


def expression_pair(
    L: Layout, typ: str, rng: np.random.Generator, strata: dict | None = None, tries: int = 8
) -> tuple[Expr, Expr] | None:
    """A (with target, without target) pair of expressions of one frame (same template, description form,
    direction, ordinal, relation word) on a layout, or None when no frame of ``typ`` (with the given
    ``strata``, see :func:`_strata`; drawn when None) admits both."""
    st = _strata(typ, rng) if strata is None else strata
    for _ in range(tries):
        fr = _FRAMES[typ](rng, st)
        pos = _REALISE[typ](L, fr, True, rng)
        if pos is None:
            continue
        neg = _REALISE[typ](L, fr, False, rng)
        if neg is None:
            continue
        tid = _template_id(typ, fr)
        return tuple(
            Expr(text, typ, targets, {"template": tid, "form": fr["form"] or "g", **tags})  # type: ignore
            for text, targets, tags in (pos, neg)
        )
    return None


# ----------------------------------------------------------------------------- data set


class RefShapes2:
    """Deterministic RefShapes v2 split. ``ds[i]`` is one (scene, expression) sample; ``ds.scene_samples``
    gives several expressions on one scene (training shares one image encoding across them).

    Types are drawn with ``type_weights`` (default :data:`TYPE_WEIGHTS`); within every type (and every
    template) a share ``no_target_rate`` names nothing in the scene. ``type_weights`` may hold a
    ``no_target`` entry (v1 style): it is used as ``no_target_rate``.
    """

    def __init__(
        self,
        split: str = "train",
        size: int = 320,
        length: int | None = None,
        no_target_rate: float = 0.25,
        type_weights: dict[str, float] | None = None,
        min_objects: int = 3,
        max_objects: int = 8,
    ):
        if split not in SPLITS:
            raise SSPError(f"unknown RefShapes v2 split {split!r}; choose one of: {', '.join(SPLITS)}")
        w = dict(type_weights or TYPE_WEIGHTS)
        if "no_target" in w:
            no_target_rate = float(w.pop("no_target"))
        unknown = set(w) - set(TYPES)
        if unknown:
            raise SSPError(f"unknown RefShapes v2 expression types {sorted(unknown)}; choose from {', '.join(TYPES)}")
        if not 0 <= no_target_rate <= 1:
            raise SSPError(f"no_target_rate must be in [0, 1], got {no_target_rate}")
        self.split = split
        self.size = size
        self.length = length if length is not None else {"train": 10**7}.get(split, 5000)
        self.min_objects, self.max_objects = min_objects, max_objects
        self.no_target_rate = no_target_rate
        self.types = [t for t in TYPES if w.get(t, 0) > 0]
        if not self.types:
            raise SSPError("RefShapes v2 needs at least one expression type with a positive weight")
        p = np.array([w[t] for t in self.types], np.float64)
        self.type_p = p / p.sum()
        # (type, stratum) for scene_samples, weighted by 1 / the share of scenes that admit it
        self._joint = [(t, st) for t in self.types for st, _ in _strata_table(t)]
        q = np.array(
            [
                tp * sp / _PAIR_SUCCESS[_stratum_key(t, st)]
                for t, tp in zip(self.types, self.type_p)
                for st, sp in _strata_table(t)
            ],
            np.float64,
        )
        self._joint_p = q / q.sum()

    def __len__(self) -> int:
        return self.length

    def _rng(self, i: int, stream: int = 0) -> np.random.Generator:
        return np.random.default_rng([SPLITS[self.split], i, stream, _SEED])

    def layout(self, i: int) -> Layout:
        """The objects of scene ``i`` (cheap: no rendering)."""
        rng = self._rng(i)
        objs = _place(rng, self.size, int(rng.integers(self.min_objects, self.max_objects + 1)))
        rots = [float(rng.uniform(-0.2, 0.2)) for _ in objs]
        return layout_objects(objs, rots, self.size)

    def scene(self, i: int) -> Scene2:
        """Scene ``i`` rendered: image, objects, instance map, background name."""
        L = self.layout(i)
        rng = self._rng(i, 2)
        bg, name = background(rng, self.size, self.split)
        img, inst = render_scene(L.objects, bg, L.rots, rng)
        img = cv2.GaussianBlur(img, (3, 3), 0) if rng.random() < 0.3 else img
        return Scene2(img, L.objects, inst, name)

    def _draw_type(self, rng: np.random.Generator) -> str:
        return self.types[int(rng.choice(len(self.types), p=self.type_p))]

    def expressions(self, L: Layout, rng: np.random.Generator, k: int) -> list[Expr]:
        """Up to k expressions on a layout. Each frame is realised with and without a target; the one with a
        target is kept with probability a, the one without with probability b, a / (a + b) = 1 - rate. Types
        and strata are drawn in inverse proportion to how often a scene admits them (``_PAIR_SUCCESS``)."""
        r = self.no_target_rate
        a, b = (1.0, r / (1 - r)) if r <= 0.5 else ((1 - r) / r, 1.0)
        out: list[Expr] = []
        for _ in range(k * 3):
            if len(out) >= k:
                break
            typ, st = self._joint[int(rng.choice(len(self._joint), p=self._joint_p))]
            pair = expression_pair(L, typ, rng, st)
            if pair is None:
                continue
            keep = [e for e, p in zip(pair, (a, b)) if rng.random() < p]
            for e in keep:
                if len(out) < k and all(e.text != x.text for x in out):
                    out.append(e)
        perm = rng.permutation(len(out))
        return [out[j] for j in perm]

    def _pick(self, i: int) -> tuple[int, Expr]:
        """(scene index, expression) of sample i: the label and type are drawn first, then frames until
        one admits both labels (so neither the frame nor the type depends on the label)."""
        rng = self._rng(i, 1)
        want = rng.random() >= self.no_target_rate
        typ = self._draw_type(rng)
        st = _strata(typ, rng)
        for attempt in range(100):
            j = i if attempt == 0 else i + 100003 * attempt
            pair = expression_pair(self.layout(j), typ, rng, st)
            if pair is not None:
                e = pair[0 if want else 1]
                e.tags["scene"] = j
                return j, e
        raise RuntimeError(f"RefShapes v2 could not make an expression for sample {i}")  # pragma: no cover

    def text_sample(self, i: int) -> Expr:
        """The expression of ``ds[i]`` without rendering its image (leak checks, statistics); its scene (``i``
        unless no frame of the drawn type fits scene ``i``) is ``tags["scene"]``."""
        if not 0 <= i < self.length:
            raise IndexError(i)
        return self._pick(i)[1]

    def scene_expressions(self, i: int, k: int) -> list[Expr]:
        """The expressions of ``scene_samples(i, k)`` without rendering."""
        out = self.expressions(self.layout(i), self._rng(i, 1), k)
        for e in out:
            e.tags["scene"] = i
        return out

    def _sample(self, sc: Scene2, e: Expr, idx: int) -> Sample:
        mask = (
            np.isin(sc.instances, np.array(e.targets, np.int64) + 1)
            if e.targets
            else np.zeros(sc.instances.shape, bool)
        )
        tags = {**e.tags, "targets": list(e.targets), "n_targets": len(e.targets), "background": sc.background}
        return Sample(
            image=sc.image,
            mask=mask.astype(np.uint8),
            expression=e.text,
            type=e.type,
            exists=bool(e.targets),
            instances=sc.instances,
            source=f"refshapes2:{self.split}:{idx}",
            tags=tags,
        )

    def scene_samples(self, i: int, k: int) -> list[Sample]:
        """k samples (different expressions) on scene i."""
        exprs = self.scene_expressions(i, k)
        sc = self.scene(i)
        return [self._sample(sc, e, i) for e in exprs]

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < self.length:
            raise IndexError(i)
        j, e = self._pick(i)
        return self._sample(self.scene(j), e, i)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]


def render_video(
    path: str, seed: int = 0, frames: int = 90, fps: int = 15, size: int = 320, n_objects: int = 5
) -> list[Obj]:
    """v2 demo video: shapes moving over a held-out v2 background; a red circle and a second circle are
    always present (so "the red circle" and "both circles" have targets). The objects of every frame go to
    ``<path>.objects.json`` as with v1's :func:`ssp.data.refshapes.render_video`."""
    rng = np.random.default_rng([SPLITS["demo"], seed, _SEED])
    objs = _place(rng, size, max(2, n_objects))
    if len(objs) < 2:
        raise RuntimeError("could not place objects")  # pragma: no cover
    objs[0].colour, objs[0].shape = "red", "circle"
    objs[1].shape = "circle"
    objs[1].colour = "blue" if objs[1].colour == "red" else objs[1].colour
    for o in objs[2:]:
        if o.shape == "circle":
            o.shape = "square"
    bg, _ = background(rng, size, "demo")
    write_moving_video(path, objs, bg, rng, frames, fps, size)
    return objs
