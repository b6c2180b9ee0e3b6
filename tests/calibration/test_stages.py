"""The typed stages of `ssp calibrate` (calibration.stages / calibration.pipeline) on hand-made values: what each
stage's value hands to the next and writes into the report, the accuracy plan's rules (group ratio, floor,
keep_fp32, --exclude), and the report keys the CLI and report.md read."""

from __future__ import annotations

import numpy as np
import pytest

from ssp_edge.calibration.errors import CalibrationError
from ssp_edge.calibration.ort_int8 import OrtPlan
from ssp_edge.calibration.pipeline import CalibrateOptions, excluded_nodes
from ssp_edge.calibration.qdq import QuantNode
from ssp_edge.calibration.sensitivity import NodeSensitivity
from ssp_edge.calibration.stages import GraphPlan, GroupSensitivity, Measurement, QuantPlan, Sensitivity, Statistics
from ssp_edge.calibration.stats import TensorHistogram, TensorRange


def _stats() -> Statistics:
    return Statistics(
        method="entropy",
        percentile=99.99,
        data="refshapes:val",
        frames=4,
        available_frames=100,
        prompts_per_frame=2,
        expressions=8,
        seed=0,
        tensors={
            "image_encoder": {"a": TensorRange(2.0, -1.0, 3.0), "b": TensorRange(5.0, 0.0, 4.0)},
            "mask_decoder": {"c": TensorRange(1.0, -4.0, 0.5)},
        },
        range_keys={
            "image_encoder": {"a": ["conv1.w:in0"], "b": ["conv1.w:out", "conv2.w:in0"]},
            "mask_decoder": {"c": ["gemm.w:in0"]},
        },
        ort_method="minmax",
        ort_tensors={
            "image_encoder": {"a": TensorRange(3.0, -1.0, 3.0), "b": TensorRange(4.0, 0.0, 4.0)},
            "mask_decoder": {"c": TensorRange(4.0, -4.0, 0.5)},
        },
    )


def test_statistics_hand_each_plan_its_ranges():
    s = _stats()
    # TensorRT plan: symmetric, the method's |x| threshold per range key (one tensor can serve several keys)
    assert s.amax() == {"conv1.w:in0": 2.0, "conv1.w:out": 5.0, "conv2.w:in0": 5.0, "gemm.w:in0": 1.0}
    # ONNX Runtime plan: [lo, hi] of its own method (minmax: the extremes)
    assert s.asymmetric("image_encoder") == {"a": (-1.0, 3.0), "b": (0.0, 4.0)}
    assert s.asymmetric("mask_decoder") == {"c": (-4.0, 0.5)}
    rep = s.to_report()
    assert rep["calibration"]["frames"] == 4 and rep["calibration"]["method"] == "entropy"
    assert rep["calibration"]["ort_method"] == "minmax"
    assert rep["ranges"]["method"] == "entropy" and rep["ranges"]["amax"]["conv1.w:in0"] == 2.0
    assert rep["ranges"]["onnxruntime"]["tensors"]["mask_decoder"]["c"] == [-4.0, 0.5]


def test_tensor_range_clips_the_extremes_to_the_threshold():
    assert TensorRange(2.0, -5.0, 1.0).asymmetric == (-2.0, 1.0)
    h = TensorHistogram()
    x = np.random.default_rng(0).normal(size=10000).astype(np.float32) + 1.0
    h.update(x)
    h.update(np.array([-7.5, 0.25], np.float32))
    r = h.range_for("minmax")
    assert (r.lo, r.hi) == (-7.5, float(x.max())) and r.amax == 7.5  # signed extremes next to max |x|
    assert TensorHistogram().range_for("entropy") == TensorRange(0.0, 0.0, 0.0)  # never seen


def _nodes() -> dict[str, list[QuantNode]]:
    enc = [QuantNode(f"c{i}", "Conv", f"w{i}", (0,), 1, 0) for i in range(4)]
    dec = [
        QuantNode("g0", "Gemm", "gw0", (0,), 1, 0),
        QuantNode("mm0", "MatMul", "mm0", (0, 1), None, None),
        QuantNode("mm1", "MatMul", "mm1", (0, 1), None, None),
    ]
    return {"image_encoder": enc, "mask_decoder": dec}


def _sens() -> Sensitivity:
    ns = {
        "image_encoder": [
            NodeSensitivity("image_encoder", "c2", "Conv", "w2", 0.3, 4e-3),
            NodeSensitivity("image_encoder", "c0", "Conv", "w0", 0.2, 1e-3),
            NodeSensitivity("image_encoder", "c1", "Conv", "w1", 0.1, None),
        ],
        "mask_decoder": [
            NodeSensitivity("mask_decoder", "mm0", "MatMul", "mm0", 0.5, 2e-3),
            NodeSensitivity("mask_decoder", "g0", "Gemm", "gw0", 0.1, 1e-3),
        ],
    }
    gs = {
        "image_encoder": [
            GroupSensitivity("image_encoder", "Conv", 4, ["w0", "w1", "w2", "w3"], 3e-4),
            GroupSensitivity("image_encoder", "all", 4, [], 3e-4),
        ],
        "mask_decoder": [
            GroupSensitivity("mask_decoder", "MatMul (activation x activation)", 2, ["mm0", "mm1"], 2e-2),
            GroupSensitivity("mask_decoder", "Gemm (weights)", 1, ["gw0"], 1e-3),
            GroupSensitivity("mask_decoder", "all", 3, [], 3e-2),
        ],
    }
    return Sensitivity(ns, gs)


