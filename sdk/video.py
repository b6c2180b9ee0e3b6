"""Video sources and sinks by URI, for camera demos and robots.

Sources: a video file, an image folder, a camera index (``0``), ``v4l2:///dev/videoN``, ``rtsp://...``,
``csi://N`` (Jetson CSI camera through GStreamer ``nvarguscamerasrc``) and ``gst:PIPELINE``. Live
sources are read by a capture thread that keeps only the newest frame (policy ``latest``; ``all``
queues every frame) and reconnects when the stream drops. Sinks: ``window``, an ``.mp4`` file, an
image folder, ``none``.

PyPI's OpenCV wheels have no GStreamer: ``csi://`` and ``gst:`` say how to get one (JetPack's system
OpenCV) instead of failing obscurely.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import SDKError

__all__ = [
    "Frame",
    "VideoSource",
    "open_source",
    "Sink",
    "open_sink",
    "gstreamer_available",
    "csi_pipeline",
    "IMAGE_SUFFIXES",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")


@dataclass
class Frame:
    image: np.ndarray  # (H, W, 3) uint8 BGR
    index: int  # frame number from the source (gaps = frames dropped by the 'latest' policy)
    timestamp: float  # time.monotonic() when captured


def gstreamer_available() -> bool:
    """Whether this OpenCV build can open GStreamer pipelines."""
    for line in cv2.getBuildInformation().splitlines():
        if "GStreamer:" in line:
            return "YES" in line.split("GStreamer:", 1)[1]
    return False


def csi_pipeline(sensor: int, width: int = 1280, height: int = 720, fps: int = 30) -> str:
    """The nvarguscamerasrc pipeline for a Jetson CSI camera, ending in BGR frames for OpenCV."""
    return (
        f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM), width={width}, height={height}, "
        f"framerate={fps}/1 ! nvvidconv ! video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR ! "
        "appsink drop=true max-buffers=1"
    )


def _need_gstreamer(uri: str) -> None:
    if not gstreamer_available():
        raise SDKError(
            f"source {uri!r} needs OpenCV with GStreamer, and this OpenCV (pip wheel) has none; on Jetson "
            "use JetPack's system OpenCV (python3-opencv: pip uninstall opencv-python-headless, then "
            "create the venv with --system-site-packages)"
        )


_DEFAULT = object()


def _positive(name: str, v: object, allow_none: bool = False, allow_zero: bool = False) -> float | None:
    if v is None and allow_none:
        return None
    if (
        isinstance(v, bool)
        or not isinstance(v, (int, float))
        or v != v
        or v in (float("inf"), float("-inf"))
        or v < 0
        or (v == 0 and not allow_zero)
    ):
        raise SDKError(
            f"{name} must be a {'non-negative' if allow_zero else 'positive'} number of seconds"
            f"{' or None' if allow_none else ''}, got {v!r}"
        )
    return float(v)


class VideoSource:
    """Iterate frames (``for frame in source``) or ``read()`` the next one (None at the end).

    Live sources are read by a capture thread that owns the capture: it reconnects with exponential back-off
    (``reconnect_delay`` doubled per failed attempt, at most ``max_backoff`` s, ``reconnect_attempts`` times) and
    releases the capture exactly once when it stops. :meth:`close` interrupts the back-off and joins the thread.
    A source that fails (disconnects for good, or raises while reading) ends: iteration stops and ``ended`` says
    why. ``frame_timeout``: the longest a connected source may deliver nothing before :meth:`read` raises; it
    counts only while the source is connected, so it never fires while a reconnect is still being tried.
    """

    def __init__(
        self,
        uri: str,
        policy: str | None = None,
        reconnect: bool = True,
        reconnect_attempts: int = 10,
        queue_size: int = 64,
        reconnect_delay: float = 0.2,
        max_backoff: float = 5.0,
        frame_timeout: float | None = 10.0,
        close_timeout: float = 2.0,
    ):
        if policy not in (None, "latest", "all"):
            raise SDKError(f"frame policy must be 'latest' or 'all', got {policy!r}")
        if isinstance(reconnect_attempts, bool) or not isinstance(reconnect_attempts, int) or reconnect_attempts < 0:
            raise SDKError(f"reconnect_attempts must be an integer >= 0, got {reconnect_attempts!r}")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise SDKError(f"queue_size must be an integer >= 1, got {queue_size!r}")
        self.reconnect_delay = _positive("reconnect_delay", reconnect_delay, allow_zero=True)
        self.max_backoff = _positive("max_backoff", max_backoff, allow_zero=True)
        self.frame_timeout = _positive("frame_timeout", frame_timeout, allow_none=True)
        self.close_timeout = _positive("close_timeout", close_timeout, allow_zero=True)
        self.uri = str(uri)
        self._images: list[Path] | None = None
        self._cap: cv2.VideoCapture | None = None
        self._cap_lock = threading.Lock()
        self._target, self._api, self.is_live = self._resolve(self.uri)
        self.policy = policy or ("latest" if self.is_live else "all")
        self.reconnect = reconnect and self.is_live
        self.reconnect_attempts = reconnect_attempts
        self.reconnects = 0
        self.dropped = 0
        self.ended: str | None = None  # why a source stopped early (None: still running, or a file's end)
        self._reconnecting = False
        self._index = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._q: queue.Queue = queue.Queue(maxsize=1 if self.policy == "latest" else queue_size)
        self._open()
        if self.is_live:
            self._thread = threading.Thread(target=self._capture_loop, name=f"capture:{self.uri}", daemon=True)
            self._thread.start()

    @property
    def reconnect_window(self) -> float:
        """Seconds of back-off a disconnected live source waits in all before it ends (opening time not counted)."""
        if not self.reconnect:
            return 0.0
        return sum(self._backoff(i) for i in range(1, self.reconnect_attempts + 1))

    def _backoff(self, failures: int) -> float:
        return min(self.reconnect_delay * 2 ** min(failures - 1, 60), self.max_backoff)

    # ---- opening
    def _resolve(self, uri: str) -> tuple[object, int, bool]:
        if uri.isdigit():
            return int(uri), cv2.CAP_ANY, True
        if uri.startswith("v4l2://"):
            dev = uri[len("v4l2://") :]
            if not Path(dev).exists():
                raise SDKError(f"camera {dev!r} not found (no such device); list cameras with `ls /dev/video*`")
            return dev, cv2.CAP_V4L2, True
        if uri.startswith(("rtsp://", "rtsps://", "http://", "https://")):
            return uri, cv2.CAP_FFMPEG, True
        if uri.startswith("csi://"):
            _need_gstreamer(uri)
            sensor = uri[len("csi://") :] or "0"
            if not sensor.isdigit():
                raise SDKError(f"csi source {uri!r}: expected csi://N with a sensor number, e.g. csi://0")
            return csi_pipeline(int(sensor)), cv2.CAP_GSTREAMER, True
        if uri.startswith("gst:"):
            _need_gstreamer(uri)
            return uri[len("gst:") :], cv2.CAP_GSTREAMER, True
        p = Path(uri)
        if p.is_dir():
            images = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise SDKError(f"image folder {uri!r} has no images ({', '.join(IMAGE_SUFFIXES)})")
            self._images = images
            return p, -1, False
        if not p.exists():
            raise SDKError(
                f"source {uri!r} not found: give a video file, an image folder, a camera index (0), "
                "v4l2:///dev/videoN, rtsp://..., csi://N or gst:PIPELINE"
            )
        return str(p), cv2.CAP_ANY, False

    def _open(self) -> None:
        """Open the capture; it becomes ``self._cap`` unless the source was closed meanwhile (then released)."""
        if self._images is not None:
            return
        cap = cv2.VideoCapture(self._target, self._api)  # type: ignore[call-overload]
        if not cap.isOpened():
            cap.release()
            if isinstance(self._target, int):
                raise SDKError(f"no camera at index {self._target} (none connected, or in use by another program)")
            raise SDKError(
                f"cannot open source {self.uri!r} (unreadable file, unsupported codec or unreachable stream)"
            )
        with self._cap_lock:
            if self._stop.is_set():
                cap.release()
                return
            self._cap = cap

    def _release(self) -> None:
        """Release the current capture, exactly once (whoever gets it out from under the lock releases it)."""
        with self._cap_lock:
            cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()

    @property
    def fps(self) -> float:
        cap = self._cap
        if cap is not None:
            f = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            if 0 < f < 1000:
                return f
        return 30.0

    # ---- reading
    def _grab(self) -> np.ndarray | None:
        if self._images is not None:
            if self._index >= len(self._images):
                return None
            path = self._images[self._index]
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is None:
                raise SDKError(f"cannot read image {str(path)!r} (corrupt or not an image)")
            return img
        cap = self._cap
        if cap is None:
            return None
        ok, img = cap.read()
        return img if ok else None

    def _end(self, reason: str) -> None:
        self.ended = reason
        self._put(None)

    def _capture_loop(self) -> None:
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    img = self._grab()
                except Exception as e:  # a driver / decoder error: the source ends with its reason
                    self._end(f"source {self.uri!r} failed while reading ({type(e).__name__}: {e})")
                    return
                if self._stop.is_set():
                    return
                if img is None:
                    if not self.reconnect or failures >= self.reconnect_attempts:
                        if self.reconnect:
                            self._end(
                                f"source {self.uri!r} disconnected and did not come back after "
                                f"{self.reconnect_attempts} reconnect attempts"
                            )
                        else:
                            self._end(f"source {self.uri!r} stopped delivering frames")
                        return
                    failures += 1
                    self.reconnects += 1
                    self._reconnecting = True
                    self._release()
                    if self._stop.wait(self._backoff(failures)):  # close() interrupts the back-off
                        return
                    try:
                        self._open()
                    except SDKError:
                        continue
                    except Exception as e:
                        self._end(f"source {self.uri!r} failed while reconnecting ({type(e).__name__}: {e})")
                        return
                    continue
                failures = 0
                self._reconnecting = False
                self._put(Frame(img, self._index, time.monotonic()))
                self._index += 1
        finally:
            self._reconnecting = False
            self._release()  # the capture thread owns the capture: released here, once, even after close()

    def _put(self, item: Frame | None) -> None:
        if self.policy == "latest":
            while True:
                try:  # drop the stale frame: consumers always get the newest
                    self._q.get_nowait()
                    if item is not None:
                        self.dropped += 1
                except queue.Empty:
                    pass
                try:
                    self._q.put_nowait(item)
                    return
                except queue.Full:
                    continue
        else:
            while not self._stop.is_set():
                try:
                    self._q.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

    def read(self, timeout: float | None | object = _DEFAULT) -> Frame | None:
        """The next frame (newest, for live sources with policy 'latest'); None at the end of the source (``ended``
        says why when it stopped early). ``timeout``: seconds a connected live source may deliver nothing (default
        ``frame_timeout``; None waits for ever); reconnecting time is not counted."""
        if self._thread is None:
            if self._stop.is_set():
                return None
            try:
                img = self._grab()
            except SDKError:
                raise
            except Exception as e:  # a decoder error ends the file with its reason
                self.ended = f"source {self.uri!r} failed while reading ({type(e).__name__}: {e})"
                return None
            if img is None:
                return None
            f = Frame(img, self._index, time.monotonic())
            self._index += 1
            return f
        limit = self.frame_timeout if timeout is _DEFAULT else _positive("timeout", timeout, allow_none=True)
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            try:
                return self._q.get(timeout=0.1)
            except queue.Empty:
                pass
            if self._stop.is_set() or not self._thread.is_alive() and self._q.empty():
                return None
            now = time.monotonic()
            if self._reconnecting and limit is not None:
                deadline = now + limit  # the no-frame clock runs only while the source is connected
            if deadline is not None and now >= deadline:
                raise SDKError(
                    f"source {self.uri!r} delivered no frame for {limit:g} s (stalled stream?); "
                    "raise frame_timeout or check the camera"
                )

    def __iter__(self) -> Iterator[Frame]:
        while True:
            f = self.read()
            if f is None:
                return
            yield f

    def close(self) -> None:
        """Stop: interrupt a reconnect back-off, join the capture thread (which releases the capture). A thread
        blocked inside the driver's read() is left to release it when that read returns."""
        self._stop.set()
        if self._thread is not None:
            if self._thread is not threading.current_thread():
                self._thread.join(timeout=self.close_timeout)
            try:
                self._q.put_nowait(None)  # wake a reader blocked in read()
            except queue.Full:
                pass
            if not self._thread.is_alive():
                self._release()
        else:
            self._release()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(uri: str | int, policy: str | None = None, reconnect: bool = True, **options: Any) -> VideoSource:
    """Open a source by URI (see the module docstring); ``options``: :class:`VideoSource`'s keyword arguments
    (``reconnect_attempts``, ``reconnect_delay``, ``max_backoff``, ``frame_timeout``, ...)."""
    return VideoSource(str(uri), policy, reconnect, **options)


