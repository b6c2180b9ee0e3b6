"""Preprocessing shared with the runtime SDK: see :mod:`sdk.preprocess` (one implementation)."""

from ssp_edge.sdk.preprocess import Letterbox, letterbox, normalize, pad_value, unletterbox

__all__ = ["Letterbox", "letterbox", "unletterbox", "normalize", "pad_value"]
