"""`ssp train` on the tiny refer / grefer data sets (photos of several sizes): a few steps, resume, logs (CSV,
curves PNG), keep-best and save-every checkpoints, `ssp eval` on both; the exists head trains only on data
with no-target expressions; the text encoder fine-tunes exactly when freeze_text=false."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import assert_ok, run_ssp
from safetensors.torch import load_file

from ssp_edge.ssp.checkpoint import read_checkpoint_info
from ssp_edge.ssp.config import get_config
from ssp_edge.ssp.models.ssp import build_model
from ssp_edge.ssp.options import TrainOptions
from ssp_edge.ssp.train import train
from ssp_edge.ssp.train_log import read_csv_log

TINY_SET = ["pretrained=false", "dim=32", "heads=2", "decoder_channels=[16,8,8,4]", "prior_channels=4", "input_size=64"]
TINY = dict(pretrained=False, dim=32, heads=2, decoder_channels=(16, 8, 8, 4), prior_channels=4, input_size=64)


def _train_cmd(data: str, out, steps: int, *extra: str) -> list[str]:
    sets = [a for s in TINY_SET for a in ("--set", s)]
    return [
        "train",
        *sets,
        "--data",
        data,
        "--out",
        str(out),
        "--steps",
        str(steps),
        "--images-per-batch",
        "2",
        "--exprs-per-image",
        "2",
        "--spixel-steps",
        "0",
        "--val-every",
        "2",
        "--val-samples",
        "6",
        "--warmup",
        "1",
        "--no-tensorboard",
        *extra,
    ]


def _eval(ckpt, data: str) -> dict:
    r = assert_ok(run_ssp("eval", "--checkpoint", str(ckpt), "--data", data, "--json"))
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_refcoco_trains_resumes_and_evaluates(refer_root, grefer_root, tmp_path):
    data = f"refcoco:{refer_root}:refcoco:unc:train"
    out = tmp_path / "run"
    assert_ok(run_ssp(*_train_cmd(data, out, 2, "--keep-best", "--save-every", "1")))
    assert_ok(run_ssp(*_train_cmd(data, out, 3, "--keep-best", "--save-every", "1")))
    rows = read_csv_log(out / "log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3], "the second run resumes at step 3"
    assert all(r["total"] == r["total"] for r in rows)  # finite
    assert "val_mIoU" in rows[1] and "val_mIoU" not in rows[0]
    assert json.loads((out / "state.json").read_text())["step"] == 3
    for f in ("final.safetensors", "last.safetensors", "best.safetensors", "curves.png", "log.jsonl"):
        assert (out / f).is_file(), f
    info = read_checkpoint_info(out / "final.safetensors")
    assert info.metadata["exists_head"] == "untrained" and info.thresholds["exists"] == 0.0
    res = _eval(out / "final.safetensors", f"refcoco:{refer_root}:refcoco:unc:val")
    assert res["n"] == res["n_target"] > 0 and res["N-acc"] is None and 0.0 <= res["mIoU"] <= 1.0
    assert res["thresholds"]["exists"] == 0.0
    g = _eval(out / "final.safetensors", f"grefcoco:{grefer_root}:val")
    assert g["n_no_target"] > 0 and g["N-acc"] is not None and g["thresholds"]["exists"] == 0.0
    # deployed, a checkpoint without a trained exists head calls every prompt present (manifest exists = 0)
    bundle = tmp_path / "bundle"
    assert_ok(
        run_ssp(
            "convert",
            "export",
            "--checkpoint",
            str(out / "final.safetensors"),
            "--out",
            str(bundle),
            "--flavour",
            "portable",
            "--no-simplify",
        )
    )
    assert json.loads((bundle / "manifest.json").read_text())["thresholds"]["exists"] == 0.0
    from ssp_edge.sdk.segmenter import Segmenter

    seg = Segmenter.open(bundle, backend="onnxruntime")
    frame = np.full((48, 64, 3), 120, np.uint8)
    results = seg.segment(frame, ["the red box", "a purple elephant", "zzz"])
    assert [r.exists for r in results] == [True, True, True]
    # its exists head kept the initial weights (frozen)
    torch.manual_seed(0)
    init = build_model(get_config("ssp_lite", **TINY)).state_dict()
    after = load_file(str(out / "final.safetensors"))
    assert all(torch.equal(init[k], after[k]) for k in after if k.startswith("decoder.exists."))


@pytest.mark.slow
def test_grefcoco_trains_the_exists_head_and_reports_gres_metrics(grefer_root, tmp_path):
    data = f"grefcoco:{grefer_root}:train"
    out = tmp_path / "grun"
    assert_ok(run_ssp(*_train_cmd(data, out, 2)))
    assert_ok(run_ssp(*_train_cmd(data, out, 3)))
    rows = read_csv_log(out / "log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert "val_gIoU" in rows[1] and "val_N-acc" in rows[1]
    info = read_checkpoint_info(out / "final.safetensors")
    assert info.metadata["exists_head"] == "trained" and info.thresholds["exists"] == 0.5
    torch.manual_seed(0)
    init = build_model(get_config("ssp_lite", **TINY)).state_dict()
    after = load_file(str(out / "final.safetensors"))
    assert any(not torch.equal(init[k], after[k]) for k in after if k.startswith("decoder.exists."))
    res = _eval(out / "final.safetensors", f"grefcoco:{grefer_root}:val")
    assert res["n_no_target"] == 4 and res["n_target"] == 8  # 2 images x (2 + 2 target, 2 no-target sentences)
    for k in ("gIoU", "cIoU", "N-acc", "T-acc"):
        assert 0.0 <= res[k] <= 1.0, k
    r = assert_ok(
        run_ssp("eval", "--checkpoint", str(out / "final.safetensors"), "--data", f"grefcoco:{grefer_root}:val")
    )
    assert "cIoU" in r.stdout and "N-acc" in r.stdout


@pytest.mark.slow
@pytest.mark.parametrize("freeze", [False, True])
def test_text_encoder_fine_tunes_only_when_unfrozen(refer_root, tmp_path, freeze):
    cfg = get_config("ssp_lite", **TINY, freeze_text=freeze)
    opt = TrainOptions(
        out=str(tmp_path / "t"),
        data=f"refcoco:{refer_root}:refcoco:unc:train",
        val="none",
        steps=1,
        images_per_batch=2,
        exprs_per_image=2,
        spixel_steps=0,
        warmup=1,
        amp="off",
        tensorboard=False,
        text_lr=1e-3,
    )
    final = train(cfg, opt)
    torch.manual_seed(0)
    init = build_model(cfg).state_dict()
    after = load_file(str(final))
    changed = [
        k
        for k in init
        if k.startswith("text.encoder.") and init[k].is_floating_point() and not torch.equal(init[k], after[k])
    ]
    if freeze:
        assert not changed
    else:
        assert any(".encoder.layer.0." in k for k in changed) and any("word_embeddings" in k for k in changed)
