"""Calibration / evaluation data: the three sources, seeded sampling, disjointness, and one-line errors that
name the input, what is wrong and the fix."""

from __future__ import annotations

import json

import numpy as np
import pytest
from calib_data import write_jsonl_set

from ssp_edge.calibration.data import default_specs, open_eval, open_frames
from ssp_edge.calibration.errors import CalibrationError
from ssp_edge.sdk.errors import SSPEdgeError


def test_jsonl_frames_group_expressions_by_image(tmp_path):
    f = write_jsonl_set(tmp_path, 4, 2)
    for spec in (f"jsonl:{f}", str(f), f"jsonl:{tmp_path}", str(tmp_path)):
        fs = open_frames(spec, 10, prompts=2)
        assert len(fs) == 4 and fs.available == 4
        frames = list(fs)
        assert all(fr.image.dtype == np.uint8 and fr.image.shape[2] == 3 for fr in frames)
        assert all(len(fr.expressions) == 2 for fr in frames)
    want = [json.loads(x) for x in f.read_text().splitlines()]
    assert frames[0].expressions == [w["expression"] for w in want if w["image"] == "img/0.png"]
    assert open_frames(str(f), 10, prompts=1)[0].expressions == frames[0].expressions[:1]


def test_sampling_is_seeded(tmp_path):
    write_jsonl_set(tmp_path, 6, 1)
    a = open_frames(str(tmp_path), 3, seed=0).keys
    assert a == open_frames(str(tmp_path), 3, seed=0).keys
    assert len(set(a)) == 3
    assert any(open_frames(str(tmp_path), 3, seed=s).keys != a for s in range(1, 6))
    r1 = open_frames("refshapes:val", 5, prompts=2, seed=3)
    assert r1.keys == open_frames("refshapes:val", 5, prompts=2, seed=3).keys
    fr = r1[0]
    assert fr.image.shape == (320, 320, 3) and 1 <= len(fr.expressions) <= 2


def test_default_calibration_and_evaluation_sets_are_disjoint():
    cal = open_frames("refshapes:val", 64)
    ev = open_eval("refshapes:test", 50, cal.keys)
    assert ev.skipped == 0 and len(ev) == 50
    assert not set(cal.keys) & {f"refshapes:test:{i}" for i in ev.indices}
    # the same split for both: the calibration scenes are left out of the evaluation
    cal = open_frames("refshapes:test", 20, seed=0)
    ev = open_eval("refshapes:test", 40, cal.keys)
    used = {int(k.rsplit(":", 1)[1]) for k in cal.keys}
    assert len(ev) == 40 and not used & set(ev.indices)
    assert ev.skipped == len(used & set(range(max(ev.indices) + 1)))


def test_refshapes2_frames_and_evaluation_leave_out_the_calibration_scenes():
    """RefShapes v2 sample k lives on scene ``tags["scene"]`` (usually k): the evaluation skips samples whose
    scene is a calibration frame, checked against the scenes of the samples themselves."""
    from ssp_edge.ssp.data.refshapes2 import RefShapes2

    cal = open_frames("refshapes2:test", 12, prompts=2, seed=0)
    frames = list(cal)
    assert len(frames) == 12 and all(1 <= len(f.expressions) <= 2 for f in frames)
    assert all(k.startswith("refshapes2:test:") for k in cal.keys)
    ev = open_eval("refshapes2:test", 30, cal.keys)
    ds = RefShapes2("test")
    used = {int(k.rsplit(":", 1)[1]) for k in cal.keys}
    scenes = {ds[k].tags["scene"] for k in ev.indices}
    assert len(ev) == 30 and not used & scenes
    assert ev.skipped == sum(ds[k].tags["scene"] in used for k in range(max(ev.indices) + 1))


@pytest.mark.parametrize(
    ("source", "specs"),
    [
        ({"checkpoint": "x", "data": "refshapes2:train"}, ("refshapes2:val", "refshapes2:test")),
        ({"checkpoint": "x", "data": "refshapes:train"}, ("refshapes:val", "refshapes:test")),
        ({"checkpoint": "x"}, ("refshapes:val", "refshapes:test")),  # bundles exported before the field
        ({"checkpoint": "x", "data": "refcoco:/d:refcoco:unc:train"}, ("refshapes:val", "refshapes:test")),
    ],
)
def test_default_specs_follow_the_checkpoint_training_data(source, specs):
    assert default_specs(source) == specs


def _err(spec, **kw) -> str:
    with pytest.raises(CalibrationError) as e:
        fs = open_frames(spec, kw.pop("count", 8), **kw)
        list(fs)
    assert isinstance(e.value, SSPEdgeError)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_empty_folder(tmp_path):
    msg = _err(str(tmp_path))
    assert str(tmp_path) in msg and "empty" in msg and "JSONL" in msg


def test_folder_without_jsonl(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    assert "no *.jsonl" in _err(f"jsonl:{tmp_path}")


def test_jsonl_line_missing_a_field(tmp_path):
    write_jsonl_set(tmp_path, 2, 1, extra_lines=[{"image": "img/0.png"}])
    msg = _err(str(tmp_path))
    assert "calib.jsonl:3" in msg and "'expression'" in msg and "needs" in msg


def test_jsonl_line_not_json(tmp_path):
    write_jsonl_set(tmp_path, 1, 1, extra_lines=["{not json"])
    assert "calib.jsonl:2: not valid JSON" in _err(str(tmp_path))


def test_unreadable_image(tmp_path):
    write_jsonl_set(tmp_path, 2, 1, extra_lines=[{"image": "broken.jpg", "expression": "the cup"}])
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    msg = _err(str(tmp_path), count=3)
    assert "broken.jpg" in msg and "calib.jsonl:3" in msg and "replace it" in msg


def test_missing_image_fails_before_the_run(tmp_path):
    write_jsonl_set(tmp_path, 1, 1, extra_lines=[{"image": "nope.png", "expression": "the cup"}])
    with pytest.raises(CalibrationError, match="nope.png.*not found.*relative to the JSONL file"):
        open_frames(str(tmp_path), 8)  # at open time, not while iterating


def test_bad_specs():
    assert "expected refshapes:SPLIT" in _err("coco:whatever")
    with pytest.raises(Exception, match="unknown RefShapes split"):
        open_frames("refshapes:nope", 4)
    with pytest.raises(CalibrationError, match="ground-truth masks"):
        open_eval("jsonl:/tmp/x.jsonl", 5)
    with pytest.raises(CalibrationError, match="at least 1"):
        open_frames("refshapes:val", 0)
