"""A local web page served by the SDK: live MJPEG view of the overlay and a prompt box (stdlib asyncio HTTP
server, no web framework, no thread per connection).

    python samples/web_demo/server.py --bundle build/bundle --source 0 --port 8080   # then open http://localhost:8080
    python samples/web_demo/server.py --bundle build/bundle --host 0.0.0.0 --allow-host robot.local --token SECRET
                                       # then open http://robot.local:8080/#token=SECRET

Endpoints: ``/`` page, ``/stream.mjpg`` live view, ``/frame.jpg`` newest frame, ``/status`` JSON,
``POST /prompt`` with ``Content-Type: application/json`` and ``{"prompts": ["the red cup"]}``.

Hardened for a network (see SECURITY.md): requests are read with a deadline (``--read-timeout``) and a body cap
(``--max-body``, 413); POST takes JSON only (415: a cross-site form or ``text/plain`` POST cannot send it);
the Host header and any Origin must name an allowed host (loopback names by default, ``--allow-host``), which
stops DNS rebinding; beyond loopback ``--token`` is required for POST; connections are capped
(``--max-connections``; the oldest connection still sending its request is dropped for a new one, so
half-open connections cannot starve real clients); prompts are validated (a list of 1..N non-empty strings,
N = the bundle's per-frame limit, each at most ``--max-prompt-chars``) and refused with 400 and the reason
before anything changes. The processing thread never dies: an error shows in ``/status`` and frames keep
flowing with the previous prompts. Every response carries a Content-Security-Policy and ``nosniff``.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import http.client
import io
import ipaddress
import json
import os
import queue
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2

from ssp_edge.sdk.errors import SDKError
from ssp_edge.sdk.overlay import draw
from ssp_edge.sdk.segmenter import Segmenter
from ssp_edge.sdk.video import open_source

__all__ = ["WebOptions", "DemoState", "DemoServer", "validate_prompts", "process", "serve", "main"]

HERE = Path(__file__).resolve().parent
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}
PAGES = {path: ((HERE / name).read_bytes(), ctype) for path, (name, ctype) in STATIC.items()}
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
MAX_HEADER_BYTES = 16 << 10


@dataclass
class WebOptions:
    """How the server listens and what it accepts (defaults: loopback only, 64 KiB bodies)."""

    host: str = "127.0.0.1"
    port: int = 8080
    allow_hosts: tuple[str, ...] = ()  # Host / Origin names accepted besides the loopback names
    token: str | None = None  # required for POST when set (and always beyond loopback)
    max_body: int = 64 << 10
    read_timeout: float = 10.0  # seconds for a client to send its whole request
    write_timeout: float = 30.0  # seconds a client may take to accept a response chunk
    max_connections: int = 64
    max_streams: int = 16
    max_prompt_chars: int = 200
    first_frame_timeout: float = 30.0

    def hosts(self) -> set[str]:
        names = {h.strip().lower().rstrip(".").strip("[]") for h in (*LOOPBACK_NAMES, *self.allow_hosts) if h.strip()}
        if self.host not in ("", "0.0.0.0", "::"):
            names.add(self.host.lower().strip("[]"))
        return names


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def validate_prompts(data: Any, max_prompts: int, max_chars: int) -> list[str]:
    """The prompts of a POST body (``{"prompts": [...]}``), or ValueError with the reason."""
    if not isinstance(data, dict):
        raise ValueError(
            f'the body must be a JSON object like {{"prompts": ["the red cup"]}}, got {type(data).__name__}'
        )
    extra = sorted(set(data) - {"prompts"})
    if extra:
        raise ValueError(f'unknown field(s) {", ".join(map(repr, extra[:5]))}; send only "prompts"')
    prompts = data.get("prompts")
    if not isinstance(prompts, list):
        raise ValueError(f'"prompts" must be a list of strings, got {type(prompts).__name__}')
    if not prompts:
        raise ValueError('"prompts" is empty; send at least one, e.g. ["the red cup"]')
    if len(prompts) > max_prompts:
        raise ValueError(f"{len(prompts)} prompts is more than this bundle's limit of {max_prompts} per frame")
    out = []
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise ValueError(f"prompt {i} must be a string, got {type(p).__name__}")
        p = p.strip()
        if not p:
            raise ValueError(f"prompt {i} is empty")
        if len(p) > max_chars:
            raise ValueError(f"prompt {i} is {len(p)} characters long, more than {max_chars}")
        if any(ord(c) < 32 or ord(c) == 127 for c in p):
            raise ValueError(f"prompt {i} contains control characters")
        out.append(p)
    return out


class DemoState:
    """The processing thread's output, shared with request handlers (and how handlers hear of new frames)."""

    def __init__(self, prompts: list[str], max_prompts: int = 16):
        self.lock = threading.Condition()
        self.jpeg: bytes | None = None
        self.frames = 0
        self.fps = 0.0
        self.prompts = list(prompts)
        self.max_prompts = int(max_prompts)
        self.results: list[dict] = []
        self.prompts_since = 0  # the number of the first frame that used the current prompts
        self.prompt_error: str | None = None  # the last prompts that could not be applied (cleared by a good one)
        self.frame_error: str | None = None  # the last frame / source failure (cleared by the next good frame)
        self.pending: queue.Queue[list[str]] = queue.Queue(maxsize=1)  # only the newest prompts wait
        self.stop = threading.Event()
        self._listeners: list[tuple[asyncio.AbstractEventLoop, Any]] = []

    def submit(self, prompts: list[str]) -> None:
        """Queue prompts for the next frame, replacing any not yet applied (memory stays bounded)."""
        with self.lock:
            try:
                self.pending.get_nowait()
            except queue.Empty:
                pass
            self.pending.put_nowait(list(prompts))

    @property
    def error(self) -> str | None:
        return self.prompt_error or self.frame_error

    def listen(self, loop: asyncio.AbstractEventLoop, callback: Any) -> None:
        self._listeners.append((loop, callback))

    def publish(self, jpeg: bytes, results: list[dict], fps: float) -> None:
        with self.lock:
            self.jpeg, self.results, self.fps = jpeg, results, fps
            self.frames += 1
            self.lock.notify_all()
        self._notify()

    def set_frame_error(self, msg: str | None) -> None:
        self.frame_error = msg
        if msg:
            self._notify()

    def _notify(self) -> None:
        for loop, cb in list(self._listeners):
            try:
                loop.call_soon_threadsafe(cb)
            except RuntimeError:  # that loop has closed
                self._listeners.remove((loop, cb))

    def status(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "fps": round(self.fps, 2),
            "prompts": self.prompts,
            "results": self.results,
            "prompts_since_frame": self.prompts_since,
            "error": self.error,
            "max_prompts": self.max_prompts,
        }