def test_accuracy_plan_rules():
    out = excluded_nodes(_nodes(), _sens(), CalibrateOptions(keep_fp32=1, group_ratio=2.0))
    # decoder: the products' group hurts 20x the next group -> both products float; then the worst other node
    assert set(out["mask_decoder"]) == {"mm0", "mm1", "gw0"}
    assert "20.0x the next group" in out["mask_decoder"]["mm0"] and out["mask_decoder"]["gw0"].startswith("sensitivity")
    # encoder: one group only (no ratio to compare with); keep_fp32=1 -> the node with the largest measured score
    assert out["image_encoder"] == {"w2": "sensitivity (mask prob. MAE 4.00e-03)"}
    # group_ratio 0: off; a group below the noise floor never counts
    assert set(excluded_nodes(_nodes(), _sens(), CalibrateOptions(keep_fp32=0, group_ratio=0))["mask_decoder"]) == set()
    quiet = _sens()
    # 4x the next group, but under the 5e-3 floor (ssp_lite's image convolutions measured 1e-3: int8 there was harmless)
    quiet.groups["mask_decoder"][0].mask_prob_mae = 4e-3
    quiet.groups["mask_decoder"][1].mask_prob_mae = 1e-3
    assert excluded_nodes(_nodes(), quiet, CalibrateOptions(keep_fp32=0))["mask_decoder"] == {}
    # no sensitivity pass: nothing excluded
    assert excluded_nodes(_nodes(), Sensitivity(), CalibrateOptions()) == {"image_encoder": {}, "mask_decoder": {}}


def test_exclude_patterns_replace_the_sensitivity_rules():
    out = excluded_nodes(_nodes(), _sens(), CalibrateOptions(exclude=["c1", "MatMul"]))
    assert out == {"image_encoder": {"w1": "--exclude"}, "mask_decoder": {"mm0": "--exclude", "mm1": "--exclude"}}
    with pytest.raises(CalibrationError, match="--exclude 'nope' matches no"):
        excluded_nodes(_nodes(), Sensitivity(), CalibrateOptions(exclude=["c0", "nope"]))


def test_quant_plan_report_keys():
    ort = OrtPlan(["c0", "add", "c1"], ["c0", "c1"], {"c2": "ONNX Runtime speed (x)"})
    plan = QuantPlan(
        {"image_encoder": {"w3": "--exclude"}, "mask_decoder": {}},
        [
            GraphPlan(
                "image_encoder",
                "portable",
                "tensorrt",
                "image_encoder.portable.int8.trtplan.onnx",
                4,
                ["c0", "c1", "c2"],
                {"c3": "--exclude"},
                qdq_nodes=9,
            ),
            GraphPlan(
                "image_encoder",
                "portable",
                "onnxruntime",
                "image_encoder.portable.int8.onnx",
                4,
                ["c0", "c1"],
                dict(ort.kept_float),
                ort,
                qdq_nodes=5,
            ),
            GraphPlan(
                "image_encoder",
                "plugin",
                "tensorrt",
                "image_encoder.plugin.int8.onnx",
                4,
                ["c0", "c1", "c2"],
                {"c3": "--exclude"},
                qdq_nodes=9,
            ),
        ],
    )
    rep = plan.to_report()
    p = rep["int8_plan"]
    assert set(p) == {"image_encoder/portable", "image_encoder/portable/tensorrt", "image_encoder/plugin"}
    own = p["image_encoder/portable"]  # what the SDK runs: the ONNX Runtime plan
    assert own["placement"] == own["qdq_plan"] == "onnxruntime" and own["format"].startswith("U8S8")
    assert (own["quantized"], own["float"], own["nodes"], own["passthrough"], own["qdq_nodes"]) == (2, 1, 4, 1, 5)
    assert own["tensorrt_plan_file"] == "image_encoder.portable.int8.trtplan.onnx"
    assert p["image_encoder/plugin"]["qdq_plan"] == "tensorrt" and "passthrough" not in p["image_encoder/plugin"]
    assert rep["kept_float"] == {"image_encoder": {"w3": "--exclude"}, "mask_decoder": {}}
    assert plan.find("image_encoder", "plugin", "tensorrt").file == "image_encoder.plugin.int8.onnx"
    assert plan.find("mask_decoder", "plugin", "tensorrt") is None


def test_sensitivity_and_measurement_report_keys():
    rep = _sens().to_report()
    assert set(rep) == {"sensitivity", "group_sensitivity"}
    assert rep["sensitivity"]["image_encoder"][0] == {
        "graph": "image_encoder",
        "node": "c2",
        "op_type": "Conv",
        "key": "w2",
        "local_rel_error": 0.3,
        "mask_prob_mae": 4e-3,
    }
    assert rep["group_sensitivity"]["mask_decoder"][0]["keys"] == ["mm0", "mm1"]
    assert Sensitivity().to_report() == {"sensitivity": {}, "group_sensitivity": {}}
    m = Measurement(None, {"frames": 1, "rows": []}, {"2": {"runs": 3}})
    assert m.to_report() == {"output_error": {"frames": 1, "rows": []}, "latency": {"2": {"runs": 3}}}
    assert "accuracy" in Measurement({"data": "x"}).to_report()
