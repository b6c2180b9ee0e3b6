"""The `ssp` dispatcher: subcommands from entry points, one-line errors for bad input."""

from __future__ import annotations

import json

import pytest
from helpers import assert_one_line_error, run_ssp


def test_help_lists_registered_subcommands():
    r = run_ssp("--help")
    assert r.returncode == 0
    for cmd in ("train", "eval", "summary"):
        assert cmd in r.stdout


def test_unknown_config_is_one_line():
    assert_one_line_error(run_ssp("train", "--config", "ssp_huge", "--out", "/tmp/none"), "ssp_huge", "ssp_lite")


def test_unknown_backbone_is_one_line():
    assert_one_line_error(
        run_ssp("summary", "--config", "ssp_lite", "--set", "backbone=resnet9", "--no-forward"),
        "resnet9",
        "efficientnet_lite0",
    )


def test_missing_checkpoint_is_one_line():
    assert_one_line_error(run_ssp("eval", "--checkpoint", "no_such_ckpt", "--limit", "1"), "no_such_ckpt")


def test_corrupt_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    assert_one_line_error(run_ssp("eval", "--checkpoint", str(bad), "--limit", "1"), "bad.safetensors")


def test_refcoco_root_with_missing_files_is_one_line(tmp_path, tiny_checkpoint):
    (tmp_path / "refcoco").mkdir()
    r = run_ssp(
        "eval", "--checkpoint", str(tiny_checkpoint), "--data", f"refcoco:{tmp_path}:refcoco:unc:val", "--limit", "1"
    )
    assert_one_line_error(r, "refs(unc).p")


def test_malformed_data_spec_is_one_line():
    assert_one_line_error(run_ssp("eval", "--data", "coco:/x", "--limit", "1"), "coco:/x")


@pytest.mark.slow
def test_eval_json_on_a_small_checkpoint(tiny_checkpoint):
    """--json prints exactly one JSON object with the documented keys (tiny random model, 4 samples)."""
    r = run_ssp("eval", "--checkpoint", str(tiny_checkpoint), "--data", "refshapes:test", "--limit", "4", "--json")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    for k in (
        "n",
        "oIoU",
        "mIoU",
        "prec@0.5",
        "prec@0.6",
        "prec@0.7",
        "prec@0.8",
        "prec@0.9",
        "N-acc",
        "T-acc",
        "by_type",
    ):
        assert k in out
    assert out["n"] == 4
