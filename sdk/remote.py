"""``RemoteSegmenter``: the Segmenter's API over Triton (tritonclient), for a model repository written by
``ssp convert triton`` or a server started with ``ssp serve``. A robot switches between local and server inference
by one line::

    seg = Segmenter.open("build/bundle")                  # local
    seg = RemoteSegmenter("grpc://gpu-server:8001")        # the same calls, on a server
    seg.set_prompts(["the red circle"])
    for r in seg.segment(frame_bgr):
        print(r.prompt, r.exists, r.score, r.mask.shape)

Requests time out; when the server goes away (restart, network) the client reconnects with exponential back-off
for up to ``retry_for`` seconds, then raises one clear :class:`SDKError`. Errors the server reports for a request
(bad frame, too many prompts) are raised at once, never retried.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

import numpy as np

from .errors import SDKError
from .segmenter import Result, clean_prompts, to_bgr8

__all__ = ["RemoteSegmenter", "ACCESS_HEADER", "DEFAULT_MODEL", "OUTPUTS", "request_prompts", "result_arrays"]

#: the header Triton's restricted APIs check (``ssp serve --token``; ``--http-restricted-api=...:KEY=VALUE``); over
#: gRPC Triton expects it with the ``triton-grpc-protocol-`` prefix
ACCESS_HEADER = "triton-access-token"
DEFAULT_MODEL = "ssp_segment"
#: the ssp_segment model's outputs (``ssp convert triton``'s BLS model and ``ssp serve`` alike)
OUTPUTS = ("mask", "prob", "score", "exists")


def request_prompts(raw: Any) -> list[str]:
    """The ``prompts`` input of an ssp_segment request (BYTES, UTF-8) as strings (validated by the Segmenter)."""
    return [p.decode("utf-8") if isinstance(p, bytes) else str(p) for p in np.asarray(raw).reshape(-1)]


def result_arrays(results: Sequence[Result], names: Sequence[str] = OUTPUTS) -> dict[str, np.ndarray]:
    """One frame's Results as the ssp_segment outputs ``names``: ``mask`` (K, H, W) uint8, ``prob`` (K, H, W)
    float32, ``score`` (K) float32, ``exists`` (K) bool; what :meth:`RemoteSegmenter.segment` reads back."""
    make = {
        "mask": lambda: np.stack([r.mask for r in results]),
        "prob": lambda: np.stack([r.prob for r in results]).astype(np.float32),
        "score": lambda: np.asarray([r.score for r in results], np.float32),
        "exists": lambda: np.asarray([r.exists for r in results], np.bool_),
    }
    return {n: make[n]() for n in names}


class RemoteSegmenter:
    """Referring segmentation on a Triton server (``ssp_segment`` model); not thread-safe, one per thread."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        prompts: Sequence[str] | None = None,
        *,
        model: str = DEFAULT_MODEL,
        token: str | None = None,
        timeout: float = 30.0,
        retry_for: float = 30.0,
        backoff: float = 0.25,
        max_backoff: float = 4.0,
        with_prob: bool = True,
    ):
        """``url``: ``grpc://host:8001`` or ``http://host:8000`` (``grpcs://`` / ``https://`` for TLS).
        ``timeout``: seconds per request; ``retry_for``: how long to keep reconnecting before giving up;
        ``with_prob=False`` skips the (K, H, W) float probabilities (``Result.prob`` is then the mask as float)."""
        try:
            import tritonclient  # noqa: F401
        except ImportError:
            raise SDKError("RemoteSegmenter needs tritonclient: pip install 'ssp-edge[client]'") from None
        u = urlparse(url if "://" in url else f"http://{url}")
        if u.scheme not in ("http", "https", "grpc", "grpcs") or not u.hostname:
            raise SDKError(f"server url {url!r}: give grpc://HOST:PORT or http://HOST:PORT")
        self.url = url
        self.protocol = "grpc" if u.scheme.startswith("grpc") else "http"
        self._ssl = u.scheme in ("https", "grpcs")
        self._address = f"{u.hostname}:{u.port or (8001 if self.protocol == 'grpc' else 8000)}"
        self.model = model
        self.timeout = float(timeout)
        self.retry_for = float(retry_for)
        self.backoff, self.max_backoff = float(backoff), float(max_backoff)
        self.with_prob = with_prob
        prefix = "triton-grpc-protocol-" if self.protocol == "grpc" else ""
        self._headers = {prefix + ACCESS_HEADER: token} if token else None
        self._client: Any = None
        self._prompts: list[str] = []
        self.reconnects = 0
        self.requests = 0
        if prompts is not None:
            self.set_prompts(prompts)

    @classmethod
    def open(cls, url: str = "http://127.0.0.1:8000", **kwargs: Any) -> RemoteSegmenter:
        """Like ``Segmenter.open``: connect (waiting up to ``retry_for`` for the server and model to be ready)."""
        seg = cls(url, **kwargs)
        seg.wait_ready()
        return seg

    # ---- connection
    def _connect(self) -> Any:
        if self._client is None:
            if self.protocol == "grpc":
                import tritonclient.grpc as g

                self._client = g.InferenceServerClient(self._address, ssl=self._ssl)
            else:
                import tritonclient.http as h

                self._client = h.InferenceServerClient(
                    self._address, ssl=self._ssl, connection_timeout=self.timeout, network_timeout=self.timeout
                )
        return self._client

    def _drop(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
        self._client = None

    def _model_ready(self) -> bool:
        """Whether the server answers and the model is loaded (False on any transport error)."""
        try:
            kw = {"client_timeout": self.timeout} if self.protocol == "grpc" else {}
            return bool(self._connect().is_model_ready(self.model, headers=self._headers, **kw))
        except Exception:
            self._drop()
            return False

    def _retrying(self, what: str, call: Any) -> Any:
        """Run ``call(client)``; on transport errors or a model that is (re)loading, reconnect with back-off."""
        from tritonclient.utils import InferenceServerException

        deadline = time.monotonic() + self.retry_for
        delay, attempts, last = self.backoff, 0, "no attempt"
        while True:
            attempts += 1
            try:
                return call(self._connect())
            except InferenceServerException as e:
                # the server answered: a bad request if the model is up, else it is starting / restarting
                if self._model_ready():
                    raise SDKError(f"server {self.url} refused the {what}: {e.message() or e}") from None
                last = f"{e.message() or e}"
            except Exception as e:  # connection refused / reset, timeouts, DNS: the server is gone for now
                last = f"{type(e).__name__}: {e}"
                self._drop()
            if time.monotonic() + delay > deadline:
                raise SDKError(
                    f"server {self.url} is not answering ({what}: {attempts} attempts over "
                    f"{self.retry_for:.0f} s; last error: {last}); start it with `ssp serve BUNDLE` or "
                    "tritonserver, or check the URL"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, self.max_backoff)
            self.reconnects += 1

    def wait_ready(self) -> None:
        """Block until the server has the model loaded (at most ``retry_for`` s), else SDKError."""

        def ready(client: Any) -> bool:
            if not self._model_ready():
                raise ConnectionError(f"model {self.model!r} not ready")
            return True

        self._retrying("readiness check", ready)

    # ---- the Segmenter's API
    @property
    def prompts(self) -> list[str]:
        return list(self._prompts)

    def set_prompts(self, prompts: Sequence[str]) -> None:
        """Prompts used by :meth:`segment` from now on (the server encodes each once and caches it)."""
        self._prompts = list(clean_prompts(prompts))  # the server checks its bundle's limit per frame

    def segment(self, frame_bgr: np.ndarray, prompts: Sequence[str] | None = None) -> list[Result]:
        """Masks for every prompt on one BGR frame, computed on the server (same fields as ``Segmenter.segment``)."""
        if prompts is not None:
            self.set_prompts(prompts)
        if not self._prompts:
            raise SDKError("no prompts: call set_prompts(['the red circle']) or pass prompts=[...]")
        frame = np.ascontiguousarray(to_bgr8(frame_bgr))
        names = [n for n in OUTPUTS if self.with_prob or n != "prob"]
        t0 = time.perf_counter()
        out = self._retrying("segment request", lambda c: self._infer(c, frame, names))
        ms = (time.perf_counter() - t0) * 1e3
        self.requests += 1
        mask = out["mask"]
        prob = out["prob"] if "prob" in out else mask.astype(np.float32)
        if mask.shape[0] != len(self._prompts) or mask.shape[1:] != frame.shape[:2]:
            raise SDKError(
                f"server {self.url} answered masks of shape {mask.shape} for {len(self._prompts)} prompts "
                f"on a {frame.shape[1]}x{frame.shape[0]} frame; is {self.model!r} an ssp_segment model?"
            )
        times = {"remote": ms}
        return [
            Result(p, mask[i], prob[i], float(out["score"][i]), bool(out["exists"][i]), times)
            for i, p in enumerate(self._prompts)
        ]

    def _infer(self, client: Any, frame: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        if self.protocol == "grpc":
            import tritonclient.grpc as mod
        else:
            import tritonclient.http as mod  # type: ignore[no-redef]
        image = mod.InferInput("image", list(frame.shape), "UINT8")
        image.set_data_from_numpy(frame)
        texts = np.array([p.encode("utf-8") for p in self._prompts], dtype=np.object_)
        prompts = mod.InferInput("prompts", [len(texts)], "BYTES")
        prompts.set_data_from_numpy(texts)
        outputs = [mod.InferRequestedOutput(n) for n in names]
        kw = {"client_timeout": self.timeout} if self.protocol == "grpc" else {}
        res = client.infer(self.model, [image, prompts], outputs=outputs, headers=self._headers, **kw)
        return {n: res.as_numpy(n) for n in names}

    def close(self) -> None:
        self._drop()

    def __enter__(self) -> RemoteSegmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
