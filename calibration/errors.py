"""Errors of the calibration tools: bad input (data, bundle, options), printed by `ssp` as one line."""

from __future__ import annotations

from ssp_edge.ssp.errors import SSPError

__all__ = ["CalibrationError", "CalibrationWarning"]


class CalibrationError(SSPError):
    """Bad calibration / evaluation input: names the input, what is wrong and the fix.

    An :class:`~ssp_edge.sdk.errors.SSPEdgeError`, so the CLI reports it as one line.
    """


class CalibrationWarning(UserWarning):
    """Something about the calibration data the user should know (e.g. truncated expressions); `ssp calibrate`
    prints it as one line."""
