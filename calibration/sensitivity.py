"""Per-node quantization sensitivity, in two cheap stages.

1. **Local error of every node** in one run per frame: the graph gets, beside each quantizable node, a
   twin that reads the fake-quantized FP32 inputs (``DQ(Q(x))``, ``DQ(W_int8)``); the relative L2 error of
   the twin's output is that node's own quantization error (no accumulation from earlier layers).
2. **End-to-end error of the worst candidates**, one node at a time: the graph is rebuilt once as a
   *switchable* model in which each candidate reads ``Where(flag_j, DQ(Q(x)), x)`` and
   ``Where(flag_j, DQ(W_int8), W)`` with one boolean input per candidate, so a single ONNX Runtime session
   serves every "only node j quantized" configuration (all flags off reproduces FP32 exactly). The score
   is the mean absolute change of the mask probabilities (``sigmoid(mask_logits)`` over pixels, prompts
   and frames); image-encoder nodes are scored through the FP32 mask decoder.

Nodes are ranked by the end-to-end score (then the local error); the worst few stay in float.
The same switchable model also scores whole *groups* (every node of one kind switched on together, e.g.
all products of two activations): quantization error accumulates, and a group can hurt far more than any
of its nodes alone (on ssp_lite the 18 attention products cost 2.5 mIoU points together while no single
one stands out).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .qdq import QDQEmitter, QuantNode, insert_nodes

__all__ = ["NodeSensitivity", "switch_model", "SwitchRunner", "rank"]


@dataclass
class NodeSensitivity:
    graph: str
    node: str
    op_type: str
    key: str
    local: float  # relative L2 error of the node's own output from quantizing its inputs and weight
    score: float | None = None  # mean |d sigmoid(mask logit)| with only this node quantized (if measured)

    def to_dict(self) -> dict:
        return {
            "graph": self.graph,
            "node": self.node,
            "op_type": self.op_type,
            "key": self.key,
            "local_rel_error": self.local,
            "mask_prob_mae": self.score,
        }


def _fake_quant(
    emit: QDQEmitter,
    node: onnx.NodeProto,
    q: QuantNode,
    ranges: Mapping[str, float],
    init: Mapping[str, TensorProto],
    tag: str,
) -> tuple[list[onnx.NodeProto], dict[int, str], dict[int, str]]:
    """Q/DQ nodes fake-quantizing ``node``'s activation inputs and weight exactly as
    :func:`calibration.qdq.quantize_model` does (same emitter); returns (nodes, {input index: fake-quantized tensor},
    {input index: original tensor})."""
    pre: list[onnx.NodeProto] = []
    fq: dict[int, str] = {}
    orig: dict[int, str] = {}
    for i in q.act_inputs:
        amax = float(ranges.get(f"{q.key}:in{i}") or 0.0)
        if amax <= 0 or not np.isfinite(amax):
            continue
        nodes, dq = emit.pair(node.input[i], amax, f"{tag}_in{i}")
        pre += nodes
        fq[i], orig[i] = dq, node.input[i]
    if q.weight_input is not None:
        w = node.input[q.weight_input]
        nodes, dq = emit.weight(numpy_helper.to_array(init[w]), q.weight_axis, f"{tag}_w")  # type: ignore[arg-type]
        pre += nodes
        fq[q.weight_input], orig[q.weight_input] = dq, w
    return pre, fq, orig


def switch_model(
    model: onnx.ModelProto, nodes: Sequence[QuantNode], ranges: Mapping[str, float]
) -> tuple[onnx.ModelProto, list[str]]:
    """``model`` with a boolean input per node in ``nodes`` switching its fake quantization on."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    by_name = {n.name: n for n in g.node}
    init = {t.name: t for t in g.initializer}
    emit = QDQEmitter(g)
    before: dict[str, list[onnx.NodeProto]] = {}
    flags = []
    for j, q in enumerate(nodes):
        node = by_name[q.name]
        flag = emit.names(f"qsw_{j}")
        flags.append(flag)
        g.input.append(helper.make_tensor_value_info(flag, TensorProto.BOOL, []))
        pre, fq, orig = _fake_quant(emit, node, q, ranges, init, f"qsw_{j}")
        for i, t in fq.items():
            sw, out = emit.node("Where", [flag, t, orig[i]], f"qsw_{j}_where{i}")
            pre.append(sw)
            node.input[i] = out
        before[q.name] = pre
    insert_nodes(g, before)
    emit.flush()
    return m, flags


