"""`ssp run` and the video pipeline on a rendered RefShapes video: outputs written, the mask lands on the
referred object, bad sources give one-line errors."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from helpers import assert_ok, assert_one_line_error, run_ssp

from ssp_edge.sdk.pipeline import parse_prompts, run_stream
from ssp_edge.sdk.segmenter import Segmenter
from ssp_edge.sdk.video import gstreamer_available, open_sink, open_source

FRAMES = 12


@pytest.fixture(scope="module")
def demo_video(tmp_path_factory):
    from ssp_edge.ssp.data.refshapes import render_video

    path = tmp_path_factory.mktemp("video") / "demo.mp4"
    render_video(str(path), frames=FRAMES)
    return path


@pytest.mark.slow
def test_ssp_run_writes_video_frame_and_summary(lite_bundle, demo_video, tmp_path):
    out, png = tmp_path / "out.mp4", tmp_path / "frame.png"
    r = assert_ok(
        run_ssp(
            "run",
            "--bundle",
            str(lite_bundle),
            "--source",
            str(demo_video),
            "--prompt",
            "the red circle",
            "--prompt",
            "the blue square",
            "--out",
            str(out),
            "--save-frame",
            str(png),
            "--backend",
            "onnxruntime",
            "--json",
            "--no-stdin",
        )
    )
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["frames"] == FRAMES and s["fps"] > 0 and s["backend"] == "onnxruntime"
    for stage in ("preprocess", "image_encoder", "mask_decoder", "postprocess", "total"):
        assert s["stages"][stage]["p90_ms"] >= s["stages"][stage]["median_ms"] >= 0
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    cap.release()
    assert cv2.imread(str(png)).shape == (320, 320, 3)


@pytest.mark.slow
def test_mask_follows_the_red_circle(lite_bundle, demo_video):
    """Every frame: the centroid of the 'red circle' mask lies inside the moving red circle."""
    truth = json.loads(demo_video.with_name(demo_video.name + ".objects.json").read_text())["frames"]
    seg = Segmenter.open(lite_bundle, backend="onnxruntime")
    seg.set_prompts(["the red circle"])
    hits = []

    def check(frame, results, shown):
        red = next(o for o in truth[frame.index] if o["colour"] == "red" and o["shape"] == "circle")
        ys, xs = np.nonzero(results[0].mask)
        ok = len(xs) > 0 and np.hypot(xs.mean() - red["x"], ys.mean() - red["y"]) < red["r"]
        hits.append(bool(ok))

    with open_source(str(demo_video)) as src:
        stats = run_stream(seg, src, open_sink("none"), on_frame=check)
    assert stats.frames == FRAMES and stats.found["the red circle"] >= FRAMES - 2
    assert sum(hits) >= FRAMES - 2, hits


def test_image_folder_source_and_folder_sink(lite_bundle, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        img = np.full((90, 120, 3), 200, np.uint8)
        cv2.circle(img, (30 + 20 * i, 45), 15, (0, 0, 255), -1)
        cv2.imwrite(str(frames / f"{i:03d}.png"), img)
    seg = Segmenter.open(lite_bundle, backend="onnxruntime")
    seg.set_prompts(parse_prompts("the red circle; the green star"))
    with open_source(str(frames)) as src:
        stats = run_stream(seg, src, open_sink(str(tmp_path / "out") + "/"), max_frames=2)
    assert stats.frames == 2 and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["000000.png", "000001.png"]
    assert stats.summary()["stages"]["total"]["median_ms"] > 0


def test_bad_sources_are_one_line(lite_bundle, tmp_path):
    b = str(lite_bundle)
    assert_one_line_error(
        run_ssp("run", "--bundle", b, "--source", str(tmp_path / "nope.mp4"), "--prompt", "x"), "nope.mp4", "not found"
    )
    assert_one_line_error(run_ssp("run", "--bundle", b, "--source", "7", "--prompt", "x"), "no camera at index 7")
    assert_one_line_error(run_ssp("run", "--bundle", b, "--source", str(tmp_path), "--prompt", "x"), "has no images")
    assert_one_line_error(run_ssp("run", "--bundle", str(tmp_path), "--source", "0", "--prompt", "x"), "manifest.json")
    if not gstreamer_available():
        assert_one_line_error(
            run_ssp("run", "--bundle", b, "--source", "csi://0", "--prompt", "x"), "GStreamer", "JetPack"
        )
    assert_one_line_error(
        run_ssp("run", "--bundle", b, "--source", str(tmp_path), "--prompt", "x", "--out", "x.txt"), "x.txt"
    )


def test_parse_prompts():
    assert parse_prompts(" a ; b;;  ") == ["a", "b"]
