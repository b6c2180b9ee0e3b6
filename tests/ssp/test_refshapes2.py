"""RefShapes v2: determinism, sample format, union masks, the meaning of every expression (present and absent)
checked by an independent little interpreter that reads the words and object centres, extent-aware
ordering on hand-built layouts, stated proportions (relations, end / interior ordinals, ambiguous noun
phrases, no-target reasons), backgrounds disjoint between splits, the data spec and the v2 demo video."""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
import pytest

from ssp_edge.ssp.data import backgrounds as bgs
from ssp_edge.ssp.data.refshapes import COLOURS, SHAPES, Obj
from ssp_edge.ssp.data.refshapes2 import (
    RELATION_WEIGHTS,
    TYPES,
    RefShapes2,
    _real_ordinal,
    _real_position,
    layout_objects,
)
from ssp_edge.ssp.data.spec import open_data
from ssp_edge.ssp.errors import SSPError

# --------------------------------------------------------------------------- an independent interpreter

_SIZE = {"small": "small", "little": "small", "tiny": "small", "big": "big", "large": "big"}
_SHAPE = (
    {s: s for s in SHAPES}
    | {s + "s": s for s in SHAPES}
    | {"box": "square", "boxes": "square", "disc": "circle", "discs": "circle"}
)
_ORDINALS = {"first": 0, "1st": 0, "second": 1, "2nd": 1, "third": 2, "3rd": 2}
_DIR_WORDS = {
    "left": {"left", "leftmost"},
    "right": {"right", "rightmost"},
    "top": {"top", "topmost", "highest"},
    "bottom": {"bottom", "bottommost", "lowest"},
}
_RELATIONS = [  # phrase -> meaning, longest first
    ("to the left of", "left"),
    ("on the left of", "left"),
    ("to the right of", "right"),
    ("on the right of", "right"),
    ("higher than", "above"),
    ("closest to", "near"),
    ("next to", "near"),
    ("left of", "left"),
    ("right of", "right"),
    ("above", "above"),
    ("over", "above"),
    ("beneath", "below"),
    ("below", "below"),
    ("under", "below"),
    ("beside", "near"),
    ("near", "near"),
]


def parse_np(text: str) -> tuple[str | None, str | None, str | None]:
    text = text.lower().replace("round shapes", "circles").replace("round shape", "circle")
    size = colour = shape = None
    for tok in re.findall(r"[a-z0-9]+", text):
        if tok in _SIZE:
            assert size is None, text
            size = _SIZE[tok]
        elif tok in COLOURS:
            assert colour is None, text
            colour = tok
        elif tok in _SHAPE:
            assert shape is None, text
            shape = _SHAPE[tok]
    return size, colour, shape


def matching(objs: list[Obj], desc) -> list[int]:
    size, colour, shape = desc
    return [
        i
        for i, o in enumerate(objs)
        if (size is None or o.size == size)
        and (colour is None or o.colour == colour)
        and (shape is None or o.shape == shape)
    ]


def _direction(words) -> str:
    found = {d for d, keys in _DIR_WORDS.items() if keys & set(words)}
    assert len(found) == 1, words
    return found.pop()


def _key(objs, direction):
    return {
        "left": lambda i: objs[i].x,
        "right": lambda i: -objs[i].x,
        "top": lambda i: objs[i].y,
        "bottom": lambda i: -objs[i].y,
    }[direction]


def _side(o: Obj, a: Obj, rel: str) -> bool:
    """o's centre is on the ``rel`` side of a's centre."""
    return {"left": o.x < a.x, "right": o.x > a.x, "above": o.y < a.y, "below": o.y > a.y}[rel]


def _between(objs, a, b, t, size) -> tuple[float, float]:
    p, q, o = objs[a], objs[b], objs[t]
    vx, vy = q.x - p.x, q.y - p.y
    along = ((o.x - p.x) * vx + (o.y - p.y) * vy) / (vx * vx + vy * vy)
    off = abs((o.x - p.x) * vy - (o.y - p.y) * vx) / math.hypot(vx, vy) / size
    return along, off


