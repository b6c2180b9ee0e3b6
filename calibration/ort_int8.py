"""INT8 for ONNX Runtime CPU: the U8S8 Q/DQ graph (manifest ``qdq_plan: "onnxruntime"``), what the SDK's
``precision="int8"`` runs on ONNX Runtime. TensorRT builds keep the symmetric graphs of :mod:`calibration.qdq`.

Why a second format: ONNX Runtime's x86 integer kernels (MLAS, VNNI ``vpdpbusd``) multiply *unsigned* 8-bit
activations by *signed* 8-bit weights (U8S8). TensorRT's symmetric int8 activations must be converted to that form
at every node and most of its Q/DQ pairs do not fuse, so the symmetric graph ran at ~0.95x FP32 on a Zen 4 core.
This graph has asymmetric uint8 activations (scale and zero point from the calibrated ``[lo, hi]``), symmetric
per-channel int8 weights and int32 biases, written by ``onnxruntime.quantization.quantize_static`` (QDQ format,
which ONNX Runtime fuses into QLinearConv / QGemm / QLinearAdd / MatMulIntegerToFloat at load time).

The ranges are the project's own statistics (:mod:`calibration.stats`: the method's threshold on ``|x|``
intersected with the observed signed minimum and maximum), handed to ``quantize_static`` through its calibration
cache (``calibration_cache_path``), so it runs no calibrator of its own (its histogram calibrators keep every
intermediate tensor in memory).

Which nodes (:func:`plan_nodes`), from per-node ONNX Runtime profiles of this model's graphs (ORT 1.32, 2 threads,
Zen 4 with AVX512-VNNI; medians per node):

* dense Conv with at least 16 input and 8 output channels, Gemm / MatMul with a constant weight (K >= 16,
  N >= 8): int8 (1x1 and 3x3 convolutions 2-2.5x faster than FP32's NCHWc kernels; the 3-channel image
  convolutions and the 8 -> 8 channel full-resolution ones are 1.5-3x slower in int8);
* depthwise Conv with >= 64 channels: int8 only *inside* an int8 chain. On its own it is barely faster
  (0.7-0.9x FP32's time), but a float depthwise convolution between int8 ones costs a conversion and a layout
  change on each side: with every depthwise convolution float the image encoder ran at 1.0x FP32, with them
  inside the chain at 0.7x. With fewer channels: float (1.4-2.7x slower in int8);
* products of two activations (attention): float. ``softmax @ V`` for accuracy (probabilities in 8 bits lose the
  many small weights); ``Q @ K^T`` for speed (MatMulIntegerToFloat plus the scale Mul it no longer fuses took
  longer than FP32's FusedMatMul; the decoder ran at 0.93x FP32 with them in int8, 0.82-0.86x without);
* data movement and elementwise ops with integer kernels (Add, Clip / Relu (folded into the producer's range),
  nearest Resize, MaxPool, Concat, Reshape, Transpose, ...): int8 when all their activation inputs come from the
  int8 region and their output feeds it (or is a graph output), so the region is contiguous and there is a
  DequantizeLinear only where float resumes;
* a compute node isolated between float nodes: int8 only with an arithmetic intensity (MACs per activation
  element) of at least ``min_intensity``, else its two conversions cost more than it saves;
* ConvTranspose, Softmax, LayerNormalization, reductions, Sigmoid, Mul, AveragePool: float (no faster int8 kernel:
  QLinearAveragePool took 6x FP32's AveragePool, QLinearSoftmax 1.1x).

QDQ vs QOperator format: the same kernels after ONNX Runtime's fusion (image encoder 0.684x vs 0.683x FP32);
QDQ is kept (ONNX Runtime's recommended format; the float-consumer fix below is written for it).

One ONNX Runtime behaviour needs care (:func:`keep_float_consumers`): its WeightBiasQuantization pass turns a
float Conv / Gemm whose input is a DequantizeLinear output into an int8 node with a *per-tensor* weight, which
ruined the float depthwise convolutions next to the int8 region (mask mIoU -2.2 points on 100 samples) until the
float nodes were given back their float input or a no-op barrier.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

__all__ = [
    "ORT_PLAN",
    "OrtPlan",
    "plan_nodes",
    "range_tensors",
    "quantize_ort",
    "u8s8_violations",
    "int8_region_summary",
]

ORT_PLAN = "onnxruntime"
#: ops with ONNX Runtime integer kernels that only move or combine int8 data (joined when inside the region)
PASSTHROUGH = (
    "Add",
    "Clip",
    "Relu",
    "Resize",
    "MaxPool",
    "Concat",
    "Reshape",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "Slice",
    "Split",
)
_COMPUTE = ("Conv", "Gemm", "MatMul")
DENSE_MIN_CIN = 16  # input channels (per group) / reduced dimension of a dense node
DENSE_MIN_N = 8  # output channels / columns
DEPTHWISE_MIN_CHANNELS = 64


@dataclass
class OrtPlan:
    """Nodes of one graph quantized in the U8S8 graph, and why the others of kind Conv / Gemm / MatMul stay float."""

    quantize: list[str] = field(default_factory=list)  # node names handed to quantize_static (compute + passthrough)
    compute: list[str] = field(default_factory=list)  # the Conv / Gemm / MatMul among them
    kept_float: dict[str, str] = field(default_factory=dict)  # Conv / Gemm / MatMul node -> reason

    def to_dict(self) -> dict:
        return {
            "quantized": len(self.compute),
            "passthrough": len(self.quantize) - len(self.compute),
            "float": len(self.kept_float),
            "kept_float": dict(self.kept_float),
        }


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _dims(model: onnx.ModelProto) -> dict[str, list[int]]:
    inf = onnx.shape_inference.infer_shapes(model)
    out: dict[str, list[int]] = {}
    for v in list(inf.graph.value_info) + list(inf.graph.input) + list(inf.graph.output):
        out[v.name] = [d.dim_value if d.HasField("dim_value") else 1 for d in v.type.tensor_type.shape.dim]
    for t in inf.graph.initializer:
        out[t.name] = list(t.dims)
    return out


def _kernel_rule(
    n: onnx.NodeProto,
    init: Mapping[str, TensorProto],
    producers: Mapping[str, onnx.NodeProto],
    dims: Mapping[str, list[int]],
) -> tuple[str | None, str]:
    """(kind, reason): kind "dense" / "depthwise" / "product" when ONNX Runtime's int8 kernel is faster, else None
    and why not."""
    if n.op_type == "Conv":
        w = init.get(n.input[1])
        if w is None or n.input[0] in init:
            return None, "computed weight"
        group = int(_attr(n, "group", 1))
        cout, cin_g = int(w.dims[0]), int(w.dims[1])
        if group > 1:
            if cin_g == 1 and group == cout and cout >= DEPTHWISE_MIN_CHANNELS:
                return "depthwise", ""
            return None, f"ONNX Runtime speed (depthwise / grouped, {cout} channels < {DEPTHWISE_MIN_CHANNELS})"
        if cin_g < DENSE_MIN_CIN or cout < DENSE_MIN_N:
            return None, f"ONNX Runtime speed ({cin_g} input / {cout} output channels: faster in float)"
        return "dense", ""
    if n.op_type == "Gemm":
        if n.input[1] not in init or n.input[0] in init:
            return None, "no constant weight"
        w = init[n.input[1]].dims
        k, nn = (w[1], w[0]) if _attr(n, "transB", 0) else (w[0], w[1])
        if k < DENSE_MIN_CIN or nn < DENSE_MIN_N:
            return None, f"ONNX Runtime speed (K={k}, N={nn}: faster in float)"
        return "dense", ""
    if n.op_type == "MatMul":
        a, b = n.input[0] in init, n.input[1] in init
        if a and b:
            return None, "constant"
        if b:
            w = init[n.input[1]].dims
            if len(w) < 2 or w[-2] < DENSE_MIN_CIN or w[-1] < DENSE_MIN_N:
                return None, "ONNX Runtime speed (small weight)"
            return "dense", ""
        if a:
            return None, "constant first input"
        for t in n.input[:2]:
            p = producers.get(t)
            if p is not None and p.op_type in ("Softmax", "LogSoftmax"):
                return None, "accuracy (an input is a Softmax output: probabilities lose their small values in 8 bits)"
        return None, (
            "ONNX Runtime speed (product of two activations: its integer kernel and the then unfused "
            "scale are slower than FP32's FusedMatMul)"
        )
    return None, "not a compute node"


def _intensity(n: onnx.NodeProto, dims: Mapping[str, list[int]], init: Mapping[str, TensorProto]) -> float:
    """MACs per activation element read or written (unknown batch dimensions count as 1)."""
    o = float(np.prod(dims.get(n.output[0], [0])))
    acts = [t for t in n.input[:2] if t and t not in init]
    ins = float(sum(np.prod(dims.get(t, [0])) for t in acts))
    if n.op_type == "Conv":
        per_out = float(np.prod(dims[n.input[1]][1:]))
    elif n.op_type == "Gemm":
        w = dims[n.input[1]]
        per_out = float(w[1] if _attr(n, "transB", 0) else w[0])
    else:
        per_out = float(dims.get(n.input[0], [1])[-1])
    return o * per_out / (ins + o) if (ins + o) > 0 else 0.0


def plan_nodes(
    model: onnx.ModelProto, exclude: Mapping[str, str] | None = None, min_intensity: float = 48.0
) -> OrtPlan:
    """The U8S8 plan of ``model`` (see the module docstring); ``exclude``: node name -> reason to keep it float."""
    g = model.graph
    exclude = dict(exclude or {})
    init = {t.name: t for t in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            if i:
                consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}
    dims = _dims(model)
    kind: dict[str, str] = {}
    why: dict[str, str] = {}
    for n in g.node:
        if n.op_type not in _COMPUTE or n.domain not in ("", "ai.onnx"):
            continue
        k, reason = _kernel_rule(n, init, producers, dims)
        if k is not None and n.name in exclude:
            k, reason = None, exclude[n.name]
        if k is None:
            if reason not in ("not a compute node", "constant"):
                why[n.name] = reason
        else:
            kind[n.name] = k

    def acts(n: onnx.NodeProto) -> list[str]:
        """Float activation inputs of a node (shape / index inputs of Reshape, Slice, Resize ... are not)."""
        if n.op_type in ("Reshape", "Slice", "Resize", "Split", "Squeeze", "Unsqueeze", "Clip", "Pad"):
            ins = n.input[:1]
        elif n.op_type in ("Conv", "Gemm"):
            ins = n.input[:1]
        else:
            ins = list(n.input)
        return [t for t in ins if t and t not in init]

    def region(compute: Mapping[str, str]) -> set[str]:
        """Compute nodes plus the passthrough nodes whose activation inputs all come from the region (forward), then
        minus passthrough nodes whose output feeds no region node and is no graph output (backward)."""
        inside = set(compute)
        for n in g.node:  # graph order is topological
            if n.name in inside or n.op_type not in PASSTHROUGH or n.domain not in ("", "ai.onnx"):
                continue
            if n.op_type == "Resize" and _attr(n, "mode", b"nearest") not in (b"nearest", "nearest"):
                continue
            a = acts(n)
            if a and all(t in producers and producers[t].name in inside for t in a):
                inside.add(n.name)
        for n in reversed(g.node):
            if n.name in inside and n.name not in compute:
                feeds = any(c.name in inside for o in n.output for c in consumers.get(o, []))
                if not feeds and not any(o in outputs for o in n.output):
                    inside.discard(n.name)
        return inside

    by_name = {n.name: n for n in g.node}

    def fed_from_region(n: onnx.NodeProto, inside: set[str]) -> bool:
        return all(t in producers and producers[t].name in inside for t in acts(n)[:1])

    def feeds_region(n: onnx.NodeProto, inside: set[str]) -> bool:
        users = [c for o in n.output for c in consumers.get(o, [])]
        return bool(users) and all(c.name in inside for c in users)

    # depthwise convolutions only inside a chain, isolated compute nodes only with enough intensity (to a fixpoint:
    # each removal can isolate a neighbour)
    for _ in range(len(kind) + 1):
        inside = region(kind)
        drop = {}
        for name, k in kind.items():
            n = by_name[name]
            src, dst = fed_from_region(n, inside), feeds_region(n, inside)
            if k == "depthwise" and not (src and dst):
                drop[name] = "ONNX Runtime speed (depthwise convolution at an int8 / float boundary)"
            elif (
                k != "depthwise"
                and not src
                and not any(c.name in inside for o in n.output for c in consumers.get(o, []))
            ):
                inten = _intensity(n, dims, init)
                if inten < min_intensity:
                    drop[name] = (
                        f"ONNX Runtime speed (isolated between float nodes, intensity {inten:.0f} < {min_intensity:g})"
                    )
        if not drop:
            break
        for name, reason in drop.items():
            kind.pop(name)
            why[name] = reason
    inside = region(kind)
    order = [n.name for n in g.node if n.name in inside]
    return OrtPlan(order, [x for x in order if x in kind], why)


def range_tensors(model: onnx.ModelProto, plan: OrtPlan) -> list[str]:
    """Float activation tensors that need a calibrated range for ``plan``: inputs and outputs of its nodes."""
    init = {t.name for t in model.graph.initializer}
    want = set(plan.quantize)
    out: dict[str, None] = {}
    for n in model.graph.node:
        if n.name in want:
            for t in list(n.input) + list(n.output):
                if t and t not in init:
                    out[t] = None
    return list(out)


def quantize_ort(
    model: onnx.ModelProto, plan: OrtPlan, ranges: Mapping[str, tuple[float, float]], workdir: str | Path | None = None
) -> onnx.ModelProto:
    """``model`` as a U8S8 QDQ graph of ``plan`` by ``onnxruntime.quantization.quantize_static``, ranges
    (tensor -> (lo, hi)) from this project's statistics through its calibration cache."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    if not plan.quantize:
        m = onnx.ModelProto()
        m.CopyFrom(model)
        return m
    data = {}
    for t in range_tensors(model, plan):
        if t not in ranges:
            raise KeyError(f"no calibrated range for tensor {t!r}")
        lo, hi = ranges[t]
        data[t] = TensorData(lowest=np.array(min(lo, 0.0), np.float32), highest=np.array(max(hi, 0.0), np.float32))
    with tempfile.TemporaryDirectory(prefix="ssp-ort-int8-", dir=workdir) as tmp:
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), cache)
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(src))
        with _quiet_root_logger():  # its "consider pre-processing" advice (for shape inference we do not need)
            quantize_static(
                str(src),
                str(dst),
                None,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=False,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_quantize=list(plan.quantize),
                op_types_to_quantize=sorted({n.op_type for n in model.graph.node if n.name in set(plan.quantize)}),
                calibrate_method=CalibrationMethod.MinMax,
                calibration_cache_path=str(cache),
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True, "MatMulConstBOnly": False},
            )
        out = onnx.load(str(dst))
    out.graph.name = model.graph.name
    keep_float_consumers(out, model, plan)
    return out


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime.quantization logs through the root logger; its warnings are not the user's business here."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


