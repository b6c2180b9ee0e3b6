"""The generated repository on the real tritonserver (the nvidia-pytriton wheel's, python backend with ONNX Runtime
standing in for the engines), on 127.0.0.1 only: 4 concurrent client processes get the local Segmenter's masks,
each prompt is encoded once (cache statistics), bad requests get errors while the server keeps serving, and a
killed + restarted server is reconnected to. Every loop is bounded; every server is killed at the end."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("tritonclient.http", reason="tritonclient is in the dev extra (pip install -e '.[dev]')")

from ssp_edge.sdk.errors import SDKError  # noqa: E402
from ssp_edge.sdk.remote import RemoteSegmenter  # noqa: E402
from ssp_edge.sdk.segmenter import Segmenter  # noqa: E402

pytestmark = pytest.mark.slow
COMMON = ["the red circle", "the blue square"]
EXTRA = ["the green triangle", "the biggest shape"]
HERE = __import__("pathlib").Path(__file__).resolve().parent


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


@pytest.fixture(scope="module")
def repo(lite_bundle, tmp_path_factory):
    from ssp_edge.converter.triton import write_repository

    return write_repository(lite_bundle, tmp_path_factory.mktemp("triton") / "repo", "python").root


@pytest.fixture(scope="module")
def server(repo, tmp_path_factory):
    import triton_env

    s = triton_env.start_tritonserver(repo, tmp_path_factory.mktemp("log") / "tritonserver.log")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def local_results(lite_bundle, camera_frames):
    """The local Segmenter on every frame with every prompt: the reference masks."""
    with Segmenter.open(lite_bundle, backend="onnxruntime") as seg:
        seg.set_prompts(COMMON + EXTRA)
        return [{r.prompt: r for r in seg.segment(f)} for f in camera_frames]


def test_four_clients_match_local_and_encode_each_prompt_once(repo, server, camera_frames, local_results, tmp_path):
    import tritonclient.http as httpclient

    np.savez(tmp_path / "frames.npz", frames=camera_frames)
    procs, outs = [], []
    for i in range(4):  # 4 camera processes, 20 frames each, at once
        prompts = COMMON + [EXTRA[i % 2]]
        outs.append((tmp_path / f"client{i}.npz", prompts))
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(HERE / "remote_client.py"),
                    server.grpc_url if i % 2 else server.http_url,
                    str(tmp_path / "frames.npz"),
                    str(outs[-1][0]),
                    *prompts,
                ],
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    worst = 1.0
    for path, prompts in outs:
        got = np.load(path)
        assert got["masks"].shape == (len(camera_frames), len(prompts), *camera_frames.shape[1:3])
        for f, ref in enumerate(local_results):
            for k, p in enumerate(prompts):
                worst = min(worst, iou(got["masks"][f, k], ref[p].mask))
                assert abs(got["scores"][f, k] - ref[p].score) < 1e-3
    assert worst >= 0.999, worst
    assert sum(local_results[f]["the red circle"].area for f in range(len(local_results))) > 0  # not all empty
    # every prompt encoded once for all clients: the text encoder ran only on cache misses. Each ssp_segment instance
    # (a Segmenter with its own prompt cache) asks for a prompt at most once; the response cache answers the others
    c = httpclient.InferenceServerClient(f"127.0.0.1:{server.http}")
    stats = c.get_inference_statistics("ssp_text_encoder")["model_stats"][0]
    unique = len(set(COMMON + EXTRA))
    assert stats["inference_stats"]["cache_miss"]["count"] == unique
    assert stats["inference_count"] == unique  # inferences actually run (cached requests excluded)
    from ssp_edge.converter.triton import read_config

    instances = read_config(repo / "ssp_segment" / "config.pbtxt").instance_group[0].count
    assert stats["inference_stats"]["cache_hit"]["count"] <= unique * (instances - 1)
    metrics = server.metrics_text()
    assert f'nv_cache_num_misses_per_model{{model="ssp_text_encoder",version="1"}} {unique}' in metrics
    # the image once per frame: one image-encoder inference per request
    img = c.get_inference_statistics("ssp_image_encoder")["model_stats"][0]
    assert img["inference_count"] == 4 * 20


def test_bad_requests_get_errors_and_the_server_keeps_serving(server, camera_frames):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    c = httpclient.InferenceServerClient(f"127.0.0.1:{server.http}")

    def request(image: np.ndarray, prompts: list[str]):
        a = httpclient.InferInput("image", list(image.shape), "UINT8" if image.dtype == np.uint8 else "FP32")
        a.set_data_from_numpy(image)
        b = httpclient.InferInput("prompts", [len(prompts)], "BYTES")
        b.set_data_from_numpy(np.array([p.encode() for p in prompts], dtype=object))
        return c.infer("ssp_segment", [a, b])

    frame = camera_frames[0]
    bad = [
        (frame[:, :, 0], COMMON),  # (H, W): no channel axis
        (np.zeros((48, 64, 4), np.uint8), COMMON),  # 4 channels
        (frame.astype(np.float32), COMMON),  # float image
        (frame, [f"shape {i}" for i in range(17)]),  # more prompts than the decoder takes
        (frame, ["   "]),
    ]  # empty prompt
    for image, prompts in bad:
        with pytest.raises(InferenceServerException):
            request(image, prompts)
    ok = request(frame, COMMON)
    assert ok.as_numpy("mask").shape == (2, *frame.shape[:2])
    # the client raises the server's refusal at once (no retrying a bad request)
    remote = RemoteSegmenter(server.grpc_url, retry_for=30.0)
    t0 = time.monotonic()
    with pytest.raises(SDKError, match="17 prompts"):
        remote.segment(frame, [f"shape {i}" for i in range(17)])
    assert time.monotonic() - t0 < 10
    assert remote.segment(frame, COMMON)[0].mask.shape == frame.shape[:2]


def test_server_killed_and_restarted_clients_reconnect(repo, camera_frames, local_results, tmp_path):
    import triton_env

    ports = (triton_env.free_port(), triton_env.free_port(), triton_env.free_port())
    s = triton_env.start_tritonserver(repo, tmp_path / "a.log", ports)
    clients = [
        RemoteSegmenter(f"http://127.0.0.1:{ports[0]}", COMMON, retry_for=120.0, timeout=30.0),
        RemoteSegmenter(f"grpc://127.0.0.1:{ports[1]}", COMMON, retry_for=120.0, timeout=30.0),
    ]
    restarted: dict = {}
    try:
        for c in clients:
            assert c.segment(camera_frames[0])[0].prompt == COMMON[0]
        s.stop()  # killed: SIGKILL to the server and its stubs

        def restart() -> None:
            time.sleep(2.0)
            restarted["server"] = triton_env.start_tritonserver(repo, tmp_path / "b.log", ports)

        t = threading.Thread(target=restart)
        t.start()
        for c in clients:  # blocks, retrying with back-off, until the new server answers
            res = c.segment(camera_frames[1])
            assert "server" in restarted  # answered by the new server
            assert iou(res[0].mask, local_results[1][COMMON[0]].mask) >= 0.999
        assert clients[0].reconnects + clients[1].reconnects > 0, [c.reconnects for c in clients]
        t.join(timeout=200)
    finally:
        s.stop()
        if "server" in restarted:
            restarted["server"].stop()
    # nobody there: a clear error after the retry budget, not a hang or a raw traceback
    gone = RemoteSegmenter(f"http://127.0.0.1:{ports[0]}", COMMON, retry_for=1.5, timeout=2.0)
    t0 = time.monotonic()
    with pytest.raises(SDKError, match="not answering"):
        gone.segment(camera_frames[0])
    assert time.monotonic() - t0 < 10
