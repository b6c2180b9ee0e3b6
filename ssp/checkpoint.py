"""Checkpoints as ``.safetensors`` with the config JSON in the file's metadata (no pickle anywhere).

Weights that come from a pip package (the pretrained text encoder) are left out and recorded by package
name and version; loading rebuilds them from that package. Named checkpoints (``ssp_lite_refshapes``)
resolve to ``ssp/checkpoints/<name>.safetensors``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ssp_edge.sdk.fsio import atomic_replace_file

from .config import SSPConfig, config_from_json
from .errors import SSPError

__all__ = [
    "FORMAT",
    "CHECKPOINT_DIR",
    "CheckpointInfo",
    "resolve_checkpoint",
    "save_checkpoint",
    "read_checkpoint_info",
    "load_checkpoint",
    "load_weights",
    "named_checkpoints",
]

FORMAT = "ssp-edge-checkpoint/1"
CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
_PACKAGED_PREFIX = "text.encoder."  # weights restored from the text-encoder package


@dataclass
class CheckpointInfo:
    path: Path
    config: SSPConfig
    metadata: dict[str, Any]

    @property
    def thresholds(self) -> dict[str, float]:
        """Mask / target-exists probability thresholds tuned on validation data (0.5 / 0.5 if none).

        A checkpoint whose target-exists head was never trained (``exists_head: untrained``: no no-target
        expressions in its training data) gets an exists threshold of 0: every prompt counts as present."""
        th = {"mask": 0.5, "exists": 0.5}
        if "thresholds" in self.metadata:
            th.update({k: float(v) for k, v in json.loads(self.metadata["thresholds"]).items() if k in th})
        if self.exists_untrained:
            th["exists"] = 0.0
        return th

    @property
    def exists_untrained(self) -> bool:
        """True when the training data had no no-target expressions (the exists head says nothing)."""
        return self.metadata.get("exists_head") == "untrained"


def named_checkpoints() -> list[str]:
    return sorted(p.stem for p in CHECKPOINT_DIR.glob("*.safetensors"))


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A path to an existing file, or the name of a checkpoint shipped in ``ssp/checkpoints``."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    named = CHECKPOINT_DIR / f"{name_or_path}.safetensors"
    if named.is_file():
        return named
    avail = ", ".join(named_checkpoints()) or "none"
    raise SSPError(f"checkpoint {str(name_or_path)!r} not found: give a .safetensors path or a shipped name ({avail})")


def save_checkpoint(
    model: torch.nn.Module,
    cfg: SSPConfig,
    path: str | Path,
    extra: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write model weights + config. Pretrained text-encoder weights are left out when they come from
    the pip package (frozen, ``cfg.pretrained``), and that package is recorded instead."""
    from safetensors.torch import save_file

    from .models.text import text_package_info

    skip_text = cfg.pretrained and cfg.freeze_text and cfg.text_encoder == "minilm_l6"
    tensors = {}
    for k, v in model.state_dict().items():
        if skip_text and k.startswith(_PACKAGED_PREFIX):
            continue
        v = v.detach().cpu().contiguous()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        tensors[k] = v
    meta = {"format": FORMAT, "config": cfg.to_json()}
    if skip_text:
        meta["text_encoder_package"] = json.dumps(text_package_info())
        meta["excluded_prefix"] = _PACKAGED_PREFIX
    for k, v in (extra or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a temp file beside it, fsynced and renamed over it (sdk.fsio): a crash leaves the old checkpoint or the new
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        atomic_replace_file(tmp, path, 0o644)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint_info(name_or_path: str | Path) -> CheckpointInfo:
    """Read only the header: config and metadata (cheap, validates the file)."""
    from safetensors import safe_open

    path = resolve_checkpoint(name_or_path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise SSPError(
            f"checkpoint {str(path)!r} is not a readable .safetensors file ({e}); re-download or re-export it"
        ) from None
    if meta.get("format") != FORMAT or "config" not in meta:
        raise SSPError(
            f"checkpoint {str(path)!r} has no ssp-edge metadata (format {meta.get('format')!r}); "
            "save it with ssp.checkpoint.save_checkpoint"
        )
    return CheckpointInfo(path, config_from_json(meta["config"]), meta)


def load_weights(model: torch.nn.Module, info: CheckpointInfo) -> None:
    """Load a checkpoint's tensors into ``model``; a mismatch names the first missing/unexpected keys.

    Strict, with one intended exception: keys under the checkpoint's ``excluded_prefix`` (the frozen text
    encoder, rebuilt from its pip package) may be absent. ``load_state_dict(strict=False)`` below relies on the
    explicit key checks before it."""
    from safetensors.torch import load_file

    try:
        sd = load_file(str(info.path))
    except Exception as e:
        raise SSPError(f"checkpoint {str(info.path)!r} is corrupt ({e}); re-download or re-export it") from None
    excluded = info.metadata.get("excluded_prefix", "")
    own = model.state_dict()
    missing = [k for k in own if k not in sd and not (excluded and k.startswith(excluded))]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        raise SSPError(
            f"checkpoint {str(info.path)!r} does not fit config {info.config.name!r}: "
            f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}"
        )
    bad = [k for k in sd if tuple(sd[k].shape) != tuple(own[k].shape)]
    if bad:
        k = bad[0]
        raise SSPError(
            f"checkpoint {str(info.path)!r}: tensor {k!r} has shape {tuple(sd[k].shape)}, the model "
            f"expects {tuple(own[k].shape)} (checkpoint of another config?)"
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=False)


def load_checkpoint(
    name_or_path: str | Path, expect_config: str | None = None
) -> tuple[torch.nn.Module, CheckpointInfo]:
    """Build the model of a checkpoint's config and load its weights (eval mode)."""
    from .models.ssp import build_model

    info = read_checkpoint_info(name_or_path)
    if expect_config and info.config.name != expect_config:
        raise SSPError(f"checkpoint {str(info.path)!r} is a {info.config.name!r} checkpoint, not {expect_config!r}")
    _check_text_package(info)
    # the weights come from the checkpoint: backbone_weights / text_weights (training-time sources) are not
    # re-read, except text weights the checkpoint left out (frozen MiniLM from a weights folder)
    model = build_model(info.config)
    if info.config.text_weights and info.metadata.get("excluded_prefix") == _PACKAGED_PREFIX:
        from .models.weights import load_part_weights

        load_part_weights(model.text.encoder, info.config.text_weights, "text encoder")
    load_weights(model, info)
    return model.eval(), info


def _check_text_package(info: CheckpointInfo) -> None:
    """The text-encoder weights come from a pip package: warn when the installed version differs."""
    rec = info.metadata.get("text_encoder_package")
    if not rec:
        return
    import warnings
    from importlib.metadata import PackageNotFoundError, version

    want = json.loads(rec)
    try:
        have = version(want["name"])
    except PackageNotFoundError:
        raise SSPError(
            f"checkpoint {str(info.path)!r} needs the package {want['name']}=={want['version']} for its "
            f"text encoder: pip install '{want['name']}=={want['version']}'"
        ) from None
    if have != want["version"]:
        warnings.warn(
            f"checkpoint {info.path.name} was trained with {want['name']}=={want['version']}, "
            f"{have} is installed: text features may differ",
            stacklevel=3,
        )
