"""One referring-segmentation sample, the unit every data source yields."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Sample"]


@dataclass
class Sample:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    mask: np.ndarray  # (H, W) uint8 {0, 1}; all zero when the expression names nothing in the image
    expression: str
    type: str = "refcoco"  # expression type (RefShapes: attribute/position/relation/ordinal/no_target; v2 adds multi)
    exists: bool = True
    instances: np.ndarray | None = None  # (H, W) uint8 instance ids (RefShapes only; superpixel pretraining)
    source: str = ""
    # per-sample tags for metrics and analysis (RefShapes v2: "template", "unique", "ordinal_pos", "n_targets",
    # "targets", "relation", "why" (the reason an expression names nothing), "background"); empty elsewhere
    tags: dict = field(default_factory=dict)