#: ONNX Runtime's WeightBiasQuantization pass turns a float Conv / ConvTranspose / Gemm whose input is a
#: DequantizeLinear output into an int8 node with a *per-tensor* weight (ruinous for depthwise weights)
_WBQ_TARGETS = ("Conv", "ConvTranspose", "Gemm")
_FLOAT_LOWEST = float(np.finfo(np.float32).min)


def keep_float_consumers(q: onnx.ModelProto, original: onnx.ModelProto, plan: OrtPlan) -> None:
    """Make the float nodes of ``q`` (the plan's non-quantized ones) stay float in ONNX Runtime, in place.

    ``quantize_static`` feeds every consumer of a quantized tensor ``T`` its DequantizeLinear output. A float
    consumer reads ``T`` itself instead when ``T`` comes from a float node or a graph input (exact, and no
    DequantizeLinear runs for it), and when ``T`` is a Gemm / MatMul output that no int8 node reads (the Q/DQ pair
    then goes and ONNX Runtime's integer Gemm writes float). Otherwise (``T`` comes from an int8 node or an activation
    folded into one) a float Conv / ConvTranspose / Gemm reads the DequantizeLinear output through
    ``Max(x, lowest float)``, a no-op that ONNX Runtime's optimizer keeps, so its WeightBiasQuantization pass cannot
    quantize that node's weight per tensor."""
    from .names import UniqueNames

    g = q.graph
    quantized = set(plan.quantize)
    orig_prod = {o: (n.name, n.op_type) for n in original.graph.node for o in n.output}
    graph_inputs = {i.name for i in g.input}
    graph_outputs = {o.name for o in g.output}
    prod = {o: n for n in g.node for o in n.output}
    cons: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)
    names = UniqueNames(g)
    lowest = None
    before: dict[int, list[onnx.NodeProto]] = {}
    consts = {t.name for t in g.initializer}
    for qn in [n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] not in consts]:
        t = qn.input[0]
        dqs = [d for d in cons.get(qn.output[0], []) if d.op_type == "DequantizeLinear"]
        users = [(d, c) for d in dqs for c in cons.get(d.output[0], [])]
        src = prod.get(t)
        same = t in graph_inputs or (src is not None and (src.name, src.op_type) == orig_prod.get(t))
        float_src = same and (src is None or src.name not in quantized)
        gemm_out = (
            same
            and src is not None
            and src.op_type in ("Gemm", "MatMul")
            and not any(c.name in quantized or c.op_type == "QuantizeLinear" for _, c in users)
            and not any(d.output[0] in graph_outputs for d in dqs)
        )
        for d, c in users:
            if c.name in quantized or c.op_type in ("QuantizeLinear", "DequantizeLinear"):
                continue
            for k, x in enumerate(c.input):
                if x != d.output[0]:
                    continue
                if float_src or gemm_out:
                    c.input[k] = t
                elif c.op_type in _WBQ_TARGETS:
                    if lowest is None:
                        lowest = names("float_barrier_lowest")
                        g.initializer.append(numpy_helper.from_array(np.array(_FLOAT_LOWEST, np.float32), lowest))
                    out = names(f"{x}_float")
                    before.setdefault(id(c), []).append(
                        onnx.helper.make_node("Max", [x, lowest], [out], name=names(f"{c.name}_float_input"))
                    )
                    c.input[k] = out
    if before:
        ordered: list[onnx.NodeProto] = []
        for n in g.node:
            ordered += before.get(id(n), [])
            ordered.append(n)
        del g.node[:]
        g.node.extend(ordered)
    for op in ("DequantizeLinear", "QuantizeLinear"):  # conversions nothing reads any more
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        for n in [n for n in g.node if n.op_type == op and n.output[0] not in used]:
            g.node.remove(n)
    used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)


