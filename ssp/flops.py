"""Parameters and FLOPs per deployment graph and per SSP part, at a config's input size.

FLOPs count a multiply-add as 2 (convolutions, linear layers, matmuls and attention, from
``torch.utils.flop_counter``) plus the three SSP ops counted from their definition (§3b), which the
counter does not see: SuperpixelAggregate 4·9·C·H·W, SuperpixelPropagate 2·9·C·H·W, ReplicationUpsample
2·C·H·W, and bilinear upsampling (4 multiply-adds per output value, so the bilinear decoder is compared
fairly). Element-wise activations and normalisations are not counted (the usual convention).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

from .config import SSPConfig
from .models import ops
from .models.parts import GRAPH_PARTS, PARTS, count_parameters, part_modules
from .models.ssp import SSP
from .models.text import Tokenizer

__all__ = ["ModelCost", "model_cost"]


@dataclass
class ModelCost:
    config: str
    input_size: int
    decoder: str
    parameters: int
    flops: int  # one frame + one expression
    graphs: dict[str, dict[str, int]] = field(default_factory=dict)  # graph -> {"parameters", "flops"}
    parts: dict[str, dict[str, int]] = field(default_factory=dict)  # part -> {"parameters", "flops"}


def _bilinear_flops(*args, out_shape, **kwargs) -> int:
    return 8 * math.prod(out_shape)


class _OpFlops:
    """Analytic FLOPs of the SSP ops, attributed to the innermost module running when they are called."""

    def __init__(self) -> None:
        self.by_path: dict[str, int] = {}
        self.stack: list[str] = [""]

    def add(self, n: int) -> None:
        path = self.stack[-1]
        self.by_path[path] = self.by_path.get(path, 0) + n

    def impls(self) -> dict:
        ref = ops.REFERENCE

        def agg(x, q, cell, eps):
            self.add(4 * 9 * x.shape[0] * x.shape[1] * x.shape[2] * x.shape[3])
            return ref["superpixel_aggregate"](x, q, cell, eps)

        def prop(z, q, cell):
            self.add(2 * 9 * z.shape[0] * z.shape[1] * q.shape[2] * q.shape[3])
            return ref["superpixel_propagate"](z, q, cell)

        def rus(x, g, y, scale):
            self.add(2 * x.shape[0] * x.shape[1] * g.shape[2] * g.shape[3])
            return ref["replication_upsample"](x, g, y, scale)

        return {"superpixel_aggregate": agg, "superpixel_propagate": prop, "replication_upsample": rus}


def model_cost(model: SSP, cfg: SSPConfig, expression: str = "the red circle left of the blue square") -> ModelCost:
    """Count parameters and FLOPs of one frame + one expression (batch 1) at ``cfg.input_size``."""
    model = model.eval()
    tok = Tokenizer(cfg.max_tokens)([expression])
    x = torch.zeros(1, 3, cfg.input_size, cfg.input_size)
    extra = _OpFlops()
    hooks = []
    for name, mod in model.named_modules():
        hooks.append(mod.register_forward_pre_hook(lambda m, a, n=name: extra.stack.append(n)))
        hooks.append(mod.register_forward_hook(lambda m, a, o: None if extra.stack.pop() else None))
    counter = FlopCounterMode(display=False, custom_mapping={torch.ops.aten.upsample_bilinear2d: _bilinear_flops})
    try:
        with torch.no_grad(), counter, ops.use_implementations(**extra.impls()):
            # each graph through its module call, so every sub-module's share is attributed
            words, sent = model.text(tok.input_ids, tok.attention_mask)
            feats = model.image(x)
            model.decoder(*feats, words, tok.attention_mask, sent)
    finally:
        for h in hooks:
            h.remove()
    # the counter names modules from the top-level module called (class name): map back to SSP paths
    roots = {type(model.get_submodule(p)).__name__: p for p in GRAPH_PARTS.values()}
    counts: dict[str, int] = {}
    for key, per_op in counter.get_flop_counts().items():
        root, _, rest = key.partition(".")
        if root in roots:
            counts[f"{roots[root]}.{rest}" if rest else roots[root]] = int(sum(per_op.values()))

    def flops(path: str) -> int:
        """Counter FLOPs of a module (children included) plus the SSP ops called inside it."""
        if not path:
            own = sum(counts.get(k, 0) for k in GRAPH_PARTS.values())
        elif path in counts:
            own = counts[path]
        else:  # a container never called itself (ModuleList): its outermost called descendants
            under = [k for k in counts if k.startswith(path + ".")]
            own = sum(counts[k] for k in under if not any(k.startswith(c + ".") for c in under if c != k))
        inside = sum(n for p, n in extra.by_path.items() if not path or p == path or p.startswith(path + "."))
        return int(own + inside)

    graphs = {g: {"parameters": count_parameters(model.get_submodule(p)), "flops": flops(p)}
              for g, p in GRAPH_PARTS.items()}
    parts = {k: {"parameters": count_parameters(part_modules(model, k)), "flops": sum(flops(p) for p in PARTS[k])}
             for k in PARTS}
    if cfg.decoder != "rus":
        parts["bilinear_decoder"] = parts.pop("RUS_decoder")
    total = flops("")
    # graph-level glue: FPN top-down sums, the superpixel propagation of the decoder, pooling, broadcasts
    parts["other"] = {"parameters": count_parameters(model) - sum(v["parameters"] for v in parts.values()),
                      "flops": total - sum(v["flops"] for v in parts.values())}
    return ModelCost(cfg.name, cfg.input_size, cfg.decoder, count_parameters(model), total, graphs, parts)
