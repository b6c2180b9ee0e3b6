"""`ssp eval --bundle` evaluates what users deploy through the same Segmenter stages as `ssp eval --checkpoint`:
the same JSON keys; on the PyTorch backend the same numbers as the checkpoint, on ONNX Runtime within 0.005 mIoU;
bad combinations are one-line errors."""

from __future__ import annotations

import json

import pytest
from helpers import assert_ok, assert_one_line_error, run_ssp

N = 24


def _eval(*args: str) -> dict:
    r = assert_ok(run_ssp("eval", "--data", "refshapes:test", "--limit", str(N), "--json", *args))
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def checkpoint_eval() -> dict:
    return _eval("--checkpoint", "ssp_lite_refshapes")


@pytest.mark.slow
def test_bundle_on_pytorch_equals_the_checkpoint(lite_bundle, checkpoint_eval):
    got = _eval("--bundle", str(lite_bundle), "--backend", "pytorch")
    assert set(checkpoint_eval) <= set(got) and got["backend"] == "pytorch"
    assert got["checkpoint"] == "ssp_lite_refshapes" and got["thresholds"] == checkpoint_eval["thresholds"]
    for k, v in checkpoint_eval.items():
        if isinstance(v, float):
            assert got[k] == pytest.approx(v, abs=1e-3), k


@pytest.mark.slow
def test_bundle_on_onnxruntime_tracks_the_checkpoint(lite_bundle, checkpoint_eval):
    got = _eval("--bundle", str(lite_bundle), "--backend", "onnxruntime")
    assert set(checkpoint_eval) <= set(got)
    assert got["backend"] == "onnxruntime" and set(got["precisions"].values()) == {"fp32"} and got["n"] == N
    assert got["mIoU"] == pytest.approx(checkpoint_eval["mIoU"], abs=0.005)
    assert got["oIoU"] == pytest.approx(checkpoint_eval["oIoU"], abs=0.005)


def test_backend_options_need_a_bundle():
    assert_one_line_error(
        run_ssp("eval", "--checkpoint", "ssp_lite_refshapes", "--backend", "onnxruntime", "--limit", "1"), "--bundle"
    )


@pytest.mark.slow
def test_int8_on_an_uncalibrated_bundle_says_how(lite_bundle):
    assert_one_line_error(
        run_ssp(
            "eval", "--bundle", str(lite_bundle), "--backend", "onnxruntime", "--precision", "int8", "--limit", "1"
        ),
        "ssp calibrate",
    )
