"""SegMeter on hand-computed cases: oIoU vs mIoU, Prec@X, N-acc / T-acc / gIoU on no-target samples, by_type;
the boundary F-score (hand-computed squares and a brute-force second implementation), multi-target gIoU,
GRES metrics per type and per tag."""

from __future__ import annotations

import numpy as np
import pytest

from ssp_edge.ssp.metrics import THRESHOLDS, SegMeter, boundary_f, iou, mask_boundary

SHAPE = (20, 20)


def _first(n: int, start: int = 0) -> np.ndarray:
    """A (20, 20) uint8 mask whose flattened pixels start..start+n-1 are set."""
    m = np.zeros(SHAPE[0] * SHAPE[1], np.uint8)
    m[start : start + n] = 1
    return m.reshape(SHAPE)


# (pred, gt, I, U) with hand-computed intersection / union
CASES = [
    (_first(2), _first(4), 2, 4),  # IoU 0.5 (exactly at the first threshold)
    (_first(100), _first(100), 100, 100),  # IoU 1
    (_first(10, 10), _first(10), 0, 20),  # disjoint: IoU 0
    (_first(3), _first(4), 3, 4),  # IoU 0.75
    (_first(17), _first(20), 17, 20),  # IoU 0.85
]


def test_iou_counts():
    for pred, gt, i, u in CASES:
        assert iou(pred, gt) == (i, u)
    assert iou(np.zeros(SHAPE, bool), np.zeros(SHAPE, bool)) == (0, 0)


def test_oiou_is_cumulative_and_differs_from_miou():
    m = SegMeter()
    for pred, gt, _, _ in CASES:
        m.update(pred, gt)
    s = m.summary()
    assert s["n"] == s["n_target"] == 5 and s["n_no_target"] == 0
    assert s["oIoU"] == pytest.approx(122 / 148)  # (2+100+0+3+17) / (4+100+20+4+20)
    assert s["mIoU"] == pytest.approx((0.5 + 1 + 0 + 0.75 + 0.85) / 5)
    assert abs(s["oIoU"] - s["mIoU"]) > 0.1  # the big perfect sample dominates oIoU only
    assert s["gIoU"] == pytest.approx(s["mIoU"])  # no no-target samples: gIoU == mIoU


def test_precision_at_thresholds():
    m = SegMeter()
    for pred, gt, _, _ in CASES:  # IoUs 0.5, 1, 0, 0.75, 0.85
        m.update(pred, gt)
    s = m.summary()
    assert THRESHOLDS == (0.5, 0.6, 0.7, 0.8, 0.9)
    assert s["prec@0.5"] == pytest.approx(4 / 5)  # >= is inclusive: 0.5 counts
    assert s["prec@0.6"] == pytest.approx(3 / 5)
    assert s["prec@0.7"] == pytest.approx(3 / 5)
    assert s["prec@0.8"] == pytest.approx(2 / 5)
    assert s["prec@0.9"] == pytest.approx(1 / 5)


def test_no_target_accuracy_and_giou():
    m = SegMeter()
    empty = np.zeros(SHAPE, np.uint8)
    # no-target expressions: an empty prediction is correct
    m.update(empty, empty, exists=False, type="no_target")  # correct
    m.update(empty, empty, type="no_target")  # exists inferred from the empty gt: correct
    m.update(_first(5), empty, exists=False, type="no_target")  # something predicted: wrong
    # target expressions: predicting nothing is a T-acc miss and IoU 0
    m.update(empty, _first(8), type="attribute")  # IoU 0, T miss
    m.update(_first(2), _first(4), type="attribute")  # IoU 0.5, T hit
    s = m.summary()
    assert s["n"] == 5 and s["n_no_target"] == 3 and s["n_target"] == 2
    assert s["N-acc"] == pytest.approx(2 / 3)
    assert s["T-acc"] == pytest.approx(1 / 2)
    # IoU metrics only over the target expressions
    assert s["mIoU"] == pytest.approx(0.25)
    assert s["oIoU"] == pytest.approx(2 / 12)
    assert s["prec@0.5"] == pytest.approx(0.5)
    # gIoU: a correct empty prediction on a no-target expression counts 1, a wrong one 0
    assert s["gIoU"] == pytest.approx((1 + 1 + 0 + 0 + 0.5) / 5)


