"""Host-side tests of the TensorRT plugin classes (plugins/tests/plugin_class_test.cpp) against every set of public
TensorRT headers found: $TENSORRT_INCLUDE_DIR and third_party/tensorrt-*/include (git-ignored; fetch them as
plugins/README.md says). Compiled with a plain C++ compiler together with the plugin sources and stub kernel
launchers: no libnvinfer, no GPU. The program checks creators -> plugins from field collections, output shapes
through a test IExprBuilder (dynamic batch), output types, supportsFormatCombination, configurePlugin /
onShapeChange checks, enqueue's hand-off to the launchers, clone / attachToContext, the getFieldsToSerialize ->
createPlugin round trip, and that bad attributes give nullptr with a logged reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import REPO

PLUGINS = REPO / "plugins"
CXX = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
SOURCES = [
    "tests/plugin_class_test.cpp",
    "tests/launch_stubs.cpp",
    "common/plugin_common.cpp",
    "common/ssp_plugin_base.cpp",
    "common/registration.cpp",
    "superpixel_aggregate/superpixel_aggregate_plugin.cpp",
    "superpixel_propagate/superpixel_propagate_plugin.cpp",
    "replication_upsample/replication_upsample_plugin.cpp",
]


def trt_version(include: Path) -> str:
    """'10.3.0.26' from NvInferVersion.h (10.x: NV_TENSORRT_*, 11.x: TRT_*_ENTERPRISE)."""
    text = (include / "NvInferVersion.h").read_text()
    parts = []
    for p in ("MAJOR", "MINOR", "PATCH", "BUILD"):
        m = re.search(rf"#define TRT_{p}_ENTERPRISE +(\d+)", text) or re.search(
            rf"#define NV_TENSORRT_{p} +(\d+)", text
        )
        parts.append(m.group(1) if m else "?")
    return ".".join(parts)


def header_sets() -> list[Path]:
    found = []
    env = os.environ.get("TENSORRT_INCLUDE_DIR")
    if env and (Path(env) / "NvInferRuntime.h").is_file():
        found.append(Path(env).resolve())
    for d in sorted((REPO / "third_party").glob("tensorrt-*/include")):
        if (d / "NvInferRuntime.h").is_file() and d.resolve() not in found:
            found.append(d.resolve())
    return found


def cuda_include() -> Path:
    """CUDA's headers when installed (the TensorRT headers include cuda_runtime_api.h), else the two-typedef stub."""
    candidates = [os.environ.get("CUDA_HOME", ""), os.environ.get("CUDA_PATH", ""), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(str(Path(nvcc).resolve().parents[1]))
    for c in candidates:
        if c and (Path(c) / "include" / "cuda_runtime_api.h").is_file():
            return Path(c) / "include"
    return PLUGINS / "tests" / "stub_cuda"


HEADERS = header_sets()
PARAMS = [pytest.param(h, id=f"trt{trt_version(h)}") for h in HEADERS] or [
    pytest.param(
        None,
        id="no-headers",
        marks=pytest.mark.skip(
            reason="no TensorRT headers: set TENSORRT_INCLUDE_DIR or fetch them into "
            "third_party/tensorrt-<ver>/include "
            "(plugins/README.md)"
        ),
    )
]


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict:
    """Compile the test program once per header set, two compilers at a time."""
    if CXX is None:
        pytest.skip("no C++ compiler (g++ / $CXX)")
    out_dir = tmp_path_factory.mktemp("plugin_classes")
    cuda = cuda_include()
    jobs = {}
    results = {}
    pending = list(HEADERS)
    while pending or jobs:
        while pending and len(jobs) < 2:
            inc = pending.pop(0)
            exe = out_dir / f"plugin_class_test-{trt_version(inc)}"
            cmd = [
                CXX,
                "-std=c++17",
                "-O0",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-isystem",
                str(inc),
                "-isystem",
                str(cuda),
                *[str(PLUGINS / s) for s in SOURCES],
                "-ldl",
                "-o",
                str(exe),
            ]
            jobs[inc] = (subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), exe, cmd)
        done = next(iter(jobs))
        proc, exe, cmd = jobs.pop(done)
        log, _ = proc.communicate(timeout=600)
        results[done] = (proc.returncode, exe, " ".join(cmd), log)
    return results


@pytest.mark.slow  # two C++ builds against the large TensorRT headers (~10-25 s)
@pytest.mark.parametrize("include", PARAMS)
def test_plugin_classes(builds, include):
    rc, exe, cmd, log = builds[include]
    assert rc == 0, f"plugin class test did not compile against {include}:\n{cmd}\n{log}"
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    version = trt_version(include)
    summary = r.stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"TensorRT headers (\S+): (\d+) checks, 0 failed", summary)
    assert m and version.startswith(m.group(1)), summary
    assert int(m.group(2)) >= 350, summary  # the program really ran its checks
