"""Shared pytest setup: the repository root and tests/ on sys.path, the ``slow`` marker, shared fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "tests"):  # the packages, and tests/helpers.py
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from helpers import assert_ok, run_ssp, write_tiny_checkpoint  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~20 s on a 2-core CPU (still runs in CI)")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A small random-init checkpoint (no pretrained weights)."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture(scope="session")
def lite_bundle(tmp_path_factory) -> Path:
    """The shipped checkpoint exported once per test session with `ssp convert export` (both flavours)."""
    out = tmp_path_factory.mktemp("bundle") / "ssp_lite"
    assert_ok(run_ssp("convert", "export", "--checkpoint", "ssp_lite_refshapes", "--out", str(out)))
    return out
