"""The benchmark run: every available backend and precision measured in one process, one after the
other on the same frame and prompts, so the ratios are fair. Missing pieces become rows that say why
("not built", "not available: ...") instead of failing the run."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from ssp_edge.sdk.bundle import Bundle
from ssp_edge.sdk.errors import SDKError
from ssp_edge.sdk.fsio import atomic_write_text
from ssp_edge.sdk.segmenter import STAGES, Segmenter

from .devices import UTILIZATION, cpu_peak, jetson_estimates

__all__ = ["BenchSettings", "BackendRow", "run_bench"]


@dataclass
class BenchSettings:
    warmup: int = 5
    iters: int = 30
    prompt_counts: tuple[int, ...] = (1, 2, 4, 8)
    threads: int = 0

    @classmethod
    def quick(cls) -> "BenchSettings":
        return cls(warmup=2, iters=6)


@dataclass
class BackendRow:
    backend: str
    precision: str
    status: str  # "ok" | "not built" | "not available"
    reason: str = ""
    stages: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> {median_ms, p90_ms}
    fps: float = 0.0
    peak_rss_mb: float = 0.0
    gflops_per_s: float = 0.0  # image encoder + decoder FLOPs / their median time


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


def _stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, np.float64)
    return {"median_ms": round(float(np.median(a)), 2), "p90_ms": round(float(np.percentile(a, 90)), 2)}


def _measure(seg: Segmenter, frame: np.ndarray, prompts: list[str], s: BenchSettings,
             uncached: bool = False) -> dict[str, dict[str, float]]:
    seg.set_prompts(prompts)
    per: dict[str, list[float]] = {k: [] for k in (*STAGES, "total")}
    for i in range(s.warmup + s.iters):
        if uncached:
            seg.clear_cache()
        t0 = time.perf_counter()
        res = seg.segment(frame)
        total = (time.perf_counter() - t0) * 1e3
        if i >= s.warmup:
            for k, v in res[0].times_ms.items():
                per[k].append(v)
            per["total"].append(total)
    return {k: _stats(v) for k, v in per.items()}


def _frame_and_prompts() -> tuple[np.ndarray, list[str]]:
    import cv2

    from ssp_edge.ssp.data.refshapes import RefShapes

    group = RefShapes("test").scene_samples(0, 8)
    while len(group) < 8:
        group = group + group
    return cv2.cvtColor(group[0].image, cv2.COLOR_RGB2BGR), [g.expression for g in group][:8]


def _backends(bundle: Bundle, s: BenchSettings) -> list[tuple[str, str, Callable[[], Any] | None, str]]:
    """(backend, precision, factory or None, reason when None; the reason starts with its row status)."""
    from ssp_edge.sdk.backends.onnxruntime import OnnxRuntimeBackend
    from ssp_edge.sdk.backends.tensorrt import TensorRTBackend, tensorrt_unavailable

    out: list[tuple[str, str, Callable[[], Any] | None, str]] = []
    try:
        from .torch_backend import TorchBackend

        out.append(("pytorch", "fp32", lambda: TorchBackend(bundle, s.threads), ""))
    except ImportError as e:
        out.append(("pytorch", "fp32", None, f"not available: {e}"))
    for p in ("fp32", "fp16", "int8"):
        if p == "fp32" or bundle.has_graph("image_encoder", "portable", p):
            out.append(("onnxruntime", p, lambda p=p: OnnxRuntimeBackend(bundle, p, threads=s.threads), ""))
        else:
            out.append(("onnxruntime", p, None, f"not built (run `ssp calibrate {bundle.root}`)"))
    for p in ("fp16", "int8"):
        why = tensorrt_unavailable(bundle, p)
        out.append(("tensorrt", p, (lambda p=p: TensorRTBackend(bundle, p)) if why is None else None,
                    "" if why is None else f"not available: {why}"))
    return out


def _flops(bundle: Bundle) -> dict[str, Any]:
    import torch

    from ssp_edge.ssp.config import config_from_json, get_config
    from ssp_edge.ssp.flops import model_cost
    from ssp_edge.ssp.models.ssp import build_model

    base = config_from_json(json.dumps(bundle.manifest.config)).replace(pretrained=False)
    out: dict[str, Any] = {}
    for key, cfg in (("bundle", base), ("bundle_bilinear", base.replace(decoder="bilinear")),
                     ("ssp_lite", get_config("ssp_lite", pretrained=False)), ("ssp_paper", get_config("ssp_paper"))):
        torch.manual_seed(0)
        out[key] = asdict(model_cost(build_model(cfg), cfg))
    return out


def run_bench(path: str | Path, settings: BenchSettings, out_dir: str | Path, progress: bool = True) -> dict[str, Any]:
    """Measure everything, write ``bench.json``, ``bench.md`` and PNG plots into ``out_dir``."""
    from .report import write_markdown, write_plots

    bundle = Bundle.open(path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame, prompts = _frame_and_prompts()
    flops = _flops(bundle)
    frame_gflops = (flops["bundle"]["graphs"]["image_encoder"]["flops"] +
                    flops["bundle"]["graphs"]["mask_decoder"]["flops"]) / 1e9
    rows: list[BackendRow] = []
    throughput: dict[str, list[dict[str, float]]] = {}
    text_cache: dict[str, Any] = {}
    candidates = _backends(bundle, settings)
    bar = tqdm(candidates, desc="bench", unit="backend", disable=not progress)
    for name, precision, factory, reason in bar:
        bar.set_postfix_str(f"{name} {precision}")
        if factory is None:
            status = "not built" if reason.startswith("not built") else "not available"
            rows.append(BackendRow(name, precision, status, reason))
            continue
        _reset_peak_rss()
        try:
            backend = factory()
        except SDKError as e:
            rows.append(BackendRow(name, precision, "not available", str(e)))
            continue
        seg = Segmenter(bundle, backend)
        stages = _measure(seg, frame, prompts[:1], settings)
        compute_ms = stages["image_encoder"]["median_ms"] + stages["mask_decoder"]["median_ms"]
        row = BackendRow(name, precision, "ok", "", stages, round(1e3 / stages["total"]["median_ms"], 2),
                         round(_rss_mb("VmHWM"), 1), round(frame_gflops / (compute_ms / 1e3), 2))
        rows.append(row)
        if (name, precision) in (("onnxruntime", "fp32"), ("tensorrt", "fp16")):
            sweep = []
            for k in settings.prompt_counts:
                st = _measure(seg, frame, prompts[:k], settings)
                t = st["total"]["median_ms"]
                sweep.append({"prompts": k, "frame_ms": t, "frames_per_s": round(1e3 / t, 2),
                              "masks_per_s": round(k * 1e3 / t, 2)})
            throughput[f"{name} {precision}"] = sweep
            if not text_cache:
                cached = _measure(seg, frame, prompts[:1], settings)["total"]["median_ms"]
                uncached = _measure(seg, frame, prompts[:1], settings, uncached=True)["total"]["median_ms"]
                text_cache = {"backend": f"{name} {precision}", "cached_ms": cached, "uncached_ms": uncached,
                              "ratio": round(cached / uncached, 3)}
        seg.close()
    bar.close()
    peak = cpu_peak()
    by = {(r.backend, r.precision): r for r in rows if r.status == "ok"}

    def ratio(a: tuple[str, str], b: tuple[str, str]) -> float | None:
        if a in by and b in by:
            return round(by[a].stages["total"]["median_ms"] / by[b].stages["total"]["median_ms"], 3)
        return None

    result: dict[str, Any] = {
        "bundle": str(path), "config": bundle.manifest.config.get("name"), "input_size": bundle.manifest.input_size,
        "settings": asdict(settings), "frame_gflops": round(frame_gflops, 3),
        "rows": [asdict(r) for r in rows], "throughput": throughput, "text_cache": text_cache,
        "ratios": {"ort_fp32_over_pytorch": ratio(("onnxruntime", "fp32"), ("pytorch", "fp32")),
                   "ort_int8_over_ort_fp32": ratio(("onnxruntime", "int8"), ("onnxruntime", "fp32")),
                   "cached_over_uncached_text": text_cache.get("ratio")},
        "cpu": {**asdict(peak), "peak_gflops": round(peak.gflops, 1)},
        "flops": flops,
        "jetson_estimates": {"utilization": UTILIZATION, "rows": [asdict(j) for j in jetson_estimates(frame_gflops)]},
    }
    for r in result["rows"]:
        if r["status"] == "ok":
            r["cpu_peak_share"] = round(r["gflops_per_s"] / peak.gflops, 4) if r["backend"] != "tensorrt" else None
    atomic_write_text(out_dir / "bench.json", json.dumps(result, indent=1) + "\n")
    result["plots"] = write_plots(result, out_dir)
    result["report"] = str(write_markdown(result, out_dir))
    atomic_write_text(out_dir / "bench.json", json.dumps(result, indent=1) + "\n")
    return result