class Sink:
    """Where overlaid frames go: ``window``, ``*.mp4`` / ``*.avi``, an image folder (``dir/``), ``none``."""

    def __init__(self, spec: str | None, fps: float = 15.0):
        self.spec = spec or "none"
        self.fps = fps
        self._writer: cv2.VideoWriter | None = None
        self._folder: Path | None = None
        self.frames = 0
        self.closed_by_user = False
        if self.spec == "window":
            try:
                cv2.namedWindow("ssp", cv2.WINDOW_NORMAL)
            except cv2.error:
                raise SDKError(
                    "this OpenCV has no GUI (opencv-python-headless) or no display: write to a file with "
                    "--out demo.mp4, or install opencv-python on a desktop"
                ) from None
        elif self.spec != "none":
            p = Path(self.spec)
            if p.suffix.lower() in VIDEO_SUFFIXES:
                p.parent.mkdir(parents=True, exist_ok=True)
            elif p.suffix == "" or self.spec.endswith("/"):
                p.mkdir(parents=True, exist_ok=True)
                self._folder = p
            else:
                raise SDKError(
                    f"--out {self.spec!r}: give a video file (.mp4, .avi), a folder (dir/), 'window' or 'none'"
                )

    def write(self, image: np.ndarray) -> None:
        self.frames += 1
        if self.spec == "none":
            return
        if self.spec == "window":
            cv2.imshow("ssp", image)
            if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                self.closed_by_user = True
            return
        if self._folder is not None:
            cv2.imwrite(str(self._folder / f"{self.frames - 1:06d}.png"), image)
            return
        if self._writer is None:
            fourcc = cv2.VideoWriter_fourcc(
                *("mp4v" if self.spec.lower().endswith((".mp4", ".m4v", ".mov")) else "MJPG")
            )
            self._writer = cv2.VideoWriter(self.spec, fourcc, self.fps, (image.shape[1], image.shape[0]))
            if not self._writer.isOpened():
                raise SDKError(f"cannot write video {self.spec!r} (no encoder for it in this OpenCV build)")
        self._writer.write(image)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
        if self.spec == "window":
            cv2.destroyAllWindows()


def open_sink(spec: str | None, fps: float = 15.0) -> Sink:
    return Sink(spec, fps)
