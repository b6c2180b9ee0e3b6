"""The plugin kernels' per-element math (plugins/*/*.cuh, the same headers nvcc compiles into the CUDA kernels) run
on the CPU through the host harness (plugins/tests/host_harness.cpp, compiled here with a plain C++ compiler) and
compared with the PyTorch reference ops (ssp.models.ops.REFERENCE).

Tolerances: FP32 I/O rtol 2e-5 / atol 2e-6 (float32 accumulation in another order than the reference).
FP16 I/O (half inputs, float32 accumulation, output rounded to nearest even): |out - ref| <= 2^-10 |ref| + 1e-5,
i.e. one fp16 ulp plus float32 summation-order slack, against the reference run in float32 on the same
half-rounded inputs. ReplicationUpsample is one multiply-add per element: the harness (built with
-ffp-contract=off) must match the reference bit for bit in both precisions (the GPU may fuse it into an FMA, which
changes the last float32 bit at most).

test_mutants_are_caught rebuilds the harness from copies of the headers with one sign or index broken and checks
that the comparison then fails, so these tests cannot pass on wrong math.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO

from ssp_edge.ssp.models import ops

PLUGINS = REPO / "plugins"
HARNESS_SRC = PLUGINS / "tests" / "host_harness.cpp"
CXX = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
REF = ops.REFERENCE

pytestmark = pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++ / $CXX) to build the host harness")

# the cases and tolerance benchmarks/gpu_check.py runs on a GPU too: one file
CASES = json.loads((PLUGINS / "tests" / "kernel_cases.json").read_text())
FP32_TOL = CASES["fp32_tol"]


def _compile(src_root: Path, out: Path) -> Path:
    cmd = [
        CXX,
        "-std=c++17",
        "-O2",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-ffp-contract=off",
        str(src_root / "tests" / "host_harness.cpp"),
        "-o",
        str(out),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"host harness did not compile:\n{' '.join(cmd)}\n{r.stderr}"
    return out


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Path:
    return _compile(PLUGINS, tmp_path_factory.mktemp("harness") / "host_harness")


class Runner:
    def __init__(self, exe: Path, work: Path):
        self.exe, self.work = exe, work

    def __call__(self, op: str, dtype: str, params: tuple, inputs: list[np.ndarray], out_shape: tuple) -> np.ndarray:
        np_dtype = np.float32 if dtype == "f32" else np.float16
        paths = []
        for i, a in enumerate(inputs):
            p = self.work / f"in{i}.bin"
            np.ascontiguousarray(a, dtype=np_dtype).tofile(p)
            paths.append(str(p))
        out = self.work / "out.bin"
        r = subprocess.run(
            [str(self.exe), op, dtype, *map(str, params), *paths, str(out)], capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 0, r.stderr
        return np.fromfile(out, dtype=np_dtype).reshape(out_shape)


@pytest.fixture
def run(harness, tmp_path) -> Runner:
    return Runner(harness, tmp_path)


def _softmax_q(rng, b, hh, ww) -> np.ndarray:
    logits = torch.from_numpy(rng.standard_normal((b, 9, hh, ww)).astype(np.float32) * 2)
    return torch.softmax(logits, dim=1).numpy()


def _ref(name: str, *arrays: np.ndarray, **kw) -> np.ndarray:
    return REF[name](*(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in arrays), **kw).numpy()


def _check_fp16(out: np.ndarray, ref: np.ndarray) -> None:
    out32 = out.astype(np.float32)
    bound = np.abs(ref) * 2.0**-10 + 1e-5
    bad = np.abs(out32 - ref) > bound
    assert not bad.any(), (
        f"{bad.sum()} of {bad.size} fp16 outputs off; worst |diff| "
        f"{np.abs(out32 - ref).max():.3g} at {np.unravel_index(np.argmax(np.abs(out32 - ref)), ref.shape)}"
    )


AGG_SHAPES = [tuple(c) for c in CASES["aggregate"]]  # (B, C, H, W, cell)
PROP_SHAPES = [tuple(c) for c in CASES["propagate"]]  # (B, C, h, w, cell)
UPS_SHAPES = [tuple(c) for c in CASES["upsample"]]  # (B, C, h, w)


@pytest.mark.parametrize("shape", AGG_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_aggregate_fp32(run, shape):
    b, c, hh, ww, cell = shape
    rng = np.random.default_rng(hash(shape) % 2**32)
    x = rng.standard_normal((b, c, hh, ww)).astype(np.float32)
    q = _softmax_q(rng, b, hh, ww)
    out = run("aggregate", "f32", (b, c, hh, ww, cell, "1e-8"), [x, q], (b, c, hh // cell, ww // cell))
    np.testing.assert_allclose(out, _ref("superpixel_aggregate", x, q, cell=cell, eps=1e-8), **FP32_TOL)


@pytest.mark.parametrize("k", range(9))
def test_aggregate_each_neighbour_direction(run, k):
    """Q one-hot on neighbour k: cell (i, j) gets the mean of X over cell (i - dy, j - dx), 0 where that is outside."""
    b, c, hh, ww, cell = 1, 2, 12, 9, 3
    x = np.arange(b * c * hh * ww, dtype=np.float32).reshape(b, c, hh, ww) / 10
    q = np.zeros((b, 9, hh, ww), np.float32)
    q[:, k] = 1
    out = run("aggregate", "f32", (b, c, hh, ww, cell, "1e-8"), [x, q], (b, c, hh // cell, ww // cell))
    ref = _ref("superpixel_aggregate", x, q, cell=cell, eps=1e-8)
    np.testing.assert_allclose(out, ref, **FP32_TOL)
    dy, dx = ops.NEIGHBOURS[k]
    h, w = hh // cell, ww // cell
    empty = [(i, j) for i in range(h) for j in range(w) if not (0 <= i - dy < h and 0 <= j - dx < w)]
    assert all(out[0, 0, i, j] == 0 for i, j in empty)
    assert len(empty) < h * w  # some cells do receive mass


@pytest.mark.parametrize("eps", [0.0, 1e-8, 0.5])
def test_aggregate_eps_and_empty_cells(run, eps):
    """eps is added to the denominator; a cell with no mass gives 0 (with eps > 0)."""
    b, c, hh, ww, cell = 2, 3, 8, 8, 2
    rng = np.random.default_rng(7)
    x = rng.standard_normal((b, c, hh, ww)).astype(np.float32)
    q = _softmax_q(rng, b, hh, ww)
    if eps > 0:
        q[0] = 0  # image 0: no association mass at all -> Z = 0 / (0 + eps) = 0
    out = run("aggregate", "f32", (b, c, hh, ww, cell, repr(eps)), [x, q], (b, c, hh // cell, ww // cell))
    ref = _ref("superpixel_aggregate", x, q, cell=cell, eps=eps)
    np.testing.assert_allclose(out, ref, **FP32_TOL)
    if eps > 0:
        assert not out[0].any()


@pytest.mark.parametrize(
    "shape",
    PROP_SHAPES,
    ids=lambda s: "x".join(map(str, s)),
)
def test_propagate_fp32(run, shape):
    b, c, h, w, cell = shape
    rng = np.random.default_rng(hash(shape) % 2**32)
    z = rng.standard_normal((b, c, h, w)).astype(np.float32)
    q = _softmax_q(rng, b, h * cell, w * cell)
    out = run("propagate", "f32", (b, c, h, w, cell), [z, q], (b, c, h * cell, w * cell))
    np.testing.assert_allclose(out, _ref("superpixel_propagate", z, q, cell=cell), **FP32_TOL)


@pytest.mark.parametrize("cell", [3, 8])
def test_fp16_cell8_path(run, cell):
    """Half I/O at v2's cell 8 (64 pixels per cell summed in float32) and at cell 3, both ops."""
    rng = np.random.default_rng(cell)
    b, c, h, w = 2, 4, 3, 2
    x = rng.standard_normal((b, c, h * cell, w * cell)).astype(np.float16)
    q = _softmax_q(rng, b, h * cell, w * cell).astype(np.float16)
    out = run("aggregate", "f16", (b, c, h * cell, w * cell, cell, "1e-8"), [x, q], (b, c, h, w))
    _check_fp16(out, _ref("superpixel_aggregate", x, q, cell=cell, eps=1e-8))
    z = (rng.standard_normal((b, c, h, w)) * 4).astype(np.float16)
    out = run("propagate", "f16", (b, c, h, w, cell), [z, q], (b, c, h * cell, w * cell))
    _check_fp16(out, _ref("superpixel_propagate", z, q, cell=cell))


