"""`ssp train` options are generated from TrainOptions (no hand copy); `--set` is validated against SSPConfig
(unknown key: nearest keys; wrong type: the expected type); `--device cuda` without a GPU is one line."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
import torch
from helpers import assert_one_line_error, run_ssp

from ssp_edge.ssp.cli import add_train_args
from ssp_edge.ssp.errors import SSPError
from ssp_edge.ssp.options import TrainOptions, add_option_args, options_from_args, parse_config_overrides
from ssp_edge.ssp.train import resolve_device


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_train_args(p)
    return p


def test_every_option_comes_from_a_dataclass_field_with_its_help():
    p = argparse.ArgumentParser()
    add_option_args(p)
    by_dest = {a.dest: a for a in p._actions if a.dest != "help"}
    cli_fields = [f for f in dataclasses.fields(TrainOptions) if f.metadata.get("cli", True)]
    assert {f.name for f in cli_fields} == set(by_dest)
    for f in cli_fields:
        assert f.metadata["help"], f"{f.name} has no help text"
        assert f.metadata["help"] in by_dest[f.name].help
    text = _parser().format_help()
    for flag in (
        "--images-per-batch",
        "--accum",
        "--amp",
        "--device",
        "--save-every",
        "--keep-best",
        "--no-resume",
        "--time-budget",
        "--ground-only",
        "--layer-decay",
        "--nproc",
    ):
        assert flag in text


def test_parsed_options_round_trip_and_defaults_match_the_dataclass():
    args = _parser().parse_args([])
    assert options_from_args(args) == TrainOptions()
    args = _parser().parse_args(
        [
            "--steps",
            "7",
            "--no-resume",
            "--amp",
            "off",
            "--type-weights",
            '{"attribute": 1}',
            "--time-budget",
            "2.5",
            "--ground-only",
            "--no-bf16",
        ]
    )
    opt = options_from_args(args)
    assert (opt.steps, opt.resume, opt.amp, opt.type_weights, opt.time_budget_min, opt.ground_only) == (
        7,
        False,
        "off",
        {"attribute": 1},
        2.5,
        True,
    )


def test_set_values_are_typed_by_sspconfig():
    got = parse_config_overrides(
        [
            "input_size=256",
            "decoder=bilinear",
            "freeze_text=false",
            "decoder_channels=[8,8,8,8]",
            "backbone_weights=/w/swin",
            'backbone_config={"depths": [1, 1, 1, 1]}',
            "eps=1e-6",
            "text_weights=none",
        ]
    )
    assert got == {
        "input_size": 256,
        "decoder": "bilinear",
        "freeze_text": False,
        "decoder_channels": (8, 8, 8, 8),
        "backbone_weights": "/w/swin",
        "backbone_config": {"depths": [1, 1, 1, 1]},
        "eps": 1e-6,
        "text_weights": None,
    }
    with pytest.raises(SSPError, match="nearest: input_size"):
        parse_config_overrides(["inputsize=3"])
    with pytest.raises(SSPError, match="must be an integer"):
        parse_config_overrides(["dim=1.5"])
    with pytest.raises(SSPError, match="a boolean"):
        parse_config_overrides(["freeze_text=maybe"])
    with pytest.raises(SSPError, match="JSON list of 3 numbers"):
        parse_config_overrides(["mean=[1,2]"])


def test_bad_set_is_one_line_before_torch_work():
    line = assert_one_line_error(run_ssp("train", "--set", "foo=1"), "foo")
    assert "nearest:" in line
    assert_one_line_error(run_ssp("train", "--set", "input_size=abc"), "input_size", "an integer")


def test_cuda_without_a_gpu_is_one_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SSPError, match="no CUDA GPU"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"
    assert_one_line_error(
        run_ssp("train", "--device", "cuda", "--out", str(tmp_path / "r"), "--steps", "1"),
        "--device cuda",
        "no CUDA GPU",
    )
    assert_one_line_error(run_ssp("train", "--amp", "fp16", "--device", "cpu", "--out", str(tmp_path / "r")), "fp16")


def test_type_weights_reach_both_refshapes_generators_and_are_refused_elsewhere():
    """--type-weights sets the training mix of RefShapes v1 and v2 (it was once dropped silently for v2); without it
    v1 trains on its spatial-reasoning mix and v2 on its generator's own; other data refuses it (not ignored)."""
    from ssp_edge.ssp.data.refshapes import RefShapes
    from ssp_edge.ssp.data.refshapes2 import TYPE_WEIGHTS, RefShapes2
    from ssp_edge.ssp.options import V1_TRAIN_TYPE_WEIGHTS
    from ssp_edge.ssp.train import _with_type_mix

    mix = {"ordinal": 3.0, "relation": 1.0, "no_target": 0.4}
    v2 = _with_type_mix(RefShapes2("val", size=64), TrainOptions(type_weights=mix), 64)
    assert v2.types == ["relation", "ordinal"] and v2.no_target_rate == 0.4
    assert dict(zip(v2.types, v2.type_p.tolist())) == pytest.approx({"relation": 0.25, "ordinal": 0.75})
    assert {v2[i].type for i in range(30)} == {"relation", "ordinal"}  # what the generator then draws
    plain = RefShapes2("val", size=64)
    assert _with_type_mix(plain, TrainOptions(), 64) is plain
    assert set(plain.types) == {t for t, w in TYPE_WEIGHTS.items() if w > 0} and plain.no_target_rate == 0.25
    v1 = _with_type_mix(RefShapes("val", size=64), TrainOptions(), 64)
    want = {t: w for t, w in V1_TRAIN_TYPE_WEIGHTS.items() if t in v1.types}
    total = sum(want.values())
    assert dict(zip(v1.types, v1.type_p.tolist())) == pytest.approx({t: w / total for t, w in want.items()})
    with pytest.raises(SSPError, match="unknown RefShapes v2 expression types"):
        _with_type_mix(plain, TrainOptions(type_weights={"colour": 1.0}), 64)
    with pytest.raises(SSPError, match="drop --type-weights"):
        _with_type_mix(object(), TrainOptions(data="refcoco:/x:refcoco:unc:train", type_weights=mix), 64)
    assert _with_type_mix(sentinel := object(), TrainOptions(data="refcoco:/x:refcoco:unc:train"), 64) is sentinel