def test_accuracies_are_none_without_samples_of_that_kind():
    m = SegMeter()
    m.update(_first(2), _first(4))
    s = m.summary()
    assert s["N-acc"] is None and s["T-acc"] == 1.0
    m2 = SegMeter()
    m2.update(np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8), exists=False)
    s2 = m2.summary()
    assert s2["T-acc"] is None and s2["N-acc"] == 1.0
    assert s2["mIoU"] == 0.0 and s2["oIoU"] == 0.0 and s2["gIoU"] == 1.0
    empty = SegMeter().summary()
    assert empty["n"] == 0 and empty["N-acc"] is None and empty["T-acc"] is None


def test_by_type_is_the_mean_iou_per_expression_type():
    m = SegMeter()
    m.update(_first(2), _first(4), type="position")  # 0.5
    m.update(_first(4), _first(4), type="position")  # 1.0
    m.update(_first(3), _first(4), type="relation")  # 0.75
    m.update(_first(10, 10), _first(10), type="ordinal")  # 0.0
    m.update(np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8), exists=False, type="no_target")
    s = m.summary()
    bt = s["by_type"]
    assert bt["position"] == pytest.approx(0.75)
    assert bt["relation"] == pytest.approx(0.75)
    assert bt["ordinal"] == pytest.approx(0.0)
    assert list(k for k in bt if k != "no_target") == sorted(k for k in bt if k != "no_target")
    assert s["mIoU"] == pytest.approx((0.5 + 1 + 0.75 + 0) / 4)


def test_bool_and_uint8_masks_agree():
    a, b = SegMeter(), SegMeter()
    for pred, gt, _, _ in CASES:
        a.update(pred, gt)
        b.update(pred.astype(bool), gt.astype(bool))
    assert a.summary() == b.summary()


# --------------------------------------------------------------------------- boundary F-score


def _square(top: int, left: int, side: int = 6, shape=(12, 12)) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    m[top : top + side, left : left + side] = 1
    return m


def test_mask_boundary_is_the_inner_ring():
    b = mask_boundary(_square(2, 2))
    assert b.sum() == 20  # 6 x 6 square: 36 pixels, 4 x 4 interior
    assert b[2, 2:8].all() and b[7, 2:8].all() and b[2:8, 2].all() and b[2:8, 7].all() and not b[3:7, 3:7].any()
    full = mask_boundary(np.ones((5, 7), bool))  # outside the image counts as outside
    assert full.sum() == 5 * 7 - 3 * 5 and not full[1:4, 1:6].any()
    assert not mask_boundary(np.zeros((4, 4), np.uint8)).any()


def test_boundary_f_on_hand_computed_squares():
    gt, pred = _square(2, 2), _square(2, 5)  # the same 6 x 6 square shifted 3 px to the right
    # tol 2: of the 20 predicted boundary pixels, the top and bottom rows reach gt's within 2 px except at
    # column 10 (3 px from column 7): 5 + 5; the left column (col 5, rows 3-6) is 2 px from gt's right
    # column: 4; the right column (col 10) is 3 px away: 0. P = 14/20; by symmetry R = 14/20; F = 0.7
    assert boundary_f(pred, gt, tol=2) == pytest.approx(0.7)
    # tol 0: only coincident pixels: columns 5-7 of the top and bottom rows: P = R = 6/20
    assert boundary_f(pred, gt, tol=0) == pytest.approx(0.3)
    assert boundary_f(pred, gt, tol=3) == pytest.approx(1.0)  # every pixel is within 3 px
    assert boundary_f(gt, gt) == 1.0
    empty = np.zeros_like(gt)
    assert boundary_f(empty, empty) == 1.0 and boundary_f(empty, gt) == 0.0 and boundary_f(gt, empty) == 0.0
    # precision and recall differ: a prediction that covers gt's top-left corner only (3 x 3)
    small = _square(2, 2, side=3)
    # small's boundary: 8 pixels, all on or within 2 px of gt's boundary (its centre pixel (3, 3) is interior);
    # P = 1. gt boundary pixels within 2 px of small's boundary: row 2 cols 2-6 (5), col 2 rows 3-6 (4): R = 9/20
    assert boundary_f(small, gt) == pytest.approx(2 * 1 * 0.45 / 1.45)


