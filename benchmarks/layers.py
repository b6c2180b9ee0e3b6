"""``ssp bench --layers``: time per op type and per node of the per-frame graphs (image encoder; mask decoder at
1 and 8 prompts), from each runtime's own profiler, on the same feeds the Segmenter builds:

* ONNX Runtime: its profiler (``enable_profiling``; :func:`.ort_profile.profile_graph`, sessions from the SDK's one
  session factory with its default options);
* OpenVINO: ``PERF_COUNT`` (per-node real time of the compiled CPU graph; node types are OpenVINO's, after its
  fusions);
* TensorRT: an ``IProfiler`` on each engine's execution context (per-layer times, CUDA graphs off while profiling),
  layer types from the engine inspector; or, for engines profiled on the target with
  ``trtexec --dumpProfile --exportProfile=P.json --exportLayerInfo=L.json --profilingVerbosity=detailed``,
  :func:`parse_trtexec` reads those two files.

Everything becomes an :class:`~.ort_profile.OpProfile` (node -> ms per run, node -> op type), written as
``layers.json``, ``layers.md`` and ``bench_layers.png``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ssp_edge.sdk.fsio import atomic_write_bytes, atomic_write_text

from .ort_profile import OpProfile, profile_graph, session_options

__all__ = ["graph_feeds", "ort_layers", "openvino_layers", "tensorrt_layers", "parse_trtexec", "write_layers"]


def graph_feeds(
    seg: Any, frame: np.ndarray, prompts: Sequence[str], prompt_counts: Sequence[int] = (1, 8)
) -> dict[str, tuple[str, dict[str, np.ndarray]]]:
    """label -> (graph, feeds by name): the image encoder on ``frame`` and the mask decoder at each prompt count,
    built by the Segmenter's own stages (host arrays)."""
    image, _ = seg.image_feeds(frame)
    feats = seg.encode_image(frame)
    host = type(feats)({k: np.asarray(v) for k, v in feats.tensors.items()}, feats.letterboxes)
    out = {"image_encoder": ("image_encoder", image)}
    for k in prompt_counts:
        ps = list(prompts)[:k]
        while len(ps) < k:
            ps.append(prompts[len(ps) % len(prompts)] + f" ({len(ps)})")
        feeds = seg.decoder_feeds(host, seg.encode_prompts(ps))
        out[f"mask_decoder ({k} prompt{'s' if k > 1 else ''})"] = (
            "mask_decoder",
            {n: np.asarray(v) for n, v in feeds.items()},
        )
    return out


def ort_layers(
    bundle: Any,
    precision: str,
    feeds: Mapping[str, tuple[str, Mapping[str, np.ndarray]]],
    runs: int = 10,
    warmup: int = 3,
    threads: int = 0,
    flavour: str = "portable",
) -> dict[str, OpProfile]:
    """ONNX Runtime profiles of each labelled graph run (the bundle's graph at ``precision``, fp32 where it has
    none), with the SDK's default session options."""
    out = {}
    for label, (graph, f) in feeds.items():
        p = precision if bundle.has_graph(graph, flavour, precision) else "fp32"
        model = bundle.read_bytes(bundle.graph(graph, flavour, p).file)
        out[label] = profile_graph(model, f, runs=runs, warmup=warmup, options=session_options(threads))
    return out


def openvino_layers(
    bundle: Any,
    precision: str,
    feeds: Mapping[str, tuple[str, Mapping[str, np.ndarray]]],
    runs: int = 10,
    warmup: int = 3,
    threads: int = 0,
) -> dict[str, OpProfile]:
    """OpenVINO ``PERF_COUNT`` profiles (per executed node of the compiled graph, real time) of each labelled run."""
    from ssp_edge.sdk.backends.openvino import OpenVINOBackend

    be = OpenVINOBackend(bundle, precision, threads=threads, config={"PERF_COUNT": True})
    try:
        out = {}
        for label, (graph, f) in feeds.items():
            prof = OpProfile(runs)
            for i in range(warmup + runs):
                be.run(graph, f)
                if i < warmup:
                    continue
                for info in be.profiling_info(graph):
                    if str(info.status).split(".")[-1] != "EXECUTED":
                        continue
                    ms = info.real_time.total_seconds() * 1e3
                    prof.node_ms[info.node_name] = prof.node_ms.get(info.node_name, 0.0) + ms / runs
                    prof.node_type[info.node_name] = str(info.node_type)
                    prof.provider[info.node_name] = str(info.exec_type)
            out[label] = prof
        return out
    finally:
        be.close()


def _trt_layer_types(engine: Any) -> dict[str, str]:
    """Layer name -> type from the engine inspector (types need engines built with detailed profiling verbosity)."""
    import tensorrt as trt

    try:
        info = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
    except Exception:  # an engine without inspector information: names only
        return {}
    out = {}
    for layer in info.get("Layers", []):
        if isinstance(layer, dict):
            out[str(layer.get("Name", ""))] = str(layer.get("LayerType", "?"))
        else:
            out[str(layer)] = "?"
    return out


