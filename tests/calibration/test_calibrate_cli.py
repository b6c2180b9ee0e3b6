"""`ssp calibrate` end to end on the shipped checkpoint's bundle (small sample counts; the 512 / 500 run is
measured separately): manifest entries, graphs TensorRT accepts (read from the files), INT8 / FP16 outputs
against the FP32 graphs, the report, and bad input that leaves the bundle untouched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import onnx
import pytest
from calib_data import write_jsonl_set
from helpers import REPO, assert_one_line_error, run_ssp
from onnx import TensorProto, numpy_helper


def run_calibrate(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """`ssp calibrate ...` once the entry point is registered, `python -m ssp_edge.calibration.cli` before."""
    if any(ep.name == "calibrate" for ep in entry_points(group="ssp_edge.commands")):
        return run_ssp("calibrate", *args, timeout=timeout)
    return subprocess.run(
        [sys.executable, "-m", "ssp_edge.calibration.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _copy_bundle(src: Path, dst: Path) -> Path:
    """Hard-linked copy (the pipeline never writes into existing files: it renames new ones in)."""
    shutil.copytree(src, dst, copy_function=os.link)
    return dst


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): (p.read_bytes() if p.name == "manifest.json" else b"") for p in sorted(d.rglob("*"))}


QUICK = [
    "--samples",
    "6",
    "--prompts",
    "2",
    "--sensitivity-samples",
    "2",
    "--sensitivity-candidates",
    "3",
    "--keep-fp32",
    "1",
    "--eval-samples",
    "12",
    "--error-samples",
    "1",
    "--latency-runs",
    "2",
]


@pytest.fixture(scope="module")
def calibrated(lite_bundle, tmp_path_factory):
    root = tmp_path_factory.mktemp("calib")
    b = _copy_bundle(lite_bundle, root / "bundle")
    long = "the small red circle that is to the left of the big blue square and above the green triangle " * 2
    data = write_jsonl_set(root / "data", 6, 1, extra_lines=[{"image": "img/0.png", "expression": long}])
    r = run_calibrate(str(b), "--data", f"jsonl:{data}", "--method", "percentile", *QUICK, "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    return b, r


@pytest.mark.slow
def test_json_summary_and_report(calibrated):
    b, r = calibrated
    out = json.loads(r.stdout)
    for p in ("fp32", "fp16", "int8"):
        assert set(out[p]) == {"mIoU", "oIoU", "prec@0.5", "prec@0.6", "prec@0.7", "prec@0.8", "prec@0.9"}
        assert all(0.0 <= v <= 1.0 for v in out[p].values())
    lat = out["latency_ms"]
    assert lat["fp32"]["total"] > 0 and lat["int8"]["total"] > 0
    assert lat["fp32_over_int8"] == pytest.approx(lat["fp32"]["total"] / lat["int8"]["total"], rel=1e-6)
    md = Path(out["report"])
    assert md == b / "calibration" / "report.md" and md.is_file()
    text = md.read_text()
    for needle in ("mIoU", "FP32 / INT8 =", "Sensitivity (top 10)", "Output error vs FP32"):
        assert needle in text
    rep = json.loads((b / "calibration" / "report.json").read_text())
    assert rep["calibration"]["frames"] == 6 and rep["calibration"]["method"] == "percentile"
    assert (b / "calibration" / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the over-long expression: exactly one warning line, no traceback
    warn = [ln for ln in r.stderr.splitlines() if "warning" in ln]
    assert len(warn) == 1 and "truncated" in warn[0] and warn[0].startswith("ssp calibrate: warning:")


@pytest.mark.slow
def test_manifest_lists_the_new_graphs(calibrated):
    from ssp_edge.sdk.bundle import Bundle

    b, _ = calibrated
    bundle = Bundle.open(b)  # every file's sha256 verified
    have = {(g.name, g.flavour, g.precision): g for g in bundle.manifest.graphs}
    for g in ("image_encoder", "mask_decoder"):
        for fl in ("portable", "plugin"):
            for p in ("int8", "fp16"):
                e = have[(g, fl, p)]
                assert e.file == f"{g}.{fl}.{p}.onnx" and (b / e.file).is_file()
                assert [t.dtype for t in e.inputs] == [t.dtype for t in have[(g, fl, "fp32")].inputs]
    assert have[("text_encoder", "portable", "fp16")].file == "text_encoder.fp16.onnx"
    assert ("text_encoder", "portable", "int8") not in have  # stays FP32: runs once per prompt, cached
    assert have[("mask_decoder", "plugin", "int8")].custom_ops == have[("mask_decoder", "plugin", "fp32")].custom_ops
    # the portable flavour in TensorRT's plan too (what `ssp convert build --precision int8` builds from)
    trt = {
        g.name: g
        for g in bundle.manifest.graphs
        if (g.flavour, g.precision, g.qdq_plan) == ("portable", "int8", "tensorrt")
    }
    assert {g: e.file for g, e in trt.items()} == {
        g: f"{g}.portable.int8.trtplan.onnx" for g in ("image_encoder", "mask_decoder")
    }
    assert bundle.graph("image_encoder", "portable", "int8").qdq_plan == "onnxruntime"  # ONNX Runtime's default
    from ssp_edge.converter.trt_build import plan_sources

    assert plan_sources(bundle, "portable", "int8", True)["mask_decoder"].entry.file == trt["mask_decoder"].file


@pytest.mark.slow
def test_int8_graphs_follow_their_plans_rules(calibrated):
    """Read from the files: the TensorRT plan (plugin graphs and the portable *.trtplan.onnx) symmetric int8 with
    zero point 0 and float biases; the ONNX Runtime plan (the portable *.int8.onnx) uint8 activations with a zero
    point, int8 per-channel weights, int32 biases."""
    from ssp_edge.converter.schemas import register_schemas
    from ssp_edge.sdk.bundle import Bundle

    b, _ = calibrated
    register_schemas()
    plans = {g.file: g.qdq_plan for g in Bundle.open(b).manifest.graphs if g.precision == "int8"}
    assert sorted(plans.values()) == ["onnxruntime"] * 2 + ["tensorrt"] * 4
    for f in sorted(b.glob("*.int8*.onnx")):
        m = onnx.load(str(f))
        onnx.checker.check_model(m, full_check=True)
        init = {t.name: t for t in m.graph.initializer}
        qdq = [n for n in m.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
        assert len(qdq) > 20, f.name
        zps = {init[n.input[2]].data_type for n in qdq}
        if plans[f.name] == "tensorrt":
            assert zps == {TensorProto.INT8}, f.name
            for n in qdq:
                assert not numpy_helper.to_array(init[n.input[2]]).any(), (f.name, n.name)
            assert not any(t.data_type == TensorProto.INT32 for t in m.graph.initializer)  # float biases
            assert not any(t.data_type == TensorProto.UINT8 for t in m.graph.initializer)
        else:
            assert TensorProto.UINT8 in zps and zps <= {TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32}
            for n in qdq:
                zp = init[n.input[2]]
                if zp.data_type != TensorProto.UINT8:  # weights and biases: symmetric
                    assert not numpy_helper.to_array(zp).any(), (f.name, n.name)
            assert any(t.data_type == TensorProto.INT32 for t in m.graph.initializer)  # int32 biases


@pytest.mark.slow
def test_reduced_precision_outputs_track_fp32(calibrated, lite_bundle):
    """Same real input through the FP32 and the INT8 / FP16 graph: masks agree."""
    import cv2

    from ssp_edge.sdk.segmenter import Segmenter
    from ssp_edge.ssp.data.refshapes import RefShapes

    b, _ = calibrated
    s = RefShapes("test")[7]
    bgr = cv2.cvtColor(s.image, cv2.COLOR_RGB2BGR)
    probs = {}
    for p in ("fp32", "fp16", "int8"):
        with Segmenter.open(b, backend="onnxruntime", precision=p) as seg:
            assert seg.backend.precisions["image_encoder"] == p
            probs[p] = seg.segment(bgr, [s.expression])[0].prob
    assert np.abs(probs["fp16"] - probs["fp32"]).max() < 0.02
    agree = ((probs["int8"] > 0.5) == (probs["fp32"] > 0.5)).mean()
    assert agree > 0.97 and np.abs(probs["int8"] - probs["fp32"]).mean() < 0.03


@pytest.mark.slow
def test_accuracy_record_drives_the_default_precision(calibrated, tmp_path):
    """The manifest records what `ssp calibrate --json` reported, for the graphs ONNX Runtime runs at each precision
    (their sha256 from the verified files list); the default precision follows that record, and `ssp run` says so."""
    from helpers import assert_ok

    from ssp_edge.sdk.backends.precision_choice import (
        choose_precision,
        int8_accuracy_fails,
        int8_dot_product,
        ort_entries,
    )
    from ssp_edge.sdk.bundle import Bundle
    from ssp_edge.sdk.segmenter import Segmenter
    from ssp_edge.ssp.data.refshapes import render_video

    b, r = calibrated
    out = json.loads(r.stdout)
    bundle = Bundle.open(b)
    acc = bundle.manifest.accuracy
    assert acc["samples"] == 12 and acc["data"].startswith("refshapes")
    for p in ("fp32", "fp16", "int8"):
        assert acc["metrics"][p] == pytest.approx(out[p], abs=1e-12)
        files = {g: bundle.manifest.files[e.file] for g, e in ort_entries(bundle, p).items()}
        assert acc["graphs"][p] == files
    assert acc["graphs"]["int8"]["image_encoder"] != acc["graphs"]["fp32"]["image_encoder"]
    # the rule on the reported numbers: INT8 when they are evidence (12 samples are too few) and the CPU has
    # int8 dot products
    keeps = int8_accuracy_fails(out["fp32"]["mIoU"], out["int8"]["mIoU"], acc["samples"]) is None
    want = "int8" if keeps and int8_dot_product() else "fp32"
    assert not keeps and "fewer than" in choose_precision(bundle).reason
    assert choose_precision(bundle).precision == want
    with Segmenter.open(b) as seg:
        assert seg.backend.precisions["image_encoder"] == want and seg.backend.precisions["mask_decoder"] == want
    video = tmp_path / "v.mp4"
    render_video(str(video), frames=2)
    run = assert_ok(run_ssp("run", "--bundle", str(b), "--source", str(video), "--prompt", "a circle", "--no-stdin"))
    assert f"default precision {want}:" in run.stdout
    # again without an INT8 measurement: the record stays while the INT8 graphs are untouched (--no-int8) and goes
    # when they are replaced (it would describe other graphs)
    data = write_jsonl_set(tmp_path / "data", 2, 1)
    q = list(QUICK)
    q[q.index("--eval-samples") + 1] = "0"
    kept = _copy_bundle(b, tmp_path / "fp16_only")
    assert run_calibrate(str(kept), "--data", f"jsonl:{data}", "--no-int8", *q).returncode == 0
    assert Bundle.open(kept).manifest.accuracy == acc
    b2 = _copy_bundle(b, tmp_path / "again")
    assert run_calibrate(str(b2), "--data", f"jsonl:{data}", *q).returncode == 0
    again = Bundle.open(b2)
    assert again.manifest.accuracy is None
    assert choose_precision(again).precision == "fp32" and "not measured" in choose_precision(again).reason


def _assert_untouched(b: Path, before: dict[str, bytes]) -> None:
    assert _snapshot(b) == before
    assert not list(b.parent.glob(f".{b.name}.calibrate-*"))  # staging folder removed


@pytest.mark.slow
@pytest.mark.parametrize(
    "case", ["empty_folder", "missing_field", "unreadable_image", "eval_without_masks", "bad_exclude"]
)
def test_bad_input_is_one_line_and_writes_nothing(lite_bundle, tmp_path, case):
    b = _copy_bundle(lite_bundle, tmp_path / "bundle")
    before = _snapshot(b)
    data = tmp_path / "data"
    data.mkdir()
    args = ["--data", str(data)]
    words = []
    if case == "empty_folder":
        words = [str(data), "empty"]
    elif case == "missing_field":
        write_jsonl_set(data, 1, 1, extra_lines=[{"expression": "the cup"}])
        words = ["calib.jsonl:2", "'image'"]
    elif case == "unreadable_image":
        write_jsonl_set(data, 1, 1, extra_lines=[{"image": "bad.png", "expression": "the cup"}])
        (data / "bad.png").write_bytes(b"\x89PNG broken")
        words = ["bad.png", "not a readable image"]
        args += ["--samples", "2", "--eval-samples", "0"]
    elif case == "eval_without_masks":
        write_jsonl_set(data, 1, 1)
        args += ["--eval-data", f"jsonl:{data}"]
        words = ["--eval-data", "ground-truth masks"]
    else:
        write_jsonl_set(data, 1, 1)
        args += ["--exclude", "no_such_node", "--samples", "1", "--eval-samples", "0"]
        words = ["--exclude 'no_such_node'", "matches no"]
    r = run_calibrate(str(b), *args)
    assert_one_line_error(r, "ssp calibrate: error:", *words)
    _assert_untouched(b, before)


@pytest.mark.slow
def test_failure_after_the_graphs_leaves_the_bundle_as_it_was(lite_bundle, tmp_path, monkeypatch):
    from ssp_edge.calibration import pipeline

    b = _copy_bundle(lite_bundle, tmp_path / "bundle")
    before = _snapshot(b)
    data = write_jsonl_set(tmp_path / "data", 2, 1)

    def boom(*a, **k):
        raise RuntimeError("simulated failure while measuring")

    monkeypatch.setattr(pipeline, "measure", boom)
    opts = pipeline.CalibrateOptions(data=str(data), samples=2, sensitivity_samples=0, eval_samples=0, progress=False)
    with pytest.raises(RuntimeError, match="simulated"):
        pipeline.calibrate_bundle(b, opts)
    _assert_untouched(b, before)


def test_missing_bundle_is_one_line(tmp_path):
    r = run_calibrate(str(tmp_path / "nope"), "--samples", "1")
    assert_one_line_error(r, "ssp calibrate: error:", "is not a folder")
