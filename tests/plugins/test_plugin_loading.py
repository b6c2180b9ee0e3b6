"""sdk.plugins: the op spec constants and how the SDK loads the library the caller chose (ctypes, RTLD_GLOBAL,
sha256 check of the loaded bytes, one-line SDKErrors); which library is chosen, and that a bundle never chooses
it, is tests/security/test_plugin_trust.py. Small shared libraries compiled here stand in for the plugin library."""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

from ssp_edge.sdk import plugins
from ssp_edge.sdk.bundle import sha256_file
from ssp_edge.sdk.errors import SDKError

CXX = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
needs_cxx = pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++ / $CXX) to build a stand-in library")

STAND_IN = r"""
#include <cstdint>
extern "C" __attribute__((visibility("default"))) void* const* getCreators(int32_t& n) { n = 0; return nullptr; }
extern "C" __attribute__((visibility("default"))) int ssp_stand_in_marker_%(tag)s() { return %(value)d; }
"""
NOT_A_PLUGIN = r"""extern "C" int something_else() { return 1; }"""


def _build_so(tmp: Path, name: str, code: str) -> Path:
    src = tmp / f"{name}.cpp"
    src.write_text(code)
    out = tmp / name
    subprocess.run([CXX, "-shared", "-fPIC", "-o", str(out), str(src)], check=True, capture_output=True, timeout=120)
    return out


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> Path:
    if CXX is None:
        pytest.skip("no C++ compiler (g++ / $CXX)")
    d = tmp_path_factory.mktemp("standin")
    return _build_so(d, plugins.LIBRARY_NAME, STAND_IN % {"tag": "a", "value": 42})


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(plugins.ENV_VAR, raising=False)


def test_op_spec_constants():
    """The SDK's constants come from the one op spec (plugins/ops.json, shipped as sdk/plugin_ops.json)."""
    spec = json.loads((REPO / "plugins" / "ops.json").read_text())
    assert (REPO / "sdk" / "plugin_ops.json").resolve() == (REPO / "plugins" / "ops.json").resolve()
    assert plugins.PLUGIN_NAMES == tuple(o["name"] for o in spec["ops"])
    assert (plugins.PLUGIN_NAMESPACE, plugins.PLUGIN_VERSION, plugins.DOMAIN, plugins.LIBRARY_NAME) == (
        spec["plugin_namespace"],
        spec["plugin_version"],
        spec["domain"],
        spec["library"],
    )
    with pytest.raises(SDKError, match="cannot be read"):
        plugins.op_spec(REPO / "nope.json")


# ---- load_plugin_library


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_load_missing(tmp_path):
    with pytest.raises(SDKError) as e:
        plugins.load_plugin_library(None)
    assert "no TensorRT plugin library" in _one_line(e) and "make plugins" in str(e.value)
    with pytest.raises(SDKError) as e:
        plugins.load_plugin_library(tmp_path / "gone.so")
    msg = _one_line(e)
    assert "gone.so" in msg and "not found" in msg and plugins.ENV_VAR in msg


@needs_cxx
def test_load_checks_sha256_and_loads_global(stand_in):
    with pytest.raises(SDKError) as e:
        plugins.load_plugin_library(stand_in, expected_sha256="0" * 64)
    assert "does not match its sha256" in _one_line(e)
    lib = plugins.load_plugin_library(stand_in)
    assert lib.ssp_stand_in_marker_a() == 42
    assert plugins.load_plugin_library(stand_in) is lib  # loaded once per file
    checked = plugins.load_plugin_library(stand_in, expected_sha256=sha256_file(stand_in).upper())
    assert checked.ssp_stand_in_marker_a() == 42  # the checked bytes, from a sealed copy
    # RTLD_GLOBAL: the symbols are visible to the whole process (as TensorRT's registry needs)
    assert ctypes.CDLL(None).ssp_stand_in_marker_a() == 42


@needs_cxx
def test_load_refuses_non_plugin_libraries(tmp_path):
    junk = tmp_path / plugins.LIBRARY_NAME
    junk.write_bytes(b"\x7fELF but not really")
    with pytest.raises(SDKError) as e:
        plugins.load_plugin_library(junk)
    assert "could not load plugin library" in _one_line(e)
    other = _build_so(tmp_path, "libother.so", NOT_A_PLUGIN)
    with pytest.raises(SDKError) as e:
        plugins.load_plugin_library(other)
    assert "not an SSP TensorRT plugin library" in _one_line(e)


def test_import_is_light():
    code = (
        "import sys; import ssp_edge.sdk.plugins; "
        "bad = [m for m in ('torch', 'tensorrt', 'numpy') if m in sys.modules]; "
        "assert not bad, bad"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_build_info_of_a_library_without_it(stand_in):
    assert plugins.plugin_build_info(plugins.load_plugin_library(stand_in)) == ""


def test_real_library_if_built():
    """When plugins/ has been built (`cmake --build build/plugins`), the SDK loads the real library."""
    candidates = [
        REPO / "build" / "plugins" / plugins.LIBRARY_NAME,
        *sorted((REPO / "build" / "plugins-test").glob(f"trt-*/{plugins.LIBRARY_NAME}")),
    ]
    lib = next((c for c in candidates if c.is_file()), None)
    if lib is None:
        pytest.skip(
            "the plugin library is not built (cmake -S plugins -B build/plugins && cmake --build build/plugins)"
        )
    code = (
        "import sys; from ssp_edge.sdk.plugins import load_plugin_library; import ctypes; "
        "so = load_plugin_library(sys.argv[1]); so.sspPluginsBuildInfo.restype = ctypes.c_char_p; "
        "print(so.sspPluginsBuildInfo().decode())"
    )
    r = subprocess.run([sys.executable, "-c", code, str(lib)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ssp_trt_plugins 1; TensorRT headers ")


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is None,
    reason="tensorrt does not import here (PyPI has only its bindings); TensorRT code is not faked",
)
def test_register_with_tensorrt_for_real():  # pragma: no cover - needs TensorRT and a built library
    lib = REPO / "build" / "plugins" / plugins.LIBRARY_NAME
    if not lib.is_file():
        pytest.skip("no built plugin library (cmake -S plugins -B build/plugins)")
    plugins.register_with_tensorrt(lib)
    plugins.register_with_tensorrt(lib)  # a second call is a no-op
