"""`ssp serve BUNDLE`: a Segmenter behind Triton's HTTP / gRPC endpoints and metrics, with PyTriton.

The model is ``ssp_segment`` with the same I/O as the one ``ssp convert triton`` writes (``image`` (H, W, 3) uint8
BGR + ``prompts`` (K) strings -> ``mask``, ``prob``, ``score``, ``exists``), so
:class:`ssp_edge.sdk.remote.RemoteSegmenter` talks to either. Server-side: every prompt is encoded once into a
cache shared by all requests; frames that arrive together (several cameras) share one image-encoder batch; each
frame's image is encoded once for all its prompts.

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
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .errors import SDKError

__all__ = ["register", "SegmentService", "is_loopback", "MODEL_NAME", "TOKEN_ENV"]

MODEL_NAME = "ssp_segment"
TOKEN_ENV = "SSP_SERVE_TOKEN"
# everything but health (probes) needs the token when one is set
RESTRICTED = ["inference", "metadata", "model-config", "model-repository", "statistics", "shared-memory", "trace",
              "logging"]


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
    prompts: list[str]
    done: Future = field(default_factory=Future)


class SegmentService:
    """The work behind the endpoint: a shared prompt cache and a batcher that gathers the frames waiting at the same
    moment (up to the bundle's frame batch) into one image-encoder run. Thread-safe ``segment``."""

    def __init__(self, seg: Any, cache_size: int = 1024, batch_wait_ms: float = 2.0):
        from .stages import PromptCache, max_frames

        self.seg = seg
        self.cache = PromptCache(seg, cache_size)
        self.max_batch = max_frames(seg.bundle.manifest)
        self.batch_wait = batch_wait_ms / 1e3
        self.frames = 0
        self.batches = 0
        self._q: queue.Queue[_Job | None] = queue.Queue()
        self._worker = threading.Thread(target=self._loop, name="ssp-serve-batcher", daemon=True)
        self._worker.start()

    def segment(self, frame: np.ndarray, prompts: Sequence[str]) -> list[Any]:
        """Results for one frame (validated here, so one bad request never fails a batch)."""
        from .segmenter import to_bgr8
        from .stages import check_prompts

        job = _Job(to_bgr8(frame), check_prompts(prompts, self.seg.max_prompts))
        self._q.put(job)
        return job.done.result()

    def _loop(self) -> None:
        from .stages import segment_frames

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
            try:
                results = segment_frames(self.seg, self.cache, [j.frame for j in jobs], [j.prompts for j in jobs])
                self.frames += len(jobs)
                self.batches += 1
                for j, r in zip(jobs, results):
                    j.done.set_result(r)
            except Exception as e:  # noqa: BLE001 -- handed to each waiting request as its error
                for j in jobs:
                    j.done.set_exception(e)

    def infer(self, requests: list[Any]) -> list[dict[str, np.ndarray]]:
        """PyTriton callable: each request -> its outputs (errors become that request's error response)."""
        out = []
        for req in requests:
            prompts = [p.decode("utf-8") if isinstance(p, bytes) else str(p) for p in
                       np.asarray(req["prompts"]).reshape(-1)]
            results = self.segment(np.asarray(req["image"]), prompts)
            out.append({"mask": np.stack([r.mask for r in results]),
                        "prob": np.stack([r.prob for r in results]).astype(np.float32),
                        "score": np.asarray([r.score for r in results], np.float32),
                        "exists": np.asarray([r.exists for r in results], np.bool_)})
        return out

    def close(self) -> None:
        self._q.put(None)
        self._worker.join(timeout=10)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="serve a bundle over Triton's HTTP / gRPC endpoints (PyTriton)",
        description="Run a Segmenter behind Triton's HTTP and gRPC endpoints and Prometheus metrics (model "
                    f"{MODEL_NAME}; clients: ssp_edge.sdk.remote.RemoteSegmenter). Binds 127.0.0.1 unless --host is "
                    f"given; any other address needs --token (or ${TOKEN_ENV}).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("bundle", help="bundle folder (ssp convert export)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (HTTP, gRPC, metrics)")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--token", default=None, help=f"access token clients must send (default: ${TOKEN_ENV}); required "
                                                 "when --host is not a loopback address")
    p.add_argument("--instances", type=int, default=4, help="requests handled at once (frames batch across them)")
    p.add_argument("--backend", choices=("auto", "tensorrt", "onnxruntime"), default="auto")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default=None)
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0 = all cores)")
    p.add_argument("--plugins", default=None, metavar="LIB",
                   help="TensorRT plugin library to load (native code: only when you pass it)")
    p.add_argument("--trust-bundle-plugins", action="store_true",
                   help="load the bundle's own listed, hash-checked plugin library")
    p.add_argument("--allow-engine-host-code", action="store_true", help="allow engines with embedded host code")
    p.add_argument("--verify-key", default=None, help="Ed25519 public key (PEM) the bundle's signature must match")
    p.add_argument("--log-verbose", type=int, default=0, help="tritonserver log verbosity")
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


