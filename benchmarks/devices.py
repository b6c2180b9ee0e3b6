"""Peak compute of this CPU, from its real vector width and FMA units, and estimated Jetson Orin FPS calibrated
against a published TensorRT measurement. Both are estimates and say so; :func:`sgemm_gflops` measures what this
machine actually reaches on a large single-precision matrix product, a check on the formula (a measured rate above
the "peak" means the formula under-counts the machine).

FP32 peak per core and cycle = FMA units x (vector bits / 32) lanes x 2 (an FMA is a multiply and an add):

* AMD Zen 4 (family 0x19 with AVX-512): AVX-512 executes on 256-bit units ("double-pumped"), two FMA pipes:
  2 x 8 x 2 = 32. Zen 3 (family 0x19 without AVX-512) and Zen 2 (family 0x17, model >= 0x30): 2 x 256-bit FMA = 32;
  Zen / Zen+ (family 0x17, model < 0x30): 2 x 128-bit = 16.
* AMD Zen 5 (family 0x1A): desktop and server parts (EPYC 9005, Ryzen 9000) have a native 512-bit datapath,
  2 x 16 x 2 = 64; mobile parts (Strix Point models 0x20-0x2F, Krackan / Strix Halo 0x60-0x7F) keep 256-bit units:
  32 (A. Yee, "Zen5's AVX512 Teardown", numberworld.org, 2024; Chips and Cheese, "AMD's Strix Point: Zen 5 Hits
  Mobile", 2024).
* Intel with AVX-512: two 512-bit FMA units (Xeon Gold 6xxx / Platinum, Xeon W, Core X, Sapphire Rapids and later
  Xeons) = 64; one (Xeon Bronze / Silver and Gold 5xxx of Skylake-SP / Cascade Lake, except Gold 5122 / 5222; client
  Ice Lake / Tiger Lake / Rocket Lake cores) = 32. AVX2 + FMA (Haswell and later): 2 x 256-bit = 32.
* Arm: NEON is 128 bits (4 FP32 lanes) per pipe. Cortex-A78 / A78AE (Jetson Orin) has two NEON/FP pipes:
  2 x 4 x 2 = 16 (the Cortex-X1 doubled them to four: L. Gwennap, "Cortex-X1: A Bigger Arm", Linley Group
  Microprocessor Report, June 2020); Neoverse V1 / V2 and Cortex-X1..X4: 4 pipes = 32; A57 / A72 / A76 / A77 /
  N1 / N2 / A710 and NVIDIA Carmel (Xavier): 2 pipes = 16; A53 / A55: 1 x 128-bit FMA per cycle = 8.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CpuPeak",
    "cpu_peak",
    "sgemm_gflops",
    "JETSONS",
    "JetsonEstimate",
    "jetson_estimates",
    "JETSON_CALIBRATION",
    "UTILIZATION",
]


@dataclass
class CpuPeak:
    cores: int
    ghz: float
    flops_per_cycle: int  # fp32 per core
    isa: str
    microarch: str = "unknown"
    vector_bits: int = 0  # width of one FMA unit
    fma_units: int = 0
    clock_source: str = ""  # where the clock came from
    source: str = ""  # why this microarchitecture / unit count was chosen

    @property
    def gflops(self) -> float:
        return self.cores * self.ghz * self.flops_per_cycle

    @property
    def formula(self) -> str:
        lanes = self.vector_bits // 32 if self.vector_bits else 0
        return (
            f"{self.cores} cores x {self.ghz:.2f} GHz x {self.flops_per_cycle} FP32 FLOP/cycle "
            f"({self.fma_units} FMA units x {lanes} lanes x 2; {self.microarch}, {self.isa}) "
            f"= {self.gflops:.0f} GFLOP/s"
        )


def _first(info: str, key: str) -> str:
    m = re.search(rf"^{re.escape(key)}\s*:\s*(.*)$", info, re.M)
    return m.group(1).strip() if m else ""


def _cores(info: str) -> int:
    """Physical cores listed in a cpuinfo text: distinct (physical id, core id), else the processor count."""
    pairs, procs = set(), 0
    for block in re.split(r"\n\s*\n", info):
        if re.search(r"^processor\s*:", block, re.M):
            procs += 1
            cid = _first(block, "core id")
            if cid:
                pairs.add((_first(block, "physical id"), cid))
    return len(pairs) or procs or 1


def _ghz(info: str) -> tuple[float, str]:
    mhz = [float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", info, re.M)]
    if mhz:
        return max(mhz) / 1000.0, "/proc/cpuinfo cpu MHz"
    m = re.search(r"@\s*([\d.]+)\s*GHz", _first(info, "model name"))
    if m:
        return float(m.group(1)), "model name"
    return 0.0, ""


def _sysfs_ghz() -> tuple[float, str]:
    p = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        return int(p.read_text().strip()) / 1e6, str(p)
    except (OSError, ValueError):
        return 0.0, ""


#: Arm CPU part (implementer 0x41 unless noted) -> (name, 128-bit FMA pipes)
_ARM_PARTS = {
    "0xd03": ("Cortex-A53", 1),
    "0xd05": ("Cortex-A55", 1),
    "0xd07": ("Cortex-A57", 2),
    "0xd08": ("Cortex-A72", 2),
    "0xd0b": ("Cortex-A76", 2),
    "0xd0c": ("Neoverse N1", 2),
    "0xd0d": ("Cortex-A77", 2),
    "0xd40": ("Neoverse V1", 4),
    "0xd41": ("Cortex-A78", 2),
    "0xd42": ("Cortex-A78AE", 2),
    "0xd44": ("Cortex-X1", 4),
    "0xd47": ("Cortex-A710", 2),
    "0xd48": ("Cortex-X2", 4),
    "0xd49": ("Neoverse N2", 2),
    "0xd4b": ("Cortex-A78C", 2),
    "0xd4e": ("Cortex-X3", 4),
    "0xd4f": ("Neoverse V2", 4),
    "0xd82": ("Cortex-X4", 4),
}


def _x86(info: str, flags: set[str]) -> tuple[str, int, int, str, str]:
    """(microarch, vector bits per FMA unit, FMA units, isa, why) for an x86 cpuinfo."""
    vendor, name = _first(info, "vendor_id"), _first(info, "model name")
    family, model = int(_first(info, "cpu family") or 0), int(_first(info, "model") or 0)
    avx512 = "avx512f" in flags
    isa = "AVX-512" if avx512 else "AVX2+FMA" if {"avx2", "fma"} <= flags else "AVX" if "avx" in flags else "SSE"
    if vendor == "AuthenticAMD":
        if family == 0x1A:
            mobile = 0x20 <= model <= 0x2F or 0x60 <= model <= 0x7F
            if mobile:
                return "AMD Zen 5 (mobile)", 256, 2, isa, f"family 0x1A model {model:#x}: mobile Zen 5, 256-bit units"
            return "AMD Zen 5", 512, 2, isa, f"family 0x1A model {model:#x}: native 512-bit AVX-512 datapath"
        if family == 0x19:
            if avx512:
                return "AMD Zen 4", 256, 2, isa, "family 0x19 with AVX-512: executed on 256-bit units"
            return "AMD Zen 3", 256, 2, isa, "family 0x19 without AVX-512: 2 x 256-bit FMA"
        if family == 0x17:
            if model >= 0x30:
                return "AMD Zen 2", 256, 2, isa, "family 0x17 model >= 0x30: 2 x 256-bit FMA"
            return "AMD Zen / Zen+", 128, 2, isa, "family 0x17 model < 0x30: 2 x 128-bit FMA"
    if vendor == "GenuineIntel" and avx512:
        one = re.search(r"Xeon\(R\)\s+(Bronze|Silver)\s+\d[12]\d\d|Xeon\(R\)\s+Gold\s+5[12]\d\d", name)
        if one and not re.search(r"Gold\s+5[12]22", name):
            return "Intel (one 512-bit FMA unit)", 512, 1, isa, f"{name!r}: Skylake/Cascade Lake Bronze/Silver/Gold 5"
        if "Core(TM)" in name and not re.search(r"i[79]-\d{4,5}X", name):
            return "Intel client (one 512-bit FMA unit)", 512, 1, isa, f"{name!r}: client AVX-512 core"
        return "Intel (two 512-bit FMA units)", 512, 2, isa, f"{name!r}: two 512-bit FMA units"
    if {"avx2", "fma"} <= flags:
        return "x86 AVX2", 256, 2, isa, "AVX2 + FMA: 2 x 256-bit FMA"
    if "avx" in flags:
        return "x86 AVX", 256, 1, isa, "AVX without FMA: one 256-bit multiply + one add per cycle"
    return "x86 SSE", 128, 1, isa, "SSE: one 128-bit multiply + one add per cycle"


def cpu_peak(cpuinfo: str | None = None, cores: int | None = None, ghz: float | None = None) -> CpuPeak:
    """This CPU's FP32 peak (or the one a ``cpuinfo`` text describes): cores x clock x FLOP/cycle, where FLOP/cycle
    comes from the microarchitecture's FMA units and their width (module docstring). ``cores``: default the
    physical cores this process may use (the cores of ``cpuinfo`` when a text is given); ``ghz``: default the
    cpuinfo / cpufreq clock (a VM reports its nominal clock; turbo is not counted)."""
    live = cpuinfo is None
    if live:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    info = cpuinfo or ""
    flags_line = _first(info, "flags")
    if cores is None:
        if live:
            from ssp_edge.sdk.backends.onnxruntime import physical_cores

            cores = physical_cores()
        else:
            cores = _cores(info)
    clock, clock_src = (ghz, "given") if ghz else _ghz(info)
    if not clock and live:
        clock, clock_src = _sysfs_ghz()
    if not clock:
        clock, clock_src = 2.0, "unknown (2.0 GHz assumed)"
    if flags_line:
        arch, bits, units, isa, why = _x86(info, set(flags_line.split()))
    else:
        part = _first(info, "CPU part").lower()
        feats = set(_first(info, "Features").split())
        name, pipes = _ARM_PARTS.get(part, (f"Arm part {part or '?'}", 2))
        why = (
            f"CPU part {part}: {name}, {pipes} x 128-bit NEON FMA pipes"
            if part in _ARM_PARTS
            else f"CPU part {part or '?'} not in the table: 2 x 128-bit NEON pipes assumed"
        )
        arch, bits, units, isa = name, 128, pipes, "NEON" if "asimd" in feats or not feats else "VFP"
    return CpuPeak(int(cores), round(float(clock), 3), units * (bits // 32) * 2, isa, arch, bits, units, clock_src, why)


def sgemm_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Best-of-``repeats`` GFLOP/s of an n x n x n float32 matrix product on NumPy's BLAS (all its threads): a
    measured lower bound on what this machine can reach, to check the peak formula against."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


#: name -> published AI performance (sparse INT8 TOPS; dense INT8 = / 2, dense FP16 = / 4 on Ampere tensor cores)
JETSONS: dict[str, float] = {
    "Jetson Orin Nano 8GB (Super)": 67.0,
    "Jetson Orin NX 16GB (Super)": 157.0,
    "Jetson AGX Orin 64GB": 275.0,
}

#: The published TensorRT measurement the estimates are scaled by: a batch-1 convolutional network of known FLOPs
#: on a Jetson Orin, as its share of that module's dense INT8 peak.
JETSON_CALIBRATION: dict[str, object] = {
    "model": "YOLOv8n, 640x640, batch 1",
    "gflops": 8.7,  # Ultralytics' published count (2 FLOP per multiply-add, the convention used here)
    "device": "Jetson Orin Nano 8GB (Super)",
    "precision": "int8",
    "latency_ms": 3.49,  # trtexec GPU compute time, TensorRT 10.3, JetPack 6.2, MAXN SUPER
    "source": "H. Choi, 'YOLOv8 on Jetson Orin Nano: From PyTorch to TensorRT INT8', hokwangchoi.com/blog/"
    "vision-benchmarks, 2026 (trtexec, TensorRT 10.3)",
    "cross_check": "NVIDIA-AI-IOT/jetson_benchmarks README: ResNet-50 224x224 (8.2 GFLOPs) at 824 FPS on Jetson "
    "Xavier NX (21 INT8 TOPS, GPU + 2 DLA, batched, TensorRT 7): 32% of peak, the batched "
    "throughput regime a batch-1 camera pipeline does not reach",
}
UTILIZATION = round(
    JETSON_CALIBRATION["gflops"]
    * 1e9
    / (JETSON_CALIBRATION["latency_ms"] / 1e3)  # type: ignore
    / (JETSONS["Jetson Orin Nano 8GB (Super)"] / 2 * 1e12),
    4,
)


@dataclass
class JetsonEstimate:
    device: str
    int8_tops_sparse: float
    fps_fp16: float
    fps_int8: float
    physical_limit_fps_int8: float = 0.0  # dense INT8 peak / FLOPs per frame (100% utilisation)


def jetson_estimates(gflops_per_frame: float, utilization: float = UTILIZATION) -> list[JetsonEstimate]:
    """FPS = utilization x dense peak / FLOPs per frame, with ``utilization`` the share of dense INT8 peak the
    calibration network reaches (:data:`JETSON_CALIBRATION`; the same share assumed for FP16)."""
    out = []
    for name, tops in JETSONS.items():
        int8 = utilization * tops / 2 * 1e12 / (gflops_per_frame * 1e9)
        fp16 = utilization * tops / 4 * 1e12 / (gflops_per_frame * 1e9)
        limit = tops / 2 * 1e12 / (gflops_per_frame * 1e9)
        out.append(JetsonEstimate(name, tops, round(fp16, 1), round(int8, 1), round(limit, 0)))
    return out
