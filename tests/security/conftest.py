"""tests/security: its helper module (sec_helpers) importable, and a small synthetic bundle per test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)

from sec_helpers import make_bundle  # noqa: E402


@pytest.fixture
def mini(tmp_path) -> Path:
    """A bundle of small synthetic files (tokenizer, two graphs, one engine), all listed and hashed."""
    return make_bundle(tmp_path / "bundle")
