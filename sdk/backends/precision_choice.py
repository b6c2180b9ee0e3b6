"""The default precision on ONNX Runtime's CPU provider: the fastest configuration that keeps the accuracy bound.

INT8 is chosen when all of these hold, else FP32 (the reason is kept, and ``ssp run`` prints it):

* the bundle has ONNX Runtime's INT8 plan of image_encoder and mask_decoder (``ssp calibrate`` writes it);
* its manifest records the accuracy ``ssp calibrate`` measured (``Manifest.accuracy``) for exactly the graphs that
  would run (same sha256), on at least :data:`MIN_EVAL_SAMPLES` held-out samples, and INT8 loses at most
  :data:`ACCURACY_BOUND` mIoU against FP32 there;
* the CPU has int8 dot-product instructions (x86 AVX512-VNNI / AVX-VNNI, Arm's dot product): ONNX Runtime's integer
  kernels need them to beat FP32 (measured on a 2-core Zen with VNNI: one frame, 1 prompt, 15.6 vs 17.3 ms; one
  thread per camera: 0.79x FP32's time, benchmarks/README.md);
* the execution providers are CPU only (a GPU provider runs FP32 / FP16 faster than Q/DQ graphs).
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..bundle import GRAPHS, Bundle, GraphEntry

__all__ = [
    "ACCURACY_BOUND",
    "MIN_EVAL_SAMPLES",
    "INT8_DOT_FLAGS",
    "PrecisionChoice",
    "choose_precision",
    "int8_accuracy_fails",
    "int8_dot_product",
    "ort_entries",
    "record_covers",
]

#: mIoU the default precision may lose against FP32 on ``ssp calibrate``'s held-out set (0.5 points)
ACCURACY_BOUND = 0.005
#: held-out samples below which a measured mIoU difference is noise at the scale of the bound (no evidence)
MIN_EVAL_SAMPLES = 100

#: /proc/cpuinfo flags (x86 "flags", Arm "Features") of int8 dot-product instructions ONNX Runtime's kernels use
INT8_DOT_FLAGS = {
    "avx512_vnni": "AVX512-VNNI",
    "avx_vnni": "AVX-VNNI",
    "amx_int8": "AMX-INT8",
    "asimddp": "Arm dotprod",
}


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision ``auto`` resolved to, and why (one line for people)."""

    precision: str
    reason: str


def ort_entries(bundle: Bundle, precision: str, flavour: str = "portable") -> dict[str, GraphEntry]:
    """graph -> the entry ONNX Runtime runs at ``precision``: that precision's graph where the bundle has one (for
    INT8 ONNX Runtime's Q/DQ plan first), else FP32 (the text encoder stays FP32)."""
    return {
        g: bundle.graph(g, flavour, precision if bundle.has_graph(g, flavour, precision) else "fp32") for g in GRAPHS
    }


def record_covers(bundle: Bundle, record: dict[str, Any] | None, precisions: Sequence[str] = ("fp32", "int8")) -> bool:
    """Whether an accuracy record (``Manifest.accuracy``) measured, for each of ``precisions``, exactly the graphs
    ONNX Runtime runs at that precision in ``bundle`` now (same sha256 per graph)."""
    if not record or not all(p in record["metrics"] and p in record["graphs"] for p in precisions):
        return False
    files = bundle.manifest.files
    return all(
        record["graphs"][p] == {g: files.get(e.file) for g, e in ort_entries(bundle, p).items()} for p in precisions
    )


