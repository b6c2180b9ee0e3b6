"""Video source lifecycle with scripted captures: close() interrupts the back-off and joins the capture thread,
each capture is released exactly once, a read() exception ends the source with its reason, and the no-frame
timeout never fires while a reconnect is still being tried."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import ssp_edge.sdk.video as video
from ssp_edge.sdk.errors import SDKError
from ssp_edge.sdk.video import VideoSource

URI = "rtsp://camera.local/stream"


class Script:
    """Shared state of the fake captures: how each opened capture behaves, and every release."""

    def __init__(self, behave):
        self.behave = behave  # (capture number, read number) -> "frame" | "fail" | "raise" | "block"
        self.opened: list[FakeCapture] = []
        self.unblock = threading.Event()
        self.lock = threading.Lock()

    def factory(self, *args):
        cap = FakeCapture(self, len(self.opened))
        self.opened.append(cap)
        return cap


class FakeCapture:
    def __init__(self, script: Script, n: int):
        self.script, self.n, self.reads, self.releases = script, n, 0, 0
        self.in_read = False

    def isOpened(self):  # noqa: N802 - OpenCV's API
        return self.script.behave(self.n, -1) != "closed"

    def read(self):
        assert self.releases == 0, "read() on a released capture"
        what = self.script.behave(self.n, self.reads)
        self.reads += 1
        if what == "raise":
            raise RuntimeError("driver exploded")
        if what == "block":
            self.in_read = True
            self.script.unblock.wait(10)
            self.in_read = False
            assert self.releases == 0, "released while inside read()"
            return False, None
        if what == "fail":
            return False, None
        time.sleep(0.005)
        return True, np.zeros((8, 8, 3), np.uint8)

    def get(self, prop):
        return 25.0

    def release(self):
        self.releases += 1


@pytest.fixture
def script(monkeypatch):
    def install(behave):
        s = Script(behave)
        monkeypatch.setattr(video.cv2, "VideoCapture", s.factory)
        return s

    return install


def test_close_interrupts_the_backoff_and_joins_the_thread(script):
    s = script(lambda cap, read: "frame" if cap == 0 and read < 2 else "fail")
    src = VideoSource(URI, reconnect_attempts=5, reconnect_delay=30.0, max_backoff=30.0)
    assert src.read(timeout=5) is not None
    deadline = time.monotonic() + 5
    while src.reconnects == 0 and time.monotonic() < deadline:  # now in a 30 s back-off
        time.sleep(0.01)
    t0 = time.monotonic()
    src.close()
    assert time.monotonic() - t0 < 1.0 and not src._thread.is_alive()
    time.sleep(0.1)
    assert len(s.opened) == 1, "reopened after close()"
    assert [c.releases for c in s.opened] == [1]


def test_every_capture_is_released_exactly_once_across_reconnects(script):
    s = script(lambda cap, read: "frame" if read < 2 and cap < 3 else "fail")
    src = VideoSource(URI, policy="all", reconnect_attempts=3, reconnect_delay=0.01)
    frames = list(src)
    src.close()
    assert len(frames) == 6 and "did not come back after 3 reconnect attempts" in src.ended
    assert [c.releases for c in s.opened] == [1] * 6  # 3 that delivered + 3 failed reconnects


def test_close_during_a_blocking_read_leaves_the_release_to_the_thread(script):
    s = script(lambda cap, read: "frame" if read == 0 else "block")
    src = VideoSource(URI, close_timeout=0.2)
    assert src.read(timeout=5) is not None
    deadline = time.monotonic() + 5
    while not s.opened[0].in_read and time.monotonic() < deadline:
        time.sleep(0.01)
    src.close()  # the thread is inside read(): the capture must not be released under it
    assert s.opened[0].releases == 0
    s.unblock.set()
    src._thread.join(5)
    assert not src._thread.is_alive() and s.opened[0].releases == 1


def test_a_read_exception_ends_the_source_with_its_reason(script, monkeypatch):
    hooks = []
    monkeypatch.setattr(threading, "excepthook", lambda args: hooks.append(args))
    script(lambda cap, read: "frame" if read < 3 else "raise")
    with VideoSource(URI, policy="all") as src:
        frames = list(src)
    assert len(frames) == 3 and src.ended and "RuntimeError: driver exploded" in src.ended
    assert hooks == []  # no traceback from the capture thread


def test_no_frame_timeout_does_not_fire_while_reconnecting(script):
    start = time.monotonic()
    # capture 0 drops at once; captures 1.. fail to open for 1.2 s; then frames flow again
    s = script(
        lambda cap, read: (
            "closed"
            if read == -1 and cap > 0 and time.monotonic() - start < 1.2
            else "fail"
            if cap == 0 and read >= 1
            else "frame"
        )
    )
    src = VideoSource(URI, reconnect_attempts=20, reconnect_delay=0.1, max_backoff=0.2, frame_timeout=0.4)
    try:
        frames = [src.read() for _ in range(3)]
    finally:
        src.close()
    assert all(f is not None for f in frames) and src.reconnects >= 3 and len(s.opened) >= 3


def test_a_connected_but_stalled_source_times_out(script):
    script(lambda cap, read: "frame" if read == 0 else "block")
    src = VideoSource(URI, frame_timeout=0.3, close_timeout=0.1)
    try:
        assert src.read() is not None
        with pytest.raises(SDKError, match=r"delivered no frame for 0.3 s"):
            src.read()
    finally:
        src.close()


def test_reconnect_window_and_options(script):
    script(lambda cap, read: "frame")
    src = VideoSource(URI, reconnect_attempts=4, reconnect_delay=0.5, max_backoff=1.5)
    try:
        assert src.reconnect_window == pytest.approx(0.5 + 1.0 + 1.5 + 1.5)
    finally:
        src.close()
    for kwargs, match in (
        ({"frame_timeout": -1}, "frame_timeout"),
        ({"reconnect_attempts": "x"}, "reconnect_attempts"),
        ({"reconnect_delay": float("nan")}, "reconnect_delay"),
        ({"queue_size": 0}, "queue_size"),
    ):
        with pytest.raises(SDKError, match=match):
            VideoSource(URI, **kwargs)
