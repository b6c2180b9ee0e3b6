"""benchmarks/serve_bench.py runs end to end (tiny settings): the multi-camera comparison and ssp serve with two
concurrent camera clients, reporting frames/s."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import REPO

pytest.importorskip("tritonclient.grpc", reason="tritonclient is in the dev extra (pip install -e '.[dev]')")


@pytest.mark.slow
def test_serve_bench_reports_frames_per_second(lite_bundle):
    import triton_env

    py = triton_env.serve_python()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "ssp_edge.benchmarks.serve_bench",
            str(lite_bundle),
            "--cameras",
            "2",
            "--frames",
            "2",
            "--rounds",
            "1",
            "--serve-python",
            str(py),
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    (m,) = out["multi"]
    assert m["cameras"] == 2 and set(m["fps_median"]) == {
        "one_segmenter_batched",
        "one_segmenter_workers",
        "separate_segmenters_threads",
        "separate_segmenters_turns",
    }
    assert all(v > 0 for v in m["fps_median"].values())
    assert out["serve"]["fps"]["2"] > 0
    # 2 clients x (1 warm-up + 2 frames), the two prompts encoded once on the server
    assert "6 frames" in out["serve"]["server_summary"] and "2 encoded" in out["serve"]["server_summary"]
