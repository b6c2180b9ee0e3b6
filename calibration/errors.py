"""Errors of the calibration tools: bad input (data, bundle, options), printed by `ssp` as one line."""
from __future__ import annotations

from ssp_edge.ssp.errors import SSPError

__all__ = ["CalibrationError"]


class CalibrationError(SSPError):
    """Bad calibration / evaluation input: names the input, what is wrong and the fix (an :class:`~ssp_edge.sdk.errors.SSPEdgeError`)."""
