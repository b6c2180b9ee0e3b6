"""`make gpu-check`: what a GPU machine without TensorRT (CUDA's nvcc and PyTorch, no network) can show, in one run
of at most 6 minutes that prints one JSON object (ARCHITECTURE.md §9).

Sections, each timed and reported with a status ("ok" | "failed" | "skipped" | "error") and never stopping the
others:

* ``environment``: Python, PyTorch, CUDA, the GPU and its compute capability, nvcc;
* ``build``: the three plugin kernels (plugins/*/*_kernel.cu, the code libssp_trt_plugins.so runs) with a small
  C-ABI launcher (plugins/tests/gpu_check_launcher.cu), built by nvcc for the local GPU's architecture;
* ``kernels``: each kernel against the PyTorch reference ops (ssp_edge.ssp.models.ops) on the GPU, FP32 and FP16,
  on the host tests' cases (tests/plugins/test_host_kernels.py) with their tolerances;
* ``timing``: fused kernel vs the unfused PyTorch ops at ssp_lite's sizes (batch 8), CUDA events, medians;
* ``forward``: one ssp_lite forward at batch 8 in bf16 (autocast) on CUDA, random init (no downloads).

More sections (e.g. a training step) are added by appending ``(name, function)`` to :data:`SECTIONS`; a function
takes the :class:`Run` and returns a dict (its ``status`` defaults to "ok"), raising :class:`Skip` to skip.
``--dry-run`` (no GPU needed) builds what it can (``--arch 90`` compiles for sm_90 without a GPU) and reports the
GPU sections as skipped, with the same keys.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SECTIONS", "Run", "Skip", "run_checks", "main", "AGG_CASES", "PROP_CASES", "UPS_CASES"]

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "plugins"
KERNELS = [
    "superpixel_aggregate/superpixel_aggregate_kernel.cu",
    "superpixel_propagate/superpixel_propagate_kernel.cu",
    "replication_upsample/replication_upsample_kernel.cu",
]
LAUNCHER = "tests/gpu_check_launcher.cu"
BUDGET_S = 360.0  # the whole run

# the host tests' cases and tolerance (tests/plugins/test_host_kernels.py reads the same file)
_CASES = json.loads((PLUGINS / "tests" / "kernel_cases.json").read_text())
AGG_CASES = [tuple(c) for c in _CASES["aggregate"]]  # (B, C, H, W, cell)
PROP_CASES = [tuple(c) for c in _CASES["propagate"]]  # (B, C, h, w, cell)
UPS_CASES = [tuple(c) for c in _CASES["upsample"]]  # (B, C, h, w) x scale 2, 4, 8
FP32_TOL = dict(_CASES["fp32_tol"])


class Skip(Exception):
    """A section that cannot run here (no GPU, dry run, a missing package): reported, not an error."""


@dataclass
class Run:
    """What the sections share: options, the deadline, and what earlier sections produced."""

    dry_run: bool = False
    arch: str | None = None  # "90": build for sm_90 (default: the GPU's compute capability)
    deadline: float = field(default_factory=lambda: time.monotonic() + BUDGET_S)
    work: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ssp-gpu-check-")))
    lib: Any = None  # the built launcher (ctypes)
    torch: Any = None

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def need_gpu(self) -> Any:
        if self.dry_run:
            raise Skip("dry run: no GPU used")
        try:
            import torch
        except ImportError as e:
            raise Skip(f"PyTorch is not installed ({e})") from None
        if not torch.cuda.is_available():
            raise Skip("torch.cuda.is_available() is False: no usable GPU")
        self.torch = torch
        return torch


def _nvcc() -> str | None:
    cand = [shutil.which("nvcc"), os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc")]
    return next((c for c in cand if c and os.access(c, os.X_OK)), None)


# ---------------------------------------------------------------------------------------------------- sections
def environment(run: Run) -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine()}
    nvcc = _nvcc()
    out["nvcc"] = (
        subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
        if nvcc
        else None
    )
    try:
        import torch

        out["torch"] = torch.__version__
        out["torch_cuda"] = torch.version.cuda
        if torch.cuda.is_available() and not run.dry_run:
            p = torch.cuda.get_device_properties(0)
            out["gpu"] = p.name
            out["compute_capability"] = f"{p.major}.{p.minor}"
            out["memory_gib"] = round(p.total_memory / 2**30, 1)
            out["sm_count"] = p.multi_processor_count
    except ImportError:
        out["torch"] = None
    return out


def build(run: Run) -> dict[str, Any]:
    nvcc = _nvcc()
    if nvcc is None:
        raise Skip("nvcc not found (set CUDA_HOME or put it on PATH)")
    arch = run.arch
    if arch is None:
        torch = run.need_gpu()
        major, minor = torch.cuda.get_device_capability(0)
        arch = f"{major}{minor}"
    lib = run.work / "libssp_gpu_check.so"
    cmd = [
        nvcc,
        "-O3",
        "-std=c++17",
        "-shared",
        "-Xcompiler",
        "-fPIC",
        f"-arch=sm_{arch}",
        "-I",
        str(PLUGINS),
        str(PLUGINS / LAUNCHER),
        *[str(PLUGINS / k) for k in KERNELS],
        "-o",
        str(lib),
    ]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=max(30.0, min(300.0, run.left() - 60)))
    if r.returncode != 0:
        return {"status": "failed", "arch": f"sm_{arch}", "command": " ".join(cmd), "log": r.stderr[-4000:]}
    out = {
        "arch": f"sm_{arch}",
        "seconds": round(time.monotonic() - t0, 1),
        "library": str(lib),
        "bytes": lib.stat().st_size,
    }
    if not run.dry_run:
        run.lib = ctypes.CDLL(str(lib))
        i32, i64, p, f32 = ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p, ctypes.c_float
        sigs = {
            "sspGcAggregate": [i32, p, p, p, i64, i64, i64, i64, i32, f32, p],
            "sspGcPropagate": [i32, p, p, p, i64, i64, i64, i64, i32, p],
            "sspGcUpsample": [i32, p, p, p, p, i64, i64, i64, i64, i32, p],
            "sspGcSync": [p],
        }
        for name, argtypes in sigs.items():  # the C signatures of plugins/tests/gpu_check_launcher.cu
            fn = getattr(run.lib, name)
            fn.argtypes, fn.restype = argtypes, i32
    return out


def _launch(run: Run, op: str, half: bool, *tensors_and_args: Any) -> None:
    torch = run.torch
    stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
    args: list[Any] = [ctypes.c_int32(int(half))]
    for a in tensors_and_args:
        if isinstance(a, torch.Tensor):
            args.append(ctypes.c_void_p(a.data_ptr()))
        elif isinstance(a, float):
            args.append(ctypes.c_float(a))
        else:
            args.append(a)
    args.append(stream)
    status = getattr(run.lib, {"agg": "sspGcAggregate", "prop": "sspGcPropagate", "ups": "sspGcUpsample"}[op])(*args)
    if status != 0:
        raise RuntimeError(f"{op} launch returned {status}")


def _i64(*v: int) -> list[ctypes.c_int64]:
    return [ctypes.c_int64(x) for x in v]


def _aggregate(run: Run, x: Any, q: Any, cell: int, eps: float) -> Any:
    b, c, h, w = x.shape
    z = x.new_empty(b, c, h // cell, w // cell)
    _launch(run, "agg", x.dtype == run.torch.float16, x, q, z, *_i64(b, c, h, w), ctypes.c_int32(cell), float(eps))
    return z


def _propagate(run: Run, z: Any, q: Any, cell: int) -> Any:
    b, c, h, w = z.shape
    y = z.new_empty(b, c, h * cell, w * cell)
    _launch(run, "prop", z.dtype == run.torch.float16, z, q, y, *_i64(b, c, h, w), ctypes.c_int32(cell))
    return y


def _upsample(run: Run, x: Any, g: Any, y: Any, s: int) -> Any:
    b, c, h, w = x.shape
    o = x.new_empty(b, c, h * s, w * s)
    _launch(run, "ups", x.dtype == run.torch.float16, x, g, y, o, *_i64(b, c, h, w), ctypes.c_int32(s))
    return o


def _inputs(torch: Any, op: str, case: tuple, s: int = 0, seed: int = 0) -> tuple:
    g = torch.Generator(device="cuda").manual_seed(seed)
    dev = "cuda"
    if op == "agg":
        b, c, hh, ww, cell = case
        return (
            torch.randn(b, c, hh, ww, device=dev, generator=g),
            torch.softmax(2 * torch.randn(b, 9, hh, ww, device=dev, generator=g), 1),
            cell,
        )
    if op == "prop":
        b, c, h, w, cell = case
        return (
            torch.randn(b, c, h, w, device=dev, generator=g),
            torch.softmax(2 * torch.randn(b, 9, h * cell, w * cell, device=dev, generator=g), 1),
            cell,
        )
    b, c, h, w = case
    return (
        torch.randn(b, c, h, w, device=dev, generator=g),
        torch.rand(b, 1, h * s, w * s, device=dev, generator=g),
        torch.randn(b, c * s * s, h, w, device=dev, generator=g),
        s,
    )


def kernels(run: Run) -> dict[str, Any]:
    torch = run.need_gpu()
    if run.lib is None:
        raise Skip("the kernels were not built (see build)")
    from ssp_edge.ssp.models.ops import REFERENCE as REF

    rows: dict[str, dict[str, Any]] = {}

    def check(name: str, out: Any, ref: Any, half: bool, exact_fp32: bool = False) -> None:
        err = run.lib.sspGcSync(ctypes.c_void_p(torch.cuda.current_stream().cuda_stream))
        if err:
            raise RuntimeError(f"{name}: CUDA error {err}")
        o = out.float()
        if half:
            bound = ref.abs() * 2.0**-10 + 1e-5  # one fp16 ulp + float32 summation slack (host tests' rule)
        else:
            rtol, atol = (1e-6, 1e-6) if exact_fp32 else (FP32_TOL["rtol"], FP32_TOL["atol"])  # GPU FMA: last bit
            bound = ref.abs() * rtol + atol
        diff = (o - ref).abs()
        r = rows.setdefault(name, {"cases": 0, "failed": 0, "max_abs_diff": 0.0})
        r["cases"] += 1
        r["failed"] += int(bool((diff > bound).any()))
        r["max_abs_diff"] = max(r["max_abs_diff"], float(diff.max()) if diff.numel() else 0.0)

    for half in (False, True):
        dt = torch.float16 if half else torch.float32
        tag = "fp16" if half else "fp32"
        for i, case in enumerate(AGG_CASES):
            x, q, cell = _inputs(torch, "agg", case, seed=i)
            x, q = x.to(dt), q.to(dt)
            ref = REF["superpixel_aggregate"](x.float(), q.float(), cell, 1e-8)
            check(f"SuperpixelAggregate/{tag}", _aggregate(run, x, q, cell, 1e-8), ref, half)
        for i, case in enumerate(PROP_CASES):
            z, q, cell = _inputs(torch, "prop", case, seed=i)
            z, q = z.to(dt), q.to(dt)
            ref = REF["superpixel_propagate"](z.float(), q.float(), cell)
            check(f"SuperpixelPropagate/{tag}", _propagate(run, z, q, cell), ref, half)
        for i, case in enumerate(UPS_CASES):
            for s in (2, 4, 8):
                x, g, y, _ = _inputs(torch, "ups", case, s, seed=i)
                x, g, y = x.to(dt), g.to(dt), y.to(dt)
                ref = REF["replication_upsample"](x.float(), g.float(), y.float(), s)
                check(f"ReplicationUpsample/{tag}", _upsample(run, x, g, y, s), ref, half, exact_fp32=True)
    failed = sum(r["failed"] for r in rows.values())
    return {"status": "ok" if failed == 0 else "failed", "ops": rows}


def _time(torch: Any, fn: Callable[[], Any], iters: int = 50, warmup: int = 10) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def timing(run: Run) -> dict[str, Any]:
    torch = run.need_gpu()
    if run.lib is None:
        raise Skip("the kernels were not built (see build)")
    from ssp_edge.ssp.models.ops import REFERENCE as REF

    rows = {}
    # ssp_lite at 320x320, batch 8: stride-4 features 80x80 (C=128), cell 4 -> a 20x20 grid; RUS x2 to 160x160
    sizes = {
        "SuperpixelAggregate": ("agg", (8, 128, 80, 80, 4)),
        "SuperpixelPropagate": ("prop", (8, 16, 20, 20, 4)),
        "ReplicationUpsample": ("ups", (8, 32, 80, 80)),
    }
    for half in (False, True):
        dt = torch.float16 if half else torch.float32
        for name, (op, case) in sizes.items():
            if run.left() < 30:
                raise Skip("time budget spent")
            if op == "agg":
                x, q, cell = _inputs(torch, op, case)
                x, q = x.to(dt), q.to(dt)
                fused = lambda: _aggregate(run, x, q, cell, 1e-8)  # noqa: E731
                unfused = lambda: REF["superpixel_aggregate"](x, q, cell, 1e-8)  # noqa: E731
            elif op == "prop":
                z, q, cell = _inputs(torch, op, case)
                z, q = z.to(dt), q.to(dt)
                fused = lambda: _propagate(run, z, q, cell)  # noqa: E731
                unfused = lambda: REF["superpixel_propagate"](z, q, cell)  # noqa: E731
            else:
                x, g, y, s = _inputs(torch, op, case, 2)
                x, g, y = x.to(dt), g.to(dt), y.to(dt)
                fused = lambda: _upsample(run, x, g, y, s)  # noqa: E731
                unfused = lambda: REF["replication_upsample"](x, g, y, s)  # noqa: E731
            f, u = _time(torch, fused), _time(torch, unfused)
            rows[f"{name}/{'fp16' if half else 'fp32'}"] = {
                "shape": list(case),
                "fused_ms": round(f, 4),
                "pytorch_ms": round(u, 4),
                "speedup": round(u / f, 2),
            }
    return {"batch": 8, "rows": rows}


def forward(run: Run) -> dict[str, Any]:
    torch = run.need_gpu()
    try:
        from ssp_edge.ssp.config import get_config
        from ssp_edge.ssp.models.ssp import build_model
    except ImportError as e:
        raise Skip(f"the model needs its extra ({e}): pip install -e '.[model]'") from None
    torch.manual_seed(0)
    cfg = get_config("ssp_lite", pretrained=False)
    model = build_model(cfg).cuda().eval()
    b, s, L = 8, cfg.input_size, cfg.max_tokens
    image = torch.randn(b, 3, s, s, device="cuda")
    ids = torch.randint(1000, 2000, (b, L), device="cuda")
    mask = torch.ones(b, L, dtype=torch.int64, device="cuda")
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(image, ids, mask)  # warm-up (cuDNN autotuning, lazy init)
        torch.cuda.synchronize()
        a, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        out = model(image, ids, mask)
        e.record()
        e.synchronize()
    logits = getattr(out, "mask", out[0])
    return {
        "config": cfg.name,
        "batch": b,
        "dtype": "bfloat16 (autocast)",
        "input_size": s,
        "forward_ms": round(a.elapsed_time(e), 2),
        "mask_shape": list(logits.shape),
        "finite": bool(torch.isfinite(logits.float()).all()),
        "peak_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
    }


def training(run: Run) -> dict[str, Any]:
    """50 training steps of ssp_lite and of ssp_paper (random backbones, synthetic batches: no data, no downloads)
    on CUDA with bf16 autocast: steps/s, samples/s and peak memory per config (issue 18)."""
    run.need_gpu()
    if run.left() < 90:
        raise Skip("time budget spent")
    try:
        from ssp_edge.ssp.train_bench import gpu_check_train
    except ImportError as e:
        raise Skip(f"training needs the model extra ({e}): pip install -e '.[model]'") from None
    return gpu_check_train(steps=50, amp="bf16", device="cuda")


#: (name, section) in run order; append here to add a section
SECTIONS: list[tuple[str, Callable[[Run], dict[str, Any]]]] = [
    ("environment", environment),
    ("build", build),
    ("kernels", kernels),
    ("timing", timing),
    ("forward", forward),
    ("training", training),
]


def run_checks(run: Run, sections: list[tuple[str, Callable[[Run], dict[str, Any]]]] | None = None) -> dict[str, Any]:
    """Every section, each reported with its status and seconds; the whole within the deadline."""
    report: dict[str, Any] = {"tool": "ssp gpu-check", "dry_run": run.dry_run, "budget_s": BUDGET_S, "sections": {}}
    t_all = time.monotonic()
    for name, fn in sections or SECTIONS:
        t0 = time.monotonic()
        print(f"gpu-check: {name} ...", file=sys.stderr, flush=True)
        if run.left() <= 5:
            res: dict[str, Any] = {"status": "skipped", "reason": "time budget spent"}
        else:
            try:
                res = fn(run)
                res.setdefault("status", "ok")
            except Skip as e:
                res = {"status": "skipped", "reason": str(e)}
            except Exception as e:  # a section's failure is reported, the others still run
                res = {
                    "status": "error",
                    "error": f"{type(e).__name__}: {e}",
                    "traceback": traceback.format_exc(limit=6)[-3000:],
                }
        res["seconds"] = round(time.monotonic() - t0, 2)
        report["sections"][name] = res
    report["seconds"] = round(time.monotonic() - t_all, 1)
    report["ok"] = all(s["status"] in ("ok", "skipped") for s in report["sections"].values())
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="no GPU: build what can be built, report the rest skipped")
    p.add_argument("--arch", default=None, help="build for sm_ARCH (e.g. 90) instead of the GPU's capability")
    p.add_argument("--out", default=None, help="also write the JSON here")
    a = p.parse_args(argv)
    run = Run(dry_run=a.dry_run, arch=a.arch)
    try:
        report = run_checks(run)
    finally:
        shutil.rmtree(run.work, ignore_errors=True)
    text = json.dumps(report, indent=1)
    if a.out:
        Path(a.out).write_text(text + "\n")
    print(text)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