def check_meaning(expr: str, typ: str, targets: tuple[int, ...], objs: list[Obj], size: int) -> None:
    """Assert that ``expr`` of ``typ`` refers to exactly ``targets`` (empty: to nothing) among ``objs``."""
    words = re.findall(r"[a-z0-9]+", expr.lower())
    tset = set(targets)
    if typ == "attribute":
        assert matching(objs, parse_np(expr)) == sorted(tset), expr
    elif typ == "position":
        group = matching(objs, parse_np(expr))
        if not tset:
            assert group == [], expr
            return
        order = sorted(group, key=_key(objs, _direction(words)))
        assert [order[0]] == sorted(tset), expr
    elif typ == "ordinal":
        group = matching(objs, parse_np(expr))
        k = [v for w, v in _ORDINALS.items() if w in words]
        assert len(k) == 1, expr
        after = words[words.index("from") + 1 :]
        if not tset:
            assert len(group) <= k[0], expr
            return
        order = sorted(group, key=_key(objs, _direction(after)))
        assert len(order) > k[0] and [order[k[0]]] == sorted(tset), expr
    elif typ == "multi":
        group = matching(objs, parse_np(expr))
        directional = any(keys & set(words) for keys in _DIR_WORDS.values())
        if words[0] in ("all", "every"):
            assert sorted(tset) == group if tset else group == [], expr
            assert not tset or len(tset) >= 2, expr
        elif not directional:  # "both circles", "the two circles"
            assert (sorted(tset) == group and len(group) == 2) if tset else group == [], expr
        else:  # "the two circles on the left"
            if not tset:
                assert len(group) <= 1, expr
                return
            order = sorted(group, key=_key(objs, _direction(words)))
            assert len(order) >= 3 and set(order[:2]) == tset, expr
    elif typ == "relation":
        _check_relation(expr, tset, objs, size)
    else:
        raise AssertionError(typ)


def _check_relation(expr: str, tset: set[int], objs: list[Obj], size: int) -> None:
    if " between " in expr:
        head, rest = expr.split(" between ")
        left, right = rest.split(" and ")
        a_m, b_m = matching(objs, parse_np(left)), matching(objs, parse_np(right))
        group = [i for i in matching(objs, parse_np(head)) if i not in a_m + b_m]
        if not tset:
            if len(a_m) == 1 and len(b_m) == 1:  # both anchors there: no head object lies between them
                for i in group:
                    along, off = _between(objs, a_m[0], b_m[0], i, size)
                    assert not (0.15 < along < 0.85 and off < 0.09), expr
            else:
                assert not a_m or not b_m, expr
            return
        assert len(a_m) == 1 and len(b_m) == 1, expr
        (t,) = tset
        assert t in group, expr
        for i in group:
            along, off = _between(objs, a_m[0], b_m[0], i, size)
            assert (0 < along < 1 and off < 0.15) == (i == t), expr
        return
    for phrase, rel in _RELATIONS:  # noqa: B007 (rel is read after the break)
        m = re.search(rf"\b{phrase}\b", expr)
        if m:
            break
    else:
        raise AssertionError(f"no relation word in {expr!r}")
    head, tail = expr[: m.start()], expr[m.end() :]
    anchors = matching(objs, parse_np(tail))
    if not tset and not anchors:
        return  # the anchor is missing
    assert len(anchors) == 1, expr  # a present anchor is named unambiguously
    a = anchors[0]
    group = [i for i in matching(objs, parse_np(head)) if i != a]
    if rel == "near":
        if tset:
            ao = objs[a]
            assert [min(group, key=lambda i: math.hypot(objs[i].x - ao.x, objs[i].y - ao.y))] == sorted(tset), expr
        else:
            assert group == [], expr
        return
    on_side = [i for i in group if _side(objs[i], objs[a], rel)]
    assert on_side == sorted(tset), expr  # the target is on that side, every other head object is not


# --------------------------------------------------------------------------- determinism and format


@pytest.fixture(scope="module")
def test_texts():
    ds = RefShapes2("test", no_target_rate=0.5)
    return ds, [ds.text_sample(i) for i in range(1500)]


