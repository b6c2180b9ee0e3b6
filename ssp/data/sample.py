"""One referring-segmentation sample, the unit every data source yields."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Sample"]


@dataclass
class Sample:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    mask: np.ndarray  # (H, W) uint8 {0, 1}; all zero when the expression names nothing in the image
    expression: str
    type: str = "refcoco"  # expression type (RefShapes: attribute/position/relation/ordinal/no_target)
    exists: bool = True
    instances: np.ndarray | None = None  # (H, W) uint8 instance ids (RefShapes only; superpixel pretraining)
    source: str = ""
