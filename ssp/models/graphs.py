"""The three deployment graphs (ARCHITECTURE.md §4) as PyTorch modules with named inputs and outputs.

This is the one table of graph I/O: export traces these modules and writes their names into the bundle's
manifest, and every PyTorch-side caller (the PyTorch backend, parity checks) runs the same modules through
:func:`run_graph`, so a change of the graph split is made here once. The runtime never reads this module: it
takes names and shapes from the manifest.

The cut between the image encoder and the mask decoder graphs follows §6 (prompt-independent work runs once
per frame): the image encoder graph also runs :meth:`MaskDecoder.frame_features` (skip projections, gates on
skips, the superpixel token projection) and outputs them by name; the mask decoder graph takes them for F
frames (dynamic axis ``frames``) plus ``frame_index (K,)``, each expression's frame, and never copies a
frame's features per expression before the last, per-expression ops.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..config import SSPConfig, get_config
from .ssp import SSP, frame_feature_names

__all__ = [
    "GraphIO",
    "GRAPH_IO",
    "GRAPHS",
    "graph_io",
    "graph_modules",
    "run_graph",
    "ImageEncoderGraph",
    "MaskDecoderGraph",
]


@dataclass(frozen=True)
class GraphIO:
    """Input and output names of one graph, and which inputs have a dynamic batch axis (axis 0, by name)."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic: Mapping[str, str]  # input name -> dynamic axis name ("frames" | "expressions")


_EXPR = "expressions"
_TEXT_OUT = ("words", "sentence")


def graph_io(cfg: SSPConfig | None = None) -> dict[str, GraphIO]:
    """Graph name -> I/O for a config (the image features depend on the decoder kind; default ssp_lite)."""
    feats = frame_feature_names(cfg or get_config("ssp_lite"))
    dec_in = feats + ("words", "attention_mask", "sentence", "frame_index")
    return {
        "text_encoder": GraphIO(
            ("input_ids", "attention_mask"), _TEXT_OUT, {"input_ids": _EXPR, "attention_mask": _EXPR}
        ),
        "image_encoder": GraphIO(("image",), feats, {"image": "frames"}),
        "mask_decoder": GraphIO(
            dec_in,
            ("mask_logits", "target_logit"),
            {
                **{f: "frames" for f in feats},
                "words": _EXPR,
                "attention_mask": _EXPR,
                "sentence": _EXPR,
                "frame_index": _EXPR,
            },
        ),
    }


#: I/O of the RUS decoder configs (ssp_lite, ssp_paper); :func:`graph_io` for others
GRAPH_IO: dict[str, GraphIO] = graph_io()
#: the graphs in the order a frame runs them
GRAPHS = tuple(GRAPH_IO)


class ImageEncoderGraph(nn.Module):
    """image (F,3,S,S) -> the decoder's per-frame features (:meth:`MaskDecoder.frame_features`), by name."""

    def __init__(self, model: SSP):
        super().__init__()
        self.image, self.decoder = model.image, model.decoder
        self.io = graph_io(model.cfg)["image_encoder"]

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = self.decoder.frame_features(*self.image(image))
        return tuple(feats[n] for n in self.io.outputs)


class MaskDecoderGraph(nn.Module):
    """Per-frame features of F frames + K expressions + frame_index (K,) -> mask_logits, target_logit."""

    def __init__(self, model: SSP):
        super().__init__()
        self.decoder = model.decoder
        self.io = graph_io(model.cfg)["mask_decoder"]

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        t = dict(zip(self.io.inputs, inputs))
        feats = {n: t[n] for n in self.decoder.frame_names}
        out = self.decoder.decode(feats, t["words"], t["attention_mask"], t["sentence"], t["frame_index"])
        return out[0], out[1]


def graph_modules(model: SSP) -> dict[str, nn.Module]:
    """graph name -> the module export traces (positional inputs in its graph's ``inputs`` order)."""
    return {
        "text_encoder": model.text,
        "image_encoder": ImageEncoderGraph(model),
        "mask_decoder": MaskDecoderGraph(model),
    }


def run_graph(module: nn.Module, graph: str, feeds: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Run one graph's module on named feeds; returns its outputs by name (missing feeds: KeyError naming them)."""
    io = getattr(module, "io", None) or GRAPH_IO[graph]
    missing = [n for n in io.inputs if n not in feeds]
    if missing:
        raise KeyError(f"{graph}: missing inputs {missing}")
    out = module(*(feeds[n] for n in io.inputs))
    return dict(zip(io.outputs, out))
