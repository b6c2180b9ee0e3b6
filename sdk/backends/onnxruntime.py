"""ONNX Runtime backend: the portable graphs (standard ops), CPU by default; CUDA / TensorRT execution
providers when the installed onnxruntime has them and they are asked for. INT8 runs the Q/DQ graphs.

:func:`create_session` is the project's one ONNX Runtime session factory: the SDK, the converter's parity check,
calibration and the benchmarks all build their sessions with it, so session options are set in one place.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..bundle import GRAPHS, Bundle, GraphEntry
from ..errors import SDKError
from ..io_spec import check_feeds
from .precision_choice import PrecisionChoice, choose_precision, ort_entries

__all__ = [
    "OnnxRuntimeBackend",
    "create_session",
    "import_onnxruntime",
    "physical_cores",
    "session_options",
    "spinning_entries",
    "OPTIMIZATION_LEVELS",
    "SPINNING_MODES",
]

DEFAULT_PROVIDERS = ("CPUExecutionProvider",)


def import_onnxruntime() -> Any:
    """``import onnxruntime`` or an SDKError naming the extra that installs it."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise SDKError("the onnxruntime backend needs onnxruntime: pip install 'ssp-edge[runtime]'") from None
    return ort


#: graph optimisation levels by name (ONNX Runtime's GraphOptimizationLevel)
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")

#: intra-op spinning by name -> session config entries. ``run``: worker threads spin between the ops of a run (no
#: sleep / wake-up per op) and stop when the run ends (``session.force_spinning_stop``), so the next session's run
#: gets the cores; ``always``: ONNX Runtime's default (they keep spinning after the run); ``off``: they sleep
#: between ops (each op then waits for a wake-up, slow in a virtual machine)
SPINNING_MODES: dict[str, dict[str, str]] = {
    "run": {"session.intra_op.allow_spinning": "1", "session.force_spinning_stop": "1"},
    "always": {"session.intra_op.allow_spinning": "1"},
    "off": {"session.intra_op.allow_spinning": "0"},
}


def spinning_entries(spinning: str | bool) -> dict[str, str]:
    """The session config entries of a spinning mode (:data:`SPINNING_MODES`); a bool (also NumPy's, or 0 / 1) is
    the old on / off switch: True = ``always`` (ONNX Runtime's own default), False = ``off``."""
    mode: object = spinning
    if isinstance(spinning, (bool, int, np.bool_)) and spinning in (0, 1):
        mode = "always" if spinning else "off"
    if not isinstance(mode, str) or mode not in SPINNING_MODES:
        raise SDKError(f"spinning must be one of {', '.join(SPINNING_MODES)} (or a bool), got {spinning!r}")
    return dict(SPINNING_MODES[mode])


def physical_cores() -> int:
    """Physical cores this process may run on (SMT siblings counted once): the CPUs of its affinity mask grouped by
    (package, core) from sysfs, else /proc/cpuinfo; the affinity mask's size when neither says."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    cores: set[tuple[str, str]] = set()
    for c in cpus:
        top = f"/sys/devices/system/cpu/cpu{c}/topology"
        try:
            with open(f"{top}/physical_package_id") as f1, open(f"{top}/core_id") as f2:
                cores.add((f1.read().strip(), f2.read().strip()))
        except OSError:
            cores.clear()
            break
    if not cores:
        try:
            with open("/proc/cpuinfo") as f:
                blocks = f.read().split("\n\n")
        except OSError:
            blocks = []
        for b in blocks:
            kv = dict(line.split(":", 1) for line in b.splitlines() if ":" in line)
            kv = {k.strip(): v.strip() for k, v in kv.items()}
            if "processor" in kv and "core id" in kv and int(kv["processor"]) in cpus:
                cores.add((kv.get("physical id", "0"), kv["core id"]))
    return max(1, len(cores) or len(cpus))


def session_options(
    *,
    threads: int = 0,
    spinning: str | bool = "run",
    graph_optimization: str = "all",
    mem_arena: bool = True,
    config_entries: Mapping[str, str] | None = None,
    log_severity: int = 3,
) -> dict[str, Any]:
    """The effective session options as a plain dict (what :func:`create_session` sets and ``ssp run`` prints):
    ``threads`` 0 resolves to :func:`physical_cores`."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise SDKError(f"threads must be a whole number >= 0 (0: one per physical core), got {threads!r}")
    if graph_optimization not in OPTIMIZATION_LEVELS:
        raise SDKError(
            f"graph_optimization must be one of {', '.join(OPTIMIZATION_LEVELS)}, got {graph_optimization!r}"
        )
    entries = spinning_entries(spinning)
    entries.update({str(k): str(v) for k, v in (config_entries or {}).items()})
    return {
        "intra_op_threads": threads or physical_cores(),
        "graph_optimization": graph_optimization,
        "mem_arena": bool(mem_arena),
        "config_entries": entries,
        "log_severity": int(log_severity),
    }