def _apply_pending(seg: Segmenter, state: DemoState) -> None:
    latest = None
    while True:
        try:
            latest = state.pending.get_nowait()
        except queue.Empty:
            break
    if latest is None:
        return
    try:
        seg.set_prompts(latest)
    except Exception as e:  # the previous prompts stay in use
        state.prompt_error = f"prompts {latest!r} not applied: {e}"
        return
    state.prompts = seg.prompts
    state.prompts_since = state.frames + 1  # this frame, once published
    state.prompt_error = None


def process(seg: Segmenter, source_uri: str, state: DemoState, loop: bool, retry_s: float = 2.0) -> None:
    """Read frames, apply new prompts, segment, draw, publish JPEGs until stopped. Never dies on an error: it is
    shown in /status, the frame is published without an overlay, and the next frame uses the previous prompts."""
    while not state.stop.is_set():
        src = None
        try:
            with open_source(source_uri) as src:
                for frame in src:
                    if state.stop.is_set():
                        return
                    _apply_pending(seg, state)
                    t0 = time.perf_counter()
                    try:
                        results = seg.segment(frame.image)
                        fps = 1.0 / max(time.perf_counter() - t0, 1e-6)
                        image = draw(frame.image, results, fps)
                        state.set_frame_error(None)
                    except Exception as e:
                        results, fps, image = [], 0.0, frame.image
                        state.set_frame_error(
                            f"frame {frame.index}: {e}"
                            if isinstance(e, SDKError)
                            else f"frame {frame.index}: {type(e).__name__}: {e}"
                        )
                    ok, jpg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
                    if ok:
                        state.publish(
                            jpg.tobytes(),
                            [
                                {"prompt": r.prompt, "exists": r.exists, "score": round(r.score, 3), "area": r.area}
                                for r in results
                            ],
                            fps,
                        )
            if src.ended:
                state.set_frame_error(src.ended)
        except Exception as e:  # a source that cannot be (re)opened: say so, try again
            state.set_frame_error(str(e) if isinstance(e, SDKError) else f"{type(e).__name__}: {e}")
        if not loop:
            return
        if (src is None or src.is_live or src.ended) and state.stop.wait(retry_s):
            return