def _boundary_f_brute(pred: np.ndarray, gt: np.ndarray, tol: float) -> float:
    """A second implementation: boundary pixels by explicit 4-neighbour tests, distances by brute force."""

    def boundary(m):
        m = m.astype(bool)
        pad = np.pad(m, 1)
        inner = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
        return np.argwhere(m & ~inner)

    bp, bg = boundary(pred), boundary(gt)
    if len(bp) == 0 or len(bg) == 0:
        return 1.0 if len(bp) == len(bg) else 0.0
    d = np.sqrt(((bp[:, None, :] - bg[None, :, :]) ** 2).sum(-1))
    prec = float((d.min(1) <= tol).mean())
    rec = float((d.min(0) <= tol).mean())
    return 2 * prec * rec / (prec + rec) if prec + rec else 0.0


@pytest.mark.parametrize("seed", range(6))
def test_boundary_f_matches_a_brute_force_implementation(seed):
    import cv2

    rng = np.random.default_rng(seed)
    gt = np.zeros((48, 64), np.uint8)
    pred = np.zeros_like(gt)
    for m in (gt, pred):
        for _ in range(2):
            cv2.circle(m, (int(rng.integers(0, 64)), int(rng.integers(0, 48))), int(rng.integers(3, 16)), 1, -1)
    pred[rng.random(pred.shape) < 0.02] ^= 1  # speckle: isolated boundary pixels
    for tol in (0, 1, 2, 3):
        assert boundary_f(pred, gt, tol=tol) == pytest.approx(_boundary_f_brute(pred, gt, tol)), tol


# --------------------------------------------------------------------------- GRES groups and tags


def test_summary_reports_boundary_f_over_target_expressions():
    m = SegMeter()
    m.update(_square(2, 5), _square(2, 2), type="attribute")  # bF 0.7
    m.update(_square(2, 2), _square(2, 2), type="attribute")  # bF 1
    m.update(np.zeros((12, 12), np.uint8), np.zeros((12, 12), np.uint8), exists=False)  # not counted
    s = m.summary()
    assert s["bF@2px"] == pytest.approx(0.85)
    assert SegMeter(boundary=False).summary()["bF@2px"] is None


