"""DDP on CPU (gloo): `ssp train --nproc 2` (torchrun) with 2 images per process gives the losses of one process
with 4 images for the first steps, writes one set of logs and checkpoints (rank 0), and a torchrun run resumes
from it with the loss the uninterrupted single-process run has at that step.

Tolerance: 1e-4 absolute on each loss term. The two runs differ only in summation order (each process averages
its half of the batch and DDP averages the gradients), i.e. float32 rounding, ~1e-6 here. BatchNorm layers use
their running statistics (--freeze-bn): gloo has no SyncBatchNorm, so with batch statistics each process would
normalise over its own half of the batch (on GPUs the trainer converts to SyncBatchNorm).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import REPO, assert_ok, run_ssp

from ssp_edge.ssp.train_log import read_csv_log

TINY_SET = ["pretrained=false", "dim=32", "heads=2", "decoder_channels=[16,8,8,4]", "prior_channels=4", "input_size=64"]
TOL = 1e-4
KEYS = ("total", "bce", "dice", "coarse", "relevance")


def _args(data: str, out, steps: int, images: int) -> list[str]:
    sets = [a for s in TINY_SET for a in ("--set", s)]
    return [
        *sets,
        "--data",
        data,
        "--out",
        str(out),
        "--steps",
        str(steps),
        "--images-per-batch",
        str(images),
        "--exprs-per-image",
        "2",
        "--spixel-steps",
        "0",
        "--val",
        "none",
        "--warmup",
        "10",
        "--freeze-bn",
        "--amp",
        "off",
        "--no-tensorboard",
        "--seed",
        "5",
        "--augment",
        "on",
    ]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_and_resume(refer_root, tmp_path):
    data = f"refcoco:{refer_root}:refcoco:unc:train"
    assert_ok(run_ssp("train", *_args(data, tmp_path / "one", 3, 4)))
    one = read_csv_log(tmp_path / "one" / "log.csv")
    ddp = tmp_path / "ddp"
    assert_ok(run_ssp("train", "--nproc", "2", *_args(data, ddp, 2, 2)))
    first = read_csv_log(ddp / "log.csv")
    assert [int(r["step"]) for r in first] == [1, 2], "rank 0 alone writes the log"
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir()), (
        "the same files as one process: one checkpoint set, no per-rank copies"
    )
    # resume the 2-process run with torchrun itself (warm-up covers all steps: the schedule ignores --steps)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "ssp_edge.ssp.train",
            *_args(data, ddp, 3, 2),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert_ok(r)
    rows = read_csv_log(ddp / "log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    for a, b in zip(one, rows):
        assert a["samples_per_s"] > 0 and b["samples_per_s"] > 0
        for k in KEYS:
            assert abs(a[k] - b[k]) <= TOL, f"step {int(a['step'])} {k}: one process {a[k]!r}, two {b[k]!r}"
    diffs = [abs(a[k] - b[k]) for a, b in zip(one, rows) for k in KEYS]
    print(f"largest one-vs-two-process loss difference over 3 steps: {max(diffs):.2e}")
