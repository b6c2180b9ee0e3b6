"""The ONNX Runtime U8S8 INT8 plan (calibration.ort_int8) on small hand-built graphs: which nodes the planner puts in
int8 and why, the format read straight from the initializers, the ranges it was given (not a calibrator's), what
ONNX Runtime's optimizer makes of the graph (int8 nodes fused into integer kernels, float nodes left float), and the
numbers against a NumPy fake quantization written here from ONNX's QuantizeLinear definition."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ssp_edge.calibration.ort_int8 import OrtPlan, plan_nodes, quantize_ort, range_tensors, u8s8_violations

RNG = np.random.default_rng(3)


def _model(nodes, inputs, outputs, inits) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    onnx.checker.check_model(m, full_check=True)
    return m


def _w(*shape, scale=0.2) -> np.ndarray:
    w = RNG.normal(size=shape).astype(np.float32) * scale
    if len(shape) == 4 and shape[1] == 1:  # depthwise: channel scales spread over 100x (per-tensor int8 ruins them)
        w *= np.geomspace(0.03, 3.0, shape[0], dtype=np.float32)[:, None, None, None]
    return w


def encoder_net() -> onnx.ModelProto:
    """An image-encoder-like chain (the float convolutions have biases, as the exported ones: ONNX Runtime's
    WeightBiasQuantization pass only touches those):

    image (3 ch) -> stem Conv 3->32 (float: 3 input channels) -> Clip -+-> dw32 (float: < 64 channels) -> ``d0``
      +-> Conv 32->32 (int8, entry) -> Conv 32->64 -> Clip -> dw64 -> Clip -> Conv 64->32 (int8 chain, dw64 inside)
      -> Add(residual, int8) -> Conv 32->64 -> Clip -+-> gate dw64 (float: feeds a ReduceSum) -> ``gate``
                                                     +-> Conv 64->16 -> ``feat`` (int8, graph output)
    """
    inits = {
        "ws": _w(32, 3, 3, 3),
        "wdw0": _w(32, 1, 3, 3),
        "w0": _w(32, 32, 1, 1),
        "w1": _w(64, 32, 1, 1),
        "wdw1": _w(64, 1, 3, 3),
        "w2": _w(32, 64, 1, 1),
        "w3": _w(64, 32, 1, 1),
        "wg": _w(64, 1, 3, 3),
        "w4": _w(16, 64, 1, 1),
        "b4": RNG.normal(size=16).astype(np.float32),
        "bg": np.zeros(64, np.float32),
        "bd": RNG.normal(size=32).astype(np.float32) * 0.1,
        "lo": np.array(0.0, np.float32),
        "hi": np.array(6.0, np.float32),
        "ax": np.array([1], np.int64),
    }
    p = {"pads": [1, 1, 1, 1]}
    nodes = [
        helper.make_node("Conv", ["image", "ws"], ["s"], name="stem", **p),
        helper.make_node("Clip", ["s", "lo", "hi"], ["s6"], name="stem_clip"),
        helper.make_node("Conv", ["s6", "wdw0", "bd"], ["d0"], name="dw32", group=32, **p),
        helper.make_node("Conv", ["s6", "w0"], ["c0"], name="entry"),
        helper.make_node("Conv", ["c0", "w1"], ["e1"], name="expand"),
        helper.make_node("Clip", ["e1", "lo", "hi"], ["e1c"], name="expand_clip"),
        helper.make_node("Conv", ["e1c", "wdw1"], ["d1"], name="dw64", group=64, **p),
        helper.make_node("Clip", ["d1", "lo", "hi"], ["d1c"], name="dw64_clip"),
        helper.make_node("Conv", ["d1c", "w2"], ["pr"], name="project"),
        helper.make_node("Add", ["pr", "c0"], ["res"], name="residual"),
        helper.make_node("Conv", ["res", "w3"], ["e2"], name="expand2"),
        helper.make_node("Clip", ["e2", "lo", "hi"], ["e2c"], name="expand2_clip"),
        helper.make_node("Conv", ["e2c", "wg", "bg"], ["g1"], name="gate_dw", group=64, **p),
        helper.make_node("ReduceSum", ["g1", "ax"], ["gate"], name="gate_sum", keepdims=1),
        helper.make_node("Conv", ["e2c", "w4", "b4"], ["feat"], name="head"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 16])],
        [
            helper.make_tensor_value_info("feat", TensorProto.FLOAT, [1, 16, 16, 16]),
            helper.make_tensor_value_info("gate", TensorProto.FLOAT, [1, 1, 16, 16]),
            helper.make_tensor_value_info("d0", TensorProto.FLOAT, [1, 32, 16, 16]),
        ],
        inits,
    )


def attention_net() -> onnx.ModelProto:
    """A decoder-like block: Gemm q / k / v (int8) -> Q K^T (float) -> Softmax -> P V (float: Softmax input)
    -> Gemm out (int8) -> Add residual -> tiny Gemm 32->1 (float: N < 8)."""
    d = 32
    inits = {k: _w(d, d) for k in ("wq", "wk", "wv", "wo")}
    inits.update({"bq": np.zeros(d, np.float32), "wt": _w(d, 1)})
    nodes = [
        helper.make_node("Gemm", ["x", "wq", "bq"], ["q"], name="gemm_q"),
        helper.make_node("Gemm", ["x", "wk"], ["k"], name="gemm_k"),
        helper.make_node("Gemm", ["x", "wv"], ["v"], name="gemm_v"),
        helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[1, 0]),
        helper.make_node("MatMul", ["q", "kt"], ["s"], name="qk"),
        helper.make_node("Softmax", ["s"], ["p"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["a"], name="pv"),
        helper.make_node("Gemm", ["a", "wo"], ["o"], name="gemm_o"),
        helper.make_node("Add", ["o", "x"], ["y"], name="residual"),
        helper.make_node("Gemm", ["y", "wt"], ["t"], name="gemm_t"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [24, d])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [24, d]),
            helper.make_tensor_value_info("t", TensorProto.FLOAT, [24, 1]),
        ],
        inits,
    )


def _session(m: onnx.ModelProto, level: str = "ORT_ENABLE_ALL", save: str | None = None) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    if save:
        so.optimized_model_filepath = save
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _minmax(m: onnx.ModelProto, feeds: list[dict]) -> dict[str, tuple[float, float]]:
    """Every float tensor's observed (min, max), computed here by exposing all tensors (the reference ranges)."""
    aug = onnx.ModelProto()
    aug.CopyFrom(m)
    have = {o.name for o in aug.graph.output}
    for n in m.graph.node:
        for o in n.output:
            if o not in have:
                aug.graph.output.append(helper.make_tensor_value_info(o, TensorProto.FLOAT, None))
    s = _session(aug, "ORT_DISABLE_ALL")
    names = [o.name for o in s.get_outputs()]
    out: dict[str, tuple[float, float]] = {}
    for f in feeds:
        vals = dict(zip(names, s.run(None, f)))
        vals.update(f)
        for k, v in vals.items():
            if v.dtype == np.float32:
                lo, hi = out.get(k, (np.inf, -np.inf))
                out[k] = (min(lo, float(v.min())), max(hi, float(v.max())))
    return out


