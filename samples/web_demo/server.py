"""A local web page served by the SDK: live MJPEG view of the overlay and a prompt box (stdlib HTTP
server, no web framework).

    python samples/web_demo/server.py --bundle build/bundle --source 0 --port 8080   # then open http://localhost:8080

Endpoints: ``/`` page, ``/stream.mjpg`` live view, ``/frame.jpg`` newest frame, ``/status`` JSON,
``POST /prompt`` with ``{"prompts": ["the red cup"]}`` (or a plain-text body, ';'-separated).
"""
from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2

from ssp_edge.sdk.errors import SDKError
from ssp_edge.sdk.overlay import draw
from ssp_edge.sdk.pipeline import parse_prompts
from ssp_edge.sdk.segmenter import Segmenter
from ssp_edge.sdk.video import open_source

PAGE = (Path(__file__).with_name("index.html")).read_text()


class DemoState:
    """The processing thread's output, shared with request handlers."""

    def __init__(self, prompts: list[str]):
        self.lock = threading.Condition()
        self.jpeg: bytes | None = None
        self.frames = 0
        self.fps = 0.0
        self.prompts = list(prompts)
        self.results: list[dict] = []
        self.error: str | None = None
        self.pending: "queue.Queue[list[str]]" = queue.Queue()
        self.stop = threading.Event()

    def publish(self, jpeg: bytes, results: list[dict], fps: float) -> None:
        with self.lock:
            self.jpeg, self.results, self.fps = jpeg, results, fps
            self.frames += 1
            self.lock.notify_all()


def process(seg: Segmenter, source_uri: str, state: DemoState, loop: bool) -> None:
    """Read frames, apply new prompts, segment, draw, publish JPEGs (until stopped or the source ends)."""
    try:
        while not state.stop.is_set():
            with open_source(source_uri) as src:
                for frame in src:
                    if state.stop.is_set():
                        return
                    while not state.pending.empty():
                        seg.set_prompts(state.pending.get_nowait())
                        state.prompts = seg.prompts
                    t0 = time.perf_counter()
                    results = seg.segment(frame.image)
                    fps = 1.0 / max(time.perf_counter() - t0, 1e-6)
                    ok, jpg = cv2.imencode(".jpg", draw(frame.image, results, fps), [cv2.IMWRITE_JPEG_QUALITY, 80])
                    if ok:
                        state.publish(jpg.tobytes(), [{"prompt": r.prompt, "exists": r.exists, "score": round(r.score, 3),
                                                       "area": r.area} for r in results], fps)
            if not loop or src.is_live:
                return
    except SDKError as e:
        state.error = str(e)


def make_handler(state: DemoState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, obj: object) -> None:
            self._send(code, json.dumps(obj).encode(), "application/json")

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            if self.path in ("/", "/index.html"):
                self._send(200, PAGE.encode(), "text/html; charset=utf-8")
            elif self.path == "/status":
                self._json(200, {"frames": state.frames, "fps": round(state.fps, 2), "prompts": state.prompts,
                                 "results": state.results, "error": state.error})
            elif self.path == "/frame.jpg":
                with state.lock:
                    state.lock.wait_for(lambda: state.jpeg is not None or state.error is not None, timeout=30)
                    jpeg = state.jpeg
                if jpeg is None:
                    self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": state.error or "no frame yet"})
                else:
                    self._send(200, jpeg, "image/jpeg")
            elif self.path == "/stream.mjpg":
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                seen = -1
                try:
                    while not state.stop.is_set():
                        with state.lock:
                            state.lock.wait_for(lambda: state.frames != seen or state.stop.is_set(), timeout=5)
                            jpeg, seen = state.jpeg, state.frames
                        if jpeg is None:
                            continue
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    return
            else:
                self._json(404, {"error": f"no page {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/prompt":
                return self._json(404, {"error": f"no endpoint {self.path}"})
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
            try:
                data = json.loads(body)
                prompts = [str(p).strip() for p in data.get("prompts", [])] if isinstance(data, dict) else []
            except json.JSONDecodeError:
                prompts = parse_prompts(body)
            prompts = [p for p in prompts if p]
            if not prompts:
                return self._json(400, {"error": 'send {"prompts": ["the red cup"]} or a ;-separated text body'})
            state.pending.put(prompts)
            self._json(200, {"prompts": prompts})

    return Handler


def serve(bundle: str, source: str, prompts: list[str], host: str = "127.0.0.1", port: int = 8080,
          loop: bool = True, backend: str = "auto") -> tuple[ThreadingHTTPServer, DemoState]:
    """Start the processing thread and the HTTP server (call ``serve_forever`` or run it in a thread)."""
    seg = Segmenter.open(bundle, backend=backend)
    seg.set_prompts(prompts)
    open_source(source).close()  # fail now on a bad source, not in the background thread
    state = DemoState(seg.prompts)
    threading.Thread(target=process, args=(seg, source, state, loop), daemon=True).start()
    server = ThreadingHTTPServer((host, port), make_handler(state))
    server.daemon_threads = True
    return server, state


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True)
    p.add_argument("--source", default="0")
    p.add_argument("--prompt", action="append", default=None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--backend", default="auto", choices=("auto", "tensorrt", "onnxruntime"))
    a = p.parse_args(argv)
    try:
        server, state = serve(a.bundle, a.source, a.prompt or ["the red circle"], a.host, a.port, True, a.backend)
    except (SDKError, OSError) as e:
        print(f"web_demo: error: {e}", file=sys.stderr)
        return 2
    print(f"open http://{a.host}:{server.server_address[1]}/  (Ctrl-C stops)", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        state.stop.set()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
