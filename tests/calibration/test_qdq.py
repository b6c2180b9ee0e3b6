"""The Q/DQ pass on small hand-built graphs: TensorRT's rules read straight from the ONNX initializers,
and the quantized graph's numbers against a NumPy fake-quantization written here from the definition
(symmetric int8, scale = amax / 127, zero point 0, per-channel weights)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ssp_edge.calibration.names import UniqueNames
from ssp_edge.calibration.qdq import (
    QDQEmitter,
    find_quant_nodes,
    match_excludes,
    qdq_violations,
    quantize_model,
    range_keys,
)

RNG = np.random.default_rng(0)


def _model(nodes, inputs, outputs, inits) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    onnx.checker.check_model(m, full_check=True)
    return m


def conv_net() -> onnx.ModelProto:
    """Conv(bias) -> Relu -> depthwise Conv -> Conv -> output; the first Conv's output also feeds an Add."""
    inits = {
        "w1": RNG.normal(size=(8, 3, 3, 3)).astype(np.float32),
        "b1": RNG.normal(size=8).astype(np.float32),
        "w2": RNG.normal(size=(8, 1, 3, 3)).astype(np.float32),
        "w3": RNG.normal(size=(4, 8, 1, 1)).astype(np.float32) * 0.3,
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="dw", pads=[1, 1, 1, 1], group=8),
        helper.make_node("Add", ["c2", "c1"], ["a"], name="add"),
        helper.make_node("Conv", ["a", "w3"], ["y"], name="conv3"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 12, 12])],
        inits,
    )


def matmul_net() -> onnx.ModelProto:
    """Gemm(transB=1) -> Gemm(transB=0) -> MatMul(const B) -> MatMul(activation x activation)."""
    inits = {
        "g1": RNG.normal(size=(24, 16)).astype(np.float32),
        "gb": RNG.normal(size=24).astype(np.float32),
        "g2": RNG.normal(size=(24, 20)).astype(np.float32),
        "m1": RNG.normal(size=(20, 12)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Gemm", ["x", "g1", "gb"], ["h1"], name="gemm_t", transB=1),
        helper.make_node("Gemm", ["h1", "g2"], ["h2"], name="gemm_n"),
        helper.make_node("MatMul", ["h2", "m1"], ["h3"], name="mm_w"),
        helper.make_node("MatMul", ["h3", "k"], ["y"], name="mm_aa"),
    ]
    return _model(
        nodes,
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 16]),
            helper.make_tensor_value_info("k", TensorProto.FLOAT, [12, 7]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 7])],
        inits,
    )


def _run(m: onnx.ModelProto, feeds: dict, names=None) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(names, feeds)


def _ranges(m: onnx.ModelProto, feeds: dict) -> dict[str, float]:
    """amax of every range key, computed here by exposing the tensors and taking max |x|."""
    rk = range_keys(m)
    aug = onnx.ModelProto()
    aug.CopyFrom(m)
    inputs = {i.name for i in m.graph.input}
    extra = [t for t in rk if t not in inputs and t not in {o.name for o in m.graph.output}]
    for t in extra:
        aug.graph.output.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, None))
    outs = dict(zip([o.name for o in aug.graph.output], _run(aug, feeds)))
    outs.update(feeds)
    return {k: float(np.abs(outs[t]).max()) for t, keys in rk.items() for k in keys}


def _fq(x: np.ndarray, amax: float) -> np.ndarray:
    s = np.float32(amax / 127.0)
    return (np.clip(np.rint(x / s), -128, 127) * s).astype(np.float32)


def _fq_w(w: np.ndarray, axis: int) -> np.ndarray:
    red = tuple(d for d in range(w.ndim) if d != axis)
    s = (np.abs(w).max(axis=red, keepdims=True) / 127.0).astype(np.float32)
    return (np.clip(np.rint(w / s), -127, 127) * s).astype(np.float32)


def _qdq_nodes(m):
    return [n for n in m.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]