def test_same_split_and_index_is_deterministic():
    a, b = RefShapes2("test"), RefShapes2("test")
    for i in (0, 7, 123):
        sa, sb = a[i], b[i]
        assert np.array_equal(sa.image, sb.image) and np.array_equal(sa.mask, sb.mask)
        assert (sa.expression, sa.type, sa.exists, sa.source, sa.tags) == (
            sb.expression,
            sb.type,
            sb.exists,
            sb.source,
            sb.tags,
        )
        e = a.text_sample(i)  # the cheap text path gives the same expression
        assert (e.text, e.type, bool(e.targets)) == (sa.expression, sa.type, sa.exists)
    ka, kb = a.scene_samples(5, 6), b.scene_samples(5, 6)
    assert [s.expression for s in ka] == [s.expression for s in kb] and len(ka) >= 4
    assert [e.text for e in a.scene_expressions(5, 6)] == [s.expression for s in ka]


def test_splits_differ_and_bad_input():
    imgs = {sp: RefShapes2(sp)[0].image for sp in ("train", "val", "test")}
    assert not np.array_equal(imgs["train"], imgs["test"]) and not np.array_equal(imgs["val"], imgs["test"])
    assert RefShapes2("train")[3].source == "refshapes2:train:3"
    with pytest.raises(SSPError, match="split"):
        RefShapes2("holdout")
    with pytest.raises(SSPError, match="types"):
        RefShapes2("val", type_weights={"colour": 1.0})
    ds = RefShapes2("val", length=10)
    assert len(ds) == 10
    with pytest.raises(IndexError):
        ds[10]


def test_sample_format_and_union_masks():
    ds = RefShapes2("val", size=160)
    samples = [ds[i] for i in range(40)] + ds.scene_samples(3, 10)
    assert {s.type for s in samples} <= set(TYPES)
    for s in samples:
        assert s.image.shape == (160, 160, 3) and s.image.dtype == np.uint8
        assert s.mask.shape == (160, 160) and s.mask.dtype == np.uint8 and set(np.unique(s.mask)) <= {0, 1}
        targets = s.tags["targets"]
        assert s.exists == bool(targets) == bool(s.mask.any()) and s.tags["n_targets"] == len(targets)
        want = np.isin(s.instances, np.array(targets, np.int64) + 1)
        assert np.array_equal(s.mask > 0, want)  # the union of the named objects, nothing else
        if s.type == "multi" and s.exists:
            assert len(targets) >= 2


# --------------------------------------------------------------------------- meaning


def test_expressions_mean_what_they_say(test_texts):
    """Every expression of 1500 test samples, present or absent, refers to exactly its targets by an
    independent reading of its words and the object centres."""
    ds, texts = test_texts
    checked = Counter()
    for e in texts:
        L = ds.layout(e.tags["scene"])
        check_meaning(e.text, e.type, e.targets, L.objects, ds.size)
        checked[(e.type, bool(e.targets))] += 1
    assert all(checked[(t, x)] >= 40 for t in TYPES for x in (True, False)), checked


def test_scene_samples_mean_what_they_say():
    ds = RefShapes2("train")
    n = 0
    for i in range(60):
        L = ds.layout(i)
        for e in ds.scene_expressions(i, 8):
            check_meaning(e.text, e.type, e.targets, L.objects, ds.size)
            n += 1
    assert n > 300


def test_the_checker_is_not_vacuous():
    objs = [
        Obj("red", "circle", "small", 40, 160, 16),
        Obj("red", "circle", "small", 110, 160, 16),
        Obj("red", "circle", "big", 200, 160, 32),
        Obj("blue", "square", "big", 200, 60, 32),
    ]
    check_meaning("the second circle from the left", "ordinal", (1,), objs, 320)
    check_meaning("the third square from the left", "ordinal", (), objs, 320)
    check_meaning("both green stars", "multi", (), objs, 320)
    check_meaning("the two circles on the left", "multi", (0, 1), objs, 320)
    check_meaning("the big circle below the blue square", "relation", (2,), objs, 320)
    check_meaning("the square right of the big circle", "relation", (), objs, 320)
    for bad in [
        ("the second circle from the left", "ordinal", (2,)),
        ("the third circle from the left", "ordinal", ()),
        ("all the red circles", "multi", (0, 1)),
        ("both red circles", "multi", ()),
        ("the circle above the blue square", "relation", (2,)),
        ("the square above the big circle", "relation", ()),
    ]:
        with pytest.raises(AssertionError):
            check_meaning(*bad, objs, 320)


