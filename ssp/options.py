"""Training options (torch-free, so the CLI can describe them without importing PyTorch)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrainOptions"]


@dataclass
class TrainOptions:
    """Hyper-parameters of `ssp train` (the shipped checkpoint's three-phase recipe is in ssp/checkpoints/README.md)."""

    out: str = "runs/ssp_lite"
    data: str = "refshapes:train"
    val: str = "refshapes:val"
    steps: int = 1300
    images_per_batch: int = 4
    exprs_per_image: int = 4
    lr: float = 8e-4
    backbone_lr: float = 1e-4
    weight_decay: float = 0.01
    warmup: int = 60
    backbone_trainable_from: int = 5  # EfficientNet-Lite0 block index (5 = stride 16 and deeper)
    spixel_steps: int = 250
    finetune_spixel: bool = False
    val_every: int = 200
    val_samples: int = 150
    bf16: bool = True
    seed: int = 0
    init: str | None = None  # start from a checkpoint's weights
    resume: bool = True
    time_budget_min: float | None = None  # stop (and save) when exceeded
    # grounding phase: train only what precedes the upsampling decoder (PWT/SWT/EPT, exists head, FPN,
    # backbone) on the stride-16 / superpixel losses; about 3x more expressions per CPU second
    ground_only: bool = False
    # RefShapes expression-type mix for training: more of the types that need spatial reasoning
    type_weights: dict[str, float] = field(default_factory=lambda: {
        "attribute": 0.14, "position": 0.22, "relation": 0.27, "ordinal": 0.23, "no_target": 0.14})
    extra: dict[str, Any] = field(default_factory=dict)
