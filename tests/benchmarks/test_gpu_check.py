"""`make gpu-check` without a GPU: its CUDA source (the plugin kernels + the C-ABI launcher) compiles with nvcc for
sm_90 (an H200's architecture), a dry run prints one JSON with every section, and its kernel cases are the host
tests'. The GPU sections themselves run only on a GPU machine (ARCHITECTURE.md §9)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from helpers import REPO

NVCC = shutil.which("nvcc")
SECTIONS = ["environment", "build", "kernels", "timing", "forward", "training"]


def _run(*args: str, timeout: int = 600) -> dict:
    r = subprocess.run(
        [sys.executable, "-m", "ssp_edge.benchmarks.gpu_check", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-3000:]
    return json.loads(r.stdout)


def test_dry_run_reports_every_section_as_json():
    rep = _run("--dry-run")
    assert list(rep["sections"]) == SECTIONS and rep["dry_run"] and rep["ok"]
    assert rep["budget_s"] <= 360
    for name in ("kernels", "timing", "forward", "training"):
        assert rep["sections"][name]["status"] == "skipped", rep["sections"][name]
    assert rep["sections"]["build"]["status"] in ("skipped", "ok")  # no --arch and no GPU: skipped
    assert rep["sections"]["environment"]["status"] == "ok" and rep["sections"]["environment"]["python"]
    assert all("seconds" in s for s in rep["sections"].values())


@pytest.mark.slow
@pytest.mark.skipif(NVCC is None, reason="nvcc not found: the gpu-check CUDA source cannot be compiled here")
def test_its_cuda_source_compiles_for_sm90():
    rep = _run("--dry-run", "--arch", "90")
    b = rep["sections"]["build"]
    assert b["status"] == "ok", b
    assert b["arch"] == "sm_90" and b["bytes"] > 10000


def test_kernel_cases_are_the_host_tests():
    import importlib.util

    from ssp_edge.benchmarks import gpu_check

    spec = importlib.util.spec_from_file_location("host_kernels", REPO / "tests" / "plugins" / "test_host_kernels.py")
    host = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(host)
    assert gpu_check.AGG_CASES == host.AGG_SHAPES and gpu_check.UPS_CASES == host.UPS_SHAPES
    assert gpu_check.PROP_CASES == host.PROP_SHAPES
    assert gpu_check.FP32_TOL == host.FP32_TOL


def test_sections_can_be_added(monkeypatch):
    from ssp_edge.benchmarks import gpu_check

    def training(run):
        raise gpu_check.Skip("no data")

    def broken(run):
        raise ValueError("boom")

    rep = gpu_check.run_checks(
        gpu_check.Run(dry_run=True), [("training", training), ("broken", broken), ("fine", lambda run: {"x": 1})]
    )
    assert rep["sections"]["training"]["status"] == "skipped" and rep["sections"]["fine"] == {
        "x": 1,
        "status": "ok",
        "seconds": rep["sections"]["fine"]["seconds"],
    }
    assert rep["sections"]["broken"]["status"] == "error" and "boom" in rep["sections"]["broken"]["error"]
    assert not rep["ok"]
