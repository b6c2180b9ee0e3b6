"""Explicit INT8 quantization of an ONNX graph for TensorRT: QuantizeLinear / DequantizeLinear (Q/DQ) pairs that
TensorRT consumes directly ("explicit quantization", the only INT8 mode of TensorRT 11); plain ONNX Runtime runs
them too (the report's "TensorRT plan" accuracy).

Why the TensorRT graphs get their Q/DQ nodes from this module instead of a PTQ library (measured on this
repository's graphs, ONNX Runtime 1.31, onnx 1.23):

* ``nvidia-modelopt[onnx]`` cannot be installed next to this project: on x86_64 Linux it requires
  ``onnxruntime-gpu~=1.24`` (replacing the CPU ``onnxruntime`` package the SDK uses), ``cupy-cuda12x``
  and ``onnx~=1.21`` (a downgrade of the exporter's onnx).
* ``onnxruntime.quantization.quantize_static`` (QDQ format) was tried first. Three problems:
  (1) its histogram calibrators keep every intermediate tensor of every calibration sample in memory
  before binning (512 decoder samples would need tens of GB) and the entropy method runs with 128
  bins, where the KL search has a single candidate (the maximum); (2) by default it quantizes Conv/Gemm
  biases to int32 ``DequantizeLinear`` inputs, which TensorRT's parser rejects ("only activation types
  allowed"); (3) its shared Q nodes are merged by ONNX Runtime's common-subexpression pass into one Q
  with several DQ consumers, and ONNX Runtime on x86 then cannot convert those int8 pairs to the uint8
  form its integer kernels need, so 27 of 65 image-encoder convolutions stayed in float with
  per-inference weight dequantization and the model got *slower* than FP32.

So calibration statistics come from :mod:`calibration.stats` and this pass writes the Q/DQ graph with
exactly TensorRT's rules (the ONNX Runtime graph, :mod:`calibration.ort_int8`, does use ``quantize_static``: fed
with these statistics through its calibration cache, uint8 activations, which TensorRT does not take):

* int8 (never uint8), symmetric, zero point 0 on every Q/DQ node (``scale = amax / 127``);
* weights: per-channel, ``axis`` = output-channel dimension (Conv: 0; Gemm: 0 when ``transB=1`` else 1;
  MatMul with a constant B: the last dimension), stored as int8 initializers behind a DequantizeLinear;
* activations: per-tensor, a Q/DQ pair on every activation input of Conv / MatMul / Gemm;
* biases stay float (TensorRT fuses them; ONNX Runtime >= 1.21 quantizes a float bias itself);
* never a Q/DQ pair directly in front of a graph output.

One placement, ``tensorrt`` (both flavours' TensorRT graphs, manifest ``qdq_plan: "tensorrt"``): Q/DQ on the
inputs of the quantized nodes only, as NVIDIA's Q/DQ placement guide recommends; TensorRT fuses each Q into the
producing layer. (ONNX Runtime CPU gets its own U8S8 graph, :mod:`calibration.ort_int8`: ONNX Runtime's x86
integer kernels take unsigned activations, and most symmetric int8 pairs did not fuse there.)

All of this module's Q/DQ nodes, and the sensitivity pass's fake quantization, are written by one
:class:`QDQEmitter` whose names come from one :class:`~calibration.names.UniqueNames` allocator.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .names import UniqueNames

__all__ = [
    "QUANT_OPS",
    "PLACEMENTS",
    "QuantNode",
    "find_quant_nodes",
    "range_keys",
    "match_excludes",
    "quantize_weight",
    "QDQEmitter",
    "insert_nodes",
    "quantize_model",
    "qdq_violations",
    "ACT_QMAX",
]

#: op types that get int8 inputs (TensorRT's weighted layers and matrix products)
QUANT_OPS = ("Conv", "Gemm", "MatMul")
PLACEMENTS = ("tensorrt",)  # ONNX Runtime CPU has its own U8S8 graph: calibration.ort_int8
ACT_QMAX = 127.0  # symmetric int8: [-127, 127] * scale (Q itself clamps to [-128, 127])
_MIN_SCALE = 1e-12


@dataclass(frozen=True)
class QuantNode:
    """A node to quantize. ``key`` names it independently of the flavour (the weight initializer's name,
    or the node name for a product of two activations), so ranges calibrated on the portable graph apply
    to the plugin graph too."""

    name: str
    op_type: str
    key: str
    act_inputs: tuple[int, ...]  # input indices quantized per tensor
    weight_input: int | None  # input index of the constant weight (per-channel), if any
    weight_axis: int | None
    depthwise: bool = False

    @property
    def label(self) -> str:
        return self.key if self.key == self.name else f"{self.name} ({self.key})"


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return default


def find_quant_nodes(model: onnx.ModelProto) -> list[QuantNode]:
    """Every Conv / Gemm / MatMul of the main graph with a float activation input, in graph order."""
    init = {t.name: t for t in model.graph.initializer}
    out: list[QuantNode] = []
    for n in model.graph.node:
        if n.op_type not in QUANT_OPS or n.domain not in ("", "ai.onnx"):
            continue
        if n.op_type == "Conv":
            w = init.get(n.input[1])
            if w is None or n.input[0] in init:
                continue  # a convolution with a computed weight: leave it alone
            out.append(QuantNode(n.name, n.op_type, n.input[1], (0,), 1, 0, _attr(n, "group", 1) > 1))
        elif n.op_type == "Gemm":
            if n.input[0] in init:
                continue
            if n.input[1] in init and len(init[n.input[1]].dims) == 2:
                axis = 0 if _attr(n, "transB", 0) else 1
                out.append(QuantNode(n.name, n.op_type, n.input[1], (0,), 1, axis))
            else:
                out.append(QuantNode(n.name, n.op_type, n.name, (0, 1), None, None))
        else:  # MatMul
            a_const, b_const = n.input[0] in init, n.input[1] in init
            if a_const and b_const:
                continue
            if b_const and len(init[n.input[1]].dims) >= 2:
                out.append(QuantNode(n.name, n.op_type, n.input[1], (0,), 1, len(init[n.input[1]].dims) - 1))
            elif not a_const and not b_const:
                out.append(QuantNode(n.name, n.op_type, n.name, (0, 1), None, None))
    keys = [q.key for q in out]
    if len(set(keys)) != len(keys):  # a weight shared by several nodes: fall back to node names
        dup = {k for k in keys if keys.count(k) > 1}
        out = [QuantNode(q.name, q.op_type, f"{q.key}@{q.name}", *_rest(q)) if q.key in dup else q for q in out]
    return out


def _rest(q: QuantNode) -> tuple:
    return q.act_inputs, q.weight_input, q.weight_axis, q.depthwise


def range_keys(model: onnx.ModelProto, nodes: Iterable[QuantNode] | None = None) -> dict[str, list[str]]:
    """Tensor name -> the range keys (``KEY:inI`` / ``KEY:out``) it provides, for every activation input
    and output of the quantizable nodes."""
    by_name = {n.name: n for n in model.graph.node}
    out: dict[str, list[str]] = {}
    for q in nodes if nodes is not None else find_quant_nodes(model):
        node = by_name[q.name]
        for i in q.act_inputs:
            out.setdefault(node.input[i], []).append(f"{q.key}:in{i}")
        out.setdefault(node.output[0], []).append(f"{q.key}:out")
    return out


def match_excludes(nodes: Iterable[QuantNode], patterns: Iterable[str]) -> tuple[set[str], list[str]]:
    """Node names matched by ``patterns`` (exact or glob on node name, weight key or op type; ``depthwise``
    names every grouped convolution) and the patterns that matched nothing."""
    nodes = list(nodes)
    hit: set[str] = set()
    unused: list[str] = []
    for p in patterns:
        found = {
            q.name
            for q in nodes
            if fnmatch.fnmatchcase(q.name, p)
            or fnmatch.fnmatchcase(q.key, p)
            or q.op_type == p
            or (p == "depthwise" and q.depthwise)
        }
        if not found:
            unused.append(p)
        hit |= found
    return hit, unused


def quantize_weight(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel int8: ``(q int8, scale float32 per channel)`` with ``w ~= q * scale``."""
    w = np.asarray(w, np.float32)
    red = tuple(d for d in range(w.ndim) if d != axis)
    amax = np.abs(w).max(axis=red) if red else np.abs(w)
    scale = np.where(amax > 0, amax / ACT_QMAX, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.rint(w / scale.reshape(shape)), -ACT_QMAX, ACT_QMAX).astype(np.int8)
    return q, scale


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    cons: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            if i:
                cons.setdefault(i, []).append(n)
    return cons


