"""Helpers shared by test modules (tests/ is on sys.path via conftest): run the `ssp` CLI in a
subprocess, assert one-line errors, write small random-init checkpoints, and the small manifest of synthetic
bundles."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def small_manifest(**fields: Any) -> Any:
    """The manifest of a synthetic bundle (ssp_lite at 320, 20 tokens, 1..4 frames, 1..16 expressions); ``fields``
    override or add Manifest fields."""
    from ssp_edge.sdk.bundle import Manifest

    base: dict[str, Any] = {
        "config": {"name": "ssp_lite"},
        "input_size": 320,
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "max_tokens": 20,
        "thresholds": {"mask": 0.5, "exists": 0.5},
        "source": {"checkpoint": "x"},
        "dynamic_axes": {"frames": [1, 1, 4], "expressions": [1, 4, 16]},
    }
    return Manifest(**{**base, **fields})


def run_ssp(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ssp_edge.sdk.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def assert_ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """Exit status 0, else fail showing the end of stderr."""
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-3000:]}"
    return r


def assert_one_line_error(r: subprocess.CompletedProcess, *words: str) -> str:
    """Exit status 2, no traceback, exactly one `ssp ...: error:` line containing ``words``; returns it."""
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.startswith("ssp")]
    assert len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def write_tiny_checkpoint(path: Path, **overrides) -> Path:
    """A small random-init ssp_lite-shaped checkpoint (128x128, C=32), written by a separate process."""
    cfg = dict(pretrained=False, dim=32, heads=2, decoder_channels=(16, 8, 8, 4), prior_channels=4, input_size=128)
    cfg.update(overrides)
    code = (
        "from ssp_edge.ssp.config import get_config; from ssp_edge.ssp.models.ssp import build_model; "
        "from ssp_edge.ssp.checkpoint import save_checkpoint; import torch; torch.manual_seed(0); "
        f"cfg = get_config('ssp_lite', **{cfg!r}); "
        f"save_checkpoint(build_model(cfg).eval(), cfg, r'{path}')"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=300)
    return path