@pytest.mark.parametrize("k", range(9))
def test_propagate_each_neighbour_direction(run, k):
    """Q one-hot on neighbour k: pixel p gets Z[cell(p) + (dy, dx)], 0 where that cell is outside."""
    b, c, h, w, cell = 1, 2, 3, 4, 2
    z = np.arange(1, b * c * h * w + 1, dtype=np.float32).reshape(b, c, h, w)
    q = np.zeros((b, 9, h * cell, w * cell), np.float32)
    q[:, k] = 1
    out = run("propagate", "f32", (b, c, h, w, cell), [z, q], (b, c, h * cell, w * cell))
    np.testing.assert_array_equal(out, _ref("superpixel_propagate", z, q, cell=cell))
    dy, dx = ops.NEIGHBOURS[k]
    for y in range(h * cell):
        for x in range(w * cell):
            i, j = y // cell + dy, x // cell + dx
            expect = z[0, 1, i, j] if 0 <= i < h and 0 <= j < w else 0
            assert out[0, 1, y, x] == expect


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("shape", UPS_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_replication_upsample_fp32(run, shape, scale):
    b, c, h, w = shape
    s = scale
    rng = np.random.default_rng(hash((shape, s)) % 2**32)
    x = rng.standard_normal((b, c, h, w)).astype(np.float32)
    g = rng.random((b, 1, h * s, w * s)).astype(np.float32)
    y = rng.standard_normal((b, c * s * s, h, w)).astype(np.float32)
    out = run("upsample", "f32", (b, c, h, w, s), [x, g, y], (b, c, h * s, w * s))
    np.testing.assert_array_equal(out, _ref("replication_upsample", x, g, y, scale=s))


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_replication_upsample_index_layout(run, scale):
    """Every output element names its sources: X, G and Y hold distinct integers, G = 0 or 1 selects the term."""
    b, c, h, w, s = 2, 3, 2, 3, scale
    x = np.arange(b * c * h * w, dtype=np.float32).reshape(b, c, h, w) + 1000
    y = np.arange(b * c * s * s * h * w, dtype=np.float32).reshape(b, c * s * s, h, w)
    for gate in (0.0, 1.0):
        g = np.full((b, 1, h * s, w * s), gate, np.float32)
        out = run("upsample", "f32", (b, c, h, w, s), [x, g, y], (b, c, h * s, w * s))
        for bb, cc, yy, xx in [(0, 0, 0, 0), (1, 2, h * s - 1, w * s - 1), (1, 1, s - 1, 1), (0, 2, s, w * s - 2)]:
            expect = gate * x[bb, cc, yy // s, xx // s] + y[bb, cc * s * s + (yy % s) * s + xx % s, yy // s, xx // s]
            assert out[bb, cc, yy, xx] == expect


@pytest.mark.parametrize("op", ["aggregate", "propagate", "upsample"])
def test_fp16_path(run, op):
    """Half I/O: inputs and output in binary16, float32 inside (tolerance: module docstring)."""
    rng = np.random.default_rng(3)
    if op == "aggregate":
        b, c, hh, ww, cell = 2, 5, 12, 9, 3
        x = rng.standard_normal((b, c, hh, ww)).astype(np.float16)
        q = _softmax_q(rng, b, hh, ww).astype(np.float16)
        out = run(op, "f16", (b, c, hh, ww, cell, "1e-8"), [x, q], (b, c, hh // cell, ww // cell))
        ref = _ref("superpixel_aggregate", x, q, cell=cell, eps=1e-8)
        _check_fp16(out, ref)
    elif op == "propagate":
        b, c, h, w, cell = 2, 4, 3, 5, 4
        z = (rng.standard_normal((b, c, h, w)) * 4).astype(np.float16)
        q = _softmax_q(rng, b, h * cell, w * cell).astype(np.float16)
        out = run(op, "f16", (b, c, h, w, cell), [z, q], (b, c, h * cell, w * cell))
        _check_fp16(out, _ref("superpixel_propagate", z, q, cell=cell))
    else:
        for s in (2, 4, 8):
            b, c, h, w = 2, 3, 3, 4
            x = (rng.standard_normal((b, c, h, w)) * 8).astype(np.float16)
            g = rng.random((b, 1, h * s, w * s)).astype(np.float16)
            y = rng.standard_normal((b, c * s * s, h, w)).astype(np.float16)
            out = run(op, "f16", (b, c, h, w, s), [x, g, y], (b, c, h * s, w * s))
            ref = _ref("replication_upsample", x, g, y, scale=s)
            np.testing.assert_array_equal(out, ref.astype(np.float16))  # one float32 mul + add, one rounding


def test_half_conversion_matches_ieee(run, tmp_path):
    """float32 -> binary16 is round-to-nearest-even (numpy's astype) on every tricky class of input; binary16 ->
    float32 is exact for all 65536 bit patterns."""
    rng = np.random.default_rng(11)
    special = np.array(
        [
            0.0,
            -0.0,
            1.0,
            -1.0,
            65504.0,
            65519.99,
            65520.0,
            -65520.0,
            1e6,
            np.inf,
            -np.inf,
            2.0**-14,
            2.0**-24,
            2.0**-25,
            2.0**-25 * 1.0000001,
            2.0**-26,
            3 * 2.0**-25,
            1e-10,
            2.0**-14 - 2.0**-25,
            1 + 2.0**-11,
            1 + 3 * 2.0**-11,
            1 + 2.0**-11 + 2.0**-20,
            2049.0,
            2051.0,
        ],
        dtype=np.float32,
    )
    # exact ties between two halves (round half to even) across the normal and subnormal ranges
    halves = rng.integers(0, 0x7BFF, 2000).astype(np.uint16).view(np.float16).astype(np.float32)
    nxt = (halves.astype(np.float16).view(np.uint16) + 1).view(np.float16).astype(np.float32)
    ties = ((halves.astype(np.float64) + nxt) / 2).astype(np.float32)
    wide = (rng.standard_normal(20000) * np.exp2(rng.uniform(-30, 18, 20000))).astype(np.float32)
    values = np.concatenate([special, -special, ties, wide, rng.standard_normal(5000).astype(np.float32)])
    src, dst = tmp_path / "f.bin", tmp_path / "h.bin"
    values.tofile(src)
    r = subprocess.run([str(run.exe), "f2h", str(src), str(dst)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = np.fromfile(dst, dtype=np.uint16)
    with np.errstate(over="ignore"):
        want = values.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(got, want)
    nan = np.array([np.nan, -np.nan], np.float32)
    nan.tofile(src)
    subprocess.run([str(run.exe), "f2h", str(src), str(dst)], check=True)
    assert np.isnan(np.fromfile(dst, dtype=np.uint16).view(np.float16)).all()

    every = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    every.tofile(src)
    subprocess.run([str(run.exe), "h2f", str(src), str(dst)], check=True)
    back = np.fromfile(dst, dtype=np.float32)
    want_f = every.view(np.float16).astype(np.float32)
    finite = ~np.isnan(want_f)
    np.testing.assert_array_equal(back[finite].view(np.uint32), want_f[finite].view(np.uint32))
    assert np.isnan(back[~finite]).all()


def test_bad_arguments_are_refused(run, tmp_path):
    x = np.zeros((1, 1, 4, 4), np.float32)
    q = np.zeros((1, 9, 4, 4), np.float32)
    for params, why in [
        ((1, 1, 4, 4, 3, "1e-8"), "multiples of cell"),
        ((1, 1, 4, 4, 0, "1e-8"), "cell >= 1"),
        ((1, 1, 4, 4, 2, "-1"), "eps >= 0"),
        ((1, 2, 4, 4, 2, "1e-8"), "expected"),
    ]:
        with pytest.raises(AssertionError, match=why):
            run("aggregate", "f32", params, [x, q], (1, 1, 2, 2))
    with pytest.raises(AssertionError, match="scale in"):
        run("upsample", "f32", (1, 1, 1, 1, 3), [x[:, :, :1, :1], x, x], (1, 1, 3, 3))


# (file, original, broken): each breaks one op's math; the comparisons above must notice
MUTANTS = [
    ("superpixel_aggregate/superpixel_aggregate.cuh", "i - neighbourDy(k)", "i + neighbourDy(k)"),
    ("superpixel_aggregate/superpixel_aggregate.cuh", "return num / (den + eps);", "return num / (den + eps + 1e-3F);"),
    ("superpixel_propagate/superpixel_propagate.cuh", "cj + neighbourDx(k)", "cj - neighbourDx(k)"),
    ("replication_upsample/replication_upsample.cuh", "yp[(r * S + u) * hw]", "yp[(u * S + r) * hw]"),
    ("common/ssp_hd.cuh", "if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))", "if (rem >= 0x1000u)"),
]


@pytest.mark.slow
def test_mutants_are_caught(tmp_path):
    """Break one sign / index at a time in a copy of the headers: the reference comparison must fail."""
    for n, (rel, good, bad) in enumerate(MUTANTS):
        root = tmp_path / f"m{n}"
        shutil.copytree(PLUGINS, root, ignore=shutil.ignore_patterns("*.cu", "*.cpp", "*.h", "CMakeLists.txt", "*.md"))
        shutil.copy(HARNESS_SRC, root / "tests" / "host_harness.cpp")
        src = (root / rel).read_text()
        assert good in src, f"mutant {n}: {good!r} no longer in {rel}; update MUTANTS"
        (root / rel).write_text(src.replace(good, bad))
        run = Runner(_compile(root, root / "harness"), root)
        rng = np.random.default_rng(n)
        with pytest.raises(AssertionError):
            if "aggregate" in rel:
                b, c, hh, ww, cell = 2, 3, 12, 9, 3
                x = rng.standard_normal((b, c, hh, ww)).astype(np.float32)
                q = _softmax_q(rng, b, hh, ww)
                out = run("aggregate", "f32", (b, c, hh, ww, cell, "1e-8"), [x, q], (b, c, 4, 3))
                np.testing.assert_allclose(out, _ref("superpixel_aggregate", x, q, cell=cell, eps=1e-8), **FP32_TOL)
            elif "propagate" in rel:
                b, c, h, w, cell = 2, 3, 3, 4, 2
                z = rng.standard_normal((b, c, h, w)).astype(np.float32)
                q = _softmax_q(rng, b, h * cell, w * cell)
                out = run("propagate", "f32", (b, c, h, w, cell), [z, q], (b, c, 6, 8))
                np.testing.assert_allclose(out, _ref("superpixel_propagate", z, q, cell=cell), **FP32_TOL)
            elif "replication" in rel:
                b, c, h, w, s = 1, 2, 2, 3, 4
                x, y = rng.standard_normal((b, c, h, w)), rng.standard_normal((b, c * s * s, h, w))
                g = rng.random((b, 1, h * s, w * s))
                out = run("upsample", "f32", (b, c, h, w, s), [x, g, y], (b, c, h * s, w * s))
                np.testing.assert_array_equal(out, _ref("replication_upsample", x, g, y, scale=s))
            else:  # float -> half rounding: exact ties must go to the even neighbour
                ties = (np.arange(2048, 4096, 2, dtype=np.float32) + 1).astype(np.float32)
                src, dst = root / "f.bin", root / "h.bin"
                ties.tofile(src)
                subprocess.run([str(run.exe), "f2h", str(src), str(dst)], check=True)
                np.testing.assert_array_equal(
                    np.fromfile(dst, dtype=np.uint16), ties.astype(np.float16).view(np.uint16)
                )