class QDQEmitter:
    """The one writer of TensorRT-rule Q/DQ nodes (symmetric int8, zero point 0, per-channel int8 weights) for a graph:
    the INT8 graphs (:func:`quantize_model`) and the sensitivity pass's fake quantization
    (:mod:`calibration.sensitivity`) both emit through it. Every node, tensor and initializer name comes from one
    :class:`~calibration.names.UniqueNames` over the graph, so nothing collides with the graph's own names or with
    each other; new initializers collect in :attr:`initializers` (see :meth:`flush`)."""

    def __init__(self, graph: onnx.GraphProto):
        self.graph = graph
        self.names = UniqueNames(graph)
        self.initializers: list[TensorProto] = []

    def constant(self, value: np.ndarray, tag: str) -> str:
        """A new initializer holding ``value``; returns its name."""
        name = self.names(tag)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def pair(self, tensor: str, amax: float, tag: str) -> tuple[list[onnx.NodeProto], str]:
        """A dedicated Q -> DQ pair on ``tensor`` (scale ``amax / 127``) with its own scale / zero-point initializers;
        returns the nodes and the dequantized tensor."""
        s = self.constant(np.array(max(amax / ACT_QMAX, _MIN_SCALE), np.float32), f"{tag}_scale")
        z = self.constant(np.array(0, np.int8), f"{tag}_zero_point")
        qo, do = self.names(f"{tag}_quantized"), self.names(f"{tag}_dequantized")
        qn = helper.make_node("QuantizeLinear", [tensor, s, z], [qo], name=self.names(f"{tag}_QuantizeLinear"))
        dn = helper.make_node("DequantizeLinear", [qo, s, z], [do], name=self.names(f"{tag}_DequantizeLinear"))
        return [qn, dn], do

    def weight(self, w: np.ndarray, axis: int, tag: str) -> tuple[list[onnx.NodeProto], str]:
        """Per-channel symmetric int8 ``w`` (:func:`quantize_weight`) as an initializer behind a DequantizeLinear;
        returns the node and the dequantized tensor."""
        wq, ws = quantize_weight(w, axis)
        qn = self.constant(wq, f"{tag}_quantized")
        sn = self.constant(ws, f"{tag}_scale")
        zn = self.constant(np.zeros(ws.shape, np.int8), f"{tag}_zero_point")
        dn = self.names(f"{tag}_dequantized")
        node = helper.make_node(
            "DequantizeLinear", [qn, sn, zn], [dn], axis=int(axis), name=self.names(f"{tag}_DequantizeLinear")
        )
        return [node], dn

    def node(self, op_type: str, inputs: list[str], tag: str, **attrs) -> tuple[onnx.NodeProto, str]:
        """Any other helper node (e.g. the sensitivity pass's switches) with allocated node and output names."""
        out = self.names(f"{tag}_output")
        return helper.make_node(op_type, inputs, [out], name=self.names(tag), **attrs), out

    def flush(self) -> None:
        """Append the collected initializers to the graph."""
        self.graph.initializer.extend(self.initializers)
        self.initializers = []