def u8s8_violations(model: onnx.ModelProto) -> list[str]:
    """What makes ``model`` not a U8S8 Q/DQ graph (empty when it is one): activation Q/DQ uint8 with a uint8 zero
    point, Conv / Gemm / MatMul weights int8 with zero point 0 (biases int32), every Q/DQ parameter an initializer."""
    g = model.graph
    init = {t.name: t for t in g.initializer}
    weight_of = {}  # DQ output -> the weight input of a Conv / Gemm / MatMul it feeds
    for n in g.node:
        if n.op_type in _COMPUTE and len(n.input) > 1:
            weight_of[n.input[1]] = n.name
    bad: list[str] = []
    for n in g.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if len(n.input) < 3 or n.input[2] not in init or n.input[1] not in init:
            bad.append(f"{n.name}: scale / zero point not an initializer")
            continue
        zp = init[n.input[2]]
        const = n.op_type == "DequantizeLinear" and n.input[0] in init
        if const and zp.data_type == TensorProto.UINT8 and n.output[0] not in weight_of:
            pass  # a constant operand of an elementwise op (Add, Mul, ...): quantized like an activation
        elif const:
            if zp.data_type == TensorProto.INT32:  # a bias: int32, zero point 0
                if np.any(numpy_helper.to_array(zp) != 0):
                    bad.append(f"{n.name}: bias with a non-zero zero point")
            elif zp.data_type != TensorProto.INT8 or np.any(numpy_helper.to_array(zp) != 0):
                bad.append(f"{n.name}: weight not symmetric int8")
        elif zp.data_type != TensorProto.UINT8:
            bad.append(f"{n.name}: activation zero point {TensorProto.DataType.Name(zp.data_type)}, not UINT8")
        s = numpy_helper.to_array(init[n.input[1]])
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            bad.append(f"{n.name}: scale not finite and positive")
    return bad


def int8_region_summary(model: onnx.ModelProto) -> dict[str, int]:
    """Op types whose inputs are DequantizeLinear outputs (what ONNX Runtime fuses into integer kernels), counted."""
    dq = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    out: dict[str, int] = {}
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") and any(i in dq for i in n.input):
            out[n.op_type] = out.get(n.op_type, 0) + 1
    return dict(sorted(out.items()))
