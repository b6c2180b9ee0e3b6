"""SegMeter on hand-computed cases: oIoU vs mIoU, Prec@X, N-acc / T-acc / gIoU on no-target samples, by_type."""
from __future__ import annotations

import numpy as np
import pytest

from ssp_edge.ssp.metrics import THRESHOLDS, SegMeter, iou

SHAPE = (20, 20)


def _first(n: int, start: int = 0) -> np.ndarray:
    """A (20, 20) uint8 mask whose flattened pixels start..start+n-1 are set."""
    m = np.zeros(SHAPE[0] * SHAPE[1], np.uint8)
    m[start:start + n] = 1
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
