"""Pretrained weights for the backbone and the text encoder, offline: a Hugging Face ``save_pretrained`` folder
(``model.safetensors``, sharded ``model.safetensors.index.json``, or ``pytorch_model.bin`` read with
``weights_only=True``) or a single ``.safetensors`` file. ``--set backbone_weights=DIR`` / ``text_weights=DIR``.

Loading is strict except where intended, each named by the receiving module: classification heads and
poolers in the file are dropped (``weight_keys``), index buffers the model rebuilds itself and this project's
own stride-2 stem may be absent (``weight_optional``), and Swin's relative-position bias tables are resized
to the model's window (``adapt_weight``). Anything else missing, unexpected or of another shape is a one-line
:class:`SSPError` naming the first bad key (plus the architecture field that differs, when the folder has a
config.json).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..errors import SSPError

__all__ = ["WeightsReport", "read_weight_file", "load_part_weights", "load_pretrained_parts"]


@dataclass
class WeightsReport:
    """What a weight file gave a module."""

    path: str
    loaded: int
    adapted: list[str] = field(default_factory=list)  # keys resized (e.g. Swin bias tables)
    kept: list[str] = field(default_factory=list)  # optional keys the file lacked (kept as initialised)
    dropped: int = 0  # keys of heads / poolers in the file


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise SSPError(f"cannot read weights {path}: not a readable .safetensors file ({e})") from None


def read_weight_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """(state dict, the folder's config.json or None) of a weight folder or file."""
    p = Path(path)
    if p.is_file():
        if p.suffix != ".safetensors":
            raise SSPError(f"weights {p}: expected a .safetensors file or a Hugging Face save_pretrained folder")
        return _read_safetensors(p), None
    if not p.is_dir():
        raise SSPError(f"weights {p} not found: give a Hugging Face save_pretrained folder or a .safetensors file")
    hf_cfg = None
    if (p / "config.json").is_file():
        try:
            hf_cfg = json.loads((p / "config.json").read_text())
        except (OSError, ValueError) as e:
            raise SSPError(f"weights {p}: config.json is not valid JSON ({e})") from None
    if (p / "model.safetensors").is_file():
        return _read_safetensors(p / "model.safetensors"), hf_cfg
    index = p / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as e:
            raise SSPError(f"weights {p}: {index.name} is not a safetensors index ({e})") from None
        sd: dict[str, torch.Tensor] = {}
        for s in shards:
            if not (p / s).is_file():
                raise SSPError(f"weights {p}: shard {s} named by {index.name} is missing")
            sd.update(_read_safetensors(p / s))
        return sd, hf_cfg
    if (p / "pytorch_model.bin").is_file():
        try:
            sd = torch.load(p / "pytorch_model.bin", map_location="cpu", weights_only=True)
        except Exception as e:
            raise SSPError(
                f"weights {p}: pytorch_model.bin is not a plain tensor file ({type(e).__name__}); "
                "re-save the folder with save_pretrained(safe_serialization=True)"
            ) from None
        return dict(sd), hf_cfg
    have = ", ".join(sorted(x.name for x in p.iterdir())[:6]) or "nothing"
    raise SSPError(
        f"weights folder {p} has no model.safetensors (or sharded index / pytorch_model.bin); it holds {have}"
    )


def _arch_hint(module: nn.Module, hf_cfg: dict[str, Any] | None, what: str) -> str:
    arch = module.arch() if hasattr(module, "arch") else {}
    key = "backbone_config" if what == "backbone" else "text_config"
    for k, v in arch.items():
        if hf_cfg is not None and k in hf_cfg and hf_cfg[k] != v:
            return f"; its config.json has {k}={hf_cfg[k]}, the model {v} (--set {key}='{{\"{k}\": ...}}')"
    return ""


def load_part_weights(module: nn.Module, path: str | Path, what: str) -> WeightsReport:
    """Load ``path`` into ``module`` (a backbone or text encoder with ``weight_keys`` / ``weight_optional`` /
    ``adapt_weight``); SSPError naming the first bad key."""
    src, hf_cfg = read_weight_file(path)
    mapped = module.weight_keys(src)  # type: ignore[operator]
    own = module.state_dict()
    hint = _arch_hint(module, hf_cfg, what)
    if hf_cfg is not None and what == "backbone" and hf_cfg.get("model_type") not in (None, "swin"):
        raise SSPError(
            f"{what} weights {path}: config.json says model_type {hf_cfg.get('model_type')!r}, the "
            f"backbone needs a 'swin' folder"
        )
    if hf_cfg is not None and what == "text encoder" and hf_cfg.get("model_type") not in (None, "bert"):
        raise SSPError(
            f"{what} weights {path}: config.json says model_type {hf_cfg.get('model_type')!r}, the "
            f"text encoder needs a BERT-family ('bert') folder"
        )
    missing = [k for k in own if k not in mapped and not module.weight_optional(k)]  # type: ignore[operator]
    if missing:
        raise SSPError(f"{what} weights {path} do not fit: missing key {missing[0]!r} ({len(missing)} missing){hint}")
    unexpected = [k for k in mapped if k not in own]
    if unexpected:
        raise SSPError(
            f"{what} weights {path} do not fit: unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected){hint}"
        )
    report = WeightsReport(str(path), 0, dropped=len(src) - len(mapped))
    out: dict[str, torch.Tensor] = {}
    for k, v in mapped.items():
        want = tuple(own[k].shape)
        if tuple(v.shape) != want:
            adapted = module.adapt_weight(k, v, want)  # type: ignore[operator]
            if adapted is None or tuple(adapted.shape) != want:
                raise SSPError(
                    f"{what} weights {path} do not fit: key {k!r} has shape {tuple(v.shape)}, the model "
                    f"expects {want}{hint}"
                )
            v = adapted
            report.adapted.append(k)
        out[k] = v.to(own[k].dtype)
    report.kept = [k for k in own if k not in out]
    module.load_state_dict(out, strict=False)  # the absent keys are exactly report.kept (optional by design)
    report.loaded = len(out)
    return report


def load_pretrained_parts(model: nn.Module, cfg: Any) -> dict[str, WeightsReport]:
    """Apply ``cfg.backbone_weights`` / ``cfg.text_weights`` to a built SSP model (the trainer calls this)."""
    done: dict[str, WeightsReport] = {}
    if getattr(cfg, "backbone_weights", None):
        done["backbone"] = load_part_weights(model.image.backbone, cfg.backbone_weights, "backbone")
    if getattr(cfg, "text_weights", None):
        done["text"] = load_part_weights(model.text.encoder, cfg.text_weights, "text encoder")
    return done
