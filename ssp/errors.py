"""User-facing errors: raised for bad input, printed by the CLI as one line without a traceback."""
from __future__ import annotations

__all__ = ["SSPError"]


class SSPError(Exception):
    """An expected error caused by user input (names the thing and the fix)."""

    user_facing = True  # the `ssp` dispatcher prints these as one line, without a traceback
