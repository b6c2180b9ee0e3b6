"""Peak compute of this CPU (estimated from its vector units and clock) and of Jetson Orin modules (from
NVIDIA's published numbers), for "achieved FLOP/s" and the estimated-FPS table. Estimates, labelled so."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuPeak", "cpu_peak", "JETSONS", "JetsonEstimate", "jetson_estimates"]


@dataclass
class CpuPeak:
    cores: int
    ghz: float
    flops_per_cycle: int  # fp32 per core
    isa: str

    @property
    def gflops(self) -> float:
        return self.cores * self.ghz * self.flops_per_cycle


def cpu_peak() -> CpuPeak:
    """FP32 peak = cores x clock x (2 FMA units x vector lanes x 2) from /proc/cpuinfo."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set(re.findall(r"^flags\s*:(.*)$", info, re.M)[0].split()) if "flags" in info else set()
    mhz = [float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", info, re.M)]
    ghz = (max(mhz) / 1000.0) if mhz else 2.0
    if "avx512f" in flags:
        fpc, isa = 64, "AVX-512 (2 FMA x 16 lanes)"
    elif "avx2" in flags and "fma" in flags:
        fpc, isa = 32, "AVX2 (2 FMA x 8 lanes)"
    else:
        fpc, isa = 8, "SSE (estimate)"
    return CpuPeak(len(os.sched_getaffinity(0)), ghz, fpc, isa)


#: name -> (published AI performance, sparse INT8 TOPS; GPU FP16 dense TFLOPS estimate = TOPS / 4)
JETSONS: dict[str, float] = {
    "Jetson Orin Nano 8GB (Super)": 67.0,
    "Jetson Orin NX 16GB (Super)": 157.0,
    "Jetson AGX Orin 64GB": 275.0,
}
UTILIZATION = 0.05  # assumed share of peak a batch-1 network of small kernels reaches (stated in the report)


@dataclass
class JetsonEstimate:
    device: str
    int8_tops_sparse: float
    fps_fp16: float
    fps_int8: float


def jetson_estimates(gflops_per_frame: float) -> list[JetsonEstimate]:
    """FPS = utilization x dense peak / FLOPs per frame (INT8 dense = sparse / 2, FP16 dense = sparse / 4)."""
    out = []
    for name, tops in JETSONS.items():
        int8 = UTILIZATION * tops / 2 * 1e12 / (gflops_per_frame * 1e9)
        fp16 = UTILIZATION * tops / 4 * 1e12 / (gflops_per_frame * 1e9)
        out.append(JetsonEstimate(name, tops, round(fp16, 1), round(int8, 1)))
    return out
