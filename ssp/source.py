"""Where a bundle's weights come from: a checkpoint (shipped name or path, sha256 recorded) or a config
with a seeded random init (``ssp_paper`` has no trained weights here). Export records the source in the
manifest; checks and the PyTorch backend rebuild exactly that model from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ssp_edge.sdk.bundle import Manifest, sha256_file

from .checkpoint import load_checkpoint, resolve_checkpoint
from .config import SSPConfig, get_config
from .errors import SSPError
from .models.ssp import SSP, build_model

__all__ = ["ModelSource", "load_source", "load_manifest_source"]


class ModelSource:
    """A built model (eval mode), its config, thresholds and the manifest record of where it came from."""

    def __init__(self, model: SSP, cfg: SSPConfig, record: dict[str, Any], thresholds: dict[str, float]):
        self.model, self.cfg, self.record, self.thresholds = model, cfg, record, thresholds


def load_source(checkpoint: str | None = None, config: str | None = None, seed: int = 0) -> ModelSource:
    """``checkpoint`` (name or path), or ``config`` for a seeded random init; giving both checks they agree."""
    if checkpoint:
        path = resolve_checkpoint(checkpoint)
        model, info = load_checkpoint(path, expect_config=config)
        shipped = not Path(checkpoint).is_file()
        record = {
            "checkpoint": checkpoint if shipped else str(path.resolve()),
            "sha256": sha256_file(path),
            "config": info.config.name,
        }
        if info.metadata.get("data"):  # the training data: calibration defaults to its family's splits
            record["data"] = str(info.metadata["data"])
        return ModelSource(model.eval(), info.config, record, info.thresholds)
    if not config:
        raise SSPError("give --checkpoint NAME_OR_PATH, or --config NAME for a randomly initialised model")
    cfg = get_config(config)
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    return ModelSource(model, cfg, {"config": cfg.name, "random_init_seed": seed}, {"mask": 0.5, "exists": 0.5})


def load_manifest_source(manifest: Manifest) -> ModelSource:
    """Rebuild the PyTorch model a bundle was exported from (the PyTorch backend, parity checks)."""
    src = manifest.source
    if "checkpoint" in src:
        s = load_source(checkpoint=src["checkpoint"])
        if src.get("sha256") and s.record["sha256"] != src["sha256"]:
            raise SSPError(
                f"checkpoint {src['checkpoint']!r} has changed since the bundle was exported (sha256 "
                "differs); re-export the bundle"
            )
        return s
    if "random_init_seed" in src:
        return load_source(config=src["config"], seed=int(src["random_init_seed"]))
    raise SSPError(f"manifest source {src} names neither a checkpoint nor a random init; re-export the bundle")