def _enc_feeds(n: int = 4) -> list[dict]:
    return [{"image": RNG.normal(size=(1, 3, 16, 16)).astype(np.float32)} for _ in range(n)]


def _att_feeds(n: int = 4) -> list[dict]:
    return [{"x": RNG.normal(size=(24, 32)).astype(np.float32)} for _ in range(n)]


def test_plan_of_an_encoder_chain():
    plan = plan_nodes(encoder_net(), min_intensity=0)
    assert plan.compute == ["entry", "expand", "dw64", "project", "expand2", "head"]
    assert {"expand_clip", "dw64_clip", "residual", "expand2_clip"} <= set(plan.quantize)  # the region is contiguous
    assert "gate_sum" not in plan.quantize and "stem_clip" not in plan.quantize  # float resumes / never left
    why = plan.kept_float
    assert "3 input" in why["stem"] and "32 channels < 64" in why["dw32"]
    assert "boundary" in why["gate_dw"]  # int8 input, float consumer: its conversions would cost more than it saves


def test_plan_keeps_attention_products_and_thin_gemms_float():
    plan = plan_nodes(attention_net(), min_intensity=0)
    assert plan.compute == ["gemm_q", "gemm_k", "gemm_v", "gemm_o"]
    assert "Softmax output" in plan.kept_float["pv"] and "product" in plan.kept_float["qk"]
    assert "N=1" in plan.kept_float["gemm_t"]
    assert "kt" not in plan.quantize  # a Transpose feeding only float nodes stays float


