"""The CMake build of plugins/ (no GPU needed):

* with the newest TensorRT headers found and the default architectures: every kernel is compiled for every arch of
  SSP_CUDA_ARCHS this nvcc supports, the built library embeds SASS for each of them and PTX for the lowest
  (``cuobjdump --list-elf`` / ``--list-ptx``: sm_75, sm_80, sm_86, ... and compute_75, so newer GPUs JIT), exports
  exactly its entry points, loads without libnvinfer and says what it was built against (TensorRT headers, CUDA);
* ``libssp_trt_plugins_autoreg.so`` builds, exports only its two symbols, and its load constructor registers the three
  creators with TensorRT's global registry: a fake ``libnvinfer.so.N`` (compiled here against the same headers,
  exporting ``getPluginRegistry`` with a registry that records ``registerCreator`` calls) stands in for TensorRT,
  loaded RTLD_GLOBAL and RTLD_LOCAL (Triton's way); the main library registers nothing on load, and its
  ``initLibSspPlugins`` finds the RTLD_LOCAL registry too;
* with the other header sets: the library builds (one arch: the arch list is tested above);
* the CUDA major check: TensorRT 10 headers with this CUDA 13 nvcc are refused unless SSP_TENSORRT_CUDA_MAJOR says
  the TensorRT is a CUDA 13 build.

Build folders are kept under build/plugins-test/ (git-ignored), so a re-run only rebuilds what changed.
Skipped with the reason when nvcc, cmake or the headers are missing.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from helpers import REPO

PLUGINS = REPO / "plugins"
BUILD_ROOT = REPO / "build" / "plugins-test"
NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").is_file() else None)
CMAKE = shutil.which("cmake")
NINJA = shutil.which("ninja")
CXX = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
ENTRY_POINTS = {"getCreators", "setLoggerFinder", "initLibSspPlugins", "sspPluginsBuildInfo"}
AUTOREG_ENTRY_POINTS = {"sspPluginsAutoregistered", "sspPluginsBuildInfo"}

pytestmark = [
    pytest.mark.skipif(NVCC is None, reason="nvcc not found: the CUDA kernels cannot be compiled here"),
    pytest.mark.skipif(CMAKE is None, reason="cmake not found"),
]


def cuobjdump() -> str | None:
    """cuobjdump from PATH, the CUDA toolkit, or the nvidia-cuda-cuobjdump wheel (dev extra)."""
    found = shutil.which("cuobjdump")
    if found:
        return found
    cands = [str(Path(NVCC).resolve().parent / "cuobjdump")] if NVCC else []
    cands += sorted(glob.glob(os.path.join(sysconfig.get_paths()["purelib"], "nvidia", "cu*", "bin", "cuobjdump")))
    return next((c for c in cands if os.access(c, os.X_OK)), None)


def default_archs() -> list[str]:
    """SSP_CUDA_ARCHS's default in plugins/CMakeLists.txt (the one list of architectures)."""
    m = re.search(r'set\(SSP_CUDA_ARCHS "([0-9;]+)"', (PLUGINS / "CMakeLists.txt").read_text())
    assert m, "SSP_CUDA_ARCHS default not found in plugins/CMakeLists.txt"
    return m.group(1).split(";")


def nvcc_archs() -> set[str]:
    out = subprocess.run([NVCC, "--list-gpu-code"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"sm_(\d+)\b", out))


def nvcc_major() -> int:
    out = subprocess.run([NVCC, "--version"], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"release (\d+)\.", out).group(1))


def header_sets() -> list[Path]:
    found = []
    env = os.environ.get("TENSORRT_INCLUDE_DIR")
    if env and (Path(env) / "NvInferRuntime.h").is_file():
        found.append(Path(env).resolve())
    for d in sorted((REPO / "third_party").glob("tensorrt-*/include")):
        if (d / "NvInferRuntime.h").is_file() and d.resolve() not in found:
            found.append(d.resolve())
    return found


