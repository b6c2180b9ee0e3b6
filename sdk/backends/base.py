"""The backend interface the Segmenter drives, and backend selection (``auto`` | ``tensorrt`` | ``onnxruntime`` |
``openvino``).

A backend runs the bundle's three graphs by name: ``run(graph, feeds) -> {output name: array}``, feeds and
outputs keyed by the manifest's tensor names (never by position) and checked against its tensor specs
(:func:`ssp_edge.sdk.io_spec.check_feeds`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ..bundle import GRAPHS, Bundle, GraphEntry, Manifest
from ..errors import SDKError

__all__ = ["Backend", "open_backend", "graph_entries", "describe_backend", "format_config", "BACKENDS", "PRECISIONS"]

BACKENDS = ("auto", "tensorrt", "onnxruntime", "openvino")
#: graph precisions (fp32 / fp16 / int8 graphs and engines) and bf16, OpenVINO's CPU inference precision
PRECISIONS = ("fp32", "fp16", "int8", "bf16")


class Backend(Protocol):
    """Runs the bundle's three graphs. ``run`` returns the graph's outputs by name; with ``to_host=False`` they
    may stay on the device (opaque handles with ``shape`` and ``dtype`` that another ``run`` accepts as feeds).

    A backend may also have ``entries: dict[str, GraphEntry]``: the graph it runs for each name, whose tensor names
    the Segmenter matches (see :func:`graph_entries`), and ``concurrent_runs: bool``: True when ``run`` may be called
    from several threads at once (ONNX Runtime's sessions); absent means False and the Segmenter serializes runs."""

    name: str
    precisions: dict[str, str]  # graph -> precision actually used

    def run(self, graph: str, feeds: Mapping[str, Any], to_host: bool = True) -> dict[str, Any]: ...

    def close(self) -> None: ...


def graph_entries(backend: Any, manifest: Manifest) -> dict[str, GraphEntry]:
    """graph -> the entry whose inputs / outputs ``backend`` runs: its own ``entries`` when it has them, else the
    manifest's graph at the backend's precision (for engines: the ONNX graph they were built from)."""
    own = getattr(backend, "entries", None)
    if own:
        return dict(own)
    out: dict[str, GraphEntry] = {}
    sources = {e.name: e.source for e in manifest.engines}
    for g in GRAPHS:
        p = backend.precisions.get(g, "fp32")
        cands = [e for e in manifest.graphs if e.name == g and e.precision == p] or [
            e for e in manifest.graphs if e.name == g
        ]
        if not cands:
            raise SDKError(f"the bundle's manifest has no {g} graph; re-export it with `ssp convert export`")
        out[g] = next((e for e in cands if e.file == sources.get(g)), cands[0])
    return out


def describe_backend(backend: Any) -> dict[str, Any]:
    """What a backend runs: ``{"backend", "precision", "precisions", "threads", "options"}`` (its own ``describe()``
    where it has one; TensorRT and the PyTorch reference report name and precisions)."""
    own = getattr(backend, "describe", None)
    d = dict(own()) if callable(own) else {"backend": backend.name, "precisions": dict(backend.precisions)}
    d.setdefault("threads", None)
    d.setdefault("options", {})
    per_frame = [v for g, v in d["precisions"].items() if g != "text_encoder"] or list(d["precisions"].values())
    d["precision"] = "/".join(dict.fromkeys(per_frame)) or "-"
    return d


def format_config(d: dict[str, Any]) -> str:
    """One line for people: ``onnxruntime fp32, 2 threads (text_encoder fp32, ...); options: k=v, ...`` and, where
    the precision was left to the backend, what it chose and why."""
    graphs = ", ".join(f"{g} {p}" for g, p in d["precisions"].items())
    threads = f", {d['threads']} threads" if d.get("threads") else ""
    opts = "; ".join(f"{k}={v}" for k, v in d.get("options", {}).items())
    line = f"{d['backend']} {d['precision']}{threads} ({graphs})" + (f"; options: {opts}" if opts else "")
    return line + (f"; default precision {d['precision_choice']}" if d.get("precision_choice") else "")


def open_backend(
    bundle: Bundle,
    backend: str = "auto",
    precision: str | None = None,
    *,
    providers: Sequence[str] | None = None,
    threads: int = 0,
    plugin_lib: str | None = None,
    trust_bundle_plugins: bool = False,
    allow_engine_host_code: bool = False,
    callers: int = 1,
) -> Backend:
    """``auto`` picks TensorRT when it imports, a GPU is present and the bundle has a matching engine, else ONNX
    Runtime; ``openvino`` (an optional extra) runs the portable graphs on OpenVINO's CPU plugin, also in bf16.
    ``precision`` None: TensorRT's best engines; on ONNX Runtime ``auto`` (:mod:`.precision_choice`: INT8 where the
    manifest's measured accuracy keeps the bound and the CPU has int8 dot products, else FP32); FP32 on OpenVINO.
    ``plugin_lib`` / ``trust_bundle_plugins`` / ``allow_engine_host_code``: native code the TensorRT
    backend may load, only by the caller's explicit choice (see the TensorRT backend). ``threads`` 0: one per
    physical core (ONNX Runtime, OpenVINO; the session options are :func:`.onnxruntime.create_session`'s).
    ``callers``: how many threads will run graphs at once (one per camera worker). ONNX Runtime takes concurrent
    runs, so with ``threads`` 0 each run gets the physical cores / ``callers`` (at least 1): on 2 cores two
    single-threaded runs at once beat one two-threaded run at a time (4 cameras, FP32: 42.4 vs 33.0 frames/s).
    Backends that serialize runs (TensorRT, OpenVINO) ignore it."""
    if backend not in BACKENDS:
        raise SDKError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if precision is not None and precision not in PRECISIONS:
        raise SDKError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise SDKError(f"threads must be a whole number >= 0 (0: one per physical core), got {threads!r}")
    if isinstance(callers, bool) or not isinstance(callers, int) or callers < 1:
        raise SDKError(f"callers must be a whole number >= 1 (threads that run graphs at once), got {callers!r}")
    if backend == "openvino":
        if providers:
            raise SDKError(
                "--providers chooses ONNX Runtime execution providers; the openvino backend runs on "
                "OpenVINO's CPU plugin"
            )
        from .openvino import OpenVINOBackend

        return OpenVINOBackend(bundle, precision or "fp32", threads=threads)
    if precision == "bf16":
        raise SDKError(
            "bf16 is OpenVINO's CPU inference precision: use --backend openvino --precision bf16 "
            "(ONNX Runtime and TensorRT run the bundle's fp32, fp16 or int8 graphs / engines)"
        )
    if backend in ("auto", "tensorrt"):
        from .tensorrt import TensorRTBackend, tensorrt_unavailable

        reason = tensorrt_unavailable(bundle, precision)
        if reason is None:
            # the opt-ins are passed only when set, so a TensorRT backend without them still opens
            opt_in = {
                k: True
                for k, v in (
                    ("trust_bundle_plugins", trust_bundle_plugins),
                    ("allow_engine_host_code", allow_engine_host_code),
                )
                if v
            }
            return TensorRTBackend(bundle, precision, plugin_lib=plugin_lib, **opt_in)
        if backend == "tensorrt":
            raise SDKError(reason)
    from .onnxruntime import OnnxRuntimeBackend, physical_cores

    if threads == 0 and callers > 1:
        threads = max(1, physical_cores() // callers)
    return OnnxRuntimeBackend(bundle, precision or "auto", providers, threads)
