"""The training benchmark reports samples/s (and steps/s, peak memory, finite losses) for ssp_lite and
ssp_paper through the trainer's own step (small inputs here to keep it short; the shipped settings run 320 /
480 px)."""

from __future__ import annotations

import json

import pytest

from ssp_edge.benchmarks.train_bench import SETTINGS, run_train_bench
from ssp_edge.ssp.errors import SSPError
from ssp_edge.ssp.train_bench import train_steps


@pytest.mark.slow
def test_train_bench_reports_samples_per_second_for_both_configs(tmp_path):
    res = run_train_bench(
        "cpu",
        "bf16",
        tmp_path,
        progress=False,
        settings=[
            ("ssp_lite", 1, 1, 2, 0, {"input_size": 96}),
            ("ssp_paper", 1, 1, 2, 0, {"input_size": 96, "backbone_config": {"window_size": 3}}),
        ],
    )
    assert [r["config"] for r in res["rows"]] == ["ssp_lite", "ssp_paper"]
    for r in res["rows"]:
        assert r["samples_per_s"] > 0 and r["steps_per_s"] > 0 and r["peak_memory_mb"] > 0
        assert r["loss_finite"] and r["trainable_parameters"] > 0
        assert abs(r["samples_per_s"] * r["sec_per_step"] - 2) < 0.01
        assert abs(r["steps_per_s"] * r["sec_per_step"] - 1) < 0.01
    assert json.loads((tmp_path / "train_bench.json").read_text())["rows"][1]["config"] == "ssp_paper"
    md = (tmp_path / "train_bench.md").read_text()
    assert "samples / s" in md and "ssp_paper" in md
    assert {s[0] for s in SETTINGS["cpu"]} == {s[0] for s in SETTINGS["cuda"]} == {"ssp_lite", "ssp_paper"}


def test_fp16_and_cuda_errors_on_cpu():
    import torch

    with pytest.raises(SSPError, match="fp16"):
        train_steps("ssp_lite", 1, "cpu", "fp16")
    if not torch.cuda.is_available():
        with pytest.raises(SSPError, match="no CUDA GPU"):
            train_steps("ssp_lite", 1, "cuda", "bf16")


def test_epoch_estimate_by_hand():
    from ssp_edge.ssp.train_bench import epoch_flops, epoch_seconds_estimate

    f = {"text_encoder": 1, "image_encoder": 10, "mask_decoder": 2}
    # 5 image encodings and 7 decoder passes at 3x (forward + backward), 7 frozen text encodings at 1x
    assert epoch_flops(f, refs=5, expressions=7) == 3 * 10 * 5 + 3 * 2 * 7 + 7 == 199
    assert epoch_flops(f, refs=5, expressions=7, text_trainable=True) == 199 + 14
    assert epoch_seconds_estimate(f, 5, 7, gpus=2, tflops=1.0, mfu=0.5) == pytest.approx(199 / 1e12)