# --------------------------------------------------------------------------- extent-aware order


def _stack_layout():
    """Circles 0 and 1 one above the other, 10 px apart horizontally (x extents overlap by 50 px); circle 2
    far to the right; a star far to the left (not a circle)."""
    objs = [
        Obj("red", "circle", "big", 100, 100, 30),
        Obj("red", "circle", "big", 110, 220, 30),
        Obj("blue", "circle", "small", 250, 160, 16),
        Obj("green", "star", "small", 30, 280, 16),
    ]
    return layout_objects(objs, [0.0] * 4, 320)


def test_ordinals_and_positions_need_extents_that_do_not_overlap():
    L = _stack_layout()
    got = Counter()
    for seed in range(300):
        rng = np.random.default_rng(seed)
        for k in (0, 1):
            fr = {"form": "s", "dir": "right", "k": k, "pos": "end" if k == 0 else "interior", "t": 0}
            res = _real_ordinal(L, fr, True, rng)
            if res is not None:
                got[(k, res[1])] += 1
        res = _real_position(L, {"form": "s", "dir": "left", "t": 0}, True, np.random.default_rng(seed))
        if res is not None:
            got[("left", res[1])] += 1
    # "the first circle from the right" is the blue one; "the second" would be 0 or 1, which overlap in x
    assert got[(0, (2,))] > 0 and not [key for key in got if key[0] == 1]
    # "the leftmost circle": 0 and 1 are not clearly ordered; only the star ("the leftmost star") is left
    assert not [key for key in got if key[0] == "left" and key[1] != (3,)]


# --------------------------------------------------------------------------- proportions


def test_stated_proportions(test_texts):
    _, texts = test_texts
    by = {t: [e for e in texts if e.type == t] for t in TYPES}
    present = {t: [e for e in v if e.targets] for t, v in by.items()}
    # ordinals: interior about as often as ends
    pos = Counter(e.tags["ordinal_pos"] for e in present["ordinal"])
    assert 0.4 <= pos["interior"] / sum(pos.values()) <= 0.6, pos
    # position / relation: the noun phrase alone is ambiguous for most; unique ones are tagged
    for t in ("position", "relation"):
        uniq = np.mean([e.tags["unique"] for e in present[t]])
        assert uniq <= 0.2, (t, uniq)
    # relations in the stated proportions ("between" 20 %)
    rel = Counter(e.tags["relation"] for e in by["relation"])
    for r, w in RELATION_WEIGHTS.items():
        assert abs(rel[r] / len(by["relation"]) - w) < 0.06, rel
    # every type names nothing at the configured rate, for several reasons
    for t, v in by.items():
        assert abs(np.mean([not e.targets for e in v]) - 0.5) < 0.07, t
    why = Counter((e.type, e.tags.get("why")) for e in texts if not e.targets)
    assert why[("ordinal", "count")] >= 15 and why[("relation", "relation")] >= 15 and why[("relation", "anchor")] >= 15
    assert why[("multi", "count")] >= 3
    kinds = Counter(e.tags["kind"] for e in present["multi"])
    assert set(kinds) == {"all", "both", "two"}


def test_scene_samples_keep_the_stated_proportions():
    """Training draws several expressions per fixed scene; strata that fewer scenes admit (interior ordinals,
    "between") are drawn more often so that the returned expressions keep the stated proportions."""
    from ssp_edge.ssp.data.refshapes2 import TYPE_WEIGHTS

    ds = RefShapes2("train")
    ex = [e for i in range(300) for e in ds.scene_expressions(i, 12)]
    types = Counter(e.type for e in ex)
    for t, w in TYPE_WEIGHTS.items():
        assert abs(types[t] / len(ex) - w) < 0.04, types
        assert abs(np.mean([not e.targets for e in ex if e.type == t]) - ds.no_target_rate) < 0.05, t
    present = [e for e in ex if e.targets]
    assert 0.38 <= np.mean([e.tags["ordinal_pos"] == "interior" for e in present if e.type == "ordinal"]) <= 0.62
    rel = Counter(e.tags["relation"] for e in ex if e.type == "relation")
    assert abs(rel["between"] / sum(rel.values()) - RELATION_WEIGHTS["between"]) < 0.05, rel


