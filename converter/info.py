"""`ssp convert info`: what a bundle holds (graphs, flavours, precisions, engines, sizes) and the
parameters / FLOPs per graph, per SSP module (per frame / per prompt) and per decoder block, RUS against the
bilinear decoder of the same config, at the bundle's input size."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ssp_edge.sdk.bundle import Bundle

__all__ = ["bundle_info", "format_info"]


def bundle_info(path: str | Path) -> dict[str, Any]:
    import json

    import torch

    from ssp_edge.ssp.config import config_from_json
    from ssp_edge.ssp.flops import model_cost
    from ssp_edge.ssp.models.ssp import build_model

    bundle = Bundle.open(path)
    man = bundle.manifest
    cfg = config_from_json(json.dumps(man.config)).replace(pretrained=False)  # counting needs no weights
    torch.manual_seed(0)
    cost = model_cost(build_model(cfg), cfg)
    # the same config with the other upsampling decoder: RUS vs bilinear per block, at equal width
    other = cfg.replace(decoder="bilinear" if cfg.decoder == "rus" else "rus")
    torch.manual_seed(0)
    cost_other = model_cost(build_model(other), other)
    return {
        "bundle": str(path),
        "config": cfg.name,
        "input_size": man.input_size,
        "max_tokens": man.max_tokens,
        "source": man.source,
        "thresholds": man.thresholds,
        "dynamic_axes": man.dynamic_axes,
        "graphs": [
            {
                "name": g.name,
                "flavour": g.flavour,
                "precision": g.precision,
                "file": g.file,
                "mbytes": round(bundle.path(g.file).stat().st_size / 2**20, 2),
                "custom_ops": g.custom_ops,
                "qdq_plan": _plan(g),
            }
            for g in man.graphs
        ],
        "engines": [dataclasses.asdict(e) for e in man.engines],
        "cost": dataclasses.asdict(cost),
        "cost_other_decoder": dataclasses.asdict(cost_other),
    }


def _plan(g: Any) -> str | None:
    """Whose Q/DQ placement an INT8 graph carries: "tensorrt" (what `ssp convert build --precision int8` builds) or
    "onnxruntime" (the portable CPU plan); bundles calibrated before this was recorded: by flavour."""
    if g.precision != "int8":
        return None
    return g.qdq_plan or ("tensorrt" if g.flavour == "plugin" else "onnxruntime")


_PLAN_TEXT = {"tensorrt": "Q/DQ plan: TensorRT (ssp convert build)", "onnxruntime": "Q/DQ plan: ONNX Runtime CPU"}


def format_info(info: dict[str, Any]) -> str:
    c = info["cost"]
    lines = [
        f"bundle {info['bundle']}: {info['config']} at {info['input_size']}x{info['input_size']}, "
        f"max {info['max_tokens']} tokens, source {info['source']}",
        "",
        "graphs:",
    ]
    for g in info["graphs"]:
        ops = ", ".join(f"{k} x{v}" for k, v in g["custom_ops"].items()) or "standard ops only"
        plan = f"; {_PLAN_TEXT[g['qdq_plan']]}" if g.get("qdq_plan") in _PLAN_TEXT else ""
        lines.append(f"  {g['name']:<14} {g['flavour']:<9} {g['precision']:<5} {g['mbytes']:>7.2f} MB  {ops}{plan}")
    lines.append("engines: " + (", ".join(e["file"] for e in info["engines"]) or "none (ssp convert build)"))
    for e in info["engines"]:
        lines.append(
            f"  {e['file']}: {e['precision']} {e['flavour']}, TensorRT {e['tensorrt_version']}"
            f"{' (version-compatible)' if e.get('version_compatible') else ''}, from {e['source']}"
            + (f", plugins: {e['plugin_build']}" if e.get("plugin_build") else "")
        )
    lines += [
        "",
        f"cost of one frame + one expression: {c['parameters'] / 1e6:.2f} M parameters, "
        f"{c['flops'] / 1e9:.3f} GFLOPs (multiply-add = 2)",
        f"  {'graph':<16}{'params (M)':>12}{'GFLOPs':>10}",
    ]
    for k, v in c["graphs"].items():
        lines.append(f"  {k:<16}{v['parameters'] / 1e6:>12.3f}{v['flops'] / 1e9:>10.3f}")
    if "frame_flops" in c:
        lines.append(
            f"  per frame (image encoder) + per prompt (mask decoder): {c['frame_flops'] / 1e9:.3f} + "
            f"{c['prompt_flops'] / 1e9:.3f} = {(c['frame_flops'] + c['prompt_flops']) / 1e9:.3f} GFLOPs"
        )
    split = all("frame_flops" in v for v in c["parts"].values())
    head = f"  {'module':<16}{'params (M)':>12}{'GFLOPs':>10}"
    lines.append(head + (f"{'frame':>10}{'prompt':>10}" if split else ""))
    for k, v in c["parts"].items():
        lines.append(
            f"  {k:<16}{v['parameters'] / 1e6:>12.3f}{v['flops'] / 1e9:>10.3f}"
            + (f"{v['frame_flops'] / 1e9:>10.3f}{v['prompt_flops'] / 1e9:>10.3f}" if split else "")
        )
    other = info.get("cost_other_decoder")
    if other and c.get("blocks"):
        from ssp_edge.ssp.flops import decoder_block_table

        rus, bil = (c, other) if c["decoder"] == "rus" else (other, c)
        lines += [
            "",
            "upsampling decoder per block (RUS vs bilinear, equal width; bilinear = 4 multiply-adds per output value):",
        ] + decoder_block_table(rus, bil)
    return "\n".join(lines)
