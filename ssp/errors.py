"""User-facing errors of the reference model, training and data: printed by the CLI as one line."""

from __future__ import annotations

from ssp_edge.sdk.errors import SSPEdgeError

__all__ = ["SSPError"]


class SSPError(SSPEdgeError):
    """An expected error caused by user input (names the thing and the fix)."""