def int8_accuracy_fails(m32: float, m8: float, samples: int) -> str | None:
    """Why a measured INT8 mIoU ``m8`` (FP32: ``m32``, on ``samples`` held-out samples) is no evidence for the INT8
    default, or None when it is: at least :data:`MIN_EVAL_SAMPLES` samples and a loss of at most :data:`ACCURACY_BOUND`
    (rounded, so a loss of exactly the bound is within it)."""
    if samples < MIN_EVAL_SAMPLES:
        return (
            f"INT8 accuracy was measured on {samples} samples, fewer than the {MIN_EVAL_SAMPLES} that resolve a "
            f"{ACCURACY_BOUND} mIoU difference (run `ssp calibrate` with --eval-samples >= {MIN_EVAL_SAMPLES})"
        )
    if round(m32 - m8, 9) > ACCURACY_BOUND:
        return f"INT8 mIoU {m8:.4f} vs FP32 {m32:.4f} is outside the {ACCURACY_BOUND} bound"
    return None


def _read_cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def int8_dot_product(cpuinfo: str | None = None, machine: str | None = None, os_name: str | None = None) -> str | None:
    """The int8 dot-product extension this CPU has (a value of :data:`INT8_DOT_FLAGS`), or None. Read from
    ``cpuinfo`` (default /proc/cpuinfo); without one, Apple silicon counts (every Apple arm64 has dotprod)."""
    if cpuinfo is None:
        cpuinfo = _read_cpuinfo()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    for flag, name in INT8_DOT_FLAGS.items():
        if flag in flags:
            return name
    machine = (machine or platform.machine()).lower()
    if not cpuinfo and (os_name or sys.platform) == "darwin" and machine in ("arm64", "aarch64"):
        return INT8_DOT_FLAGS["asimddp"]
    return None


def choose_precision(
    bundle: Bundle, providers: Sequence[str] | None = None, cpuinfo: str | None = None
) -> PrecisionChoice:
    """What ``precision=None`` means on ONNX Runtime for this bundle, these providers and this CPU (see the module
    docstring)."""

    def fp32(why: str) -> PrecisionChoice:
        return PrecisionChoice("fp32", f"fp32: {why}")

    gpu = [p for p in providers or () if p != "CPUExecutionProvider"]
    if gpu:
        return fp32(f"the INT8 default is for the CPU provider, not {', '.join(gpu)}")
    quant = [g for g in GRAPHS if g != "text_encoder"]
    missing = [g for g in quant if not _has_ort_int8(bundle, g)]
    if missing:
        return fp32(f"no ONNX Runtime INT8 graph of {', '.join(missing)} (run `ssp calibrate` to add them)")
    acc: dict[str, Any] | None = bundle.manifest.accuracy
    if not acc or not all(p in acc["metrics"] and p in acc["graphs"] for p in ("fp32", "int8")):
        return fp32("INT8 accuracy was not measured (run `ssp calibrate` with --eval-samples > 0)")
    for p in ("fp32", "int8"):
        if not record_covers(bundle, acc, (p,)):
            return fp32(f"the recorded accuracy is of other {p} graphs than the bundle has now (run `ssp calibrate`)")
    m32, m8 = acc["metrics"]["fp32"].get("mIoU"), acc["metrics"]["int8"].get("mIoU")
    if m32 is None or m8 is None:
        return fp32("the recorded accuracy has no mIoU")
    where = f"{acc['data']}, {acc['samples']} samples"
    why_not = int8_accuracy_fails(m32, m8, acc["samples"])
    if why_not:
        return fp32(f"{why_not} ({where})")
    text = _read_cpuinfo() if cpuinfo is None else cpuinfo
    dot = int8_dot_product(text)
    if dot is None:
        if not text:
            return fp32("this platform does not say whether the CPU has int8 dot products (no /proc/cpuinfo)")
        return fp32("this CPU has no int8 dot-product instructions (VNNI / dotprod): INT8 would not be faster")
    return PrecisionChoice("int8", f"int8: mIoU {m8:.4f} vs FP32 {m32:.4f} ({where}), CPU has {dot}")


def _has_ort_int8(bundle: Bundle, graph: str) -> bool:
    return any(
        (g.name, g.flavour, g.precision, g.qdq_plan) == (graph, "portable", "int8", "onnxruntime")
        for g in bundle.manifest.graphs
    )
