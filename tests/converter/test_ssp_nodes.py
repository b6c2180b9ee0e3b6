"""The ``ssp::`` ONNX nodes: OpSchemas (checker, shape inference) and their ONNX Runtime reference
implementations, against the PyTorch reference ops, parametrized over backends (NumPy functions,
single-node ONNX graphs on ONNX Runtime) like mmdeploy's op tests."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from ssp_edge.converter import ort_ops
from ssp_edge.converter.schemas import DOMAIN, register_schemas
from ssp_edge.ssp.models import ops as ref

BACKENDS = ("numpy", "onnxruntime")
# (batch, channels, grid h, grid w, cell): edge cells, odd grids, batch > 1, several channel counts
CASES = [
    (1, 1, 1, 1, 4),
    (2, 3, 3, 5, 4),
    (1, 7, 4, 3, 2),
    (3, 16, 5, 5, 4),
    (2, 5, 2, 7, 3),
    (1, 2, 1, 1, 8),
    (2, 32, 4, 3, 8),
]  # cell 8: model v2's superpixel grid


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _assoc(b: int, hh: int, ww: int, rng: np.random.Generator) -> np.ndarray:
    q = rng.random((b, 9, hh, ww)).astype(np.float32) + 0.05
    return q / q.sum(1, keepdims=True)


def _run_node(op: str, inputs: list[np.ndarray], out_shape: list[int] | None, **attrs) -> np.ndarray:
    """One ``ssp::op`` node as an ONNX model with symbolic shapes, run by ONNX Runtime."""
    register_schemas()
    names = [f"in{i}" for i in range(len(inputs))]
    node = helper.make_node(op, names, ["out"], domain=DOMAIN, plugin_namespace="ssp", plugin_version="1", **attrs)
    graph = helper.make_graph(
        [node],
        op,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["b"] + list(x.shape[1:])) for n, x in zip(names, inputs)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None] * 4)],
    )
    model = helper.make_model(
        graph, ir_version=10, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(DOMAIN, 1)]
    )
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    dims = [d.dim_param or d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim]
    assert dims == ["b"] + out_shape[1:], f"shape inference gave {dims}"
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".onnx") as f:
        onnx.save(model, f.name)
        sess = ort_ops.make_session(f.name)
        return sess.run(None, dict(zip(names, inputs)))[0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES)
def test_aggregate(backend, case):
    b, c, h, w, cell = case
    rng = _rng(1)
    x = rng.standard_normal((b, c, h * cell, w * cell)).astype(np.float32)
    q = _assoc(b, h * cell, w * cell, rng)
    want = ref.superpixel_aggregate(torch.from_numpy(x), torch.from_numpy(q), cell).numpy()
    if backend == "numpy":
        got = ort_ops.aggregate(x, q, cell)
    else:
        got = _run_node("SuperpixelAggregate", [x, q], list(want.shape), cell=cell, eps=1e-8)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES)
def test_propagate(backend, case):
    b, c, h, w, cell = case
    rng = _rng(2)
    z = rng.standard_normal((b, c, h, w)).astype(np.float32)
    q = _assoc(b, h * cell, w * cell, rng)
    want = ref.superpixel_propagate(torch.from_numpy(z), torch.from_numpy(q), cell).numpy()
    if backend == "numpy":
        got = ort_ops.propagate(z, q, cell)
    else:
        got = _run_node("SuperpixelPropagate", [z, q], list(want.shape), cell=cell)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 5, 7), (1, 16, 4, 4)])
def test_replication_upsample(backend, scale, shape):
    b, c, h, w = shape
    rng = _rng(3)
    x = rng.standard_normal((b, c, h, w)).astype(np.float32)
    g = rng.random((b, 1, h * scale, w * scale)).astype(np.float32)
    y = rng.standard_normal((b, c * scale * scale, h, w)).astype(np.float32)
    want = ref.replication_upsample(*map(torch.from_numpy, (x, g, y)), scale).numpy()
    if backend == "numpy":
        got = ort_ops.replication_upsample(x, g, y, scale)
    else:
        got = _run_node("ReplicationUpsample", [x, g, y], list(want.shape), scale=scale)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_checker_rejects_node_without_required_attribute():
    register_schemas()
    node = helper.make_node("SuperpixelPropagate", ["z", "q"], ["y"], domain=DOMAIN)  # no cell
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 2, 3, 3]),
            helper.make_tensor_value_info("q", TensorProto.FLOAT, [1, 9, 12, 12]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * 4)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(DOMAIN, 1)])
    with pytest.raises(onnx.checker.ValidationError, match="cell"):
        onnx.checker.check_model(model, full_check=True)


def test_plugin_scope_routes_model_ops_to_custom_ops():
    """Inside plugin_ops the model's calls hit torch.ops.ssp.* (same numbers); outside, the reference."""
    from ssp_edge.converter.torch_ops import plugin_ops

    rng = _rng(4)
    x, q = (
        torch.from_numpy(rng.standard_normal((1, 4, 8, 8)).astype(np.float32)),
        torch.from_numpy(_assoc(1, 8, 8, rng)),
    )
    with plugin_ops():
        out = ref.superpixel_aggregate(x, q, 4)
        assert ref._OVERRIDES.get("superpixel_aggregate") is torch.ops.ssp.superpixel_aggregate
    assert "superpixel_aggregate" not in ref._OVERRIDES
    torch.testing.assert_close(out, ref.superpixel_aggregate(x, q, 4))
