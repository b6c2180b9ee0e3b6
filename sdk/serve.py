"""`ssp serve BUNDLE`: a Segmenter behind Triton's HTTP / gRPC endpoints and metrics, with PyTriton.

The model is ``ssp_segment`` with the same I/O as the one ``ssp convert triton`` writes (``image`` (H, W, 3) uint8
BGR + ``prompts`` (K) strings -> ``mask``, ``prob``, ``score``, ``exists``), so
:class:`ssp_edge.sdk.remote.RemoteSegmenter` talks to either. Server-side it is one Segmenter and its public
stages: every prompt is encoded once into its cache shared by all requests (``encode_prompts``, in the request's
thread); frames that arrive together (several cameras) share one image-encoder batch and their (frame, prompt)
pairs one decode (:func:`ssp_edge.sdk.multi.segment_frames`); each frame's image is encoded once for all its
prompts.

Trust: it binds 127.0.0.1 unless ``--host`` says otherwise, and then a token is required (clients send it in the
``triton-access-token`` header: ``RemoteSegmenter(url, token=...)``); the bundle is verified when opened; no native
code (plugin library, engine host code) is loaded unless the operator passes ``--plugins`` /
``--trust-bundle-plugins`` / ``--allow-engine-host-code``.

PyTriton (``pip install 'ssp-edge[serve]'``) pins numpy<2: install it in its own environment.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import queue
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import SDKError
from .options import add_backend_args, add_bundle_trust_args, add_native_code_args, backend_kwargs

__all__ = ["register", "SegmentService", "is_loopback", "MODEL_NAME", "TOKEN_ENV"]

MODEL_NAME = "ssp_segment"
TOKEN_ENV = "SSP_SERVE_TOKEN"
# everything but health (probes) needs the token when one is set
RESTRICTED = [
    "inference",
    "metadata",
    "model-config",
    "model-repository",
    "statistics",
    "shared-memory",
    "trace",
    "logging",
]


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class _Job:
    frame: np.ndarray
    encodings: Any  # PromptEncodings
    done: Future = field(default_factory=Future)


class SegmentService:
    """The work behind the endpoint: the Segmenter's prompt cache and a batcher that gathers the frames waiting at
    the same moment (up to the bundle's frame batch) into one image-encoder run. Thread-safe ``segment``."""

    def __init__(self, seg: Any, batch_wait_ms: float = 2.0):
        self.seg = seg
        self.max_batch = seg.max_frames
        self.batch_wait = batch_wait_ms / 1e3
        self.frames = 0
        self.batches = 0
        self._q: queue.Queue[_Job | None] = queue.Queue()
        self._worker = threading.Thread(target=self._loop, name="ssp-serve-batcher", daemon=True)
        self._worker.start()

    def segment(self, frame: np.ndarray, prompts: Sequence[str]) -> list[Any]:
        """Results for one frame: the frame and prompts are checked and the prompts encoded (cached) here, in the
        request's thread, so a bad request fails alone."""
        from .segmenter import to_bgr8

        job = _Job(to_bgr8(frame), self.seg.encode_prompts(prompts))
        self._q.put(job)
        return job.done.result()

    def _run(self, jobs: list[_Job]) -> None:
        from .multi import frame_groups, segment_frames

        try:
            results = segment_frames(self.seg, [j.frame for j in jobs], [j.encodings for j in jobs])
        except Exception as e:  # noqa: BLE001 -- handed to the waiting request(s)
            if len(jobs) > 1:  # one bad frame (e.g. too many pixels) must not fail the others: one at a time
                for j in jobs:
                    self._run([j])
            else:
                jobs[0].done.set_exception(e)
            return
        self.frames += len(jobs)
        self.batches += len(frame_groups(self.seg, [len(j.encodings) for j in jobs]))  # image-encoder calls
        for j, r in zip(jobs, results):
            j.done.set_result(r)

    def _loop(self) -> None:
        while True:
            job = self._q.get()
            if job is None:
                return
            jobs = [job]
            while len(jobs) < self.max_batch:  # frames of other cameras arriving now join this batch
                try:
                    nxt = self._q.get(timeout=self.batch_wait)
                except queue.Empty:
                    break
                if nxt is None:
                    self._q.put(None)
                    break
                jobs.append(nxt)
            self._run(jobs)

    def infer(self, requests: list[Any]) -> list[dict[str, np.ndarray]]:
        """PyTriton callable: each request -> its outputs (errors become that request's error response)."""
        from .remote import request_prompts, result_arrays

        return [
            result_arrays(self.segment(np.asarray(req["image"]), request_prompts(req["prompts"]))) for req in requests
        ]

    def close(self) -> None:
        self._q.put(None)
        self._worker.join(timeout=10)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a bundle over Triton's HTTP / gRPC endpoints (PyTriton)",
        description="Run a Segmenter behind Triton's HTTP and gRPC endpoints and Prometheus metrics (model "
        f"{MODEL_NAME}; clients: ssp_edge.sdk.remote.RemoteSegmenter). Binds 127.0.0.1 unless --host is "
        f"given; any other address needs --token (or ${TOKEN_ENV}).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("bundle", help="bundle folder (ssp convert export)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (HTTP, gRPC, metrics)")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument(
        "--token",
        default=None,
        help=f"access token clients must send (default: ${TOKEN_ENV}); required when --host is not a loopback address",
    )
    p.add_argument("--instances", type=int, default=4, help="requests handled at once (frames batch across them)")
    p.add_argument("--cache-size", type=int, default=1024, help="prompt encodings kept (shared by all requests)")
    p.add_argument("--log-verbose", type=int, default=0, help="tritonserver log verbosity")
    add_backend_args(p)
    add_native_code_args(p)
    add_bundle_trust_args(p)
    p.set_defaults(func=_serve)


