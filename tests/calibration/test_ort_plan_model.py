"""The ONNX Runtime U8S8 plan and the typed stages on the shipped checkpoint's graphs (a few calibration frames):
which ops of the real image encoder / mask decoder run in int8, that ONNX Runtime keeps the float ones float, and
the INT8 pipeline's masks against FP32 through the SDK."""

from __future__ import annotations

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from ssp_edge.calibration.data import open_frames
from ssp_edge.calibration.ort_int8 import plan_nodes, quantize_ort, range_tensors, u8s8_violations
from ssp_edge.calibration.pipeline import CalibrateOptions, Feeder, collect_statistics, measure_sensitivity
from ssp_edge.calibration.qdq import find_quant_nodes
from ssp_edge.calibration.stages import QUANT_GRAPHS, Sensitivity, Statistics
from ssp_edge.sdk.bundle import Bundle

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real(lite_bundle):
    bundle = Bundle.open(lite_bundle)
    models = {
        g: onnx.load_model_from_string(bundle.read_bytes(bundle.graph(g, "portable", "fp32").file))
        for g in QUANT_GRAPHS
    }
    nodes = {g: find_quant_nodes(models[g]) for g in QUANT_GRAPHS}
    o = CalibrateOptions(samples=4, prompts=2, sensitivity_samples=2, sensitivity_candidates=2, progress=False)
    feeder = Feeder(bundle)
    stats = collect_statistics(models, nodes, open_frames("refshapes:val", 4, 2, 0), feeder, o)
    plans = {g: plan_nodes(models[g], {}, o.min_intensity) for g in QUANT_GRAPHS}
    q = {g: quantize_ort(models[g], plans[g], stats.asymmetric(g)) for g in QUANT_GRAPHS}
    return bundle, models, nodes, stats, feeder, o, plans, q


def test_statistics_stage_covers_both_plans(real):
    _, models, nodes, stats, _, o, plans, _ = real
    assert isinstance(stats, Statistics) and stats.frames == 4 and stats.expressions == 8 and len(stats.kept) == 2
    for g in QUANT_GRAPHS:
        assert set(range_tensors(models[g], plans[g])) <= set(stats.ort_tensors[g])
        for t, r in stats.tensors[g].items():
            assert r.lo <= r.hi and r.amax >= 0, t
    amax = stats.amax()
    for g in QUANT_GRAPHS:
        for q in nodes[g]:
            for i in q.act_inputs:
                assert f"{q.key}:in{i}" in amax


def test_sensitivity_stage_is_typed(real):
    _, models, nodes, stats, feeder, o, _, _ = real
    sens = measure_sensitivity(models, nodes, stats, feeder, o)
    assert isinstance(sens, Sensitivity) and set(sens.nodes) == set(sens.groups) == set(QUANT_GRAPHS)
    for g in QUANT_GRAPHS:
        assert len(sens.nodes[g]) == len(nodes[g])
        want = min(max(o.sensitivity_candidates, o.keep_fp32), len(nodes[g]))  # measured end to end
        assert sum(s.score is not None for s in sens.nodes[g]) == want
        assert sens.groups[g][-1].group == "all" and sens.groups[g][-1].mask_prob_mae >= 0


def _init(m: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in m.graph.initializer}


