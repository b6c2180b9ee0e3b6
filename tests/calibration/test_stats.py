"""Calibration statistics against independent references: NumPy maxima and percentiles, and a plain
per-candidate loop of TensorRT's KL-divergence threshold search."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from ssp_edge.calibration.stats import RangeCollector, TensorHistogram, entropy_amax, percentile_amax

RNG = np.random.default_rng(1)


def kl_threshold_loop(hist: np.ndarray, width: float, levels: int = 128, start: int = 128) -> float:
    """The textbook algorithm, one candidate at a time (as in TensorRT's 8-bit inference slides)."""
    h = hist.astype(np.float64).copy()
    h[0] = h[1]
    best, best_i = np.inf, len(h)
    for i in range(start, len(h) + 1):
        p = h[:i].copy()
        p[-1] += h[i:].sum()
        level = (np.arange(i) * levels) // i  # bin j -> quantization level floor(j * levels / i)
        nz = h[:i] > 0
        per_level = np.bincount(level, weights=h[:i], minlength=levels)
        nonempty = np.bincount(level, weights=nz, minlength=levels)
        q = np.where(nz, per_level[level] / np.maximum(nonempty[level], 1), 0.0)
        if q.sum() == 0:
            continue
        p, q = p / p.sum(), q / q.sum()
        q = np.where((q == 0) & (p > 0), 1e-4, q)  # smoothing where q = 0 under p > 0
        m = p > 0
        kl = float(np.sum(p[m] * np.log(p[m] / q[m])))
        if kl <= best:
            best, best_i = kl, i
    return best_i * width


@pytest.mark.parametrize(
    "x",
    [
        RNG.normal(size=60000),
        np.maximum(RNG.normal(size=60000), 0),
        RNG.standard_t(3, size=60000),
        RNG.laplace(size=60000),
    ],
)
def test_entropy_threshold_equals_the_loop(x):
    h = TensorHistogram()
    h.update(x.astype(np.float32))
    got = entropy_amax(h.hist, h.width)
    assert got == pytest.approx(kl_threshold_loop(h.hist, h.width), rel=1e-9)
    assert 0 < got <= h.hist.size * h.width


def test_entropy_clips_rare_outliers():
    x = np.concatenate([RNG.normal(size=50000), [80.0, -75.0]]).astype(np.float32)
    h = TensorHistogram()
    h.update(x)
    assert h.amax_for("minmax") == pytest.approx(80.0)
    amax = h.amax_for("entropy")
    assert amax < 10  # the two outliers are not worth 8x coarser steps
    assert amax == pytest.approx(kl_threshold_loop(h.hist, h.width), rel=1e-9)


def test_histogram_grows_with_later_larger_values():
    h = TensorHistogram()
    parts = [RNG.normal(size=20000).astype(np.float32) * s for s in (1.0, 3.0, 0.5, 12.0)]
    for p in parts:
        h.update(p)
    allx = np.abs(np.concatenate(parts))
    assert h.amax == pytest.approx(float(allx.max()))
    assert h.hist.sum() == allx.size  # small tensors are binned whole
    assert h.amax_for("percentile", 99.0) == pytest.approx(float(np.percentile(allx, 99.0)), abs=2 * h.width)
    assert percentile_amax(h.hist, h.width, 100.0) >= h.amax - h.width


def test_non_finite_values_are_ignored():
    h = TensorHistogram()
    h.update(np.array([1.0, -2.0, np.inf, np.nan, 0.5], np.float32))
    assert h.amax == 2.0


def test_collector_amax_equals_numpy_on_every_tensor():
    w = RNG.normal(size=(6, 4)).astype(np.float32)
    g = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Sigmoid", ["r"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        [numpy_helper.from_array(w, "w")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    col = RangeCollector(m, ["x", "h", "r", "y"])
    xs = [RNG.normal(size=(n, 6)).astype(np.float32) * (i + 1) for i, n in enumerate((3, 7, 2))]
    for x in xs:
        out = col.run({"x": x})
        np.testing.assert_allclose(out["y"], 1 / (1 + np.exp(-np.maximum(x @ w, 0))), rtol=1e-5)
    X = np.concatenate(xs)
    want = {"x": X, "h": X @ w, "r": np.maximum(X @ w, 0), "y": 1 / (1 + np.exp(-np.maximum(X @ w, 0)))}
    got = col.amax("minmax")
    for k, v in want.items():
        assert got[k] == pytest.approx(float(np.abs(v).max()), rel=1e-5), k
    assert col.runs == 3
