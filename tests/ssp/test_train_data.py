"""Training data: gRefCOCO union masks / no-target refs, letterboxed units from photos of several sizes,
augmentation (flip swaps left/right, the zoom keeps the target), and the batch sampler's split over
processes (W processes x B images = one process x W*B images)."""

from __future__ import annotations

import numpy as np
import pytest

from ssp_edge.sdk.preprocess import letterbox
from ssp_edge.ssp.data.augment import AugmentParams, swap_left_right, zoom_shift
from ssp_edge.ssp.data.grefcoco import GRefCOCO
from ssp_edge.ssp.data.refshapes import RefShapes
from ssp_edge.ssp.data.spec import default_val_spec, open_data
from ssp_edge.ssp.data.train_data import StepBatches, TrainUnits, collate_units, has_no_target
from ssp_edge.ssp.errors import SSPError

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def test_grefcoco_masks_are_the_union_of_the_referred_instances(grefer_root):
    ds = open_data(f"grefcoco:{grefer_root}:train")
    assert isinstance(ds, GRefCOCO) and ds.has_no_target and has_no_target(ds)
    by_type = {}
    for i in range(len(ds)):
        s = ds[i]
        by_type.setdefault(s.type, []).append(s)
    assert set(by_type) == {"single", "multi", "no_target"}
    for s in by_type["no_target"]:
        assert not s.exists and s.mask.sum() == 0
    # image 1 is 48x64: boxes x 5..27 and 35..59, rows 10..38 (conftest geometry, pixel-centre rule)
    multi = next(s for s in by_type["multi"] if s.image.shape[:2] == (48, 64))
    ref = np.zeros((48, 64), np.uint8)
    ref[10:38, 5:27] = 1
    ref[10:38, 35:59] = 1
    assert np.array_equal(multi.mask, ref)
    single = next(s for s in by_type["single"] if s.image.shape[:2] == (48, 64))
    assert single.exists and single.mask.sum() == 28 * 22


def test_grefcoco_spec_errors(tmp_path, grefer_root):
    with pytest.raises(SSPError, match="grefcoco:ROOT:SPLIT"):
        open_data("grefcoco:onlyroot")
    with pytest.raises(SSPError, match="gRefCOCO folder .* not found"):
        open_data(f"grefcoco:{tmp_path}:train")
    with pytest.raises(SSPError, match="splits present: train, val"):
        open_data(f"grefcoco:{grefer_root}:testA")
    assert default_val_spec(f"grefcoco:{grefer_root}:train") == f"grefcoco:{grefer_root}:val"
    assert default_val_spec("refcoco:/d/refer:refcoco+:unc:train") == "refcoco:/d/refer:refcoco+:unc:val"
    assert default_val_spec("refshapes:train") == "refshapes:val"


def test_units_are_letterboxed_from_images_of_several_sizes(refer_root):
    ds = open_data(f"refcoco:{refer_root}:refcoco:unc:train")
    assert not has_no_target(ds)
    units = TrainUnits(ds, 64, MEAN, k=2, augment=None)
    shapes = set()
    for i in range(len(units)):
        ref = ds.load_ref(i)
        shapes.add(ref.image.shape[:2])
        u = units[(i, 0)]
        assert u.image.shape == (64, 64, 3) and u.masks.shape == (len(u.expressions), 64, 64)
        assert len(u.expressions) == min(2, len(ref.sentences)) and set(u.expressions) <= set(ref.sentences)
        want, _ = letterbox(ref.image, 64, (128, 128, 128))  # the SDK's letterbox, pad = mean 0.5
        assert np.array_equal(u.image, want)
        scaled = ref.mask.sum() * (64 / max(ref.image.shape[:2])) ** 2
        assert abs(int(u.masks[0].sum()) - scaled) < 0.15 * u.masks[0].sum()
    assert len(shapes) >= 3
    b = collate_units([units[(i, 0)] for i in range(4)], MEAN, STD)
    assert b["image"].shape == (4, 3, 64, 64) and b["mask"].shape[1:] == (1, 64, 64)
    assert b["index"].tolist() == [j for j in range(4) for _ in range(2)]


def test_flip_swaps_left_and_right_words():
    assert swap_left_right("the man on the left") == "the man on the right"
    assert swap_left_right("Leftmost cup, right of the plate") == "Rightmost cup, left of the plate"
    assert swap_left_right("bright leftover") == "bright leftover"


def test_augmented_units_flip_consistently(refer_root):
    ds = open_data(f"refcoco:{refer_root}:refcoco:unc:train")
    plain = TrainUnits(ds, 64, MEAN, k=3, augment=None)
    flip = TrainUnits(ds, 64, MEAN, k=3, augment=AugmentParams(scale=0.0, color=0.0, flip=1.0))
    for i in range(4):
        a, b = plain[(i, 0)], flip[(i, 0)]
        assert np.array_equal(b.image, a.image[:, ::-1]) and np.array_equal(b.masks[0], a.masks[0][:, ::-1])
        assert sorted(b.expressions) == sorted(swap_left_right(t) for t in a.expressions)
    # the same key gives the same unit (any worker / process), another epoch another draw
    aug = TrainUnits(ds, 64, MEAN, k=2, augment=AugmentParams())
    assert np.array_equal(aug[(1, 0)].image, aug[(1, 0)].image)
    assert not all(np.array_equal(aug[(i, 0)].image, aug[(i, 1)].image) for i in range(4))


def test_zoom_keeps_the_target_in_view():
    rng = np.random.default_rng(0)
    img = np.full((64, 64, 3), 100, np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[2:20, 40:62] = 1  # near the corner: a zoom must shift to keep it
    for _ in range(30):
        _, m = zoom_shift(img, mask, rng, 0.3, (127, 127, 127))
        ys, xs = np.nonzero(m)
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        assert abs(w / h - 22 / 18) < 0.2, "a cut target would change its aspect ratio"
        assert 0.45 < m.sum() / mask.sum() < 1.75  # zoom^2 with zoom in [0.7, 1.3]


def test_batches_of_w_processes_make_up_one_process_batch():
    one = StepBatches(16, 4, steps=6, seed=3)
    two = [StepBatches(16, 2, steps=6, world=2, rank=r, seed=3) for r in range(2)]
    for step in range(6):
        ref = sorted(k for k in one.keys(step, 0))
        got = sorted(k for s in two for k in s.keys(step, 0))
        assert ref == got
    epochs = [one.keys(s, 0) for s in range(8)]
    seen = [k[0] for keys in epochs[:4] for k in keys]
    assert sorted(seen) == list(range(16)), "one epoch visits every ref once"
    assert [k[0] for k in epochs[4]] != [k[0] for k in epochs[0]], "the next epoch is reshuffled"
    with pytest.raises(SSPError, match="fewer than one global batch"):
        StepBatches(3, 2, steps=1, world=2, rank=0)


def test_refshapes_batches_keep_the_original_scene_indices():
    # the pre-rewrite trainer read scenes (step + seed*10**6) * images_per_batch + j
    s = StepBatches(10**7, 4, steps=3, seed=2, refshapes=True)
    assert [k for k, _ in s.keys(1, 0)] == [(1 + 2 * 10**6) * 4 + j for j in range(4)]
    two = [StepBatches(10**7, 2, steps=3, world=2, rank=r, seed=2, refshapes=True) for r in range(2)]
    assert sorted(k for t in two for k in t.keys(1, 0)) == sorted(s.keys(1, 0))
    assert has_no_target(RefShapes("train", size=64))
