"""ssp.release on a tiny checkpoint written into a temporary checkpoint folder: thresholds tuned on the val split
of the training data's RefShapes family, every test set recorded, the primary test set's head slice stored for
``make test`` to re-check, and the README metrics block rewritten from the record."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import write_tiny_checkpoint

from ssp_edge.ssp import release
from ssp_edge.ssp.checkpoint import load_checkpoint, read_checkpoint_info, save_checkpoint
from ssp_edge.ssp.data.spec import open_data
from ssp_edge.ssp.errors import SSPError
from ssp_edge.ssp.evaluate import evaluate


def _with_data(src, dst, data):
    model, info = load_checkpoint(src)
    return save_checkpoint(model, info.config, dst, {"data": data})


@pytest.mark.parametrize(
    ("data", "val", "tests"),
    [
        ("refshapes2:train", "refshapes2:val", ["refshapes2:test", "refshapes:test"]),
        ("refshapes:train", "refshapes:val", ["refshapes:test"]),
    ],
)
def test_default_specs_follow_the_training_data(tiny_checkpoint, tmp_path, data, val, tests):
    ckpt = _with_data(tiny_checkpoint, tmp_path / "c.safetensors", data)
    assert release.default_specs(read_checkpoint_info(ckpt)) == (val, tests)


def test_non_refshapes_training_data_asks_for_explicit_specs(tiny_checkpoint, tmp_path):
    ckpt = _with_data(tiny_checkpoint, tmp_path / "c.safetensors", "refcoco:/data:refcoco:unc:train")
    with pytest.raises(SSPError, match="pass --val and --tests"):
        release.default_specs(read_checkpoint_info(ckpt))


@pytest.mark.slow
def test_ship_records_every_test_set_and_the_primary_head(tmp_path, monkeypatch):
    src = write_tiny_checkpoint(tmp_path / "run" / "final.safetensors", input_size=64)
    src = _with_data(src, src, "refshapes2:train")
    shipped = tmp_path / "checkpoints"
    shipped.mkdir()
    (shipped / "README.md").write_text("# x\n<!-- metrics:begin -->\nOLD-NUMBERS\n<!-- metrics:end -->\ntail\n")
    monkeypatch.setattr(release, "CHECKPOINT_DIR", shipped)
    monkeypatch.setattr(release, "HEAD_SAMPLES", 6)
    rec = release.ship(src, "tiny", val_samples=6, test_samples=8)

    assert rec["primary"] == "refshapes2:test"
    assert rec["threshold_tuning"]["data"] == "refshapes2:val"
    assert {"refshapes2:test[:8]", "refshapes:test[:8]", "refshapes2:test[:6]"} <= set(rec)
    stored = json.loads((shipped / "tiny.eval.json").read_text())
    assert stored["primary"] == "refshapes2:test"
    # the head record is what an independent evaluation of the written checkpoint gives
    model, info = load_checkpoint(shipped / "tiny.safetensors")
    assert info.thresholds == rec["thresholds"]
    assert info.metadata["data"] == "refshapes2:train"  # kept: export records it, calibration defaults follow it
    with torch.inference_mode():
        again = evaluate(model, info.config, open_data("refshapes2:test", 64), limit=6, progress=False,
                         thresholds=info.thresholds)  # fmt: skip
    assert again["mIoU"] == pytest.approx(stored["refshapes2:test[:6]"]["mIoU"], abs=1e-6)
    text = (shipped / "README.md").read_text()
    assert "OLD-NUMBERS" not in text and text.endswith("tail\n")
    assert "--data refshapes2:test --limit 8" in text and "On `refshapes:test[:8]`: mIoU" in text
