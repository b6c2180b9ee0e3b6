"""The project's one error hierarchy: every expected error (bad input: a bundle, engine, source, prompt, option,
data set) derives from :class:`SSPEdgeError`, which the ``ssp`` dispatcher prints as one line (exit status 2).
Anything else is a bug and keeps its traceback."""

from __future__ import annotations

__all__ = ["SSPEdgeError", "SDKError", "BundleError"]


class SSPEdgeError(Exception):
    """Base of every expected, user-facing error: the message names the input, what is wrong and the fix."""

    user_facing = True  # informational (CONTRACTS.md); the dispatcher catches the type itself


class SDKError(SSPEdgeError):
    """Bad input to the runtime SDK (frame, prompt, option, engine, source)."""


class BundleError(SDKError):
    """A bundle folder is missing, incomplete, tampered with, malformed or of another format."""
