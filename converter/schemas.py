"""ONNX OpSchemas of the ``ssp::`` custom nodes (ARCHITECTURE.md §3b), with type and shape inference,
so the ONNX checker, shape inference and onnxsim accept plugin-flavour graphs. Names, attributes, types and
defaults come from the one op spec, ``plugins/ops.json`` (:data:`ssp_edge.sdk.plugins.OPS`).

Needs only ``onnx``; :func:`register_schemas` is idempotent and is called by everything that loads
plugin graphs (export, check, calibration).
"""

from __future__ import annotations

from collections.abc import Callable

import onnx
from onnx import defs

from ssp_edge.sdk.plugins import DOMAIN as OP_DOMAIN
from ssp_edge.sdk.plugins import OPS, op_spec
from ssp_edge.sdk.plugins import PLUGIN_NAMESPACE as _NAMESPACE
from ssp_edge.sdk.plugins import PLUGIN_VERSION as _VERSION

__all__ = ["DOMAIN", "OPSET_VERSION", "PLUGIN_NAMESPACE", "PLUGIN_VERSION", "CUSTOM_OPS", "register_schemas"]

DOMAIN = OP_DOMAIN
OPSET_VERSION = int(op_spec()["opset_version"])
#: TensorRT's ONNX parser finds a plugin by op_type + these two node attributes (it ignores the domain);
#: the plugin library registers its creators under this namespace and version
PLUGIN_NAMESPACE = _NAMESPACE
PLUGIN_VERSION = _VERSION
#: node op_type -> (inputs, outputs, {attribute: (type, default or None)}), from the op spec (plugins/ops.json)
CUSTOM_OPS: dict[str, tuple[tuple[str, ...], tuple[str, ...], dict[str, tuple[str, object]]]] = {
    op.name: (op.inputs, op.outputs, {a.name: (a.type, a.default) for a in op.attributes}) for op in OPS
}
_DOCS = {op.name: op.doc for op in OPS}


def _dims(t: onnx.TypeProto) -> list[onnx.TensorShapeProto.Dimension] | None:
    tt = t.tensor_type
    return list(tt.shape.dim) if tt.HasField("shape") else None


def _set(ctx, elem_type: int, dims: list[tuple[onnx.TensorShapeProto.Dimension | None, int | None]]) -> None:
    """Output 0 = elem_type with dims given as (copy this dim) or (None, value) / (None, None) = unknown."""
    out = onnx.TypeProto()
    out.tensor_type.elem_type = elem_type
    shape = out.tensor_type.shape
    for src, value in dims:
        d = shape.dim.add()
        if src is not None:
            d.CopyFrom(src)
        elif value is not None:
            d.dim_value = value
    ctx.set_output_type(0, out)


def _scaled(d: onnx.TensorShapeProto.Dimension, factor: float) -> tuple[None, int | None]:
    return (None, int(d.dim_value * factor)) if d.HasField("dim_value") else (None, None)


def _attr_int(ctx, name: str) -> int:
    a = ctx.get_attribute(name)
    if a is None:
        raise onnx.shape_inference.InferenceError(f"ssp node needs the int attribute {name!r}")
    return int(a.i)


def _infer_aggregate(ctx) -> None:
    x = ctx.get_input_type(0)
    cell = _attr_int(ctx, "cell")
    d = _dims(x)
    if d is None or len(d) != 4:
        return _set_type_only(ctx, x)
    _set(ctx, x.tensor_type.elem_type, [(d[0], None), (d[1], None), _scaled(d[2], 1 / cell), _scaled(d[3], 1 / cell)])


def _infer_propagate(ctx) -> None:
    z, q = ctx.get_input_type(0), ctx.get_input_type(1)
    dz, dq = _dims(z), _dims(q)
    if dz is None or dq is None or len(dz) != 4 or len(dq) != 4:
        return _set_type_only(ctx, z)
    _set(ctx, z.tensor_type.elem_type, [(dz[0], None), (dz[1], None), (dq[2], None), (dq[3], None)])


def _infer_replication(ctx) -> None:
    x, g = ctx.get_input_type(0), ctx.get_input_type(1)
    dx, dg = _dims(x), _dims(g)
    if dx is None or dg is None or len(dx) != 4 or len(dg) != 4:
        return _set_type_only(ctx, x)
    _set(ctx, x.tensor_type.elem_type, [(dx[0], None), (dx[1], None), (dg[2], None), (dg[3], None)])


def _set_type_only(ctx, like: onnx.TypeProto) -> None:
    out = onnx.TypeProto()
    out.tensor_type.elem_type = like.tensor_type.elem_type
    ctx.set_output_type(0, out)


_INFER: dict[str, Callable] = {
    "SuperpixelAggregate": _infer_aggregate,
    "SuperpixelPropagate": _infer_propagate,
    "ReplicationUpsample": _infer_replication,
}


def _schema(op: str) -> defs.OpSchema:
    ins, outs, attrs = CUSTOM_OPS[op]
    kind = {"int": defs.OpSchema.AttrType.INT, "float": defs.OpSchema.AttrType.FLOAT}
    attributes = []
    for name, (typ, default) in attrs.items():
        if default is None:
            attributes.append(defs.OpSchema.Attribute(name, kind[typ], f"{name} (required)", required=True))
        else:
            attributes.append(
                defs.OpSchema.Attribute(name, onnx.helper.make_attribute(name, default), f"{name} (default {default})")
            )
    for name, default in (("plugin_namespace", PLUGIN_NAMESPACE), ("plugin_version", PLUGIN_VERSION)):
        attributes.append(
            defs.OpSchema.Attribute(
                name,
                onnx.helper.make_attribute(name, default),
                f"TensorRT plugin {name.split('_')[1]} (default {default!r})",
            )
        )
    schema = defs.OpSchema(
        op,
        DOMAIN,
        OPSET_VERSION,
        doc=_DOCS[op],
        inputs=[defs.OpSchema.FormalParameter(n, "T") for n in ins],
        outputs=[defs.OpSchema.FormalParameter(n, "T") for n in outs],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "float32 or float16 NCHW tensors")],
        attributes=attributes,
    )
    schema.set_type_and_shape_inference_function(_INFER[op])
    return schema


def register_schemas() -> None:
    """Register the ``ssp`` domain schemas with onnx (once per process)."""
    for op in CUSTOM_OPS:
        if not defs.has(op, DOMAIN):
            defs.register_schema(_schema(op))