def test_isolated_nodes_need_the_intensity_and_excludes_win():
    m = attention_net()
    assert "isolated" in plan_nodes(m, min_intensity=1000).kept_float["gemm_q"]
    plan = plan_nodes(m, exclude={"gemm_v": "sensitivity (test)"}, min_intensity=0)
    assert plan.kept_float["gemm_v"] == "sensitivity (test)" and "gemm_v" not in plan.quantize


@pytest.mark.parametrize("build,feeds", [(encoder_net, _enc_feeds), (attention_net, _att_feeds)])
def test_u8s8_format_read_from_the_initializers(build, feeds):
    m = build()
    plan = plan_nodes(m, min_intensity=0)
    ranges = _minmax(m, feeds())
    q = quantize_ort(m, plan, ranges)
    onnx.checker.check_model(q, full_check=True)
    assert u8s8_violations(q) == []
    init = {t.name: t for t in q.graph.initializer}
    cons: dict[str, list[onnx.NodeProto]] = {}
    for n in q.graph.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)
    acts = 0
    for n in q.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zp, scale = init[n.input[2]], numpy_helper.to_array(init[n.input[1]])
        users = [c for c in cons.get(n.output[0], [])]
        if (
            n.op_type == "DequantizeLinear"
            and n.input[0] in init
            and any(c.op_type in ("Conv", "Gemm") and c.input[1] == n.output[0] for c in users)
        ):
            w = init[n.input[0]]  # a weight: int8, symmetric, one scale per output channel
            assert w.data_type == TensorProto.INT8 and zp.data_type == TensorProto.INT8
            assert not numpy_helper.to_array(zp).any()
            c = next(c for c in users if c.input[1] == n.output[0])
            assert scale.size == (w.dims[0] if c.op_type == "Conv" else w.dims[1])
        elif n.op_type == "DequantizeLinear" and n.input[0] in init and init[n.input[0]].data_type == TensorProto.INT32:
            assert not numpy_helper.to_array(zp).any()  # a bias: int32, zero point 0
        elif n.input[0] not in init:  # an activation: uint8 with a zero point, from the ranges given
            assert zp.data_type == TensorProto.UINT8
            acts += 1
            if n.op_type == "QuantizeLinear" and n.input[0] in ranges:
                lo, hi = ranges[n.input[0]]
                lo, hi = min(lo, 0.0), max(hi, 0.0)
                assert scale == pytest.approx((hi - lo) / 255.0, rel=1e-5)
                assert int(numpy_helper.to_array(zp)) == int(np.clip(np.rint(-lo / ((hi - lo) / 255.0)), 0, 255))
    assert acts >= 4


def test_onnx_runtime_fuses_the_int8_nodes_and_leaves_the_float_ones_float(tmp_path):
    """After ONNX Runtime's optimizer: every planned Conv is a QLinearConv, every other Conv a float Conv with its
    float weight (not requantized per tensor by ONNX Runtime's WeightBiasQuantization pass)."""
    m = encoder_net()
    plan = plan_nodes(m, min_intensity=0)
    q = quantize_ort(m, plan, _minmax(m, _enc_feeds()))
    opt = tmp_path / "opt.onnx"
    _session(q, "ORT_ENABLE_EXTENDED", str(opt))
    o = onnx.load(str(opt))
    convs = ("Conv", "FusedConv", "QLinearConv")
    by_prefix = {
        name: [n for n in o.graph.node if n.op_type in convs and (n.name == name or n.name.startswith(name + "_token"))]
        for name in ("stem", "dw32", "entry", "expand", "dw64", "project", "expand2", "gate_dw", "head")
    }
    for name in plan.compute:
        assert [n.op_type for n in by_prefix[name]] == ["QLinearConv"], name
    init = {t.name: t for t in o.graph.initializer}
    for name in ("stem", "dw32", "gate_dw"):
        (conv,) = by_prefix[name]
        assert conv.op_type in ("Conv", "FusedConv"), name
        assert init[conv.input[1]].data_type == TensorProto.FLOAT, name  # its own float weight
    # dw32 reads the stem's float output again; gate_dw (int8 producer) reads it through the no-op barrier
    nodes = {n.name: n for n in q.graph.node}
    assert nodes["dw32"].input[0] == "s6"
    barrier = next(n for n in q.graph.node if n.output[0] == nodes["gate_dw"].input[0])
    assert (
        barrier.op_type == "Max"
        and numpy_helper.to_array(next(t for t in q.graph.initializer if t.name == barrier.input[1]))
        == np.finfo(np.float32).min
    )