# ----------------------------------------------------------------------------------------------- HTTP
class _HTTPError(Exception):
    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers or {}


@dataclass
class _Request:
    method: str
    path: str
    headers: Any  # email.message.Message (case-insensitive get)
    deadline: float


class _Conn:
    def __init__(self, task: asyncio.Task | None):
        self.task = task
        self.started = time.monotonic()
        self.reading = True  # still sending its request: may be dropped for a new connection
        self.streaming = False


class DemoServer:
    """The HTTP server (asyncio, one thread): ``serve_forever()`` in a thread, ``shutdown()``, ``server_close()``."""

    def __init__(self, state: DemoState, opts: WebOptions):
        self.state, self.opts = state, opts
        self._hosts = opts.hosts()
        family = socket.AF_INET6 if ":" in opts.host else socket.AF_INET
        self.socket = socket.create_server((opts.host, opts.port), family=family, backlog=256)
        self.server_address = self.socket.getsockname()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Future | None = None
        self._done = threading.Event()
        self._conns: set[_Conn] = set()
        self._frame_event: asyncio.Event | None = None
        self.dropped_connections = 0

    # ---- lifecycle
    def serve_forever(self) -> None:
        try:
            asyncio.run(self._main())
        finally:
            self._done.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        self._frame_event = asyncio.Event()
        self.state.listen(self._loop, self._on_frame)
        server = await asyncio.start_server(self._client, sock=self.socket, limit=MAX_HEADER_BYTES)
        try:
            await self._stop
        finally:
            server.close()
            for c in list(self._conns):
                if c.task is not None:
                    c.task.cancel()
            await asyncio.sleep(0)

    def shutdown(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(lambda: stop.done() or stop.set_result(None))
            except RuntimeError:
                return
            self._done.wait(10)

    def server_close(self) -> None:
        self.socket.close()

    def _on_frame(self) -> None:
        ev = self._frame_event
        if ev is not None:
            ev.set()
            self._frame_event = asyncio.Event()

    async def _next_frame(self, timeout: float) -> None:
        ev = self._frame_event
        assert ev is not None
        try:
            await asyncio.wait_for(ev.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    # ---- connections
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(asyncio.current_task())
        if len(self._conns) >= self.opts.max_connections:
            waiting = [c for c in self._conns if c.reading]
            if waiting:  # drop the oldest half-sent request: slow or idle clients cannot starve new ones
                victim = min(waiting, key=lambda c: c.started)
                self._conns.discard(victim)
                self.dropped_connections += 1
                if victim.task is not None:
                    victim.task.cancel()
            else:
                await self._reply(writer, 503, {"error": "too many connections; try again"})
                await self._close(writer)
                return
        self._conns.add(conn)
        try:
            try:
                req = await asyncio.wait_for(self._read_head(reader), self.opts.read_timeout)
                await self._dispatch(req, reader, writer, conn)
            except asyncio.TimeoutError:
                await self._reply(writer, 408, {"error": f"request not received within {self.opts.read_timeout:g} s"})
                await self._linger(reader, writer)
            except _HTTPError as e:
                await self._reply(writer, e.status, {"error": e.reason}, e.headers)
                await self._linger(reader, writer)
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            self._conns.discard(conn)
            await self._close(writer)

    @staticmethod
    async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """After an early error reply: end our side, then read and discard what the client still sends (a little,
        briefly), so it reads the reply instead of a connection reset."""
        try:
            writer.write_eof()
        except (OSError, RuntimeError, AttributeError):
            pass
        end, total = time.monotonic() + 2.0, 0
        try:
            while total < (4 << 20) and time.monotonic() < end:
                chunk = await asyncio.wait_for(reader.read(1 << 16), max(0.01, end - time.monotonic()))
                if not chunk:
                    break
                total += len(chunk)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            pass

    @staticmethod
    async def _close(writer: asyncio.StreamWriter) -> None:
        try:
            writer.close()
        except Exception:
            pass

    async def _read_head(self, reader: asyncio.StreamReader) -> _Request:
        deadline = time.monotonic() + self.opts.read_timeout
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise _HTTPError(431, f"request headers larger than {MAX_HEADER_BYTES} bytes") from None
        except asyncio.IncompleteReadError as e:
            if not e.partial.strip():
                raise ConnectionResetError("client closed without a request") from None
            raise _HTTPError(400, "the request ended before its headers did") from None
        line, _, rest = head.partition(b"\r\n")
        parts = line.decode("latin-1").split(" ")
        if len(parts) != 3 or not parts[0].isalpha() or not parts[0].isupper():
            raise _HTTPError(400, "malformed request line")
        method, target, version = parts
        if version not in ("HTTP/1.0", "HTTP/1.1"):
            raise _HTTPError(505, f"HTTP version {version[:20]!r} not supported")
        try:
            headers = http.client.parse_headers(io.BytesIO(rest))
        except (http.client.HTTPException, ValueError):
            raise _HTTPError(431, "too many or too long header lines") from None
        if not target.startswith("/"):
            raise _HTTPError(400, "the request target must be a path such as /status")
        path = urlsplit(target).path
        return _Request(method, path, headers, deadline)

    # ---- checks
    def _host_name(self, value: str) -> str:
        v = value.strip().lower()
        if v.startswith("["):
            name = v[1 : v.index("]")] if "]" in v else v
        else:
            name = v.rsplit(":", 1)[0] if v.count(":") == 1 else v
        return name.rstrip(".")

    def _check_origin(self, req: _Request) -> None:
        hosts = req.headers.get_all("Host") or []
        if len(hosts) != 1:
            raise _HTTPError(400, "exactly one Host header is required")
        host = hosts[0].strip()
        if self._host_name(host) not in self._hosts:
            raise _HTTPError(
                403,
                f"Host {host[:80]!r} is not allowed (DNS rebinding?); allowed: "
                f"{', '.join(sorted(self._hosts))}; add names with --allow-host",
            )
        origin = req.headers.get("Origin")
        if origin is not None:
            o = urlsplit(origin.strip())
            if o.scheme not in ("http", "https") or o.netloc.lower() != host.lower():
                raise _HTTPError(403, f"cross-origin request from {origin[:80]!r} refused")
        if (req.headers.get("Sec-Fetch-Site") or "").strip().lower() == "cross-site":
            raise _HTTPError(403, "cross-site request refused")

    def _check_token(self, req: _Request) -> None:
        token = self.opts.token
        if not token:
            return
        given = req.headers.get("X-SSP-Token") or ""
        auth = req.headers.get("Authorization") or ""
        if auth.lower().startswith("bearer "):
            given = given or auth[7:].strip()
        if not hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8")):
            raise _HTTPError(
                401,
                "POST needs the server's token (header X-SSP-Token, or open the page as /#token=TOKEN)",
                {"WWW-Authenticate": 'Bearer realm="ssp-web-demo"'},
            )

    # ---- handlers
    async def _dispatch(
        self, req: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: _Conn
    ) -> None:
        self._check_origin(req)
        if req.method == "POST":
            if req.path != "/prompt":
                raise _HTTPError(404, f"no endpoint {req.path[:80]}")
            self._check_token(req)
            prompts = await self._read_prompts(req, reader, writer)
            conn.reading = False
            self.state.submit(prompts)
            return await self._reply(writer, 200, {"prompts": prompts})
        conn.reading = False
        if req.method != "GET":
            raise _HTTPError(405, f"method {req.method[:16]} not allowed", {"Allow": "GET, POST"})
        if req.headers.get("Content-Length") not in (None, "0") or req.headers.get("Transfer-Encoding"):
            raise _HTTPError(400, "a GET request has no body")
        if req.path in PAGES:
            body, ctype = PAGES[req.path]
            return await self._send(writer, 200, body, ctype)
        if req.path == "/status":
            return await self._reply(writer, 200, self.state.status())
        if req.path == "/frame.jpg":
            deadline = time.monotonic() + self.opts.first_frame_timeout
            while self.state.jpeg is None and self.state.error is None and time.monotonic() < deadline:
                await self._next_frame(min(1.0, max(0.0, deadline - time.monotonic())))
            if self.state.jpeg is None:
                return await self._reply(writer, 503, {"error": self.state.error or "no frame yet"})
            return await self._send(writer, 200, self.state.jpeg, "image/jpeg")
        if req.path == "/stream.mjpg":
            return await self._stream(writer, conn)
        raise _HTTPError(404, f"no page {req.path[:80]}")

    async def _read_prompts(
        self, req: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> list[str]:
        h = req.headers
        if h.get("Transfer-Encoding"):
            raise _HTTPError(411, "send the body with a Content-Length, not chunked")
        lengths = h.get_all("Content-Length") or []
        if not lengths:
            raise _HTTPError(411, "POST /prompt needs a Content-Length")
        if len(set(lengths)) != 1 or not lengths[0].strip().isdigit() or len(lengths[0].strip()) > 12:
            raise _HTTPError(400, f"bad Content-Length {lengths[0][:20]!r}")
        n = int(lengths[0])
        if n > self.opts.max_body:
            raise _HTTPError(413, f"body of {n} bytes is larger than the {self.opts.max_body} allowed")
        ctype = (h.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            raise _HTTPError(415, f"POST /prompt takes Content-Type application/json, got {ctype[:60]!r}")
        if (h.get("Expect") or "").strip().lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            body = await asyncio.wait_for(reader.readexactly(n), max(0.0, req.deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise _HTTPError(408, f"body not received within {self.opts.read_timeout:g} s") from None
        except asyncio.IncompleteReadError:
            raise _HTTPError(400, f"the body ended before its Content-Length ({n} bytes)") from None
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise _HTTPError(400, 'the body is not JSON; send {"prompts": ["the red cup"]}') from None
        try:
            return validate_prompts(data, self.state.max_prompts, self.opts.max_prompt_chars)
        except ValueError as e:
            raise _HTTPError(400, str(e)) from None

    async def _stream(self, writer: asyncio.StreamWriter, conn: _Conn) -> None:
        if sum(1 for c in self._conns if c.streaming) >= self.opts.max_streams:
            raise _HTTPError(503, f"already {self.opts.max_streams} live views open; close one")
        conn.streaming = True
        await self._write(writer, self._head(200, "multipart/x-mixed-replace; boundary=frame", None))
        seen = -1
        while not self.state.stop.is_set():
            if self.state.frames == seen or self.state.jpeg is None:
                await self._next_frame(5.0)
                continue
            jpeg, seen = self.state.jpeg, self.state.frames
            await self._write(
                writer,
                b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                + str(len(jpeg)).encode()
                + b"\r\n\r\n"
                + jpeg
                + b"\r\n",
            )

    # ---- responses
    def _head(self, code: int, ctype: str, length: int | None, extra: dict[str, str] | None = None) -> bytes:
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Status"
        lines = [f"HTTP/1.1 {code} {phrase}", f"Content-Type: {ctype}", "Connection: close"]
        if length is not None:
            lines.append(f"Content-Length: {length}")
        lines += [f"{k}: {v}" for k, v in {**SECURITY_HEADERS, **(extra or {})}.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        try:
            await asyncio.wait_for(writer.drain(), self.opts.write_timeout)
        except asyncio.TimeoutError:  # a client that does not read: drop it (not a request timeout)
            raise ConnectionAbortedError("client stopped reading") from None

    async def _send(
        self, writer: asyncio.StreamWriter, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None
    ) -> None:
        await self._write(writer, self._head(code, ctype, len(body), extra) + body)

    async def _reply(
        self, writer: asyncio.StreamWriter, code: int, obj: object, extra: dict[str, str] | None = None
    ) -> None:
        try:
            await self._send(writer, code, json.dumps(obj).encode(), "application/json", extra)
        except (ConnectionError, asyncio.TimeoutError, OSError):
            pass


def serve(
    bundle: str,
    source: str,
    prompts: list[str],
    host: str = "127.0.0.1",
    port: int = 8080,
    loop: bool = True,
    backend: str = "auto",
    **options: Any,
) -> tuple[DemoServer, DemoState]:
    """Start the processing thread and bind the HTTP server (call ``serve_forever`` or run it in a thread).
    ``options``: :class:`WebOptions` fields (allow_hosts, token, max_body, read_timeout, max_connections, ...)."""
    opts = WebOptions(host=host, port=port, **options)
    if not is_loopback(host) and not opts.token:
        raise SDKError(
            f"--host {host} exposes the demo beyond this machine: pass --token SECRET (POST /prompt then "
            "needs it) and --allow-host NAME for the name clients use"
        )
    seg = Segmenter.open(bundle, backend=backend)
    seg.set_prompts(prompts)
    open_source(source).close()  # fail now on a bad source, not in the background thread
    state = DemoState(seg.prompts, getattr(seg, "max_prompts", 16))
    server = DemoServer(state, opts)
    threading.Thread(target=process, args=(seg, source, state, loop), daemon=True, name="web-demo-process").start()
    return server, state


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True)
    p.add_argument("--source", default="0")
    p.add_argument("--prompt", action="append", default=None)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (beyond loopback needs --token)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host / Origin name clients may use besides localhost (repeatable)",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("SSP_WEB_TOKEN"),
        help="secret POST /prompt requires (default $SSP_WEB_TOKEN); required beyond loopback",
    )
    p.add_argument("--max-body", type=int, default=64 << 10, metavar="BYTES")
    p.add_argument("--read-timeout", type=float, default=10.0, metavar="S")
    p.add_argument("--max-connections", type=int, default=64)
    p.add_argument("--backend", default="auto", choices=("auto", "tensorrt", "onnxruntime"))
    a = p.parse_args(argv)
    if a.max_body < 1 or a.read_timeout <= 0 or a.max_connections < 1:
        print("web_demo: error: --max-body, --read-timeout and --max-connections must be positive", file=sys.stderr)
        return 2
    try:
        server, state = serve(
            a.bundle,
            a.source,
            a.prompt or ["the red circle"],
            a.host,
            a.port,
            True,
            a.backend,
            allow_hosts=tuple(a.allow_host),
            token=a.token,
            max_body=a.max_body,
            read_timeout=a.read_timeout,
            max_connections=a.max_connections,
        )
    except (SDKError, OSError) as e:
        print(f"web_demo: error: {e}", file=sys.stderr)
        return 2
    shown = a.host if ":" not in a.host else f"[{a.host}]"
    print(
        f"open http://{shown}:{server.server_address[1]}/{'#token=...' if a.token else ''}  (Ctrl-C stops)",
        file=sys.stderr,
    )
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
