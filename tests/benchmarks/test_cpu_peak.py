"""The CPU peak formula: FP32 FLOP/cycle from the processor's real vector width and FMA units, detected from
/proc/cpuinfo texts of Zen 4, Zen 5 (server and mobile), Zen 3, Intel with two and with one 512-bit FMA unit, Intel
AVX2 and a Jetson AGX Orin (Cortex-A78AE). Expected values are the vendors' / reviewers' unit counts worked by hand
(units x lanes x 2), not read from the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssp_edge.benchmarks.devices import UTILIZATION, cpu_peak, jetson_estimates

CPUINFO = Path(__file__).parent / "cpuinfo"

# fixture, microarchitecture, FMA units, bits per unit, FLOP/cycle/core (= units x bits/32 x 2), cores, GHz
CASES = [
    ("zen4_epyc_9554.txt", "AMD Zen 4", 2, 256, 2 * 8 * 2, 2, 3.1),  # AVX-512 double-pumped on 256-bit units
    ("zen5_epyc_vm.txt", "AMD Zen 5", 2, 512, 2 * 16 * 2, 2, 2.5961),  # this machine: family 0x1A, native 512-bit
    ("zen5_ryzen_ai_hx370.txt", "AMD Zen 5 (mobile)", 2, 256, 2 * 8 * 2, 4, 2.0),
    ("zen3_epyc_7763.txt", "AMD Zen 3", 2, 256, 2 * 8 * 2, 4, 2.45),
    ("intel_xeon_platinum_8480.txt", "Intel (two 512-bit FMA units)", 2, 512, 2 * 16 * 2, 4, 2.0),
    ("intel_xeon_silver_4214.txt", "Intel (one 512-bit FMA unit)", 1, 512, 1 * 16 * 2, 4, 2.2),
    ("intel_core_i7_1185g7.txt", "Intel client (one 512-bit FMA unit)", 1, 512, 1 * 16 * 2, 4, 3.0),
    ("intel_core_i7_12700.txt", "x86 AVX2", 2, 256, 2 * 8 * 2, 8, 2.1),
]


@pytest.mark.parametrize("fixture, arch, units, bits, fpc, cores, ghz", CASES, ids=[c[0][:-4] for c in CASES])
def test_peak_from_vector_width_and_fma_units(fixture, arch, units, bits, fpc, cores, ghz):
    p = cpu_peak((CPUINFO / fixture).read_text())
    assert (p.microarch, p.fma_units, p.vector_bits, p.flops_per_cycle, p.cores) == (arch, units, bits, fpc, cores)
    assert p.ghz == pytest.approx(ghz, abs=1e-3)
    assert p.gflops == pytest.approx(cores * ghz * fpc, rel=1e-3)
    assert f"{cores} cores x" in p.formula and f"x {fpc} FP32 FLOP/cycle" in p.formula
    assert p.formula.endswith(f"= {cores * ghz * fpc:.0f} GFLOP/s")


def test_zen4_on_this_machines_clock_is_the_issues_166_gflops():
    """Issue 17's figure for a 2-core Zen 4 at 2.6 GHz: 2 x 2.6 x 32 = 166 GFLOP/s."""
    p = cpu_peak((CPUINFO / "zen4_epyc_9554.txt").read_text(), cores=2, ghz=2.6)
    assert p.gflops == pytest.approx(166.4)


def test_jetson_agx_orin_cortex_a78ae_has_two_128bit_neon_pipes():
    """12 x Cortex-A78AE (CPU part 0xd42) at 2.2 GHz: 2 NEON pipes x 4 lanes x 2 = 16 FLOP/cycle, 422 GFLOP/s. The
    aarch64 cpuinfo has no clock (it comes from cpufreq on the device; given here) and no core id."""
    p = cpu_peak((CPUINFO / "jetson_agx_orin.txt").read_text(), ghz=2.2)
    assert (p.microarch, p.isa, p.fma_units, p.vector_bits, p.flops_per_cycle, p.cores) == (
        "Cortex-A78AE",
        "NEON",
        2,
        128,
        16,
        12,
    )
    assert p.gflops == pytest.approx(12 * 2.2 * 16)


def test_unknown_arm_part_is_a_labelled_guess():
    text = (CPUINFO / "jetson_agx_orin.txt").read_text().replace("0xd42", "0xfff")
    p = cpu_peak(text, ghz=2.0)
    assert p.flops_per_cycle == 16 and "not in the table" in p.source


def test_this_machine_is_detected_and_the_formula_printed():
    p = cpu_peak()
    assert p.cores >= 1 and p.ghz > 0 and p.flops_per_cycle in (8, 16, 32, 64)
    assert "GFLOP/s" in p.formula and p.source


def test_jetson_estimates_are_calibrated_not_a_flat_share():
    """Calibration: YOLOv8n (8.7 GFLOPs) at 3.49 ms INT8 on an Orin Nano Super (67 sparse TOPS = 33.5 dense) is
    8.7e9 / 3.49e-3 / 33.5e12 = 7.44% of the dense peak; a frame of 8.7 GFLOPs is then estimated at that network's
    own measured 1 / 3.49 ms = 287 FPS on the same module."""
    assert UTILIZATION == pytest.approx(8.7e9 / 3.49e-3 / 33.5e12, rel=1e-3)
    nano = next(j for j in jetson_estimates(8.7) if "Nano" in j.device)
    assert nano.fps_int8 == pytest.approx(1 / 3.49e-3, rel=0.01)
    assert nano.fps_fp16 == pytest.approx(nano.fps_int8 / 2, rel=0.01)
