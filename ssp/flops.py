"""Parameters and FLOPs per deployment graph, per SSP part and per decoder block, at a config's input size.

FLOPs count a multiply-add as 2 (convolutions, linear layers, matmuls and attention, from
``torch.utils.flop_counter``) plus the three SSP ops counted from their definition (§3b), which the
counter does not see: SuperpixelAggregate 4·9·C·H·W, SuperpixelPropagate 2·9·C·H·W, ReplicationUpsample
2·C·H·W, and bilinear upsampling (4 multiply-adds per output value, so the bilinear decoder is compared
fairly). Element-wise activations and normalisations are not counted (the usual convention).

The graphs are counted as they are exported (``graphs.graph_modules``): the image encoder graph includes the
decoder's per-frame work (:meth:`MaskDecoder.frame_features`: skip projections, gates, superpixel tokens), so
``graphs["image_encoder"]`` is the cost per frame and ``graphs["mask_decoder"]`` the cost per prompt. Every FLOP is
attributed to the innermost module *or module method* running (the decoder blocks' ``frame_terms`` / ``step`` are
methods, not module calls), and each part and decoder block reports its per-frame and per-prompt shares. The
layers are counted as the architecture defines them (:func:`~.models.decoder.folding` off), the same for every
decoder: the eval-mode fold of the RUS blocks' 1x1 fusions, which the exported graphs use, changes the deployed
arithmetic slightly (grouped v2 RUS: +1.7 MFLOPs per prompt at stride 2, +0.004 at stride 1, under 0.1% of a frame;
dense v1 RUS: -26 MFLOPs per prompt, its decoder 0.502 -> 0.476 GFLOPs as exported).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from .config import SSPConfig
from .models import ops
from .models.decoder import folding
from .models.graphs import graph_modules, run_graph
from .models.parts import GRAPH_PARTS, PARTS, count_parameters, part_modules, part_paths
from .models.ssp import SSP
from .models.text import Tokenizer

__all__ = ["ModelCost", "model_cost", "decoder_block_table"]

#: module methods that do a module's work without a module call (attributed to that module)
_METHODS = ("frame_features", "decode", "ground", "frame_terms", "prompt_terms", "step", "run")
#: graph -> whose work it is ("frame": once per frame, "prompt": once per expression)
_GRAPH_ROLE = {"text_encoder": "text", "image_encoder": "frame", "mask_decoder": "prompt"}


@dataclass
class ModelCost:
    config: str
    input_size: int
    decoder: str
    parameters: int
    flops: int  # one frame + one expression, all three graphs (text encoder included)
    graphs: dict[str, dict[str, int]] = field(default_factory=dict)  # graph -> {"parameters", "flops"}
    # part -> {"parameters", "flops", "frame_flops", "prompt_flops", "text_flops"}; parts sum to the totals
    parts: dict[str, dict[str, int]] = field(default_factory=dict)
    # decoder block "stride8" ... "stride1" -> {"parameters", "flops", "frame_flops", "prompt_flops"}
    blocks: dict[str, dict[str, int]] = field(default_factory=dict)
    frame_flops: int = 0  # the image encoder graph: once per frame
    prompt_flops: int = 0  # the mask decoder graph: once per (frame, expression)
    rus_form: str = ""  # "dense" (v1) | "grouped" (v2) for a RUS decoder

    @property
    def frame_and_prompt_flops(self) -> int:
        """Image encoder + decoder for one frame and one prompt (the text encoder is cached per expression)."""
        return self.frame_flops + self.prompt_flops


def _bilinear_flops(*args: Any, out_shape: Any, **kwargs: Any) -> int:
    return 8 * math.prod(out_shape)


class _Scopes:
    """The module path currently running (module calls and the methods of :data:`_METHODS`) and the graph."""

    def __init__(self) -> None:
        self.stack: list[str] = [""]
        self.graph = ""
        self.by: dict[tuple[str, str], int] = {}  # (graph, module path) -> FLOPs

    def add(self, n: int) -> None:
        key = (self.graph, self.stack[-1])
        self.by[key] = self.by.get(key, 0) + int(n)

    def op_impls(self) -> dict[str, Callable[..., torch.Tensor]]:
        """The SSP ops, counted from their definition and computed by the reference implementations."""
        ref = ops.REFERENCE

        def agg(x: torch.Tensor, q: torch.Tensor, cell: int, eps: float) -> torch.Tensor:
            self.add(4 * 9 * x.shape[0] * x.shape[1] * x.shape[2] * x.shape[3])
            return ref["superpixel_aggregate"](x, q, cell, eps)

        def prop(z: torch.Tensor, q: torch.Tensor, cell: int) -> torch.Tensor:
            self.add(2 * 9 * z.shape[0] * z.shape[1] * q.shape[2] * q.shape[3])
            return ref["superpixel_propagate"](z, q, cell)

        def rus(x: torch.Tensor, g: torch.Tensor, y: torch.Tensor, scale: int) -> torch.Tensor:
            self.add(2 * x.shape[0] * x.shape[1] * g.shape[2] * g.shape[3])
            return ref["replication_upsample"](x, g, y, scale)

        return {"superpixel_aggregate": agg, "superpixel_propagate": prop, "replication_upsample": rus}


class _Counter(FlopCounterMode):
    """torch's FLOP counter, attributing each counted op to :class:`_Scopes` instead of its module tracker
    (which sees module calls only)."""

    def __init__(self, scopes: _Scopes):
        super().__init__(display=False, custom_mapping={torch.ops.aten.upsample_bilinear2d: _bilinear_flops})
        self.scopes = scopes

    def _count_flops(self, func_packet: Any, out: Any, args: Any, kwargs: Any) -> Any:
        if func_packet in self.flop_registry:
            self.scopes.add(self.flop_registry[func_packet](*args, **kwargs, out_val=out))
        return out


def _instrument(model: nn.Module, scopes: _Scopes) -> Callable[[], None]:
    """Hooks and method wrappers that keep ``scopes.stack`` on the running module; returns the undo."""
    undo: list[Callable[[], None]] = []

    def enter(path: str) -> None:
        scopes.stack.append(path)

    def leave() -> None:
        scopes.stack.pop()

    for name, mod in model.named_modules():
        h1 = mod.register_forward_pre_hook(lambda m, a, n=name: enter(n))
        h2 = mod.register_forward_hook(lambda m, a, o: leave())
        undo += [h1.remove, h2.remove]
        for meth in _METHODS:
            if not callable(getattr(type(mod), meth, None)):
                continue
            fn = getattr(mod, meth)

            def wrapped(*a: Any, _fn: Callable = fn, _n: str = name, **kw: Any) -> Any:
                enter(_n)
                try:
                    return _fn(*a, **kw)
                finally:
                    leave()

            setattr(mod, meth, functools.wraps(fn)(wrapped))
            undo.append(lambda m=mod, k=meth: delattr(m, k))

    def restore() -> None:
        for u in undo:
            u()

    return restore


def model_cost(model: SSP, cfg: SSPConfig, expression: str = "the red circle left of the blue square") -> ModelCost:
    """Count parameters and FLOPs of one frame + one expression (batch 1) at ``cfg.input_size``, per graph as
    exported, per part and per decoder block."""
    model = model.eval()
    tok = Tokenizer(cfg.max_tokens)([expression])
    x = torch.zeros(1, 3, cfg.input_size, cfg.input_size)
    scopes = _Scopes()
    mods = graph_modules(model)
    restore = _instrument(model, scopes)
    try:
        with torch.no_grad(), folding(False), _Counter(scopes), ops.use_implementations(**scopes.op_impls()):
            scopes.graph = "text_encoder"
            text = run_graph(
                mods["text_encoder"], "text_encoder", {"input_ids": tok.input_ids, "attention_mask": tok.attention_mask}
            )
            scopes.graph = "image_encoder"
            feats = run_graph(mods["image_encoder"], "image_encoder", {"image": x})
            scopes.graph = "mask_decoder"
            run_graph(
                mods["mask_decoder"],
                "mask_decoder",
                {
                    **feats,
                    **text,
                    "attention_mask": tok.attention_mask,
                    "frame_index": torch.zeros(1, dtype=torch.long),
                },
            )
    finally:
        restore()
        scopes.graph = ""
    # the one-channel mask head runs as a weighted channel sum (UpDecoder.run), which the counter does not see
    head = model.decoder.decoder.head
    key = ("mask_decoder", "decoder.decoder")
    scopes.by[key] = scopes.by.get(key, 0) + 2 * head.in_channels * cfg.input_size**2

    def under(paths: list[str]) -> dict[str, int]:
        """FLOPs of modules at or below ``paths``, by role (text / frame / prompt)."""
        out = {"text": 0, "frame": 0, "prompt": 0}
        for (g, p), n in scopes.by.items():
            if any(p == q or p.startswith(q + ".") for q in paths):
                out[_GRAPH_ROLE[g]] += n
        return out

    def entry(params: int, roles: dict[str, int]) -> dict[str, int]:
        return {
            "parameters": params,
            "flops": sum(roles.values()),
            "frame_flops": roles["frame"],
            "prompt_flops": roles["prompt"],
            "text_flops": roles["text"],
        }

    by_graph = {g: sum(n for (gg, _), n in scopes.by.items() if gg == g) for g in GRAPH_PARTS}
    graphs = {
        g: {"parameters": count_parameters(model.get_submodule(p)), "flops": by_graph[g]}
        for g, p in GRAPH_PARTS.items()
    }
    parts = {k: entry(count_parameters(part_modules(model, k)), under(part_paths(model, k))) for k in PARTS}
    if cfg.decoder != "rus":
        parts["bilinear_decoder"] = parts.pop("RUS_decoder")
    total = sum(by_graph.values())
    # graph-level glue: FPN top-down sums, the superpixel propagation of the decoder, pooling, the exists head's
    # attention pooling, the coordinates' centroid aggregation
    glue = {r: sum(n for (g, _), n in scopes.by.items() if _GRAPH_ROLE[g] == r) for r in ("text", "frame", "prompt")}
    for v in parts.values():
        for r in glue:
            glue[r] -= v[f"{r}_flops"]
    parts["other"] = entry(count_parameters(model) - sum(v["parameters"] for v in parts.values()), glue)
    blocks = {}
    dec = model.decoder.decoder
    for i, stride in enumerate((8, 4, 2, 1)):
        roles = under([f"decoder.decoder.blocks.{i}"])
        e = entry(count_parameters(dec.blocks[i]), roles)
        del e["text_flops"]
        blocks[f"stride{stride}"] = e
    head = entry(count_parameters(dec.head), {"text": 0, "frame": 0, "prompt": 0})
    head_roles = under(["decoder.decoder"])
    for k in ("frame", "prompt"):
        head[f"{k}_flops"] = head_roles[k] - sum(b[f"{k}_flops"] for b in blocks.values())
    head["flops"] = head["frame_flops"] + head["prompt_flops"]
    del head["text_flops"]
    blocks["head"] = head
    return ModelCost(
        cfg.name,
        cfg.input_size,
        cfg.decoder,
        count_parameters(model),
        total,
        graphs,
        parts,
        blocks,
        by_graph["image_encoder"],
        by_graph["mask_decoder"],
        cfg.rus_form if cfg.decoder == "rus" else "",
    )


def decoder_block_table(rus: dict[str, Any], bilinear: dict[str, Any]) -> list[str]:
    """Text rows comparing the RUS and bilinear decoders block by block (:class:`ModelCost` as dicts, one config)."""
    rows = [f"  {'block':<10}{'RUS GFLOPs':>12}{'bilinear':>10}{'RUS params':>12}{'bilinear':>10}"]
    for k in rus.get("blocks", {}):
        r, b = rus["blocks"][k], bilinear.get("blocks", {}).get(k)
        if b is None:
            continue
        rows.append(
            f"  {k:<10}{r['flops'] / 1e9:>12.4f}{b['flops'] / 1e9:>10.4f}{r['parameters']:>12,}{b['parameters']:>10,}"
        )
    rd, bd = rus["parts"].get("RUS_decoder"), bilinear["parts"].get("bilinear_decoder")
    if rd and bd:
        rows.append(
            f"  {'decoder':<10}{rd['flops'] / 1e9:>12.4f}{bd['flops'] / 1e9:>10.4f}{rd['parameters']:>12,}"
            f"{bd['parameters']:>10,}"
        )
    return rows