def test_which_ops_run_in_int8(real):
    _, models, _, _, _, _, plans, _ = real
    enc, dec = models["image_encoder"], models["mask_decoder"]
    ep, dp = plans["image_encoder"], plans["mask_decoder"]
    init = _init(enc)
    image_convs = [n.name for n in enc.graph.node if n.op_type == "Conv" and n.input[0] == "image"]
    assert len(image_convs) == 3 and not set(image_convs) & set(ep.compute)  # 3-channel input: float
    dense = [
        n
        for n in enc.graph.node
        if n.op_type == "Conv"
        and n.input[1] in init
        and init[n.input[1]].dims[1] >= 32
        and not any(a.name == "group" and a.i > 1 for a in n.attribute)
    ]
    assert sum(n.name in ep.compute for n in dense) >= 0.9 * len(dense)  # the backbone / neck 1x1 convs
    assert len(ep.compute) >= 55
    ops = {n.name: n.op_type for n in enc.graph.node}
    assert {ops[x] for x in ep.quantize} <= {"Conv", "Gemm", "Add", "Clip", "Relu", "Resize", "Reshape"}
    assert sum(ops[x] == "Add" for x in ep.quantize) >= 10  # residual adds inside the region
    for name in ("AveragePool", "Softmax", "ReduceSum", "Mul"):
        assert name not in {ops[x] for x in ep.quantize}
    dops = {n.name: n.op_type for n in dec.graph.node}
    assert not [x for x in dp.quantize if dops[x] in ("MatMul", "Softmax", "LayerNormalization", "ConvTranspose")]
    gemms = [n.name for n in dec.graph.node if n.op_type == "Gemm"]
    assert sum(x in dp.compute for x in gemms) >= len(gemms) - 4  # the transformer's projections and FFN


def test_float_nodes_stay_float_in_onnx_runtime(real, tmp_path):
    """ONNX Runtime's optimizer turns every planned Conv into a QLinearConv and leaves every other Conv with its own
    float weight (its WeightBiasQuantization pass would re-quantize a float Conv next to the region per tensor)."""
    _, _, _, _, _, _, plans, q = real
    for g in QUANT_GRAPHS:
        assert u8s8_violations(q[g]) == []
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(tmp_path / f"{g}.opt.onnx")
        ort.InferenceSession(q[g].SerializeToString(), so, providers=["CPUExecutionProvider"])
        o = onnx.load(so.optimized_model_filepath)
        init = _init(o)
        kinds = {}
        for n in o.graph.node:
            base = n.name.split("_token_")[0]
            if n.op_type in ("Conv", "FusedConv", "QLinearConv", "ConvTranspose"):
                kinds[base] = n
        compute = set(plans[g].compute)
        for name, n in kinds.items():
            if name in compute and n.op_type != "ConvTranspose":
                assert n.op_type == "QLinearConv", (g, name)
            elif n.op_type != "QLinearConv":
                assert n.input[1] in init and init[n.input[1]].data_type == onnx.TensorProto.FLOAT, (g, name)
            else:
                pytest.fail(f"{g}: {name} is float in the plan but runs as {n.op_type}")


def test_int8_masks_track_fp32(real):
    """The INT8 graphs through the SDK pipeline (the same Segmenter, FP32 text encoder) on held-out RefShapes frames:
    masks agree with FP32's (4 calibration frames only: the full run is measured in the report)."""
    from ssp_edge.sdk.backends.onnxruntime import OnnxRuntimeBackend
    from ssp_edge.sdk.segmenter import Segmenter
    from ssp_edge.ssp.data.refshapes import RefShapes

    bundle, _, _, _, _, _, _, q = real
    graphs = {}
    for g in ("text_encoder", *QUANT_GRAPHS):
        e = bundle.graph(g, "portable", "fp32")
        graphs[g] = (e, q[g].SerializeToString() if g in q else bundle.read_bytes(e.file))
    int8 = Segmenter(bundle, OnnxRuntimeBackend.from_graphs(graphs, bundle.manifest.dynamic_axes))
    fp32 = Segmenter.open(bundle, backend="onnxruntime", precision="fp32")
    data = RefShapes("test")
    agree = []
    for i in (3, 7, 11):
        s = data[i]
        bgr = cv2.cvtColor(s.image, cv2.COLOR_RGB2BGR)
        a, b = fp32.segment(bgr, [s.expression])[0].prob, int8.segment(bgr, [s.expression])[0].prob
        agree.append(((a > 0.5) == (b > 0.5)).mean())
        assert np.abs(a - b).mean() < 0.03
    assert min(agree) > 0.97, agree
