"""`ssp bench --quick --json`: one run writes JSON, Markdown and PNG plots; rows that cannot run say why."""

from __future__ import annotations

import json

import pytest
from helpers import assert_ok, run_ssp


@pytest.mark.slow
def test_quick_bench_writes_the_three_outputs(lite_bundle, tmp_path):
    r = assert_ok(
        run_ssp(
            "bench",
            str(lite_bundle),
            "--quick",
            "--json",
            "--out-dir",
            str(tmp_path),
            "--only",
            "pytorch",
            "--only",
            "onnxruntime",
        )
    )  # OpenVINO rows: tests/sdk/test_openvino*
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert (tmp_path / "bench.json").is_file() and (tmp_path / "bench.md").is_file()
    assert len(res["plots"]) == 3 and all((tmp_path / p.split("/")[-1]).is_file() for p in res["plots"])
    rows = {(x["backend"], x["precision"]): x for x in res["rows"]}
    assert rows[("pytorch", "fp32")]["status"] == rows[("onnxruntime", "fp32")]["status"] == "ok"
    assert rows[("onnxruntime", "int8")]["status"] == "not built"  # this bundle has no Q/DQ graphs
    for stage in ("preprocess", "image_encoder", "mask_decoder", "postprocess"):
        st = rows[("onnxruntime", "fp32")]["stages"][stage]
        assert st["p90_ms"] >= st["median_ms"] > 0
    assert [x["prompts"] for x in res["throughput"]["onnxruntime fp32"]] == [1, 2, 4, 8]
    for name, sweep in res["throughput"].items():  # every measured row, frames/s per prompt count
        assert all(x["frames_per_s"] > 0 and x["frame_ms"] > 0 for x in sweep), name
    assert {"pytorch fp32", "onnxruntime fp32"} <= set(res["throughput"])
    assert "ort_fp32_over_pytorch" in res["ratios"] and "ort_int8_over_ort_fp32" in res["ratios"]
    cpu = res["cpu"]
    assert cpu["peak_gflops"] > 0 and cpu["formula"].endswith("GFLOP/s") and 0 < cpu["ort_fp32_share_of_peak"] < 1
    lim = {x["prompts"]: x for x in res["physical_limit"]}
    assert lim[8]["frame_ms"] > lim[1]["frame_ms"] > 0  # frame FLOPs / peak, drawn in bench.md
    assert set(res["targets"]) == {
        "ort_fp32_over_pytorch",
        "fps_1_prompt",
        "fps_2_prompts",
        "prompts_8_over_1",
        "cpu_peak_share",
        "ort_int8_over_ort_fp32",
        "best_fps_2_prompts",
    }
    assert res["targets"]["ort_int8_over_ort_fp32"]["value"] is None  # no INT8 graphs: not measured, not met
    best = res["targets"]["best_fps_2_prompts"]  # the fastest deployed row (not the PyTorch baseline)
    fps2 = {n: x["frames_per_s"] for n, sw in res["throughput"].items() for x in sw if x["prompts"] == 2}
    assert best["configuration"] == "onnxruntime fp32" and best["value"] == fps2["onnxruntime fp32"]
    assert res["default"]["configuration"] == "onnxruntime fp32"  # uncalibrated bundle: FP32, and why
    assert "ssp calibrate" in res["default"]["reason"]
    assert res["settings"]["iters"] == 6 and res["method"].startswith("interleaved")
    md = (tmp_path / "bench.md").read_text()
    for phrase in (
        "ONNX Runtime FP32 / PyTorch eager",
        "ONNX Runtime INT8 / ONNX Runtime FP32",
        "cached / uncached text",
        "ESTIMATE",
        "RUS decoder vs bilinear decoder",
        "physical limit",
        "Calibrated against a published TensorRT measurement",
        "Load average",
        "Default configuration",
    ):
        assert phrase in md
    assert res["ratios"]["ort_fp32_over_pytorch"] > 0 and res["ratios"]["cached_over_uncached_text"] > 0
    lite, paper = res["flops"]["ssp_lite"], res["flops"]["ssp_paper"]
    assert paper["parameters"] > 5 * lite["parameters"] and paper["flops"] > lite["flops"]
