"""The benchmark run: every available backend and precision measured in one process, one after the
other on the same frame and prompts, so the ratios are fair. Missing pieces become rows that say why
("not built", "not available: ...", "not installed") instead of failing the run, so a runtime-only install
(no PyTorch, no matplotlib) benchmarks what it has: its PyTorch row says "not installed", FLOPs and plots are
left out with the reason."""
from __future__ import annotations

import importlib.util
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from ssp_edge.sdk.backends.base import open_backend
from ssp_edge.sdk.bundle import Bundle
from ssp_edge.sdk.errors import SDKError
from ssp_edge.sdk.fsio import atomic_write_text
from ssp_edge.sdk.segmenter import STAGES, Segmenter, open_bundle

from .devices import UTILIZATION, cpu_peak, jetson_estimates

__all__ = ["BenchSettings", "BackendRow", "run_bench"]


@dataclass
class BenchSettings:
    warmup: int = 5
    iters: int = 30
    prompt_counts: tuple[int, ...] = (1, 2, 4, 8)
    threads: int = 0
    providers: list[str] | None = None  # ONNX Runtime execution providers (default CPU)
    plugin_lib: str | None = None  # TensorRT: native code only by the caller's choice (see sdk.options)
    trust_bundle_plugins: bool = False
    allow_engine_host_code: bool = False

    @classmethod
    def quick(cls) -> "BenchSettings":
        return cls(warmup=2, iters=6)


@dataclass
class BackendRow:
    backend: str
    precision: str
    status: str  # "ok" | "not built" | "not available" | "not installed"
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


#: prompts of the synthetic frame used when RefShapes' background photos (scikit-image / scikit-learn) are missing
_SYNTHETIC_PROMPTS = ["the red circle", "the blue square", "the green triangle", "the yellow circle",
                      "the square left of the circle", "the biggest shape", "the circle on the right",
                      "the shape at the top"]


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


def _backends(bundle: Bundle, s: BenchSettings) -> list[tuple[str, str, Factory | None, str, str]]:
    """(backend, precision, factory or None, row status when None, reason)."""
    from ssp_edge.sdk.backends.tensorrt import tensorrt_unavailable

    out: list[tuple[str, str, Factory | None, str, str]] = []
    if _has("torch"):
        def torch_backend() -> Any:
            from ssp_edge.ssp.torch_backend import TorchBackend

            return TorchBackend.from_bundle(bundle, s.threads)

        out.append(("pytorch", "fp32", torch_backend, "", ""))
    else:
        out.append(("pytorch", "fp32", None, "not installed",
                    "PyTorch is not installed: pip install 'ssp-edge[model]'"))
    for p in ("fp32", "fp16", "int8"):
        if p == "fp32" or bundle.has_graph("image_encoder", "portable", p):
            out.append(("onnxruntime", p, lambda p=p: open_backend(bundle, "onnxruntime", p, threads=s.threads,
                                                                   providers=s.providers), "", ""))
        else:
            out.append(("onnxruntime", p, None, "not built", f"not built (run `ssp calibrate {bundle.root}`)"))
    native = dict(plugin_lib=s.plugin_lib, trust_bundle_plugins=s.trust_bundle_plugins,
                  allow_engine_host_code=s.allow_engine_host_code)
    for p in ("fp16", "int8"):
        why = tensorrt_unavailable(bundle, p)
        if why is None:
            out.append(("tensorrt", p, lambda p=p: open_backend(bundle, "tensorrt", p, **native), "", ""))
        else:
            out.append(("tensorrt", p, None, "not available", f"not available: {why}"))
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
    for key, cfg in (*variants, ("ssp_lite", get_config("ssp_lite", pretrained=False)),
                     ("ssp_paper", get_config("ssp_paper"))):
        torch.manual_seed(0)
        out[key] = asdict(model_cost(build_model(cfg), cfg))
    return out


def run_bench(path: str | Path, settings: BenchSettings, out_dir: str | Path, progress: bool = True,
              verify_key: Any = None) -> dict[str, Any]:
    """Measure everything, write ``bench.json``, ``bench.md`` and PNG plots (with matplotlib) into ``out_dir``."""
    from .report import write_markdown, write_plots

    bundle = open_bundle(path, verify_key)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame, prompts, frame_source = _frame_and_prompts()
    flops = _flops(bundle)
    frame_gflops = None if flops is None else (flops["bundle"]["graphs"]["image_encoder"]["flops"] +
                                                flops["bundle"]["graphs"]["mask_decoder"]["flops"]) / 1e9
    rows: list[BackendRow] = []
    throughput: dict[str, list[dict[str, float]]] = {}
    text_cache: dict[str, Any] = {}
    candidates = _backends(bundle, settings)
    bar = tqdm(candidates, desc="bench", unit="backend", disable=not progress)
    for name, precision, factory, status, reason in bar:
        bar.set_postfix_str(f"{name} {precision}")
        if factory is None:
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
                         round(_rss_mb("VmHWM"), 1),
                         round(frame_gflops / (compute_ms / 1e3), 2) if frame_gflops is not None else 0.0)
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
        "settings": asdict(settings), "frame": frame_source,
        "frame_gflops": round(frame_gflops, 3) if frame_gflops is not None else None,
        "rows": [asdict(r) for r in rows], "throughput": throughput, "text_cache": text_cache,
        "ratios": {"ort_fp32_over_pytorch": ratio(("onnxruntime", "fp32"), ("pytorch", "fp32")),
                   "ort_int8_over_ort_fp32": ratio(("onnxruntime", "int8"), ("onnxruntime", "fp32")),
                   "cached_over_uncached_text": text_cache.get("ratio")},
        "cpu": {**asdict(peak), "peak_gflops": round(peak.gflops, 1)},
        "flops": flops,
        "not_measured": {},
        "jetson_estimates": None if frame_gflops is None else
        {"utilization": UTILIZATION, "rows": [asdict(j) for j in jetson_estimates(frame_gflops)]},
    }
    if flops is None:
        result["not_measured"]["flops"] = ("FLOPs and parameters are counted on the PyTorch model, which is not "
                                           "installed: pip install 'ssp-edge[model]'")
    if not _has("matplotlib"):
        result["not_measured"]["plots"] = "plots need matplotlib: pip install matplotlib"
    for r in result["rows"]:
        if r["status"] == "ok":
            r["cpu_peak_share"] = (round(r["gflops_per_s"] / peak.gflops, 4)
                                   if r["backend"] != "tensorrt" and frame_gflops is not None else None)
    atomic_write_text(out_dir / "bench.json", json.dumps(result, indent=1) + "\n")
    result["plots"] = write_plots(result, out_dir) if _has("matplotlib") else []
    result["report"] = str(write_markdown(result, out_dir))
    atomic_write_text(out_dir / "bench.json", json.dumps(result, indent=1) + "\n")
    return result
