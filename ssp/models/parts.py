"""The named SSP parts (paper modules) as sub-module paths of :class:`~ssp.models.ssp.SSP`: one mapping
for parameter counts (`ssp summary`), FLOPs (`ssp convert info`) and benchmarks."""

from __future__ import annotations

import torch.nn as nn

__all__ = ["PARTS", "GRAPH_PARTS", "part_paths", "part_modules", "count_parameters"]

#: part -> sub-module paths (the image neck is what the image encoder has beyond backbone + superpixel net); paths a
#: config does not build (v2's coordinate projections, word relevance) are skipped
PARTS: dict[str, tuple[str, ...]] = {
    "text_encoder": ("text",),
    "backbone": ("image.backbone",),
    "superpixel_net": ("image.spixel",),
    "image_neck": (
        "image.lat32",
        "image.lat16",
        "image.lat8",
        "image.lat4",
        "image.td4",
        "image.smooth4",
        "image.smooth8",
        "image.stem2",
        "image.stem1",
    ),
    "PWT": ("decoder.pwt", "decoder.coarse", "decoder.pix_coord"),
    "SWT": ("decoder.swt", "decoder.sp_in", "decoder.sp_coord", "decoder.rel_z", "decoder.rel_s", "decoder.rel_w"),
    "EPT": ("decoder.ept", "decoder.ept_norm", "decoder.prior"),
    "RUS_decoder": ("decoder.decoder",),
    "heads": ("decoder.exists", "decoder.sent_gate"),
}
#: deployment graph -> its sub-module path
GRAPH_PARTS: dict[str, str] = {"text_encoder": "text", "image_encoder": "image", "mask_decoder": "decoder"}


def part_paths(model: nn.Module, part: str) -> list[str]:
    """The sub-module paths of a part that this model has."""
    have = dict(model.named_modules())
    return [p for p in PARTS[part] if p in have]


def part_modules(model: nn.Module, part: str) -> list[nn.Module]:
    return [model.get_submodule(p) for p in part_paths(model, part)]


def count_parameters(modules: nn.Module | list[nn.Module]) -> int:
    mods = modules if isinstance(modules, list) else [modules]
    return sum(p.numel() for m in mods for p in m.parameters())
