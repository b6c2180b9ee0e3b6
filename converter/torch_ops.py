"""PyTorch custom ops ``ssp::*`` for the plugin flavour: opaque to ``torch.export`` (their kernels are the
reference ops), translated by the dynamo ONNX exporter into ``ssp`` domain nodes via onnxscript. Their schemas and
the node attribute names come from the op spec (``plugins/ops.json``).

:func:`plugin_ops` routes the model's reference ops to these for the scope of one export.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import onnxscript
import torch

from ssp_edge.sdk.plugins import OPS, op_spec
from ssp_edge.ssp.models import ops as ref

from .schemas import DOMAIN, OPSET_VERSION, PLUGIN_NAMESPACE, PLUGIN_VERSION, register_schemas

__all__ = ["plugin_ops", "TRANSLATIONS"]

_ssp = onnxscript.values.Opset(DOMAIN, OPSET_VERSION)


def _schema(op: str) -> str:
    """The torch op schema from the op spec: tensor inputs, then the attributes with their spec types."""
    spec = _SPEC[op]
    args = [f"Tensor {n.lower()}" for n in spec.inputs] + [f"{_TORCH_TYPE[a.type]} {a.name}" for a in spec.attributes]
    return f"({', '.join(args)}) -> Tensor"


_SPEC = {o.torch_name: o for o in OPS}
_TORCH_TYPE = {k: v["torch"] for k, v in op_spec()["types"].items()}


@torch.library.custom_op("ssp::superpixel_aggregate", mutates_args=(), schema=_schema("superpixel_aggregate"))
def _aggregate(x: torch.Tensor, q: torch.Tensor, cell: int, eps: float) -> torch.Tensor:
    return ref.REFERENCE["superpixel_aggregate"](x, q, cell, eps)


@_aggregate.register_fake
def _(x: torch.Tensor, q: torch.Tensor, cell: int, eps: float) -> torch.Tensor:
    return x.new_empty(x.shape[0], x.shape[1], x.shape[2] // cell, x.shape[3] // cell)


@torch.library.custom_op("ssp::superpixel_propagate", mutates_args=(), schema=_schema("superpixel_propagate"))
def _propagate(z: torch.Tensor, q: torch.Tensor, cell: int) -> torch.Tensor:
    return ref.REFERENCE["superpixel_propagate"](z, q, cell)


@_propagate.register_fake
def _(z: torch.Tensor, q: torch.Tensor, cell: int) -> torch.Tensor:
    return z.new_empty(z.shape[0], z.shape[1], q.shape[2], q.shape[3])


@torch.library.custom_op("ssp::replication_upsample", mutates_args=(), schema=_schema("replication_upsample"))
def _replication(x: torch.Tensor, g: torch.Tensor, y: torch.Tensor, scale: int) -> torch.Tensor:
    return ref.REFERENCE["replication_upsample"](x, g, y, scale)


@_replication.register_fake
def _(x: torch.Tensor, g: torch.Tensor, y: torch.Tensor, scale: int) -> torch.Tensor:
    return x.new_empty(x.shape[0], x.shape[1], g.shape[2], g.shape[3])


_PLUGIN = {"plugin_namespace": PLUGIN_NAMESPACE, "plugin_version": PLUGIN_VERSION}


def _attrs(torch_name: str, *values: object) -> dict[str, object]:
    """The node attributes, named as the op spec names them (in its order), plus the plugin selectors."""
    return {**{a.name: v for a, v in zip(_SPEC[torch_name].attributes, values, strict=True)}, **_PLUGIN}


def _onnx_aggregate(x, q, cell: int, eps: float):
    return _ssp.SuperpixelAggregate(x, q, **_attrs("superpixel_aggregate", cell, eps))


def _onnx_propagate(z, q, cell: int):
    return _ssp.SuperpixelPropagate(z, q, **_attrs("superpixel_propagate", cell))


def _onnx_replication(x, g, y, scale: int):
    return _ssp.ReplicationUpsample(x, g, y, **_attrs("replication_upsample", scale))


#: custom_translation_table for torch.onnx.export
TRANSLATIONS: dict[Callable, Callable] = {
    torch.ops.ssp.superpixel_aggregate.default: _onnx_aggregate,
    torch.ops.ssp.superpixel_propagate.default: _onnx_propagate,
    torch.ops.ssp.replication_upsample.default: _onnx_replication,
}


@contextmanager
def plugin_ops() -> Iterator[None]:
    """Within the scope, the model's superpixel / replication ops are the ``ssp::`` custom ops."""
    register_schemas()
    with ref.use_implementations(
        superpixel_aggregate=torch.ops.ssp.superpixel_aggregate,
        superpixel_propagate=torch.ops.ssp.superpixel_propagate,
        replication_upsample=torch.ops.ssp.replication_upsample,
    ):
        yield