def insert_nodes(
    graph: onnx.GraphProto,
    before: Mapping[str, list[onnx.NodeProto]] | None = None,
    after: Mapping[str, list[onnx.NodeProto]] | None = None,
) -> None:
    """Put new nodes right before / after the node of that name (so the graph stays topologically sorted)."""
    before, after = before or {}, after or {}
    ordered: list[onnx.NodeProto] = []
    for n in graph.node:
        ordered += before.get(n.name, [])
        ordered.append(n)
        ordered += after.get(n.name, [])
    del graph.node[:]
    graph.node.extend(ordered)


def quantize_model(
    model: onnx.ModelProto, ranges: Mapping[str, float], exclude: Iterable[str] = (), placement: str = "tensorrt"
) -> onnx.ModelProto:
    """A copy of ``model`` with Q/DQ pairs on the inputs of the quantizable nodes not named in ``exclude`` (TensorRT's
    placement: NVIDIA's guide puts Q/DQ on the inputs of the quantized layers and TensorRT fuses each Q into the
    producing layer).

    ``ranges`` maps range keys (see :func:`range_keys`) to the calibrated absolute maximum; a node whose
    input range is missing or not positive stays in float."""
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    excl = set(exclude)
    nodes = [q for q in find_quant_nodes(m) if q.name not in excl]
    by_name = {n.name: n for n in g.node}

    def amax(key: str) -> float | None:
        v = ranges.get(key)
        return float(v) if v is not None and np.isfinite(v) and v > 0 else None

    nodes = [q for q in nodes if all(amax(f"{q.key}:in{i}") for i in q.act_inputs)]
    init = {t.name: t for t in g.initializer}
    emit = QDQEmitter(g)
    before: dict[str, list[onnx.NodeProto]] = {}  # node name -> Q/DQ nodes to emit before it
    done_weights: dict[str, str] = {}
    for q in nodes:
        node = by_name[q.name]
        pre: list[onnx.NodeProto] = []
        for i in q.act_inputs:
            t = node.input[i]
            qdq, dq = emit.pair(t, amax(f"{q.key}:in{i}"), f"{t}_in{i}_{_safe(node.name)}")  # type: ignore[arg-type]
            pre += qdq
            node.input[i] = dq
        if q.weight_input is not None:
            wname = node.input[q.weight_input]
            if wname not in done_weights:
                wn, dq = emit.weight(numpy_helper.to_array(init[wname]), q.weight_axis, wname)  # type: ignore[arg-type]
                pre += wn
                done_weights[wname] = dq
            node.input[q.weight_input] = done_weights[wname]
        before[q.name] = pre
    insert_nodes(g, before)
    still_used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if not (t.name in done_weights and t.name not in still_used)]
    del g.initializer[:]
    g.initializer.extend(keep)
    emit.flush()
    return m


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


