"""The benchmark run: every available backend and precision measured in one process on the same frame and prompts,
in interleaved rounds so the ratios are fair on a shared machine.

Method. All rows (backend x precision) are opened first. Then each round runs every (row, prompt count) cell once,
in a new random order, on the same frame; the first ``warmup`` rounds are left out and every statistic is a median
over rounds. A neighbour's burst, a clock change or a thermal phase therefore lands on every row alike instead of
on whichever row happened to be measured at the time (:func:`interleave`; ``tests/benchmarks`` checks this with a
fake backend whose speed changes during the run). A short pause after each call lets a runtime's spinning worker
threads (PyTorch's OpenMP, OpenVINO's TBB) go idle, so no row pays for another's spin.

Missing pieces become rows that say why ("not built", "not available: ...", "not installed") instead of failing the
run, so a runtime-only install (no PyTorch, no matplotlib) benchmarks what it has.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ssp_edge.sdk.backends.base import describe_backend, open_backend
from ssp_edge.sdk.backends.precision_choice import choose_precision
from ssp_edge.sdk.bundle import Bundle
from ssp_edge.sdk.errors import SDKError
from ssp_edge.sdk.fsio import atomic_write_text
from ssp_edge.sdk.segmenter import Segmenter, open_bundle

from .devices import JETSON_CALIBRATION, UTILIZATION, cpu_peak, jetson_estimates, sgemm_gflops

__all__ = ["BenchSettings", "BackendRow", "Row", "interleave", "run_bench", "TARGETS"]

#: issue 17's targets on this machine, checked in bench.json ("targets")
TARGETS = {
    "ort_fp32_over_pytorch": ("<=", 0.5),
    "fps_1_prompt": (">=", 25.0),
    "fps_2_prompts": (">=", 15.0),
    "prompts_8_over_1": ("<=", 2.5),
    "cpu_peak_share": (">=", 0.35),
    "ort_int8_over_ort_fp32": ("<=", 0.6),
    "best_fps_2_prompts": (">=", 20.0),
}


@dataclass
class BenchSettings:
    warmup: int = 5  # rounds left out
    iters: int = 30  # measured rounds
    prompt_counts: tuple[int, ...] = (1, 2, 4, 8)
    threads: int = 0  # 0: one per physical core, for every backend (PyTorch included)
    providers: list[str] | None = None  # ONNX Runtime execution providers (default CPU)
    plugin_lib: str | None = None  # TensorRT: native code only by the caller's choice (see sdk.options)
    trust_bundle_plugins: bool = False
    allow_engine_host_code: bool = False
    only: tuple[str, ...] = ()  # rows to run ("onnxruntime fp32", "pytorch", "openvino"...); empty: all
    layers: bool = False  # per-op profiles (ssp bench --layers)
    layer_prompts: tuple[int, ...] = (1, 8)
    layer_runs: int = 10
    settle_s: float = 0.002  # pause after each call (spinning pools go idle)
    seed: int = 0
    sgemm: bool = True  # measure a float32 GEMM as a check on the peak formula

    @classmethod
    def quick(cls) -> BenchSettings:
        return cls(warmup=2, iters=6, layer_runs=3)


@dataclass
class BackendRow:
    backend: str
    precision: str
    status: str  # "ok" | "not built" | "not available" | "not installed"
    reason: str = ""
    stages: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> {median_ms, p90_ms}, 1 prompt
    fps: float = 0.0
    peak_rss_mb: float = 0.0  # VmHWM after opening it and one frame at the most prompts (process-wide)
    added_rss_mb: float = 0.0  # what opening it and that frame added to the process's peak
    gflops_per_s: float = 0.0  # image encoder + decoder FLOPs / their median time (1 prompt)
    config: dict[str, Any] = field(default_factory=dict)  # backend, precision, threads, options


@dataclass
class Row:
    """One opened row: its segmenter and what it runs."""

    name: str
    precision: str
    seg: Any
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.name} {self.precision}"


def _rss_mb(field_name: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def _reset_peak_rss() -> None:
    try:  # Linux: writing 5 resets VmHWM, so each backend's peak is its own
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _stats(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, np.float64)
    return {"median_ms": round(float(np.median(a)), 2), "p90_ms": round(float(np.percentile(a, 90)), 2)}


Runner = Callable[[int], Mapping[str, float]]


def interleave(
    runners: Mapping[str, Runner],
    counts: Sequence[int],
    rounds: int,
    warmup: int = 0,
    seed: int = 0,
    settle_s: float = 0.0,
    clock: Callable[[], float] = time.perf_counter,
    progress: Any = None,
) -> dict[str, dict[int, dict[str, list[float]]]]:
    """Time every (runner, prompt count) cell once per round, in a new random order each round; the first
    ``warmup`` rounds are left out. A runner takes the prompt count and returns its per-stage ms (may be empty);
    ``total`` is the wall time of the call. Returns runner -> count -> stage -> ms per measured round."""
    cells = [(name, k) for name in runners for k in counts]
    rng = random.Random(seed)
    out: dict[str, dict[int, dict[str, list[float]]]] = {n: {k: {} for k in counts} for n in runners}
    for r in range(warmup + rounds):
        rng.shuffle(cells)
        for name, k in cells:
            t0 = clock()
            stages = runners[name](k)
            total = (clock() - t0) * 1e3
            if settle_s:
                time.sleep(settle_s)
            if r < warmup:
                continue
            cell = out[name][k]
            for s, v in {**dict(stages), "total": total}.items():
                cell.setdefault(s, []).append(float(v))
        if progress is not None:
            progress.update(1)
    return out


#: prompts of the synthetic frame used when RefShapes' background photos (scikit-image / scikit-learn) are missing
_SYNTHETIC_PROMPTS = [
    "the red circle",
    "the blue square",
    "the green triangle",
    "the yellow circle",
    "the square left of the circle",
    "the biggest shape",
    "the circle on the right",
    "the shape at the top",
]


def _has(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def _frame_and_prompts() -> tuple[np.ndarray, list[str], str]:
    """A BGR frame, 8 prompts and where they come from: a RefShapes test scene, or (a runtime-only install has no
    RefShapes backgrounds) a drawn frame of coloured shapes; latency does not depend on the content."""
    import cv2

    if _has("skimage", "sklearn"):
        from ssp_edge.ssp.data.refshapes import RefShapes

        group = RefShapes("test").scene_samples(0, 8)
        while len(group) < 8:
            group = group + group
        return cv2.cvtColor(group[0].image, cv2.COLOR_RGB2BGR), [g.expression for g in group][:8], "refshapes:test[0]"
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (320, 320, 3), dtype=np.uint8), (0, 0), 6)
    cv2.circle(frame, (90, 100), 40, (0, 0, 230), -1)
    cv2.rectangle(frame, (180, 60), (260, 140), (230, 60, 0), -1)
    cv2.fillPoly(frame, [np.array([[80, 280], [160, 280], [120, 200]], np.int32)], (0, 200, 0))
    cv2.circle(frame, (240, 240), 30, (0, 220, 230), -1)
    return frame, list(_SYNTHETIC_PROMPTS), "synthetic (RefShapes needs scikit-image and scikit-learn)"


Factory = Callable[[], Any]


def _torch_factory(bundle: Bundle, threads: int, frame: np.ndarray, prompts: list[str], measured: int = 6) -> Factory:
    """PyTorch eager at its best: torch.inference_mode (the backend's), the same threads as the others, and
    channels_last only where it measures faster on this machine (checked in a few interleaved rounds)."""

    def make() -> Any:
        import torch

        from ssp_edge.ssp.torch_backend import TorchBackend

        be = TorchBackend.from_bundle(bundle, threads)
        seg = Segmenter(bundle, be)
        times: dict[str, list[float]] = {"contiguous": [], "channels_last": []}
        for r in range(2 + measured):
            for fmt in ("contiguous", "channels_last") if r % 2 else ("channels_last", "contiguous"):
                be.model.to(memory_format=torch.channels_last if fmt == "channels_last" else torch.contiguous_format)
                t0 = time.perf_counter()
                seg.segment(frame, prompts[:2])
                if r >= 2:
                    times[fmt].append((time.perf_counter() - t0) * 1e3)
        med = {k: float(np.median(v)) for k, v in times.items()}
        best = min(med, key=med.get)  # type: ignore[arg-type]
        be.model.to(memory_format=torch.channels_last if best == "channels_last" else torch.contiguous_format)
        be.memory_format = best
        be.memory_format_ms = {k: round(v, 2) for k, v in med.items()}
        return be

    return make


def _candidates(
    bundle: Bundle, s: BenchSettings, frame: np.ndarray, prompts: list[str]
) -> list[tuple[str, str, Factory | None, str, str]]:
    """(backend, precision, factory or None, row status when None, reason)."""
    from ssp_edge.sdk.backends.tensorrt import tensorrt_unavailable

    out: list[tuple[str, str, Factory | None, str, str]] = []
    if _has("torch"):
        out.append(
            ("pytorch", "fp32", _torch_factory(bundle, s.threads, frame, prompts, max(2, min(6, s.iters // 5))), "", "")
        )
    else:
        out.append(
            ("pytorch", "fp32", None, "not installed", "PyTorch is not installed: pip install 'ssp-edge[model]'")
        )
    for p in ("fp32", "fp16", "int8"):
        if p == "fp32" or bundle.has_graph("image_encoder", "portable", p):
            out.append(
                (
                    "onnxruntime",
                    p,
                    lambda p=p: open_backend(bundle, "onnxruntime", p, threads=s.threads, providers=s.providers),
                    "",
                    "",
                )
            )
        else:
            out.append(("onnxruntime", p, None, "not built", f"not built (run `ssp calibrate {bundle.root}`)"))
    if _has("openvino"):
        import openvino as ov

        caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        for p in ("fp32", "bf16", "int8"):
            if p == "bf16" and "BF16" not in caps:
                out.append(("openvino", p, None, "not available", "not available: this CPU has no bf16 in OpenVINO"))
            elif p == "int8" and not bundle.has_graph("image_encoder", "portable", p):
                out.append(("openvino", p, None, "not built", f"not built (run `ssp calibrate {bundle.root}`)"))
            else:
                out.append(("openvino", p, lambda p=p: open_backend(bundle, "openvino", p, threads=s.threads), "", ""))
    else:
        out.append(
            ("openvino", "fp32", None, "not installed", "OpenVINO is not installed: pip install 'ssp-edge[openvino]'")
        )
    native = dict(
        plugin_lib=s.plugin_lib,
        trust_bundle_plugins=s.trust_bundle_plugins,
        allow_engine_host_code=s.allow_engine_host_code,
    )
    for p in ("fp16", "int8"):
        why = tensorrt_unavailable(bundle, p)
        if why is None:
            out.append(("tensorrt", p, lambda p=p: open_backend(bundle, "tensorrt", p, **native), "", ""))
        else:
            out.append(("tensorrt", p, None, "not available", f"not available: {why}"))
    if s.only:
        out = [c for c in out if c[0] in s.only or f"{c[0]} {c[1]}" in s.only]
    return out


def _flops(bundle: Bundle) -> dict[str, Any] | None:
    """Parameters and FLOPs per module (of the bundle's config, its bilinear variant, ssp_lite, ssp_paper), counted
    on the PyTorch model; None without PyTorch."""
    if not _has("torch"):
        return None
    import torch

    from ssp_edge.ssp.config import config_from_json, get_config
    from ssp_edge.ssp.flops import model_cost
    from ssp_edge.ssp.models.ssp import build_model

    base = config_from_json(json.dumps(bundle.manifest.config)).replace(pretrained=False)
    out: dict[str, Any] = {}
    # RUS vs bilinear per block at equal width: the bundle's config with each decoder (bundle_rus only when the
    # bundle's own decoder is bilinear)
    variants = [("bundle", base), ("bundle_bilinear", base.replace(decoder="bilinear"))]
    if base.decoder != "rus":
        variants.append(("bundle_rus", base.replace(decoder="rus")))
    for key, cfg in (
        *variants,
        ("ssp_lite", get_config("ssp_lite", pretrained=False)),
        ("ssp_paper", get_config("ssp_paper")),
    ):
        torch.manual_seed(0)
        out[key] = asdict(model_cost(build_model(cfg), cfg))
    return out


def _open_rows(
    bundle: Bundle, candidates: list, frame: np.ndarray, prompts: list[str], s: BenchSettings
) -> tuple[list[Row], list[BackendRow]]:
    """Open every available row (one Segmenter each) and run one frame at the most prompts, recording memory."""
    opened: list[Row] = []
    rows: list[BackendRow] = []
    for name, precision, factory, status, reason in candidates:
        if factory is None:
            rows.append(BackendRow(name, precision, status, reason))
            continue
        before = _rss_mb("VmRSS")
        _reset_peak_rss()
        try:
            backend = factory()
        except SDKError as e:
            rows.append(BackendRow(name, precision, "not available", str(e)))
            continue
        seg = Segmenter(bundle, backend)
        seg.segment(frame, prompts[: max(s.prompt_counts)])
        config = describe_backend(backend)
        if name == "pytorch":
            config["options"] = {
                "inference_mode": True,
                "memory_format": getattr(backend, "memory_format", ""),
                "memory_format_ms (2 prompts)": getattr(backend, "memory_format_ms", {}),
            }
            import torch

            config["threads"] = torch.get_num_threads()
        peak = _rss_mb("VmHWM")
        rows.append(
            BackendRow(
                name,
                precision,
                "ok",
                peak_rss_mb=round(peak, 1),
                added_rss_mb=round(max(0.0, peak - before), 1),
                config=config,
            )
        )
        opened.append(Row(name, precision, seg, config))
    return opened, rows


def _check(value: float | None, op: str, target: float) -> dict[str, Any]:
    met = None if value is None else (value <= target if op == "<=" else value >= target)
    return {"value": value, "target": f"{op} {target}", "met": met}


def run_bench(
    path: str | Path, settings: BenchSettings, out_dir: str | Path, progress: bool = True, verify_key: Any = None
) -> dict[str, Any]:
    """Measure everything, write ``bench.json``, ``bench.md`` and PNG plots (with matplotlib) into ``out_dir``
    (and ``layers.{json,md}`` + ``bench_layers.png`` with ``settings.layers``)."""
    from .report import write_markdown, write_plots

    s = settings
    load_start = os.getloadavg()
    bundle = open_bundle(path, verify_key)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame, prompts, frame_source = _frame_and_prompts()
    flops = _flops(bundle)
    graphs = None if flops is None else flops["bundle"]["graphs"]
    frame_gflops = (
        None if graphs is None else (graphs["image_encoder"]["flops"] + graphs["mask_decoder"]["flops"]) / 1e9
    )
    opened, rows = _open_rows(bundle, _candidates(bundle, s, frame, prompts), frame, prompts, s)

    # the timed rounds: every (row, prompt count) once per round, plus the ORT FP32 row with its text cache cleared
    runners: dict[str, Runner] = {}
    for r in opened:
        runners[r.key] = (lambda seg: lambda k: seg.segment(frame, prompts[:k])[0].times_ms)(r.seg)
    ref = next((r for r in opened if r.key == "onnxruntime fp32"), opened[0] if opened else None)
    uncached_key = None
    if ref is not None:
        fresh = Segmenter(bundle, ref.seg.backend)  # its own prompt cache, cleared before every call

        def uncached(k: int) -> Mapping[str, float]:
            fresh.clear_cache()
            return fresh.segment(frame, prompts[:1])[0].times_ms

        uncached_key = f"{ref.key} (text not cached)"
        runners[uncached_key] = uncached
    counts = {k: list(s.prompt_counts) for k in runners}
    if uncached_key:
        counts[uncached_key] = [1]
    bar = tqdm(total=s.warmup + s.iters, desc="bench rounds", unit="round", disable=not progress)
    measured = _interleave_cells(runners, counts, s, bar)
    bar.close()

    by_key = {r.key: r for r in opened}
    for row in rows:
        key = f"{row.backend} {row.precision}"
        if row.status != "ok" or key not in measured:
            continue
        one = measured[key][min(s.prompt_counts)]
        row.stages = {k: _stats(v) for k, v in one.items()}
        row.fps = round(1e3 / row.stages["total"]["median_ms"], 2)
        if frame_gflops is not None and "image_encoder" in row.stages:
            compute_ms = row.stages["image_encoder"]["median_ms"] + row.stages["mask_decoder"]["median_ms"]
            row.gflops_per_s = round(frame_gflops / (compute_ms / 1e3), 2) if compute_ms > 0 else 0.0
    peak = cpu_peak(cores=s.threads or None)
    throughput: dict[str, list[dict[str, float]]] = {}
    for key in by_key:
        sweep = []
        for k in s.prompt_counts:
            t = float(np.median(measured[key][k]["total"]))
            cell: dict[str, float] = {
                "prompts": k,
                "frame_ms": round(t, 2),
                "frames_per_s": round(1e3 / t, 2),
                "masks_per_s": round(k * 1e3 / t, 2),
            }
            if graphs is not None:
                g = (graphs["image_encoder"]["flops"] + k * graphs["mask_decoder"]["flops"]) / 1e9
                comp = float(np.median(measured[key][k]["image_encoder"])) + float(
                    np.median(measured[key][k]["mask_decoder"])
                )
                cell["gflops"] = round(g, 3)
                cell["gflops_per_s"] = round(g / (comp / 1e3), 1) if comp > 0 else 0.0
                if by_key[key].name != "tensorrt":
                    cell["cpu_peak_share"] = round(cell["gflops_per_s"] / peak.gflops, 4)
            sweep.append(cell)
        throughput[key] = sweep
    text_cache: dict[str, Any] = {}
    if ref is not None and uncached_key:
        c = float(np.median(measured[ref.key][1]["total"])) if 1 in measured[ref.key] else None
        u = float(np.median(measured[uncached_key][1]["total"]))
        if c is not None:
            text_cache = {
                "backend": ref.key,
                "cached_ms": round(c, 2),
                "uncached_ms": round(u, 2),
                "ratio": round(c / u, 3),
            }
    limit = None
    if graphs is not None:
        limit = [
            {
                "prompts": k,
                "gflops": round((graphs["image_encoder"]["flops"] + k * graphs["mask_decoder"]["flops"]) / 1e9, 3),
            }
            for k in s.prompt_counts
        ]
        for x in limit:
            x["frame_ms"] = round(x["gflops"] / peak.gflops * 1e3, 2)
            x["frames_per_s"] = round(1e3 / x["frame_ms"], 1)
    layers = None
    if s.layers:
        layers = _layers(bundle, opened, frame, prompts, s, out_dir)
    for r in opened:
        r.seg.close()

    ok = {(r.backend, r.precision): r for r in rows if r.status == "ok" and r.stages}

    def ratio(a: tuple[str, str], b: tuple[str, str]) -> float | None:
        if a in ok and b in ok:
            return round(ok[a].stages["total"]["median_ms"] / ok[b].stages["total"]["median_ms"], 3)
        return None

    sgemm = round(sgemm_gflops(), 1) if s.sgemm else None
    ort = {x["prompts"]: x for x in throughput.get("onnxruntime fp32", [])}
    share = ort.get(min(s.prompt_counts), {}).get("cpu_peak_share")
    result: dict[str, Any] = {
        "bundle": str(path),
        "config": bundle.manifest.config.get("name"),
        "input_size": bundle.manifest.input_size,
        "settings": asdict(s),
        "frame": frame_source,
        "method": "interleaved rounds: each round runs every (backend/precision, prompts) cell once in a new random "
        f"order on the same frame; {s.warmup} warm-up rounds left out; medians over {s.iters} rounds",
        "load_average": {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in os.getloadavg()]},
        "frame_gflops": round(frame_gflops, 3) if frame_gflops is not None else None,
        "rows": [asdict(r) for r in rows],
        "throughput": throughput,
        "text_cache": text_cache,
        "physical_limit": limit,
        "ratios": {
            "ort_fp32_over_pytorch": ratio(("onnxruntime", "fp32"), ("pytorch", "fp32")),
            "ort_int8_over_ort_fp32": ratio(("onnxruntime", "int8"), ("onnxruntime", "fp32")),
            "openvino_fp32_over_ort_fp32": ratio(("openvino", "fp32"), ("onnxruntime", "fp32")),
            "openvino_bf16_over_ort_fp32": ratio(("openvino", "bf16"), ("onnxruntime", "fp32")),
            "cached_over_uncached_text": text_cache.get("ratio"),
        },
        "cpu": {
            **asdict(peak),
            "peak_gflops": round(peak.gflops, 1),
            "formula": peak.formula,
            "sgemm_gflops": sgemm,
            "sgemm_share_of_peak": round(sgemm / peak.gflops, 3) if sgemm else None,
            "ort_fp32_share_of_peak": share,
        },
        "flops": flops,
        "not_measured": {},
        "jetson_estimates": None
        if frame_gflops is None
        else {
            "utilization": UTILIZATION,
            "calibration": JETSON_CALIBRATION,
            "rows": [asdict(j) for j in jetson_estimates(frame_gflops)],
        },
        "layers": layers,
    }
    eight = ort.get(8, {}).get("frame_ms")
    first = ort.get(1, {}).get("frame_ms")
    result["targets"] = {
        "ort_fp32_over_pytorch": _check(result["ratios"]["ort_fp32_over_pytorch"], *TARGETS["ort_fp32_over_pytorch"]),
        "fps_1_prompt": _check(ort.get(1, {}).get("frames_per_s"), *TARGETS["fps_1_prompt"]),
        "fps_2_prompts": _check(ort.get(2, {}).get("frames_per_s"), *TARGETS["fps_2_prompts"]),
        "prompts_8_over_1": _check(round(eight / first, 3) if eight and first else None, *TARGETS["prompts_8_over_1"]),
        "cpu_peak_share": _check(share, *TARGETS["cpu_peak_share"]),
        "ort_int8_over_ort_fp32": _check(
            result["ratios"]["ort_int8_over_ort_fp32"], *TARGETS["ort_int8_over_ort_fp32"]
        ),
    }
    best = _best_cpu(throughput, 2)
    result["targets"]["best_fps_2_prompts"] = {
        **_check(best[1] if best else None, *TARGETS["best_fps_2_prompts"]),
        "configuration": best[0] if best else None,
    }
    result["default"] = _default_configuration(bundle, throughput, s.providers)
    if flops is None:
        result["not_measured"]["flops"] = (
            "FLOPs and parameters are counted on the PyTorch model, which is not "
            "installed: pip install 'ssp-edge[model]'"
        )
    if not _has("matplotlib"):
        result["not_measured"]["plots"] = "plots need matplotlib: pip install matplotlib"
    for r in result["rows"]:
        if r["status"] == "ok":
            r["cpu_peak_share"] = (
                round(r["gflops_per_s"] / peak.gflops, 4)
                if r["backend"] != "tensorrt" and frame_gflops is not None
                else None
            )
    atomic_write_text(out_dir / "bench.json", json.dumps(result, indent=1) + "\n")
    result["plots"] = write_plots(result, out_dir) if _has("matplotlib") else []
    result["report"] = str(write_markdown(result, out_dir))
    atomic_write_text(out_dir / "bench.json", json.dumps(result, indent=1) + "\n")
    return result


def _best_cpu(throughput: Mapping[str, list[dict[str, Any]]], prompts: int) -> tuple[str, float] | None:
    """(configuration, frames/s) of the fastest deployed CPU configuration at ``prompts`` (PyTorch eager, the
    baseline, and TensorRT rows left out)."""
    cells = [
        (name, x["frames_per_s"])
        for name, sweep in throughput.items()
        if not name.startswith(("pytorch", "tensorrt"))
        for x in sweep
        if x["prompts"] == prompts
    ]
    return max(cells, key=lambda c: c[1]) if cells else None


def _default_configuration(
    bundle: Bundle, throughput: Mapping[str, list[dict[str, Any]]], providers: Sequence[str] | None = None
) -> dict[str, Any]:
    """What ``Segmenter.open(bundle)`` runs here (TensorRT where it can run the bundle, else ONNX Runtime at the
    default precision for ``providers``, and why) and its measured frames/s per prompt count."""
    from ssp_edge.sdk.backends.tensorrt import tensorrt_unavailable

    if tensorrt_unavailable(bundle, None) is None:
        name, reason = "tensorrt", "TensorRT imports, a GPU is present and the bundle has engines for it"
        best = [n for n in throughput if n.startswith("tensorrt")]
        return {"configuration": name, "reason": reason, "frames_per_s": {}, "measured_rows": best}
    choice = choose_precision(bundle, providers)
    name = f"onnxruntime {choice.precision}"
    return {
        "configuration": name,
        "reason": choice.reason,
        "frames_per_s": {x["prompts"]: x["frames_per_s"] for x in throughput.get(name, [])},
    }


def _interleave_cells(
    runners: Mapping[str, Runner], counts: Mapping[str, Sequence[int]], s: BenchSettings, bar: Any
) -> dict[str, dict[int, dict[str, list[float]]]]:
    """:func:`interleave` where each runner has its own prompt counts (the uncached-text row runs at 1 only)."""
    all_counts = sorted({k for v in counts.values() for k in v})
    wrapped = {
        name: (lambda fn, ks: lambda k: fn(k) if k in ks else {"_skip": 0.0})(fn, set(counts[name]))
        for name, fn in runners.items()
    }
    raw = interleave(wrapped, all_counts, s.iters, s.warmup, s.seed, s.settle_s, progress=bar)
    return {name: {k: v for k, v in per.items() if k in counts[name]} for name, per in raw.items()}


def _layers(
    bundle: Bundle, opened: list[Row], frame: np.ndarray, prompts: list[str], s: BenchSettings, out_dir: Path
) -> dict[str, Any]:
    """Per-op profiles of every opened ONNX Runtime / OpenVINO / TensorRT row (``--layers``)."""
    from .layers import graph_feeds, openvino_layers, ort_layers, tensorrt_layers, write_layers

    ref = next((r for r in opened if r.name == "onnxruntime"), None)
    if ref is None:
        return {"skipped": "per-op profiles are built on the ONNX Runtime row's feeds; it did not open"}
    feeds = graph_feeds(ref.seg, frame, prompts, [k for k in s.layer_prompts if k <= ref.seg.max_prompts])
    profiles: dict[str, Any] = {}
    notes: dict[str, str] = {}
    for r in opened:
        if r.name == "onnxruntime":
            profiles[r.key] = ort_layers(bundle, r.precision, feeds, runs=s.layer_runs, threads=s.threads)
        elif r.name == "openvino":
            profiles[r.key] = openvino_layers(bundle, r.precision, feeds, runs=s.layer_runs, threads=s.threads)
        elif r.name == "tensorrt":
            profiles[r.key] = tensorrt_layers(r.seg.backend, feeds, runs=s.layer_runs)
    if not any(r.name == "tensorrt" for r in opened):
        notes["tensorrt"] = "not profiled: no TensorRT engine runs here (TensorRT and a GPU are needed)"
    files = write_layers(profiles, out_dir)
    summary = {
        row: {
            label: {
                "total_ms": round(p.total_ms, 3),
                "by_type": [
                    {"op_type": x.op_type, "nodes": x.count, "ms": round(x.ms, 3), "share": round(x.share, 4)}
                    for x in p.by_type()[:12]
                ],
            }
            for label, p in graphs.items()
        }
        for row, graphs in profiles.items()
    }
    return {"files": files, "profiles": summary, "notes": notes}