def test_per_type_gres_metrics_and_tags():
    m = SegMeter()
    empty = np.zeros(SHAPE, np.uint8)
    # ordinals: an interior one at IoU 0.5, an end one at IoU 1, a no-target one answered wrongly
    m.update(_first(2), _first(4), True, "ordinal", tags={"ordinal_pos": "interior", "template": "x"})
    m.update(_first(4), _first(4), True, "ordinal", tags={"ordinal_pos": "end"})
    m.update(_first(3), empty, False, "ordinal", tags={"why": "count"})
    # positions: trivially unique (IoU 1) vs ambiguous (IoU 0.75); a no-target one answered correctly
    m.update(_first(4), _first(4), True, "position", tags={"unique": True})
    m.update(_first(3), _first(4), True, "position", tags={"unique": False})
    m.update(empty, empty, False, "position", tags={"unique": None})
    # multi-target: IoU 0.85 and 0 (predicted empty); a no-target multi answered correctly
    m.update(_first(17), _first(20), True, "multi", tags={"n_targets": 2, "kind": "both"})
    m.update(empty, _first(20), True, "multi", tags={"n_targets": 3, "kind": "all"})
    m.update(empty, empty, False, "multi", tags={"n_targets": 0, "kind": "all"})
    s = m.summary()
    g = s["by_type_gres"]
    assert set(g) == {"ordinal", "position", "multi"}
    assert g["ordinal"]["n"] == 3 and g["ordinal"]["n_target"] == 2 and g["ordinal"]["n_no_target"] == 1
    assert g["ordinal"]["mIoU"] == pytest.approx(0.75) and g["ordinal"]["N-acc"] == 0.0
    assert g["ordinal"]["gIoU"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert g["position"]["N-acc"] == 1.0 and g["position"]["gIoU"] == pytest.approx((1 + 0.75 + 1) / 3)
    assert g["multi"]["T-acc"] == 0.5 and g["multi"]["prec@0.9"] == 0.0
    t = s["by_tag"]
    assert t["ordinal.ordinal_pos=interior"]["mIoU"] == pytest.approx(0.5)
    assert t["ordinal.ordinal_pos=end"]["mIoU"] == pytest.approx(1.0)
    assert t["ordinal.why=count"]["N-acc"] == 0.0 and t["ordinal.why=count"]["mIoU"] is None
    assert t["position.unique=true"]["mIoU"] == 1.0 and t["position.unique=false"]["mIoU"] == pytest.approx(0.75)
    assert t["multi.kind=all"]["n"] == 2 and t["multi.kind=all"]["gIoU"] == pytest.approx(0.5)
    assert not [k for k in t if "template" in k or "n_targets" in k]  # only the reported tags
    # multi-target gIoU: the expressions with >= 2 targets (their IoUs), not the no-target one
    assert s["gIoU_multi_target"] == pytest.approx(0.85 / 2) and s["multi_target"]["n"] == 2
    # the old keys are unchanged: by_type is mIoU over target expressions
    assert s["by_type"] == {
        "multi": pytest.approx(0.425),
        "ordinal": pytest.approx(0.75),
        "position": pytest.approx(0.875),
    }


def test_multi_type_counts_as_multi_target_without_tags():
    m = SegMeter()
    m.update(_first(3), _first(4), True, "multi")  # IoU 0.75
    m.update(_first(4), _first(4), True, "attribute")
    s = m.summary()
    assert s["gIoU_multi_target"] == pytest.approx(0.75) and s["multi_target"]["n"] == 1
    assert s["by_tag"] == {}
    assert SegMeter().summary()["gIoU_multi_target"] is None


def test_gres_ciou_counts_pixels_predicted_for_no_target_expressions():
    m = SegMeter()
    gt = np.zeros((4, 4), np.uint8)
    gt[:2, :2] = 1  # 4 pixels
    pred = np.zeros((4, 4), np.uint8)
    pred[:2, :3] = 1  # 6 pixels, 4 of them right
    m.update(pred, gt, True)  # I 4, U 6
    m.update(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), False)  # correct empty: adds nothing
    wrong = np.zeros((4, 4), np.uint8)
    wrong[3, :] = 1
    m.update(wrong, np.zeros((4, 4), np.uint8), False)  # 4 pixels on a no-target expression: U += 4
    m.update(np.zeros((4, 4), np.uint8), gt, True)  # target called empty: I 0, U 4
    s = m.summary()
    assert s["cIoU"] == pytest.approx(4 / (6 + 4 + 4))
    assert s["oIoU"] == pytest.approx(4 / (6 + 4))  # unchanged meaning: target expressions only
    assert s["gIoU"] == pytest.approx((4 / 6 + 1 + 0 + 0) / 4)
    assert (s["N-acc"], s["T-acc"]) == (0.5, 0.5)