def create_session(
    model: bytes | str | os.PathLike[str],
    *,
    threads: int = 0,
    providers: Sequence[str] | None = None,
    custom_op_libraries: Sequence[str] = (),
    log_severity: int = 3,
    spinning: str | bool = "run",
    graph_optimization: str = "all",
    mem_arena: bool = True,
    config_entries: Mapping[str, str] | None = None,
    profile_prefix: str | None = None,
) -> Any:
    """An ``onnxruntime.InferenceSession`` for a model (its bytes, e.g. from :meth:`Bundle.read_bytes`, or a path).

    Defaults are the fastest measured on CPU (benchmarks/README.md, "Session options"): ``threads`` intra-op threads
    (0: one per physical core of this process); ``spinning`` ``run`` (:data:`SPINNING_MODES`: workers spin between
    the ops of a run and stop at its end, so the Segmenter's three sessions do not steal the cores from each other
    and no op waits for a sleeping worker); ``graph_optimization`` ``all`` (disable | basic | extended | all);
    ``mem_arena`` on;
    ``config_entries``: further session config entries (they override the above); ``providers``: execution
    providers (default CPU; ones this onnxruntime build lacks are refused); ``custom_op_libraries``: shared
    libraries with custom-op kernels to register first; ``log_severity``: 3 = errors only; ``profile_prefix``:
    turn on ONNX Runtime's profiler, writing ``PREFIX_*.json`` (``session.end_profiling()`` returns the path)."""
    ort = import_onnxruntime()
    available = ort.get_available_providers()
    chosen = list(providers or DEFAULT_PROVIDERS)
    missing = [p for p in chosen if p not in available]
    if missing:
        raise SDKError(
            f"ONNX Runtime providers {missing} are not in this onnxruntime build (has: "
            f"{', '.join(available)}); install onnxruntime-gpu for CUDA / TensorRT providers"
        )
    opts = session_options(
        threads=threads,
        spinning=spinning,
        graph_optimization=graph_optimization,
        mem_arena=mem_arena,
        config_entries=config_entries,
        log_severity=log_severity,
    )
    so = ort.SessionOptions()
    so.log_severity_level = opts["log_severity"]
    so.intra_op_num_threads = opts["intra_op_threads"]
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[opts["graph_optimization"]]
    so.enable_cpu_mem_arena = opts["mem_arena"]
    for k, v in opts["config_entries"].items():
        so.add_session_config_entry(k, v)
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = str(profile_prefix)
    for lib in custom_op_libraries:
        so.register_custom_ops_library(str(lib))
    source = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(source, so, providers=chosen)


