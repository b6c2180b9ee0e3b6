"""Bad input to the SDK, each with a test: frames of every odd kind, prompts that are empty, huge or
non-ASCII, missing bundle files, a live source that disconnects, the end of a file."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from ssp_edge.sdk.errors import BundleError, SDKError
from ssp_edge.sdk.segmenter import Segmenter, to_bgr8
from ssp_edge.sdk.video import VideoSource


@pytest.fixture(scope="module")
def seg(lite_bundle):
    return Segmenter.open(lite_bundle, backend="onnxruntime")


@pytest.mark.parametrize(
    "frame, match",
    [
        (None, "frame is None"),
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        (np.zeros((10, 10, 3), np.float32), "dtype float32"),
        (np.zeros((10, 10, 5), np.uint8), "5 channels"),
        ("not an image", "numpy array"),
    ],
)
def test_unusable_frames_are_clear_errors(seg, frame, match):
    with pytest.raises(SDKError, match=match):
        seg.segment(frame, ["the red circle"])


def test_grayscale_rgba_and_16bit_frames_are_converted(seg):
    bgr = np.zeros((60, 80, 3), np.uint8)
    bgr[10:30, 20:50] = (0, 0, 255)
    variants = {
        "gray": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY),
        "gray1": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[..., None],
        "bgra": cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA),
        "16bit": bgr.astype(np.uint16) * 257,
    }
    for name, f in variants.items():
        out = to_bgr8(f)
        assert out.shape == (60, 80, 3) and out.dtype == np.uint8, name
        (r,) = seg.segment(f, ["the red rectangle"])
        assert r.mask.shape == (60, 80), name
    np.testing.assert_array_equal(to_bgr8(variants["16bit"]), bgr)
    np.testing.assert_array_equal(to_bgr8(variants["bgra"]), bgr)


def test_prompts_empty_huge_and_non_ascii(seg):
    frame = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(SDKError, match="non-empty prompt"):
        seg.set_prompts([""])
    with pytest.raises(SDKError, match="non-empty prompt"):
        seg.set_prompts([])
    huge = "the red circle " * 334  # 5,010 characters
    with pytest.warns(UserWarning, match="truncated") as rec:
        (r,) = seg.segment(frame, [huge])
    assert len(rec) == 1 and r.mask.shape == (64, 64)
    for p in ("der rote Kreis über dem Quadrat", "東京の赤い丸", "le carré — à gauche", "🙂 circle"):
        (r,) = seg.segment(frame, [p])
        assert r.prompt == p and 0.0 <= r.score <= 1.0


def test_missing_bundle_files(lite_bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(lite_bundle, b)
    (b / "mask_decoder.portable.onnx").unlink()
    with pytest.raises(BundleError, match="mask_decoder.portable.onnx is missing"):
        Segmenter.open(b, backend="onnxruntime")
    (b / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match="tokenizer.json is missing"):
        Segmenter.open(b, backend="onnxruntime")


class _FlakyCapture:
    """A stream that delivers ``n`` frames, then drops and never comes back."""

    delivered = 0

    def __init__(self, *args, n: int = 3):
        self.n = n

    def isOpened(self):  # noqa: N802 - OpenCV's API
        return _FlakyCapture.delivered < self.n

    def read(self):
        if _FlakyCapture.delivered >= self.n:
            return False, None
        _FlakyCapture.delivered += 1
        return True, np.full((48, 64, 3), _FlakyCapture.delivered, np.uint8)

    def get(self, prop):
        return 25.0

    def release(self):
        pass


def test_live_source_that_disconnects_ends_cleanly_with_a_reason(monkeypatch):
    import ssp_edge.sdk.video as video

    _FlakyCapture.delivered = 0
    monkeypatch.setattr(video.cv2, "VideoCapture", _FlakyCapture)
    src = VideoSource("rtsp://camera.local/stream", policy="all", reconnect_attempts=2, reconnect_delay=0.01)
    frames = list(src)
    src.close()
    assert [f.index for f in frames] == [0, 1, 2]
    assert src.reconnects == 2 and "did not come back after 2 reconnect attempts" in src.ended


def test_end_of_a_video_file(tmp_path):
    path = tmp_path / "three.mp4"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (32, 32))
    for i in range(3):
        w.write(np.full((32, 32, 3), 80 * i, np.uint8))
    w.release()
    with VideoSource(str(path)) as src:
        assert [f.index for f in src] == [0, 1, 2]
        assert src.read() is None and src.ended is None