@pytest.mark.parametrize("build", [conv_net, matmul_net])
def test_tensorrt_rules_read_from_the_initializers(build):
    m = build()
    feeds = {
        i.name: RNG.normal(size=[d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
        for i in m.graph.input
    }
    q = quantize_model(m, _ranges(m, feeds), placement="tensorrt")
    onnx.checker.check_model(q, full_check=True)
    init = {t.name: t for t in q.graph.initializer}
    outputs = {o.name for o in q.graph.output}
    qdq = _qdq_nodes(q)
    assert qdq
    consumers = {}
    for n in q.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for n in qdq:
        zp = init[n.input[2]]  # explicit zero point, an initializer
        assert zp.data_type == TensorProto.INT8, n.name  # int8, never uint8
        assert not numpy_helper.to_array(zp).any(), n.name  # symmetric: zero point 0
        assert (numpy_helper.to_array(init[n.input[1]]) > 0).all()
        assert n.output[0] not in outputs  # no Q/DQ feeding a graph output directly
        if n.op_type == "DequantizeLinear" and n.input[0] in init:  # a weight
            w = init[n.input[0]]
            assert w.data_type == TensorProto.INT8
            assert np.abs(numpy_helper.to_array(w)).max() <= 127
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            (user,) = consumers[n.output[0]]
            attrs = {a.name: a.i for a in user.attribute}
            want = {"Conv": 0, "MatMul": len(w.dims) - 1, "Gemm": 0 if attrs.get("transB", 0) else 1}[user.op_type]
            assert axis == want and numpy_helper.to_array(init[n.input[1]]).size == w.dims[want]
    # biases stay float (TensorRT rejects int32 DequantizeLinear inputs)
    assert not [t for t in q.graph.initializer if t.data_type == TensorProto.INT32]
    # every Conv / Gemm / MatMul input now comes from a DequantizeLinear
    prod = {o: n for n in q.graph.node for o in n.output}
    for n in q.graph.node:
        if n.op_type in ("Conv", "Gemm", "MatMul"):
            assert all(prod[i].op_type == "DequantizeLinear" for i in n.input[:2]), n.name
    assert qdq_violations(q) == []


def test_numbers_match_a_numpy_fake_quantization():
    m = matmul_net()
    feeds = {"x": RNG.normal(size=(5, 16)).astype(np.float32), "k": RNG.normal(size=(12, 7)).astype(np.float32)}
    r = _ranges(m, feeds)
    q = quantize_model(m, r, placement="tensorrt")
    (got,) = _run(q, feeds)
    w = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    h1 = _fq(feeds["x"], r["g1:in0"]) @ _fq_w(w["g1"], 0).T + w["gb"]
    h2 = _fq(h1, r["g2:in0"]) @ _fq_w(w["g2"], 1)
    h3 = _fq(h2, r["m1:in0"]) @ _fq_w(w["m1"], 1)
    want = _fq(h3, r["mm_aa:in0"]) @ _fq(feeds["k"], r["mm_aa:in1"])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    (ref,) = _run(m, feeds)  # and close to FP32
    assert np.abs(got - ref).max() <= 0.05 * np.abs(ref).max()


def test_quantized_conv_net_stays_close_to_fp32():
    m = conv_net()
    x = RNG.normal(size=(1, 3, 12, 12)).astype(np.float32)
    q = quantize_model(m, _ranges(m, {"x": x}))
    (ref,), (got,) = _run(m, {"x": x}), _run(q, {"x": x})
    assert np.abs(got - ref).max() <= 0.05 * np.abs(ref).max()


def test_excluded_nodes_keep_float_inputs_and_weights():
    m = conv_net()
    x = RNG.normal(size=(1, 3, 12, 12)).astype(np.float32)
    hit, unused = match_excludes(find_quant_nodes(m), ["depthwise", "w3", "nothing*"])
    assert hit == {"dw", "conv3"} and unused == ["nothing*"]
    q = quantize_model(m, _ranges(m, {"x": x}), exclude=hit)
    prod = {o: n for n in q.graph.node for o in n.output}
    init = {t.name for t in q.graph.initializer}
    for n in q.graph.node:
        if n.name in hit:
            assert n.input[1] in init and all(i not in prod or prod[i].op_type != "DequantizeLinear" for i in n.input)
    assert match_excludes(find_quant_nodes(m), ["Conv"])[0] == {"conv1", "dw", "conv3"}


def test_tensorrt_placement_puts_pairs_on_inputs_only_each_q_with_its_own_dq():
    m = conv_net()
    x = RNG.normal(size=(1, 3, 12, 12)).astype(np.float32)
    q = quantize_model(m, _ranges(m, {"x": x}))
    cons = {}
    for n in q.graph.node:
        for i in n.input:
            cons.setdefault(i, []).append(n.op_type)
    assert sorted(cons["c1"]) == ["Add", "Relu"]  # no pair on a node output
    assert cons["r1"] == ["QuantizeLinear"] and cons["a"] == ["QuantizeLinear"]  # pairs on quantized inputs
    for n in q.graph.node:
        if n.op_type == "QuantizeLinear":
            assert cons[n.output[0]] == ["DequantizeLinear"]
    with pytest.raises(ValueError, match="placement"):
        quantize_model(m, _ranges(m, {"x": x}), placement="onnxruntime")  # ONNX Runtime has its own U8S8 graph


def test_one_emitter_one_name_allocator_never_reuses_a_name():
    """The emitter's names skip every name of the graph (node, tensor, initializer) and each other, even when the
    graph already uses the names the emitter would pick first."""
    m = conv_net()
    g = m.graph
    g.node[1].name = "x_in0_scale"  # a node named like a Q/DQ tag: taken
    g.initializer.append(numpy_helper.from_array(np.zeros(1, np.float32), "x_in0_zero_point"))
    emit = QDQEmitter(g)
    nodes, dq = emit.pair("x", 1.0, "x_in0")
    nodes2, dq2 = emit.pair("x", 1.0, "x_in0")
    wnodes, wdq = emit.weight(numpy_helper.to_array(g.initializer[0]), 0, "w1")
    emit.flush()
    names = [n.name for n in g.node] + [n.name for n in nodes + nodes2 + wnodes]
    tensors = (
        [t.name for t in g.initializer]
        + [o for n in list(g.node) + nodes + nodes2 + wnodes for o in n.output]
        + [i.name for i in g.input]
    )
    assert len(set(names)) == len(names) and len(set(tensors)) == len(tensors)
    assert "x_in0_scale" not in [i for n in nodes for i in n.input]  # the node's name was taken
    assert dq != dq2 and wdq not in (dq, dq2)
    fresh = UniqueNames(g)  # a later pass over the emitted graph sees the emitter's names as taken
    assert fresh("x_in0_scale") not in set(names) | set(tensors)


def test_violations_are_reported():
    m = matmul_net()
    feeds = {"x": RNG.normal(size=(5, 16)).astype(np.float32), "k": RNG.normal(size=(12, 7)).astype(np.float32)}
    q = quantize_model(m, _ranges(m, feeds))
    zp = next(t for t in q.graph.initializer if t.name.endswith("zero_point") and not t.dims)
    zp.CopyFrom(numpy_helper.from_array(np.array(3, np.uint8), zp.name))
    bad = qdq_violations(q)
    assert any("not INT8" in b for b in bad)
    dq = next(n for n in q.graph.node if n.op_type == "DequantizeLinear" and n.input[0].startswith("g1"))
    for a in dq.attribute:
        if a.name == "axis":
            a.i = 1  # gemm_t has transB=1: output channels are axis 0
    assert any("output-channel axis" in b for b in qdq_violations(q))


def test_missing_range_leaves_a_node_in_float():
    m = conv_net()
    x = RNG.normal(size=(1, 3, 12, 12)).astype(np.float32)
    r = _ranges(m, {"x": x})
    r.pop("w3:in0")
    q = quantize_model(m, r)
    conv3 = next(n for n in q.graph.node if n.name == "conv3")
    assert conv3.input[1] == "w3"