_INT8_TYPES = {TensorProto.INT8}


def qdq_violations(model: onnx.ModelProto) -> list[str]:
    """TensorRT explicit-quantization rules this graph breaks (empty when it is fine): every Q/DQ node
    int8 with an all-zero int8 zero point from an initializer, per-channel DQ only on constant weights along
    the output-channel axis of the consuming node, no Q/DQ output that is a graph output."""
    g = model.graph
    init = {t.name: t for t in g.initializer}
    outputs = {o.name for o in g.output}
    cons = _consumers(g)
    bad: list[str] = []
    for n in g.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if n.domain not in ("", "ai.onnx"):
            bad.append(f"{n.name}: domain {n.domain!r}")
        if len(n.input) < 3 or n.input[2] not in init:
            bad.append(f"{n.name}: zero point is not an initializer")
            continue
        zp = init[n.input[2]]
        if zp.data_type not in _INT8_TYPES:
            bad.append(f"{n.name}: zero point type {TensorProto.DataType.Name(zp.data_type)}, not INT8")
        elif np.any(numpy_helper.to_array(zp) != 0):
            bad.append(f"{n.name}: non-zero zero point")
        if n.output[0] in outputs:
            bad.append(f"{n.name}: output {n.output[0]!r} is a graph output")
        scale = init.get(n.input[1])
        if scale is None:
            bad.append(f"{n.name}: scale is not an initializer")
            continue
        s = numpy_helper.to_array(scale)
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            bad.append(f"{n.name}: scale not finite and positive")
        if n.op_type == "DequantizeLinear" and n.input[0] in init:
            q = init[n.input[0]]
            if q.data_type not in _INT8_TYPES:
                bad.append(f"{n.name}: weight type {TensorProto.DataType.Name(q.data_type)}, not INT8")
            if s.size > 1:
                axis = _attr(n, "axis", 1)
                for c in cons.get(n.output[0], []):
                    want = _weight_axis(c, n.output[0], len(q.dims))
                    if want is None or axis % len(q.dims) != want:
                        bad.append(f"{n.name}: per-channel axis {axis} is not the output-channel axis of {c.name}")
        elif s.size != 1:
            bad.append(f"{n.name}: per-channel scale on an activation")
    return bad


def _weight_axis(node: onnx.NodeProto, tensor: str, rank: int) -> int | None:
    if node.op_type == "Conv" and node.input[1] == tensor:
        return 0
    if node.op_type == "Gemm" and node.input[1] == tensor:
        return 0 if _attr(node, "transB", 0) else 1
    if node.op_type == "MatMul" and node.input[1] == tensor:
        return rank - 1
    return None