class SwitchRunner:
    """An ONNX Runtime session of a switchable model; ``run(feeds, on=[j, ...])``."""

    def __init__(self, model: onnx.ModelProto, nodes: Sequence[QuantNode], ranges: Mapping[str, float]):
        from ssp_edge.sdk.backends.onnxruntime import create_session

        sw, self.flags = switch_model(model, nodes, ranges)
        self.session = create_session(sw.SerializeToString())
        self.outputs = [o.name for o in model.graph.output]

    def run(self, feeds: Mapping[str, np.ndarray], on: Sequence[int] = ()) -> list[np.ndarray]:
        f = dict(feeds)
        on_set = set(on)
        for j, name in enumerate(self.flags):
            f[name] = np.array(j in on_set)
        return self.session.run(self.outputs, f)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def mask_prob_mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(_sigmoid(np.asarray(a, np.float64)) - _sigmoid(np.asarray(b, np.float64)))))


def local_error_model(
    model: onnx.ModelProto, nodes: Sequence[QuantNode], ranges: Mapping[str, float]
) -> tuple[onnx.ModelProto, list[tuple[str, str]]]:
    """``model`` plus a fake-quantized twin of every node; returns (model, [(output, twin output)])."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    by_name = {n.name: n for n in g.node}
    init = {t.name: t for t in g.initializer}
    emit = QDQEmitter(g)
    pairs = []
    after: dict[str, list[onnx.NodeProto]] = {}
    have_out = {o.name for o in g.output}
    for j, q in enumerate(nodes):
        node = by_name[q.name]
        extra, fq, _ = _fake_quant(emit, node, q, ranges, init, f"lerr_{j}")
        twin = onnx.NodeProto()
        twin.CopyFrom(node)
        twin.name = emit.names(f"lerr_{j}_twin")
        for i, t in fq.items():
            twin.input[i] = t
        del twin.output[:]
        twin.output.append(emit.names(f"lerr_{j}_out"))
        for extra_out in node.output[1:]:  # a second output (none for Conv / Gemm / MatMul) gets a fresh name too
            twin.output.append(emit.names(f"{extra_out}_lerr_{j}"))
        after[q.name] = extra + [twin]
        for t in (node.output[0], twin.output[0]):
            if t not in have_out:
                g.output.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, None))
                have_out.add(t)
        pairs.append((node.output[0], twin.output[0]))
    insert_nodes(g, after=after)
    emit.flush()
    return m, pairs


def local_errors(
    model: onnx.ModelProto,
    nodes: Sequence[QuantNode],
    ranges: Mapping[str, float],
    feeds: Sequence[Mapping[str, np.ndarray]],
) -> list[float]:
    """Relative L2 error ``||twin - out|| / ||out||`` per node, pooled over ``feeds``."""
    from ssp_edge.sdk.backends.onnxruntime import create_session

    m, pairs = local_error_model(model, nodes, ranges)
    sess = create_session(m.SerializeToString())
    names = sorted({t for p in pairs for t in p})
    num = np.zeros(len(pairs))
    den = np.zeros(len(pairs))
    for f in feeds:
        res = dict(zip(names, sess.run(names, dict(f))))
        for k, (a, b) in enumerate(pairs):
            ref = np.asarray(res[a], np.float64)
            num[k] += float(np.sum((np.asarray(res[b], np.float64) - ref) ** 2))
            den[k] += float(np.sum(ref**2))
    return [float(np.sqrt(n / d)) if d > 0 else 0.0 for n, d in zip(num, den)]


def node_groups(nodes: Sequence[QuantNode]) -> dict[str, list[int]]:
    """Node indices by kind: convolutions, depthwise convolutions, Gemm, MatMul with a weight, and
    products of two activations (attention scores / attention x values)."""
    out: dict[str, list[int]] = {}
    for j, q in enumerate(nodes):
        if q.op_type == "Conv":
            k = "Conv (depthwise)" if q.depthwise else "Conv"
        elif q.weight_input is None:
            k = f"{q.op_type} (activation x activation)"
        else:
            k = f"{q.op_type} (weights)"
        out.setdefault(k, []).append(j)
    return out


def rank(sens: Sequence[NodeSensitivity]) -> list[NodeSensitivity]:
    """Worst first: measured end-to-end scores first (largest first), then by local error."""
    return sorted(sens, key=lambda s: (s.score is None, -(s.score or 0.0), -s.local))
