"""The FP16 pass: float32 graph I/O, LayerNormalization / Softmax / reductions kept float32 (read from the
converted graph after ONNX shape inference), the rest float16, and ONNX Runtime CPU outputs close to FP32."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from ssp_edge.calibration.fp16 import convert_fp16

RNG = np.random.default_rng(2)
F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16


def _net() -> onnx.ModelProto:
    inits = {
        "w": RNG.normal(size=(16, 16)).astype(np.float32) * 0.3,
        "b": RNG.normal(size=16).astype(np.float32),
        "g": np.ones(16, np.float32),
        "beta": np.zeros(16, np.float32),
        "cw": RNG.normal(size=(4, 2, 3, 3)).astype(np.float32) * 0.3,
        "scales": np.array([1, 1, 2, 2], np.float32),
        "roi": np.zeros(0, np.float32),
        "axes": np.array([-1], np.int64),
        "big": np.array(1e6, np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
        helper.make_node("Add", ["h", "b"], ["h2"], name="add"),
        helper.make_node("LayerNormalization", ["h2", "g", "beta"], ["ln"], name="ln", axis=-1),
        helper.make_node("Softmax", ["ln"], ["sm"], name="softmax", axis=-1),
        helper.make_node("ReduceMean", ["sm", "axes"], ["rm"], name="rmean", keepdims=1),
        helper.make_node("Mul", ["sm", "rm"], ["y"], name="mul"),
        helper.make_node("Min", ["y", "big"], ["y2"], name="min"),  # a constant beyond the float16 range
        helper.make_node("Conv", ["img", "cw"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Resize", ["c", "roi", "scales"], ["z"], name="resize", mode="nearest"),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", F32, ["n", 16]), helper.make_tensor_value_info("img", F32, [1, 2, 8, 8])],
        [helper.make_tensor_value_info("y2", F32, ["n", 16]), helper.make_tensor_value_info("z", F32, [1, 4, 16, 16])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    onnx.checker.check_model(m, full_check=True)
    return m


def _types(m: onnx.ModelProto) -> dict[str, int]:
    inf = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    t = {
        v.name: v.type.tensor_type.elem_type
        for v in list(inf.graph.value_info) + list(inf.graph.output) + list(inf.graph.input)
    }
    t.update({i.name: i.data_type for i in inf.graph.initializer})
    return t


def _run(m, feeds):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)


def test_mixed_precision_layout():
    m = _net()
    h = convert_fp16(m)
    onnx.checker.check_model(h, full_check=True)
    t = _types(h)
    assert [t[i.name] for i in h.graph.input] == [F32, F32]
    assert [t[o.name] for o in h.graph.output] == [F32, F32]
    node = {n.name: n for n in h.graph.node}
    for name in ("ln", "softmax", "rmean"):  # kept float32, inputs and outputs
        n = node[name]
        assert all(t[i] == F32 for i in n.input if i and t.get(i) in (F32, F16)), name
        assert all(t[o] == F32 for o in n.output), name
    for name in ("mm", "add", "mul", "conv"):
        assert t[node[name].output[0]] == F16, name
    assert t[node["resize"].input[2]] == F32  # Resize 'scales' is float32 by the operator's definition
    assert t[node["resize"].input[0]] == F16
    casts = [n for n in h.graph.node if n.op_type == "Cast"]
    assert len({n.name for n in casts}) == len(casts)  # unique names (the onnxruntime converter's bug)


def test_outputs_close_to_fp32():
    m = _net()
    feeds = {"x": RNG.normal(size=(3, 16)).astype(np.float32), "img": RNG.normal(size=(1, 2, 8, 8)).astype(np.float32)}
    ref = _run(m, feeds)
    got = _run(convert_fp16(m), feeds)
    for a, b in zip(ref, got):
        assert b.dtype == np.float32
        np.testing.assert_allclose(b, a, rtol=2e-2, atol=2e-3 * np.abs(a).max())


def test_keep_nodes_by_name():
    h = convert_fp16(_net(), keep_nodes=["mm"])
    t = _types(h)
    assert t[next(n for n in h.graph.node if n.name == "mm").output[0]] == F32