def tensorrt_layers(
    backend: Any, feeds: Mapping[str, tuple[str, Mapping[str, np.ndarray]]], runs: int = 10, warmup: int = 3
) -> dict[str, OpProfile]:
    """Per-layer times of the TensorRT backend's engines through an ``IProfiler`` on each execution context (the
    backend's engine runners; CUDA graphs are off while profiling, as TensorRT requires)."""
    import tensorrt as trt

    class _Collector(trt.IProfiler):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.ms: dict[str, float] = {}
            self.record = False

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            if self.record:
                self.ms[layer_name] = self.ms.get(layer_name, 0.0) + float(ms)

    runners = getattr(backend, "_runners", {})
    out = {}
    for label, (graph, f) in feeds.items():
        runner = runners.get(graph)
        if runner is None:
            continue
        collector = _Collector()
        old_profiler, old_graph = getattr(runner.context, "profiler", None), runner.use_graph
        runner.context.profiler, runner.use_graph = collector, False
        try:
            for i in range(warmup + runs):
                collector.record = i >= warmup
                backend.run(graph, f)
        finally:
            runner.context.profiler, runner.use_graph = old_profiler, old_graph
        types = _trt_layer_types(runner.engine)
        prof = OpProfile(runs)
        for name, ms in collector.ms.items():
            prof.node_ms[name] = ms / runs
            prof.node_type[name] = types.get(name, "?")
            prof.provider[name] = "TensorRT"
        out[label] = prof
    return out


def parse_trtexec(profile: str | Path, layer_info: str | Path | None = None) -> OpProfile:
    """``trtexec --exportProfile`` JSON (``[{"count": N}, {"name", "averageMs", ...}, ...]``) and, optionally,
    ``--exportLayerInfo`` JSON (``{"Layers": [{"Name", "LayerType"}, ...]}`` with ``--profilingVerbosity=detailed``)
    -> an :class:`OpProfile` (ms per run and op type per layer)."""
    rows = json.loads(Path(profile).read_text())
    count = next((int(r["count"]) for r in rows if isinstance(r, dict) and "count" in r), 1)
    types: dict[str, str] = {}
    if layer_info is not None:
        for layer in json.loads(Path(layer_info).read_text()).get("Layers", []):
            if isinstance(layer, dict):
                types[str(layer.get("Name", ""))] = str(layer.get("LayerType", "?"))
    prof = OpProfile(count)
    for r in rows:
        if not isinstance(r, dict) or "name" not in r:
            continue
        ms = r.get("averageMs")
        if ms is None:
            ms = float(r.get("timeMs", 0.0)) / max(1, count)
        prof.node_ms[str(r["name"])] = float(ms)
        prof.node_type[str(r["name"])] = types.get(str(r["name"]), "?")
        prof.provider[str(r["name"])] = "TensorRT"
    return prof


def write_layers(
    layers: Mapping[str, Mapping[str, OpProfile]], out_dir: str | Path, top: int = 12, nodes: int = 10
) -> dict[str, str]:
    """``layers.json`` (every node), ``layers.md`` (top op types and nodes per backend and graph) and, with
    matplotlib, ``bench_layers.png`` (op-type bars). ``layers``: "backend precision" -> label -> profile."""
    out_dir = Path(out_dir)
    data = {row: {label: p.to_dict() for label, p in graphs.items()} for row, graphs in layers.items()}
    atomic_write_text(out_dir / "layers.json", json.dumps(data, indent=1) + "\n")
    lines = [
        "# Per-op profile",
        "",
        "Kernel time per run from each runtime's profiler (ONNX Runtime: its profiler; "
        "OpenVINO: PERF_COUNT, node types after its fusions; TensorRT: IProfiler per layer).",
        "",
    ]
    for row, graphs in layers.items():
        for label, p in graphs.items():
            lines += [f"## {row}: {label}", "", p.table(top=top, nodes=nodes), ""]
    atomic_write_text(out_dir / "layers.md", "\n".join(lines) + "\n")
    files = {"json": str(out_dir / "layers.json"), "md": str(out_dir / "layers.md")}
    try:
        import matplotlib
    except ImportError:
        return files
    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    panels = [(row, label, p) for row, graphs in layers.items() for label, p in graphs.items()]
    if not panels:
        return files
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.2 + 0.28 * top * len(panels) / 2), squeeze=False)
    for ax, (row, label, p) in zip(axes[:, 0], panels):
        rows = p.by_type()[:8][::-1]
        ax.barh([r.op_type for r in rows], [r.ms for r in rows])
        ax.set_title(f"{row}: {label} ({p.total_ms:.1f} ms kernel time)", fontsize=9)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("ms per run")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(out_dir / "bench_layers.png", buf.getvalue())
    files["png"] = str(out_dir / "bench_layers.png")
    return files