class OnnxRuntimeBackend:
    """The bundle's graphs of one flavour on ONNX Runtime; ``run`` takes and returns tensors by the manifest's names."""

    name = "onnxruntime"
    #: InferenceSession.run is thread-safe: several camera workers may run graphs at once (sdk/multi.py)
    concurrent_runs = True

    def __init__(
        self,
        bundle: Bundle,
        precision: str = "fp32",
        providers: Sequence[str] | None = None,
        threads: int = 0,
        *,
        flavour: str = "portable",
        custom_op_libraries: Sequence[str] = (),
        session: Mapping[str, Any] | None = None,
    ):
        """Graphs of ``flavour`` at ``precision`` (a graph without a reduced-precision version, e.g. the text
        encoder, runs in FP32); ``auto``: the fastest precision that keeps the accuracy bound on these providers and
        this CPU (:func:`.precision_choice.choose_precision`; :attr:`choice` says which and why); the plugin flavour
        needs ``custom_op_libraries`` with the ``ssp::`` kernels; ``session``: further :func:`create_session`
        options (``spinning``, ``graph_optimization``, ``mem_arena``, ``config_entries``) for all three sessions."""
        choice = None
        if precision == "auto":
            choice = (
                choose_precision(bundle, providers)
                if flavour == "portable"
                else PrecisionChoice("fp32", "fp32: the plugin flavour's INT8 graphs are TensorRT's plan")
            )
            precision = choice.precision
        if precision != "fp32" and not any(bundle.has_graph(g, flavour, precision) for g in GRAPHS):
            bundle.graph("image_encoder", flavour, precision)  # raises: names what exists and the fix
        entries = ort_entries(bundle, precision, flavour)
        self._open(
            {g: (e, bundle.read_bytes(e.file)) for g, e in entries.items()},
            bundle.manifest.dynamic_axes,
            providers,
            threads,
            custom_op_libraries,
            None,
            session,
        )
        self.choice = choice

    @classmethod
    def from_graphs(
        cls,
        graphs: Mapping[str, tuple[GraphEntry, bytes | str | os.PathLike[str]]],
        dynamic_axes: Mapping[str, Sequence[int]],
        *,
        providers: Sequence[str] | None = None,
        threads: int = 0,
        custom_op_libraries: Sequence[str] = (),
        precisions: Mapping[str, str] | None = None,
        session: Mapping[str, Any] | None = None,
    ) -> OnnxRuntimeBackend:
        """A backend over explicit models (graph -> (entry naming its tensors, model bytes or path)), e.g. graphs
        that are not (yet) entries of a bundle; ``precisions`` labels them (default: the entries' precision)."""
        self = cls.__new__(cls)
        self._open(graphs, dynamic_axes, providers, threads, custom_op_libraries, precisions, session)
        return self

    def _open(
        self,
        graphs: Mapping[str, tuple[GraphEntry, Any]],
        dynamic_axes: Mapping[str, Sequence[int]],
        providers: Sequence[str] | None,
        threads: int,
        custom_op_libraries: Sequence[str],
        precisions: Mapping[str, str] | None,
        session: Mapping[str, Any] | None = None,
    ) -> None:
        self.choice: PrecisionChoice | None = None  # how precision "auto" was resolved (set by __init__)
        self.entries: dict[str, GraphEntry] = {g: e for g, (e, _) in graphs.items()}
        self.dynamic_axes = {k: list(v) for k, v in dynamic_axes.items()}
        self.precisions: dict[str, str] = {g: e.precision for g, e in self.entries.items()}
        self.precisions.update(precisions or {})
        self.providers = list(providers or DEFAULT_PROVIDERS)
        self._outputs = {g: [t.name for t in e.outputs] for g, e in self.entries.items()}
        extra = dict(session or {})
        unknown = sorted(set(extra) - {"spinning", "graph_optimization", "mem_arena", "config_entries"})
        if unknown:
            raise SDKError(
                f"unknown ONNX Runtime session option(s) {unknown}; known: spinning, graph_optimization, "
                "mem_arena, config_entries"
            )
        opts = session_options(threads=threads, **extra)
        self.options = {
            "threads": opts["intra_op_threads"],
            "providers": self.providers,
            "graph_optimization": opts["graph_optimization"],
            "mem_arena": opts["mem_arena"],
            **opts["config_entries"],
        }
        self._sessions = {
            g: create_session(
                src, threads=threads, providers=self.providers, custom_op_libraries=custom_op_libraries, **extra
            )
            for g, (_, src) in graphs.items()
        }

    def run(self, graph: str, feeds: Mapping[str, Any], to_host: bool = True) -> dict[str, Any]:
        """Outputs of ``graph`` by name (always host arrays: ONNX Runtime's outputs here are numpy)."""
        if graph not in self._sessions:
            raise SDKError(f"no graph {graph!r} in this backend (has: {', '.join(self._sessions)})")
        check_feeds(self.entries[graph], feeds, self.dynamic_axes)
        names = self._outputs[graph]
        return dict(zip(names, self._sessions[graph].run(names, dict(feeds))))

    def describe(self) -> dict[str, Any]:
        """What runs: backend, precision per graph, threads and session options (``ssp run`` prints this)."""
        return {
            "backend": self.name,
            "precisions": dict(self.precisions),
            "threads": self.options["threads"],
            "options": {k: v for k, v in self.options.items() if k != "threads"},
            **({"precision_choice": self.choice.reason} if self.choice else {}),
        }

    def close(self) -> None:
        self._sessions.clear()