def _fq_u8(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """QuantizeLinear / DequantizeLinear (uint8) by ONNX's definition, with ONNX Runtime's scale and zero point."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    s = np.float32((hi - lo) / 255.0)
    z = np.clip(np.rint(-lo / s), 0, 255)
    return ((np.clip(np.rint(x / s) + z, 0, 255) - z) * s).astype(np.float32)


def _fq_w(w: np.ndarray, axis: int) -> np.ndarray:
    red = tuple(d for d in range(w.ndim) if d != axis)
    s = np.abs(w).max(axis=red, keepdims=True) / 127.0
    return (np.clip(np.rint(w / s), -127, 127) * s).astype(np.float32)


def test_gemm_chain_matches_a_numpy_fake_quantization_and_fp32():
    """x -> Gemm -> Relu -> Gemm: the U8S8 graph on ONNX Runtime's integer kernels against NumPy fake quantization
    (uint8 activations, symmetric per-channel int8 weights) within a few output steps, and close to FP32."""
    inits = {"w1": _w(48, 32), "b1": RNG.normal(size=48).astype(np.float32) * 0.1, "w2": _w(48, 24)}
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="g1", transB=1),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Gemm", ["r", "w2"], ["y"], name="g2"),
    ]
    m = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 24])],
        inits,
    )
    feeds = [{"x": RNG.normal(size=(64, 32)).astype(np.float32)} for _ in range(3)]
    ranges = _minmax(m, feeds)
    plan = plan_nodes(m, min_intensity=0)
    assert plan.compute == ["g1", "g2"] and "relu" in plan.quantize
    q = quantize_ort(m, plan, ranges)
    x = feeds[0]["x"]
    (got,) = _session(q).run(None, {"x": x})
    (ref,) = _session(m).run(None, {"x": x})
    h = _fq_u8(x, *ranges["x"]) @ _fq_w(inits["w1"], 0).T + inits["b1"]
    r = _fq_u8(np.maximum(h, 0), *ranges["r"])
    want = r @ _fq_w(inits["w2"], 1)
    step = float(np.abs(want).max()) / 127  # the output is float: a few weight / activation steps of rounding
    assert np.abs(got - want).max() <= 3 * step
    assert np.abs(got - ref).max() <= 0.03 * np.abs(ref).max()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_encoder_chain_parity_on_fixed_seeds(seed):
    """ONNX Runtime's fused integer kernels compute what the Q/DQ graph says (the same graph with every optimisation
    off: float math on fake-quantized tensors), and stay close to FP32 (measured 2.3-5.3 % relative L2 on seeds 0-3
    for 6 int8 nodes with random weights; the bound leaves room for other CPUs' rounding)."""
    rng = np.random.default_rng(seed)
    m = encoder_net()
    calib = [{"image": rng.normal(size=(1, 3, 16, 16)).astype(np.float32)} for _ in range(8)]
    q = quantize_ort(m, plan_nodes(m, min_intensity=0), _minmax(m, calib))
    x = {"image": rng.normal(size=(1, 3, 16, 16)).astype(np.float32)}
    ref, got = _session(m).run(None, x), _session(q).run(None, x)
    definition = _session(q, "ORT_DISABLE_ALL").run(None, x)
    for r, g, d in zip(ref, got, definition):
        assert np.linalg.norm(g - d) <= 0.01 * np.linalg.norm(d)  # no node requantized behind the graph's back
        rel = np.linalg.norm(g - r) / np.linalg.norm(r)
        assert rel < 0.08, rel


def test_ranges_must_cover_every_tensor_and_an_empty_plan_copies():
    m = attention_net()
    plan = plan_nodes(m, min_intensity=0)
    ranges = _minmax(m, _att_feeds(1))
    need = range_tensors(m, plan)
    assert "x" in need and "q" in need and "p" not in need
    with pytest.raises(KeyError, match="no calibrated range"):
        quantize_ort(m, plan, {k: v for k, v in ranges.items() if k != "q"})
    same = quantize_ort(m, OrtPlan(), ranges)
    assert same.SerializeToString() == m.SerializeToString()


def test_violations_are_reported():
    m = attention_net()
    q = quantize_ort(m, plan_nodes(m, min_intensity=0), _minmax(m, _att_feeds(1)))
    zp = next(t for t in q.graph.initializer if t.data_type == TensorProto.UINT8 and not t.dims)
    zp.CopyFrom(numpy_helper.from_array(np.array(0, np.int8), zp.name))
    assert any("not UINT8" in b for b in u8s8_violations(q))
