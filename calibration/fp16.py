"""FP16 mixed precision for an ONNX graph: float16 compute with LayerNormalization, Softmax, reductions,
the ``ssp::`` custom nodes and the graph inputs / outputs kept float32 (ARCHITECTURE.md §5).

Why a pass of its own: ``onnxruntime.transformers.float16.convert_float_to_float16`` (the maintained
copy of onnxconverter-common's converter) was tried on these graphs and produced models that neither
the ONNX checker nor ONNX Runtime accept: Cast nodes appended out of topological order and, where one
tensor feeds two blocked nodes, two Cast nodes with the same name. modelopt's AutoCast cannot be
installed here (see :mod:`calibration.qdq`).

The pass is driven by the ONNX operator schemas: a node runs in float16 when it is not blocked, has a
float32 input and an output that share one type constraint admitting ``tensor(float16)``; exactly the
inputs bound to that constraint are converted (so e.g. Resize's ``scales`` stays float32). Float32
initializers used only in float16 positions are stored as float16 (clamped to +-65504); where a tensor
crosses between precisions one Cast per (tensor, target type) is inserted right after its producer.
ONNX Runtime CPU has float16 kernels for few ops; for the rest it inserts its own casts at load time,
so the FP16 graph runs everywhere (slower than FP32 on CPU) and TensorRT runs it natively.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
from onnx import TensorProto, defs, helper, numpy_helper

from .names import UniqueNames

__all__ = ["FP32_OPS", "convert_fp16", "fp16_node_count"]

#: op types kept in float32 (numerically sensitive: normalisation, softmax, reductions)
FP32_OPS = (
    "LayerNormalization",
    "Softmax",
    "LogSoftmax",
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
    "CumSum",
    "TopK",
    "Range",
    "NonMaxSuppression",
    "RoiAlign",
    "Upsample",
)
_FP16_MAX = 65504.0
_F32, _F16 = TensorProto.FLOAT, TensorProto.FLOAT16


def _schema(node: onnx.NodeProto, opset: dict[str, int]) -> defs.OpSchema | None:
    domain = node.domain or ""
    try:
        return defs.get_schema(node.op_type, opset.get(domain, opset.get("ai.onnx", 1)), domain)
    except Exception:  # unknown op (custom domain without a registered schema)
        return None


def _fp16_inputs(node: onnx.NodeProto, schema: defs.OpSchema, types: dict[str, int]) -> tuple[list[int], list[int]]:
    """(input indices, output indices) bound to a type constraint shared by a float input and a float
    output and admitting float16; empty when the node cannot run in float16."""

    def param(params, i):
        if not params:
            return None
        if i < len(params):
            return params[i]
        last = params[-1]
        return last if last.option == defs.OpSchema.FormalParameterOption.Variadic else None

    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    out_c = {}
    for k, o in enumerate(node.output):
        p = param(schema.outputs, k)
        if p is not None and o and types.get(o) == _F32:
            out_c.setdefault(p.type_str, []).append(k)
    ins: list[int] = []
    outs: list[int] = []
    for c, ks in out_c.items():
        if "tensor(float16)" not in allowed.get(c, set()):
            continue
        idx = [
            i
            for i, t in enumerate(node.input)
            if t and (p := param(schema.inputs, i)) is not None and p.type_str == c and types.get(t) == _F32
        ]
        if idx:
            ins += idx
            outs += ks
    return ins, outs


def convert_fp16(
    model: onnx.ModelProto, keep_fp32: Iterable[str] = FP32_OPS, keep_nodes: Iterable[str] = ()
) -> onnx.ModelProto:
    """A float16 copy of ``model`` (graph inputs / outputs and ``keep_fp32`` op types stay float32)."""
    block = set(keep_fp32)
    block_nodes = set(keep_nodes)
    opset = {o.domain or "": o.version for o in model.opset_import}
    inferred = onnx.shape_inference.infer_shapes(model)
    g0 = inferred.graph
    types: dict[str, int] = {}
    for v in list(g0.input) + list(g0.value_info) + list(g0.output):
        types[v.name] = v.type.tensor_type.elem_type
    for t in g0.initializer:
        types[t.name] = t.data_type

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    init = {t.name: t for t in g.initializer}
    prec: dict[str, int] = {}  # float tensor -> its element type after conversion
    for t, ty in types.items():
        if ty == _F32:
            prec[t] = _F32
    plan: dict[int, tuple[list[int], list[int]]] = {}
    for k, n in enumerate(g.node):
        if n.op_type in block or n.name in block_nodes or n.domain not in ("", "ai.onnx"):
            continue
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute):
            continue
        schema = _schema(n, opset)
        if schema is None:
            continue
        ins, outs = _fp16_inputs(n, schema, types)
        if ins and outs:
            plan[k] = (ins, outs)
            for o in outs:
                prec[n.output[o]] = _F16

    names = UniqueNames(g)
    casts_after: dict[str, list[onnx.NodeProto]] = {}  # producer output ("" = graph start) -> casts after it
    producer = {o: n for n in g.node for o in n.output}

    # graph outputs stay float32: a float16 producer writes an inner tensor, cast back under the output name
    for o in g.output:
        if prec.get(o.name) != _F16:
            continue
        inner = names(f"{o.name}_fp16")
        p = producer[o.name]
        p.output[list(p.output).index(o.name)] = inner
        for n in g.node:
            for i, t in enumerate(n.input):
                if t == o.name:
                    n.input[i] = inner
        types[inner], prec[inner] = _F32, _F16
        producer[inner] = p
        casts_after.setdefault(inner, []).append(
            helper.make_node("Cast", [inner], [o.name], to=_F32, name=names(f"{o.name}_Cast"))
        )

    # initializers: float16 when every use is a float16 input position, else casts like any tensor
    uses: dict[str, list[tuple[int, int, int]]] = {}  # tensor -> (node index, input index, wanted type)
    for k, n in enumerate(g.node):
        ins = set(plan.get(k, ([], []))[0])
        for i, t in enumerate(n.input):
            if t and types.get(t) == _F32:
                uses.setdefault(t, []).append((k, i, _F16 if i in ins else _F32))
    for name, us in uses.items():
        if name in init and all(w == _F16 for _, _, w in us):
            arr = numpy_helper.to_array(init[name])
            init[name].CopyFrom(numpy_helper.from_array(_to_half(arr), name))
            prec[name] = _F16

    cast_of: dict[tuple[str, int], str] = {}

    def cast(t: str, to: int) -> str:
        if (t, to) not in cast_of:
            out = names(f"{t}_to_{'fp16' if to == _F16 else 'fp32'}")
            cast_of[(t, to)] = out
            casts_after.setdefault(t if t in producer else "", []).append(
                helper.make_node("Cast", [t], [out], to=to, name=names(f"{out}_Cast"))
            )
        return cast_of[(t, to)]

    for name, us in uses.items():
        have = prec.get(name, _F32)
        for k, i, want in us:
            if want != have:
                g.node[k].input[i] = cast(name, want)

    ordered = list(casts_after.get("", []))
    for n in g.node:
        ordered.append(n)
        for o in n.output:
            ordered += casts_after.get(o, [])
    del g.node[:]
    g.node.extend(ordered)
    del g.value_info[:]  # stale float32 annotations; shape inference recomputes them
    return m


def _to_half(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float32)
    return np.clip(a, -_FP16_MAX, _FP16_MAX).astype(np.float16)


def fp16_node_count(model: onnx.ModelProto) -> tuple[int, int]:
    """(nodes with a float16 output, nodes with a float32 output) after shape inference; for reports."""
    inf = onnx.shape_inference.infer_shapes(model)
    ty = {v.name: v.type.tensor_type.elem_type for v in list(inf.graph.value_info) + list(inf.graph.output)}
    h = sum(1 for n in inf.graph.node if n.op_type != "Cast" and any(ty.get(o) == _F16 for o in n.output))
    f = sum(1 for n in inf.graph.node if n.op_type != "Cast" and any(ty.get(o) == _F32 for o in n.output))
    return h, f