def test_type_weights_and_no_target_rate():
    ds = RefShapes2("val", type_weights={"ordinal": 1.0, "no_target": 0.0})
    texts = [ds.text_sample(i) for i in range(60)]
    assert {e.type for e in texts} == {"ordinal"} and all(e.targets for e in texts)
    ds = RefShapes2("val", no_target_rate=1.0)
    assert not any(ds.text_sample(i).targets for i in range(30))


# --------------------------------------------------------------------------- backgrounds


def test_background_sets_are_disjoint_between_splits():
    for sets in (bgs.PHOTO_SETS, bgs.TEXTURE_SETS):
        names = [n for v in sets.values() for n in v]
        assert len(names) == len(set(names))
    assert set(bgs.TEXTURES) == {n for v in bgs.TEXTURE_SETS.values() for n in v}
    seen = {}
    for split in ("train", "test"):
        ds = RefShapes2(split, size=96)
        seen[split] = {ds.scene(i).background for i in range(120)}
    assert not seen["train"] & seen["test"], seen
    assert len(seen["train"]) >= 12 and len(seen["test"]) >= 8  # many backgrounds, photos and textures
    assert {n.split(":")[0] for n in seen["test"]} == {"photo", "texture"}


def test_every_background_generator_makes_varied_images():
    for name, fn in bgs.TEXTURES.items():
        a, b = fn(np.random.default_rng(1), 64), fn(np.random.default_rng(2), 64)
        assert a.shape == (64, 64, 3) and a.dtype == np.uint8, name
        assert not np.array_equal(a, b) and a.std() > 1, name
    for family in ("train", "val", "test"):
        img, name = bgs.photo(np.random.default_rng(0), 64, family)
        assert img.shape == (64, 64, 3) and name.split(":")[1] in bgs.PHOTO_SETS[family]


# --------------------------------------------------------------------------- spec, video


def test_data_spec():
    ds = open_data("refshapes2:val", size=128)
    assert isinstance(ds, RefShapes2) and ds.split == "val" and ds.size == 128
    assert open_data("refshapes2:").split == "test"
    with pytest.raises(SSPError, match="split"):
        open_data("refshapes2:holdout")
    with pytest.raises(SSPError, match="refshapes2:SPLIT"):
        open_data("shapes:test")


def test_v2_demo_video(tmp_path):
    import cv2

    from ssp_edge.ssp.data.refshapes2 import render_video

    path = tmp_path / "demo2.mp4"
    objs = render_video(str(path), seed=1, frames=10, fps=10, size=160, n_objects=4)
    assert (objs[0].colour, objs[0].shape) == ("red", "circle") and objs[1].shape == "circle"
    assert sum(o.shape == "circle" for o in objs) == 2
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == 10 and (tmp_path / "demo2.mp4.objects.json").is_file()


def test_eval_rejects_a_bad_v2_split_in_one_line():
    from helpers import assert_one_line_error, run_ssp

    assert_one_line_error(run_ssp("eval", "--data", "refshapes2:holdout", "--limit", "1"), "holdout")


@pytest.mark.slow
def test_eval_json_on_refshapes2_reports_gres_groups(tiny_checkpoint):
    """ssp eval on refshapes2 (tiny random model, 6 samples): the old keys plus bF, multi-target gIoU, per-type
    GRES metrics and per-tag groups (Sample.tags reach the meter)."""
    import json

    from helpers import run_ssp

    r = run_ssp("eval", "--checkpoint", str(tiny_checkpoint), "--data", "refshapes2:test", "--limit", "6", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for k in (
        "n",
        "oIoU",
        "mIoU",
        "gIoU",
        "prec@0.9",
        "N-acc",
        "T-acc",
        "by_type",
        "bF@2px",
        "gIoU_multi_target",
        "multi_target",
        "by_type_gres",
        "by_tag",
    ):
        assert k in out, k
    assert out["n"] == 6 and sum(g["n"] for g in out["by_type_gres"].values()) == 6
    types = {RefShapes2("test").text_sample(i).type for i in range(6)}
    assert set(out["by_type_gres"]) == types
