"""The runtime extra alone (no torch, no transformers): `from ssp_edge import Segmenter`, a full `ssp run` on ONNX
Runtime, `ssp bench --quick` (its PyTorch row "not installed", FLOPs left out with the reason, results under the
working directory), and nothing but `ssp_edge` added to the top of site-packages."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import REPO


@pytest.mark.slow
def test_runtime_extra_runs_without_torch(lite_bundle, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py, ssp = venv / "bin" / "python", venv / "bin" / "ssp"
    r = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{REPO}[runtime]"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    have = subprocess.run(
        [str(py), "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True
    ).stdout
    names = {p["name"].lower() for p in json.loads(have)}
    assert "torch" not in names and "transformers" not in names
    from ssp_edge.ssp.data.refshapes import render_video

    video = tmp_path / "v.mp4"
    render_video(str(video), frames=4)
    r = subprocess.run(
        [
            str(ssp),
            "run",
            "--bundle",
            str(lite_bundle),
            "--source",
            str(video),
            "--prompt",
            "the red circle",
            "--json",
            "--no-stdin",
            "--out",
            str(tmp_path / "o.mp4"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["frames"] == 4
    code = (
        "import sys; from ssp_edge import Segmenter; import ssp_edge.sdk.video, ssp_edge.sdk.run; "
        "assert 'torch' not in sys.modules; print('ok')"
    )
    assert (
        subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120).stdout.strip()
        == "ok"
    )
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    from pathlib import Path

    tops = {p.name for p in Path(site).iterdir()}
    assert "ssp_edge" in tops
    assert not tops & {"sdk", "ssp", "converter", "calibration", "benchmarks", "samples", "tests"}, sorted(tops)
    h = subprocess.run([str(ssp), "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert h.returncode == 0 and "run" in h.stdout
    for cmd in ("train", "convert"):  # listed, marked unavailable: they need the model / convert extras
        assert any(ln.split()[:1] == [cmd] and "unavailable" in ln for ln in h.stdout.splitlines()), h.stdout
    r = subprocess.run(
        [str(ssp), "bench", str(lite_bundle), "--quick", "--iters", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    rows = {(x["backend"], x["precision"]): x for x in res["rows"]}
    assert rows[("pytorch", "fp32")]["status"] == "not installed"
    assert rows[("onnxruntime", "fp32")]["status"] == "ok" and rows[("onnxruntime", "fp32")]["fps"] > 0
    assert res["flops"] is None and "PyTorch" in res["not_measured"]["flops"] and res["plots"] == []
    assert (tmp_path / "bench_results" / "bench.json").is_file()  # under the working directory
    md = (tmp_path / "bench_results" / "bench.md").read_text()
    assert "not installed" in md and "Not measured" in md
