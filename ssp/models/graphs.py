"""The three deployment graphs (ARCHITECTURE.md §4) as PyTorch modules with named inputs and outputs.

This is the one table of graph I/O: export traces these modules and writes their names into the bundle's
manifest, and every PyTorch-side caller (the PyTorch backend, parity checks) runs the same modules through
:func:`run_graph`, so a change of the graph split is made here once. The runtime never reads this module: it
takes names and shapes from the manifest.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn as nn

from .ssp import IMAGE_FEATURES, SSP

__all__ = ["GraphIO", "GRAPH_IO", "GRAPHS", "graph_modules", "run_graph"]


@dataclass(frozen=True)
class GraphIO:
    """Input and output names of one graph, and which inputs have a dynamic batch axis (axis 0, by name)."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic: Mapping[str, str]  # input name -> dynamic axis name ("frames" | "expressions")


_EXPR = "expressions"
GRAPH_IO: dict[str, GraphIO] = {
    "text_encoder": GraphIO(("input_ids", "attention_mask"), ("words", "sentence"),
                            {"input_ids": _EXPR, "attention_mask": _EXPR}),
    "image_encoder": GraphIO(("image",), IMAGE_FEATURES, {"image": "frames"}),
    "mask_decoder": GraphIO(IMAGE_FEATURES + ("words", "attention_mask", "sentence"), ("mask_logits", "target_logit"),
                            {"words": _EXPR, "attention_mask": _EXPR, "sentence": _EXPR}),
}
#: the graphs in the order a frame runs them
GRAPHS = tuple(GRAPH_IO)


def graph_modules(model: SSP) -> dict[str, nn.Module]:
    """graph name -> the module export traces (positional inputs in ``GRAPH_IO[graph].inputs`` order)."""
    return {"text_encoder": model.text, "image_encoder": model.image, "mask_decoder": model.decoder}


def run_graph(module: nn.Module, graph: str, feeds: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Run one graph's module on named feeds; returns its outputs by name (missing feeds: KeyError naming them)."""
    io = GRAPH_IO[graph]
    missing = [n for n in io.inputs if n not in feeds]
    if missing:
        raise KeyError(f"{graph}: missing inputs {missing}")
    out = module(*(feeds[n] for n in io.inputs))
    return dict(zip(io.outputs, out))