def header_major(include: Path) -> int:
    text = (include / "NvInferVersion.h").read_text()
    m = re.search(r"#define TRT_MAJOR_ENTERPRISE +(\d+)", text) or re.search(r"#define NV_TENSORRT_MAJOR +(\d+)", text)
    return int(m.group(1))


def configure(name: str, *defs: str, check: bool = True) -> tuple[Path, subprocess.CompletedProcess]:
    build = BUILD_ROOT / name
    cache = build / "CMakeCache.txt"
    gen = ["-G", "Ninja"] if NINJA and not cache.exists() else []
    cfg = subprocess.run(
        [
            CMAKE,
            "-S",
            str(PLUGINS),
            "-B",
            str(build),
            *gen,
            f"-DCMAKE_CUDA_COMPILER={NVCC}",
            "-DSSP_WERROR=ON",
            "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON",
            *defs,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert cfg.returncode == 0, f"cmake configure failed:\n{cfg.stdout}\n{cfg.stderr}"
    return build, cfg


def configure_and_build(name: str, targets: list[str], *defs: str) -> tuple[Path, str]:
    build, cfg = configure(name, *defs)
    bld = subprocess.run(
        [CMAKE, "--build", str(build), "--target", *targets, "-j", "2"], capture_output=True, text=True, timeout=1500
    )
    assert bld.returncode == 0, f"cmake --build failed:\n{bld.stdout[-8000:]}\n{bld.stderr[-8000:]}"
    return build, cfg.stdout + cfg.stderr


def cuda_defs(include: Path) -> list[str]:
    """Build-check the TensorRT 10 headers with this CUDA 13 nvcc (as for a cu13 TensorRT 10.13+ build)."""
    want = 13 if header_major(include) >= 11 else 12
    return [] if nvcc_major() == want else [f"-DSSP_TENSORRT_CUDA_MAJOR={nvcc_major()}"]


def expected_archs() -> tuple[list[str], list[str]]:
    wanted, supported = default_archs(), nvcc_archs()
    return [a for a in wanted if a in supported], [a for a in wanted if a not in supported]


def check_compile_commands(build: Path, configure_log: str) -> None:
    expect, dropped = expected_archs()
    assert expect, "nvcc supports none of the default archs"
    commands = json.loads((build / "compile_commands.json").read_text())
    low = min(expect, key=int)
    for src in ("superpixel_aggregate_kernel.cu", "superpixel_propagate_kernel.cu", "replication_upsample_kernel.cu"):
        cmd = next((c["command"] for c in commands if c["file"].endswith(src)), None)
        assert cmd is not None, f"{src} is not compiled"
        for a in expect:
            assert f"arch=compute_{a}," in cmd, f"{src} not compiled for sm_{a}: {cmd}"
        assert f"code=[compute_{low},sm_{low}]" in cmd, "PTX of the lowest arch is not embedded"
    for a in dropped:  # said so at configure time
        assert f"sm_{a}" in configure_log and "does not support" in configure_log


def exported(lib: Path) -> set[str]:
    out = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


HEADERS = header_sets()
needs_headers = pytest.mark.skipif(
    not HEADERS,
    reason="no TensorRT headers: set TENSORRT_INCLUDE_DIR or fetch them "
    "into third_party/tensorrt-<ver>/include (make trt-headers)",
)


@pytest.fixture(scope="module")
def main_build() -> tuple[Path, str, Path]:
    """The newest header set, default architectures, both libraries."""
    if not HEADERS:
        pytest.skip("no TensorRT headers (make trt-headers)")
    inc = HEADERS[-1]
    build, log = configure_and_build(
        f"trt-{inc.parent.name}",
        ["ssp_trt_plugins", "ssp_trt_plugins_autoreg"],
        f"-DTENSORRT_INCLUDE_DIR={inc}",
        *cuda_defs(inc),
    )
    return build, log, inc


@pytest.mark.slow
def test_kernels_compile_for_every_arch():
    """The `ssp_kernels` target (no TensorRT needed) compiles all .cu files for every supported listed arch."""
    if HEADERS:  # the library build compiles the same kernels: reuse it
        inc = HEADERS[-1]
        build, log = configure_and_build(
            f"trt-{inc.parent.name}", ["ssp_kernels"], f"-DTENSORRT_INCLUDE_DIR={inc}", *cuda_defs(inc)
        )
    else:
        build, log = configure_and_build("kernels", ["ssp_kernels"], "-DSSP_BUILD_TESTS=OFF")
    assert (build / "libssp_kernels.a").is_file()
    check_compile_commands(build, log)


@pytest.mark.slow
@needs_headers
def test_library_embeds_sass_for_common_gpus_and_ptx(main_build):
    build, log, inc = main_build
    lib = build / "libssp_trt_plugins.so"
    check_compile_commands(build, log)
    tool = cuobjdump()
    if tool is None:
        pytest.skip("cuobjdump not found (pip install nvidia-cuda-cuobjdump, the dev extra, or a full CUDA toolkit)")
    elf = subprocess.run([tool, "--list-elf", str(lib)], capture_output=True, text=True, timeout=120)
    ptx = subprocess.run([tool, "--list-ptx", str(lib)], capture_output=True, text=True, timeout=120)
    assert elf.returncode == 0 and ptx.returncode == 0, elf.stderr + ptx.stderr
    sass = set(re.findall(r"\.sm_(\d+)\.cubin", elf.stdout))
    ptxs = set(re.findall(r"\.sm_(\d+)\.ptx", ptx.stdout))
    expect, _ = expected_archs()
    assert {"75", "80", "86"} <= sass and set(expect) == sass, elf.stdout
    assert ptxs == {min(expect, key=int)}, ptx.stdout  # PTX of the lowest arch: every newer GPU can JIT it
    print(f"cuobjdump: SASS sm_{', sm_'.join(sorted(sass, key=int))}; PTX compute_{', compute_'.join(sorted(ptxs))}")


@pytest.mark.slow
@needs_headers
def test_library_exports_loads_and_says_what_it_was_built_with(main_build):
    build, log, inc = main_build
    lib = build / "libssp_trt_plugins.so"
    assert exported(lib) == ENTRY_POINTS
    m = re.search(r"TensorRT headers (\d+\.\d+\.\d+\.\d+)", log)
    assert m, log
    probe = (
        "import ctypes, sys; so = ctypes.CDLL(sys.argv[1]); so.sspPluginsBuildInfo.restype = ctypes.c_char_p; "
        "n = ctypes.c_int32(0); so.getCreators.restype = ctypes.c_void_p; "
        "ok = so.getCreators(ctypes.byref(n)); print(so.sspPluginsBuildInfo().decode()); print(n.value, bool(ok))"
    )
    r = subprocess.run([sys.executable, "-c", probe, str(lib)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    info, creators = r.stdout.strip().splitlines()
    nvcc = subprocess.run([NVCC, "--version"], capture_output=True, text=True).stdout
    cuda = re.search(r"V(\d+\.\d+\.\d+)", nvcc).group(1)
    assert f"TensorRT headers {m.group(1)}" in info and f"CUDA {cuda} (cudart static)" in info, info
    assert creators == "3 True"
    assert info.encode() in lib.read_bytes()  # one literal: readable without loading the library


# ---------------------------------------------------------------------------------------------------- autoreg
FAKE_NVINFER = r"""
// A stand-in for libnvinfer: getPluginRegistry() returns a registry that records registerCreator calls.
#include "NvInferRuntime.h"
#include <cstring>
#include <string>
#include <vector>
using namespace nvinfer1;
namespace {
class Registry : public IPluginRegistry {
public:
#if NV_TENSORRT_MAJOR < 11
    bool registerCreator(IPluginCreator&, AsciiChar const* const) noexcept override { return false; }
    IPluginCreator* const* getPluginCreatorList(int32_t* const n) const noexcept override { *n = 0; return nullptr; }
    IPluginCreator* getPluginCreator(AsciiChar const* const, AsciiChar const* const,
                                     AsciiChar const* const) noexcept override { return nullptr; }
    bool deregisterCreator(IPluginCreator const&) noexcept override { return false; }
#else
    IPluginCreatorInterface* const* getAllCreatorsRecursive(int32_t* const n) noexcept override {
        return getAllCreators(n);
    }
#endif
    void setErrorRecorder(IErrorRecorder* const) noexcept override {}
    IErrorRecorder* getErrorRecorder() const noexcept override { return nullptr; }
    bool isParentSearchEnabled() const override { return false; }
    void setParentSearchEnabled(bool const) override {}
    PluginLibraryHandle loadLibrary(AsciiChar const*) noexcept override { return nullptr; }
    void deregisterLibrary(PluginLibraryHandle) noexcept override {}
    bool registerCreator(IPluginCreatorInterface& c, AsciiChar const* const ns) noexcept override {
        auto& v3 = static_cast<IPluginCreatorV3One&>(c);
        log += std::string(v3.getPluginName()) + "/" + v3.getPluginVersion() + "/" + v3.getPluginNamespace()
            + "@" + ns + ";";
        creators.push_back(&c);
        return true;
    }
    IPluginCreatorInterface* const* getAllCreators(int32_t* const n) const noexcept override {
        *n = static_cast<int32_t>(creators.size()); return creators.data();
    }
    IPluginCreatorInterface* getCreator(AsciiChar const* const name, AsciiChar const* const,
                                        AsciiChar const* const) noexcept override {
        for (auto* c : creators)
            if (std::strcmp(static_cast<IPluginCreatorV3One*>(c)->getPluginName(), name) == 0) return c;
        return nullptr;
    }
    bool deregisterCreator(IPluginCreatorInterface const&) noexcept override { return false; }
    IPluginResource* acquirePluginResource(AsciiChar const*, IPluginResource*) noexcept override { return nullptr; }
    int32_t releasePluginResource(AsciiChar const*) noexcept override { return 0; }
    std::string log;
    std::vector<IPluginCreatorInterface*> creators;
};
Registry* gRegistry = new Registry; // never destroyed (TensorRT 11 declares the base destructor pure)
}
extern "C" __attribute__((visibility("default"))) IPluginRegistry* getPluginRegistry() { return gRegistry; }
extern "C" __attribute__((visibility("default"))) char const* fakeRegistered() { return gRegistry->log.c_str(); }
"""

PROBE = r"""
import ctypes, sys
fake, lib, mode = sys.argv[1], sys.argv[2], sys.argv[3]
if fake != "-":
    f = ctypes.CDLL(fake, mode=ctypes.RTLD_GLOBAL if mode == "global" else ctypes.RTLD_LOCAL)
    f.fakeRegistered.restype = ctypes.c_char_p
so = ctypes.CDLL(lib, mode=ctypes.RTLD_LOCAL)
out = {}
if hasattr(so, "sspPluginsAutoregistered"):
    out["autoregistered"] = so.sspPluginsAutoregistered()
else:
    out["on_load"] = f.fakeRegistered().decode() if fake != "-" else ""
    so.initLibSspPlugins.restype = ctypes.c_bool
    so.initLibSspPlugins.argtypes = [ctypes.c_void_p]
    out["init"] = bool(so.initLibSspPlugins(None))
out["registered"] = f.fakeRegistered().decode() if fake != "-" else ""
print(out)
"""


def _fake_nvinfer(tmp: Path, include: Path) -> Path:
    major = header_major(include)
    src = tmp / "fake_nvinfer.cpp"
    src.write_text(FAKE_NVINFER)
    out = tmp / f"libnvinfer.so.{major}"
    cands = [
        Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include",
        Path("/usr/local/cuda/include"),
        Path(NVCC).resolve().parents[1] / "include",
    ]
    cuda = next((c for c in cands if (c / "cuda_runtime_api.h").is_file()), PLUGINS / "tests" / "stub_cuda")
    r = subprocess.run(
        [
            CXX,
            "-std=c++17",
            "-shared",
            "-fPIC",
            "-O0",
            "-isystem",
            str(include),
            "-isystem",
            str(cuda),
            f"-Wl,-soname,libnvinfer.so.{major}",
            str(src),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def _probe(fake: Path | str, lib: Path, mode: str) -> dict:
    r = subprocess.run(
        [sys.executable, "-c", PROBE, str(fake), str(lib), mode], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    return {**eval(r.stdout.strip().splitlines()[-1]), "stderr": r.stderr}  # noqa: S307 - our own probe's dict


ALL = "SuperpixelAggregate/1/ssp@ssp;SuperpixelPropagate/1/ssp@ssp;ReplicationUpsample/1/ssp@ssp;"


@pytest.mark.slow
@needs_headers
@pytest.mark.skipif(CXX is None, reason="no C++ compiler for the fake libnvinfer")
def test_autoreg_library_registers_on_load(main_build, tmp_path):
    build, _, inc = main_build
    auto, main = build / "libssp_trt_plugins_autoreg.so", build / "libssp_trt_plugins.so"
    assert exported(auto) == AUTOREG_ENTRY_POINTS  # no getCreators: loadLibrary users take the main library
    fake = _fake_nvinfer(tmp_path, inc)
    for mode in ("global", "local"):  # RTLD_LOCAL: how Triton's TensorRT backend and Python load libnvinfer
        got = _probe(fake, auto, mode)
        assert got["autoregistered"] == 3 and got["registered"] == ALL, (mode, got)
        # the main library registers nothing when loaded, and initLibSspPlugins finds even a RTLD_LOCAL registry
        got = _probe(fake, main, mode)
        assert got["on_load"] == "" and got["init"] and got["registered"] == ALL, (mode, got)
    got = _probe("-", auto, "global")  # no TensorRT in the process: nothing registered, and it says why
    assert got["autoregistered"] == -1 and "is not loaded in this process" in got["stderr"], got


@pytest.mark.slow
@pytest.mark.parametrize(
    "include",
    [pytest.param(h, id=h.parent.name) for h in HEADERS[:-1]]
    or [
        pytest.param(
            None,
            marks=pytest.mark.skip(
                reason="fewer than two TensorRT header sets (make trt-headers fetches 10.3 and 11.1)"
            ),
        )
    ],
)
def test_library_builds_against_the_other_headers(include):
    build, _ = configure_and_build(
        f"trt-{include.parent.name}-sm75",
        ["ssp_trt_plugins", "ssp_trt_plugins_autoreg"],
        f"-DTENSORRT_INCLUDE_DIR={include}",
        "-DSSP_CUDA_ARCHS=75",
        *cuda_defs(include),
    )
    assert exported(build / "libssp_trt_plugins.so") == ENTRY_POINTS
    assert exported(build / "libssp_trt_plugins_autoreg.so") == AUTOREG_ENTRY_POINTS


@pytest.mark.slow
@needs_headers
def test_cuda_major_must_match_tensorrts():
    """A TensorRT whose packages use another CUDA major than this nvcc is refused at configure time, with the fix."""
    mismatched = [h for h in HEADERS if (13 if header_major(h) >= 11 else 12) != nvcc_major()]
    if not mismatched:
        pytest.skip(f"every header set's default CUDA major matches this nvcc ({nvcc_major()})")
    _, cfg = configure(
        "cuda-major-check", f"-DTENSORRT_INCLUDE_DIR={mismatched[0]}", "-DSSP_CUDA_ARCHS=75", check=False
    )
    assert cfg.returncode != 0
    text = " ".join((cfg.stdout + cfg.stderr).split())
    assert "packages are built for CUDA" in text and "-DSSP_TENSORRT_CUDA_MAJOR=" in text, text[-2000:]
