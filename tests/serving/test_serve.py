"""`ssp serve` (PyTriton, from the serve venv) on 127.0.0.1 answers RemoteSegmenter with the local Segmenter's
masks over HTTP and gRPC; a token, when set, is required; binding another address without one is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import numpy as np
import pytest
from helpers import assert_one_line_error, run_ssp

pytest.importorskip("tritonclient.http", reason="tritonclient is in the dev extra (pip install -e '.[dev]')")

from ssp_edge.sdk.errors import SDKError  # noqa: E402
from ssp_edge.sdk.remote import RemoteSegmenter  # noqa: E402
from ssp_edge.sdk.segmenter import Segmenter  # noqa: E402

PROMPTS = ["the red circle", "the blue square"]


def test_other_addresses_need_a_token(lite_bundle):
    assert_one_line_error(run_ssp("serve", str(lite_bundle), "--host", "0.0.0.0"), "--token")
    assert_one_line_error(run_ssp("serve", str(lite_bundle), "--http-port", "0"), "--http-port")
    import importlib.util

    if importlib.util.find_spec("pytriton") is None:  # the main venv: PyTriton lives in its own (numpy<2)
        assert_one_line_error(run_ssp("serve", str(lite_bundle)), "needs PyTriton", "ssp-edge[serve]")


def test_remote_segmenter_errors_without_a_server():
    import triton_env

    with pytest.raises(SDKError, match="grpc://HOST:PORT"):
        RemoteSegmenter("ftp://example")
    port = triton_env.free_port()  # nothing listens there
    for url in (f"http://127.0.0.1:{port}", f"grpc://127.0.0.1:{port}"):
        seg = RemoteSegmenter(url, PROMPTS, retry_for=1.0, backoff=0.1, timeout=2.0)
        t0 = time.monotonic()
        with pytest.raises(SDKError, match="not answering") as e:
            seg.segment(np.zeros((32, 48, 3), np.uint8))
        assert time.monotonic() - t0 < 8 and "ssp serve" in str(e.value)
        assert seg.reconnects >= 2  # retried with back-off before giving up
    with pytest.raises(SDKError, match="non-empty prompt"):
        RemoteSegmenter(f"http://127.0.0.1:{port}").set_prompts(["  "])


@pytest.mark.slow
def test_ssp_serve_answers_remote_segmenter_like_local(lite_bundle, camera_frames, tmp_path):
    import triton_env

    py = triton_env.serve_python()
    ports = [triton_env.free_port() for _ in range(3)]
    log = open(tmp_path / "serve.log", "wb")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            str(py.parent / "ssp"),
            "serve",
            str(lite_bundle),
            "--backend",
            "onnxruntime",
            "--http-port",
            str(ports[0]),
            "--grpc-port",
            str(ports[1]),
            "--metrics-port",
            str(ports[2]),
            "--token",
            "s3cret",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
        cwd=tmp_path,
    )
    try:
        remotes = [
            RemoteSegmenter.open(f"http://127.0.0.1:{ports[0]}", token="s3cret", retry_for=180.0),
            RemoteSegmenter.open(f"grpc://127.0.0.1:{ports[1]}", token="s3cret", retry_for=60.0),
        ]
        with Segmenter.open(lite_bundle, backend="onnxruntime") as local:
            local.set_prompts(PROMPTS)
            for frame in camera_frames[:6]:
                ref = local.segment(frame)
                for remote in remotes:
                    got = remote.segment(frame, PROMPTS)
                    for a, b in zip(got, ref):
                        assert a.prompt == b.prompt and a.exists == b.exists
                        assert np.array_equal(a.mask, b.mask)
                        assert np.abs(a.prob - b.prob).max() < 1e-4 and abs(a.score - b.score) < 1e-5
        assert any(r.area > 0 for r in ref)
        with pytest.raises(SDKError, match="17 prompts"):  # the server's error, at once; it keeps serving
            remotes[1].segment(camera_frames[0], [f"shape {i}" for i in range(17)])
        assert remotes[1].segment(camera_frames[0], PROMPTS)[0].prompt == PROMPTS[0]
        anonymous = RemoteSegmenter(f"http://127.0.0.1:{ports[0]}", retry_for=10.0)
        t0 = time.monotonic()
        with pytest.raises(SDKError, match="refused"):  # answered at once: no token, no inference
            anonymous.segment(camera_frames[0], PROMPTS)
        assert time.monotonic() - t0 < 10
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # a clean stop: the summary line is printed
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()
    text = (tmp_path / "serve.log").read_text(errors="replace")
    assert "model ssp_segment at http://127.0.0.1" in text and "(token required)" in text
    assert "prompt cache 2 encoded" in text, text[-3000:]  # both prompts encoded once for both clients