def _stub_library_path() -> None:
    """Put this interpreter's libpython first on LD_LIBRARY_PATH for the python-backend stub PyTriton starts: a
    system libpython of the same minor version found first would mismatch this interpreter's standard library."""
    import sysconfig

    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir and sysconfig.get_config_var("Py_ENABLE_SHARED"):
        old = os.environ.get("LD_LIBRARY_PATH", "")
        if libdir not in old.split(":"):
            os.environ["LD_LIBRARY_PATH"] = f"{libdir}:{old}" if old else libdir


def _serve(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback(args.host) and not token:
        raise SDKError(
            f"--host {args.host} accepts connections from other machines: give clients a secret with "
            f"--token TOKEN (or ${TOKEN_ENV}), or keep the default 127.0.0.1"
        )
    if args.instances < 1:
        raise SDKError(f"--instances must be at least 1, got {args.instances}")
    for name in ("http_port", "grpc_port", "metrics_port"):
        if not 0 < getattr(args, name) < 65536:
            raise SDKError(f"--{name.replace('_', '-')} must be a port number (1-65535)")
    try:
        from pytriton.model_config import ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig
    except ImportError as e:
        raise SDKError(
            f"ssp serve needs PyTriton ({e}): pip install 'ssp-edge[serve]' (it pins numpy<2: use its "
            "own virtual environment)"
        ) from None
    _stub_library_path()
    from .segmenter import Segmenter

    seg = Segmenter.open(args.bundle, cache_size=args.cache_size, **backend_kwargs(args))
    service = SegmentService(seg)
    config = TritonConfig(
        http_address=args.host,
        http_port=args.http_port,
        grpc_address=args.host,
        grpc_port=args.grpc_port,
        metrics_address=args.host,
        metrics_port=args.metrics_port,
        log_verbose=args.log_verbose,
        allow_gpu_metrics=False,
    )
    security = TritonSecurityConfig(access_token=token, restricted_endpoints=RESTRICTED if token else [])
    scheme = "http"
    try:
        with Triton(config=config, security_config=security) as triton:
            triton.bind(
                model_name=MODEL_NAME,
                infer_func=[service.infer] * args.instances,
                inputs=[
                    Tensor(name="image", dtype=np.uint8, shape=(-1, -1, 3)),
                    Tensor(name="prompts", dtype=bytes, shape=(-1,)),
                ],
                outputs=[
                    Tensor(name="mask", dtype=np.uint8, shape=(-1, -1, -1)),
                    Tensor(name="prob", dtype=np.float32, shape=(-1, -1, -1)),
                    Tensor(name="score", dtype=np.float32, shape=(-1,)),
                    Tensor(name="exists", dtype=np.bool_, shape=(-1,)),
                ],
                config=ModelConfig(batching=False),
                strict=True,
            )
            print(
                f"ssp serve: {seg.backend.name} ({', '.join(f'{k} {v}' for k, v in seg.backend.precisions.items())})"
                f" model {MODEL_NAME} at {scheme}://{args.host}:{args.http_port} and grpc://{args.host}:"
                f"{args.grpc_port}, metrics {scheme}://{args.host}:{args.metrics_port}/metrics"
                + (" (token required)" if token else ""),
                file=sys.stderr,
                flush=True,
            )
            triton.serve()  # until SIGINT / SIGTERM
    finally:
        print(
            f"ssp serve: {service.frames} frames in {service.batches} image-encoder batches; prompt cache "
            f"{seg.cache_misses} encoded, {seg.cache_hits} hits",
            file=sys.stderr,
            flush=True,
        )
        service.close()
        seg.close()
    return 0
