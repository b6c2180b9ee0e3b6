"""SSP Edge: referring image segmentation (image + English expression -> mask) from a trained SSP model to
ONNX Runtime and TensorRT.

The product's folders install as subpackages of this one import package, so site-packages gains no generic
names: :mod:`ssp_edge.sdk` (the torch-free runtime), :mod:`ssp_edge.ssp` (the PyTorch reference model),
:mod:`ssp_edge.converter`, :mod:`ssp_edge.calibration`, :mod:`ssp_edge.benchmarks`. The runtime's main names are
re-exported here, imported on first use (``import ssp_edge`` alone loads neither OpenCV nor ONNX Runtime)::

    from ssp_edge import Segmenter
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Segmenter",
    "Result",
    "PromptEncodings",
    "ImageFeatures",
    "Bundle",
    "SDKError",
    "BundleError",
    "__version__",
]
__version__ = "0.1.0"

_LAZY = {
    "Segmenter": "ssp_edge.sdk.segmenter",
    "Result": "ssp_edge.sdk.segmenter",
    "PromptEncodings": "ssp_edge.sdk.segmenter",
    "ImageFeatures": "ssp_edge.sdk.segmenter",
    "Bundle": "ssp_edge.sdk.bundle",
    "SDKError": "ssp_edge.sdk.errors",
    "BundleError": "ssp_edge.sdk.errors",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ssp_edge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
