"""The CMake build of plugins/: every CUDA kernel compiles for every architecture of SSP_CUDA_ARCHS that this nvcc
supports, and, for every set of TensorRT headers found ($TENSORRT_INCLUDE_DIR, third_party/tensorrt-*/include),
libssp_trt_plugins.so builds with warnings as errors, exports exactly its entry points and loads (no libnvinfer
needed to load it).

Build folders are kept under build/plugins-test/ (git-ignored), so a re-run only rebuilds what changed.
Skipped with the reason when nvcc or cmake is missing.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

PLUGINS = REPO / "plugins"
BUILD_ROOT = REPO / "build" / "plugins-test"
NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").is_file() else None)
CMAKE = shutil.which("cmake")
NINJA = shutil.which("ninja")
ENTRY_POINTS = {"getCreators", "setLoggerFinder", "initLibSspPlugins", "sspPluginsBuildInfo"}

pytestmark = [
    pytest.mark.skipif(NVCC is None, reason="nvcc not found: the CUDA kernels cannot be compiled here"),
    pytest.mark.skipif(CMAKE is None, reason="cmake not found"),
]


def default_archs() -> list[str]:
    """SSP_CUDA_ARCHS's default in plugins/CMakeLists.txt (the one list of architectures)."""
    m = re.search(r'set\(SSP_CUDA_ARCHS "([0-9;]+)"', (PLUGINS / "CMakeLists.txt").read_text())
    assert m, "SSP_CUDA_ARCHS default not found in plugins/CMakeLists.txt"
    return m.group(1).split(";")


def nvcc_archs() -> set[str]:
    out = subprocess.run([NVCC, "--list-gpu-code"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"sm_(\d+)\b", out))


def header_sets() -> list[Path]:
    found = []
    env = os.environ.get("TENSORRT_INCLUDE_DIR")
    if env and (Path(env) / "NvInferRuntime.h").is_file():
        found.append(Path(env).resolve())
    for d in sorted((REPO / "third_party").glob("tensorrt-*/include")):
        if (d / "NvInferRuntime.h").is_file() and d.resolve() not in found:
            found.append(d.resolve())
    return found


def configure_and_build(name: str, target: str, *defs: str) -> tuple[Path, str]:
    build = BUILD_ROOT / name
    gen = ["-G", "Ninja"] if NINJA and not (build / "CMakeCache.txt").exists() else []
    if (build / "CMakeCache.txt").exists() and "Ninja" not in (build / "CMakeCache.txt").read_text():
        gen = []
    cfg = subprocess.run([CMAKE, "-S", str(PLUGINS), "-B", str(build), *gen, f"-DCMAKE_CUDA_COMPILER={NVCC}",
                          "-DSSP_WERROR=ON", "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON", *defs],
                         capture_output=True, text=True, timeout=300)
    assert cfg.returncode == 0, f"cmake configure failed:\n{cfg.stdout}\n{cfg.stderr}"
    bld = subprocess.run([CMAKE, "--build", str(build), "--target", target, "-j", "2"], capture_output=True,
                         text=True, timeout=900)
    assert bld.returncode == 0, f"cmake --build failed:\n{bld.stdout[-8000:]}\n{bld.stderr[-8000:]}"
    return build, cfg.stdout + cfg.stderr


def check_every_arch(build: Path, configure_log: str) -> None:
    wanted = default_archs()
    supported = nvcc_archs()
    expect = [a for a in wanted if a in supported]
    dropped = [a for a in wanted if a not in supported]
    assert expect, f"nvcc supports none of {wanted}"
    commands = json.loads((build / "compile_commands.json").read_text())
    for src in ("superpixel_aggregate_kernel.cu", "superpixel_propagate_kernel.cu", "replication_upsample_kernel.cu"):
        cmd = next((c["command"] for c in commands if c["file"].endswith(src)), None)
        assert cmd is not None, f"{src} is not compiled"
        for a in expect:
            assert f"arch=compute_{a}," in cmd, f"{src} not compiled for sm_{a}: {cmd}"
        top = max(expect, key=int)
        assert f"code=[compute_{top},sm_{top}]" in cmd, "PTX of the highest arch is not embedded"
    for a in dropped:  # said so at configure time
        assert f"sm_{a}" in configure_log and "does not support" in configure_log


HEADERS = header_sets()


@pytest.mark.slow
def test_kernels_compile_for_every_arch():
    """The `ssp_kernels` target (no TensorRT needed) compiles all .cu files for every supported listed arch."""
    if HEADERS:  # the plugin library build below compiles the same kernels: reuse the newest one
        build, log = configure_and_build(f"trt-{HEADERS[-1].parent.name}", "ssp_trt_plugins",
                                         f"-DTENSORRT_INCLUDE_DIR={HEADERS[-1]}")
    else:
        build, log = configure_and_build("kernels", "ssp_kernels", "-DSSP_BUILD_TESTS=OFF")
    assert (build / "libssp_kernels.a").is_file()
    check_every_arch(build, log)


@pytest.mark.slow
@pytest.mark.parametrize("include", [pytest.param(h, id=h.parent.name) for h in HEADERS] or [pytest.param(
    None, marks=pytest.mark.skip(reason="no TensorRT headers: set TENSORRT_INCLUDE_DIR or fetch them into "
                                        "third_party/tensorrt-<ver>/include (plugins/README.md)"))])
def test_plugin_library_builds(include):
    build, log = configure_and_build(f"trt-{include.parent.name}", "ssp_trt_plugins", f"-DTENSORRT_INCLUDE_DIR={include}")
    lib = build / "libssp_trt_plugins.so"
    assert lib.is_file()
    check_every_arch(build, log)
    m = re.search(r"TensorRT headers (\d+\.\d+\.\d+\.\d+)", log)
    assert m, log
    nm = shutil.which("nm")
    if nm:
        out = subprocess.run([nm, "-D", "--defined-only", str(lib)], capture_output=True, text=True, check=True).stdout
        exported = {line.split()[-1] for line in out.splitlines() if line.strip()}
        assert exported == ENTRY_POINTS, f"exports {sorted(exported)}"
    # loads without libnvinfer / a GPU and says what it was built against (in a fresh process: two builds share a
    # soname, and a process keeps the first one it loaded)
    probe = ("import ctypes, sys; so = ctypes.CDLL(sys.argv[1]); so.sspPluginsBuildInfo.restype = ctypes.c_char_p; "
             "n = ctypes.c_int32(0); so.getCreators.restype = ctypes.c_void_p; "
             "ok = so.getCreators(ctypes.byref(n)); print(so.sspPluginsBuildInfo().decode()); print(n.value, bool(ok))")
    r = subprocess.run([sys.executable, "-c", probe, str(lib)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    info, creators = r.stdout.strip().splitlines()
    assert f"TensorRT headers {m.group(1)}" in info, info
    assert creators == "3 True"