def _open_segmenter(args: argparse.Namespace) -> Any:
    from .segmenter import Segmenter

    kw: dict[str, Any] = {"backend": args.backend, "precision": args.precision, "threads": args.threads,
                          "plugin_lib": args.plugins}
    opt_in = {"trust_bundle_plugins": args.trust_bundle_plugins,
              "allow_engine_host_code": args.allow_engine_host_code, "verify_key": args.verify_key}
    kw.update({k: v for k, v in opt_in.items() if v})  # only what the operator asked for
    try:
        return Segmenter.open(args.bundle, **kw)
    except TypeError:
        raise SDKError(f"this ssp-edge's Segmenter does not take {', '.join(k for k in opt_in if opt_in[k])}; "
                       "update ssp-edge") from None


def _serve(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback(args.host) and not token:
        raise SDKError(f"--host {args.host} accepts connections from other machines: give clients a secret with "
                       f"--token TOKEN (or ${TOKEN_ENV}), or keep the default 127.0.0.1")
    if args.instances < 1:
        raise SDKError(f"--instances must be at least 1, got {args.instances}")
    for name in ("http_port", "grpc_port", "metrics_port"):
        if not 0 < getattr(args, name) < 65536:
            raise SDKError(f"--{name.replace('_', '-')} must be a port number (1-65535)")
    try:
        from pytriton.model_config import ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig
    except ImportError as e:
        raise SDKError(f"ssp serve needs PyTriton ({e}): pip install 'ssp-edge[serve]' (it pins numpy<2: use its "
                       "own virtual environment)") from None
    _stub_library_path()
    seg = _open_segmenter(args)
    service = SegmentService(seg)
    config = TritonConfig(http_address=args.host, http_port=args.http_port, grpc_address=args.host,
                          grpc_port=args.grpc_port, metrics_address=args.host, metrics_port=args.metrics_port,
                          log_verbose=args.log_verbose, allow_gpu_metrics=False)
    security = TritonSecurityConfig(access_token=token, restricted_endpoints=RESTRICTED if token else [])
    scheme = "http"
    try:
        with Triton(config=config, security_config=security) as triton:
            triton.bind(model_name=MODEL_NAME, infer_func=[service.infer] * args.instances,
                        inputs=[Tensor(name="image", dtype=np.uint8, shape=(-1, -1, 3)),
                                Tensor(name="prompts", dtype=bytes, shape=(-1,))],
                        outputs=[Tensor(name="mask", dtype=np.uint8, shape=(-1, -1, -1)),
                                 Tensor(name="prob", dtype=np.float32, shape=(-1, -1, -1)),
                                 Tensor(name="score", dtype=np.float32, shape=(-1,)),
                                 Tensor(name="exists", dtype=np.bool_, shape=(-1,))],
                        config=ModelConfig(batching=False), strict=True)
            print(f"ssp serve: {seg.backend.name} ({', '.join(f'{k} {v}' for k, v in seg.backend.precisions.items())})"
                  f" model {MODEL_NAME} at {scheme}://{args.host}:{args.http_port} and grpc://{args.host}:"
                  f"{args.grpc_port}, metrics {scheme}://{args.host}:{args.metrics_port}/metrics"
                  + (" (token required)" if token else ""), file=sys.stderr, flush=True)
            triton.serve()  # until SIGINT / SIGTERM
    finally:
        c = service.cache
        print(f"ssp serve: {service.frames} frames in {service.batches} image-encoder batches; prompt cache "
              f"{c.misses} encoded, {c.hits} hits", file=sys.stderr, flush=True)
        service.close()
        seg.close()
    return 0
