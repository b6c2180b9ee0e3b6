"""Errors the SDK raises for bad input (bundle, engine, source, prompt): one line, names the fix."""
from __future__ import annotations

__all__ = ["SDKError", "BundleError"]


class SDKError(Exception):
    """An expected error caused by user input; the `ssp` dispatcher prints it as one line."""

    user_facing = True


class BundleError(SDKError):
    """A bundle folder is missing, incomplete, tampered with or of another format."""
