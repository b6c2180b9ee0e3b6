"""Every sample runs headless on the demo video, and its output is checked against where the referred
object really is (the video's per-frame object list)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
import urllib.request

import cv2
import pytest
from helpers import REPO

SAMPLES = REPO / "samples"
FRAMES = 8


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from ssp_edge.ssp.data.refshapes import render_video

    path = tmp_path_factory.mktemp("samples") / "demo.mp4"
    render_video(str(path), frames=FRAMES)
    truth = json.loads(path.with_name(path.name + ".objects.json").read_text())["frames"]
    return path, [next(o for o in f if o["colour"] == "red" and o["shape"] == "circle") for f in truth]


def _run(script: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SAMPLES / script), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def _load(name: str, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the class is created
    spec.loader.exec_module(mod)
    return mod


def _inside(x: float, y: float, red: dict) -> bool:
    return (x - red["x"]) ** 2 + (y - red["y"]) ** 2 < red["r"] ** 2


@pytest.mark.slow
def test_image_demo_box_covers_the_red_circle(lite_bundle, video, tmp_path):
    path, reds = video
    cap = cv2.VideoCapture(str(path))
    ok, frame = cap.read()
    cap.release()
    img, out = tmp_path / "f.png", tmp_path / "overlay.png"
    cv2.imwrite(str(img), frame)
    r = _run(
        "image_demo.py",
        "--bundle",
        str(lite_bundle),
        "--image",
        str(img),
        "--prompt",
        "the red circle",
        "--out",
        str(out),
        "--backend",
        "onnxruntime",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[0])
    x0, y0, x1, y1 = res["box_xyxy"]
    assert res["exists"] and _inside((x0 + x1) / 2, (y0 + y1) / 2, reds[0])
    assert cv2.imread(str(out)).shape == frame.shape


@pytest.mark.slow
def test_camera_demo_headless_writes_the_overlay(lite_bundle, video, tmp_path):
    out = tmp_path / "cam.mp4"
    r = _run(
        "camera_demo.py",
        "--bundle",
        str(lite_bundle),
        "--source",
        str(video[0]),
        "--out",
        str(out),
        "--max-frames",
        "4",
        "--backend",
        "onnxruntime",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "4 frames" in r.stdout
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    cap.release()


def test_camera_demo_without_a_camera_says_so(lite_bundle):
    r = _run(
        "camera_demo.py", "--bundle", str(lite_bundle), "--source", "7", "--out", "none", "--backend", "onnxruntime"
    )
    assert r.returncode == 2 and "no camera at index 7" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_robot_embedding_steers_towards_the_red_circle(lite_bundle, video):
    path, reds = video
    r = _run(
        "robot_embedding.py",
        "--bundle",
        str(lite_bundle),
        "--source",
        str(path),
        "--max-frames",
        str(FRAMES),
        "--budget-ms",
        "10000",
        "--backend",
        "onnxruntime",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    targets = [json.loads(line) for line in r.stdout.strip().splitlines()]
    assert len(targets) == FRAMES
    hits = [t["found"] and _inside(*t["centroid"], reds[t["frame"]]) for t in targets]
    assert sum(hits) >= FRAMES - 1, targets
    for t in targets:
        if t["found"]:  # steer = centroid offset from the centre, in [-1, 1]
            assert abs(t["steer"][0] - (2 * t["centroid"][0] / 320 - 1)) < 1e-2


def test_robot_tracker_skips_stale_frames(lite_bundle):
    import numpy as np

    from ssp_edge.sdk.segmenter import Segmenter
    from ssp_edge.sdk.video import Frame

    mod = _load("robot_embedding", SAMPLES / "robot_embedding.py")
    tracker = mod.TargetTracker(Segmenter.open(lite_bundle, backend="onnxruntime"), "the red circle", budget_ms=100)
    old = Frame(np.zeros((64, 64, 3), np.uint8), 0, time.monotonic() - 1.0)
    assert tracker.update(old) is None and tracker.skipped == 1
    fresh = tracker.update(Frame(np.zeros((64, 64, 3), np.uint8), 1, time.monotonic()))
    assert fresh is not None and fresh.frame == 1


@pytest.mark.slow
def test_web_demo_serves_page_stream_status_and_prompts(lite_bundle, video, tmp_path):
    mod = _load("web_demo_server", SAMPLES / "web_demo" / "server.py")
    server, state = mod.serve(str(lite_bundle), str(video[0]), ["the red circle"], port=0, backend="onnxruntime")
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        page = urllib.request.urlopen(base + "/", timeout=30).read().decode()
        assert "/stream.mjpg" in page and "<form" in page
        jpg = urllib.request.urlopen(base + "/frame.jpg", timeout=120).read()
        img = cv2.imdecode(__import__("numpy").frombuffer(jpg, "uint8"), cv2.IMREAD_COLOR)
        assert img.shape == (320, 320, 3)
        with urllib.request.urlopen(base + "/stream.mjpg", timeout=60) as s:
            head = s.read(200)
        assert head.startswith(b"--frame") and b"image/jpeg" in head
        req = urllib.request.Request(
            base + "/prompt",
            data=json.dumps({"prompts": ["the blue square"]}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        assert json.loads(urllib.request.urlopen(req, timeout=30).read())["prompts"] == ["the blue square"]
        deadline = time.time() + 120
        while time.time() < deadline and state.prompts != ["the blue square"]:
            time.sleep(0.2)
        status = json.loads(urllib.request.urlopen(base + "/status", timeout=30).read())
        assert status["prompts"] == ["the blue square"] and status["frames"] >= 1 and status["error"] is None
        bad = urllib.request.Request(base + "/prompt", data=b"  ", method="POST")  # not JSON: refused (415)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(bad, timeout=30)
        assert e.value.code == 415
        empty = urllib.request.Request(
            base + "/prompt", data=b'{"prompts": ["  "]}', method="POST", headers={"Content-Type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(empty, timeout=30)
        assert e.value.code == 400 and "empty" in json.loads(e.value.read())["error"]
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium:  # a real browser renders the page (Debian's chromium, when installed)
            shot = tmp_path / "page.png"
            subprocess.run(
                [
                    chromium,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    f"--screenshot={shot}",
                    "--window-size=800,700",
                    "--virtual-time-budget=3000",
                    base + "/",
                ],
                capture_output=True,
                timeout=120,
            )
            assert shot.is_file() and cv2.imread(str(shot)) is not None
    finally:
        state.stop.set()
        server.shutdown()
        server.server_close()
