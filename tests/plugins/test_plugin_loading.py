"""sdk.plugins: where the SDK finds libssp_trt_plugins.so and how it loads it (ctypes, RTLD_GLOBAL, sha256 check,
one-line SDKErrors). Small shared libraries compiled here stand in for the plugin library."""
from __future__ import annotations

import importlib.util

import ctypes
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
def _no_env_no_repo_build(monkeypatch, tmp_path):
    monkeypatch.delenv(plugins.ENV_VAR, raising=False)
    monkeypatch.setattr(plugins, "_REPO_BUILD", tmp_path / "no-build" / plugins.LIBRARY_NAME)


def _bundle(root: Path, lib_rel: str | None, engines: bool = True, write: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    files = {}
    if lib_rel and write:
        (root / lib_rel).parent.mkdir(parents=True, exist_ok=True)
        (root / lib_rel).write_bytes(b"not really a library")
        files[lib_rel] = sha256_file(root / lib_rel)
    manifest = {"format": "ssp-edge-bundle/1", "files": files,
                "engines": [{"name": "mask_decoder", "plugin_library": lib_rel}] if engines and lib_rel else []}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


# ---- find_plugin_library


def test_find_order(tmp_path, monkeypatch):
    bundle = _bundle(tmp_path / "bundle", plugins.LIBRARY_NAME)
    repo_build = tmp_path / "repo" / plugins.LIBRARY_NAME
    repo_build.parent.mkdir()
    repo_build.write_bytes(b"x")
    monkeypatch.setattr(plugins, "_REPO_BUILD", repo_build)
    env_lib = tmp_path / "env" / "lib.so"
    monkeypatch.setenv(plugins.ENV_VAR, str(env_lib))

    assert plugins.find_plugin_library(bundle, explicit=tmp_path / "x.so") == tmp_path / "x.so"
    assert plugins.find_plugin_library(bundle, str(tmp_path / "y.so")) == tmp_path / "y.so"  # positional too
    assert plugins.find_plugin_library(bundle) == env_lib  # the variable wins even before the file exists
    monkeypatch.setenv(plugins.ENV_VAR, "  ")  # blank: ignored
    assert plugins.find_plugin_library(bundle) == bundle / plugins.LIBRARY_NAME
    assert plugins.find_plugin_library(None) == repo_build
    assert plugins.find_plugin_library(tmp_path / "empty-bundle") == repo_build
    repo_build.unlink()
    assert plugins.find_plugin_library(None) is None


def test_find_in_bundle_manifest_and_folder(tmp_path):
    listed = _bundle(tmp_path / "a", f"plugins/{plugins.LIBRARY_NAME}", engines=False)  # in the file list only
    assert plugins.find_plugin_library(listed) == listed / "plugins" / plugins.LIBRARY_NAME
    by_engine = _bundle(tmp_path / "b", "libcustom.so")  # an engine names it
    assert plugins.find_plugin_library(by_engine) == by_engine / "libcustom.so"
    missing = _bundle(tmp_path / "c", plugins.LIBRARY_NAME, write=False)  # named but absent: reported by the loader
    assert plugins.find_plugin_library(missing) == missing / plugins.LIBRARY_NAME
    loose = tmp_path / "d"  # no manifest entry, but the file lies in the folder
    loose.mkdir()
    (loose / plugins.LIBRARY_NAME).write_bytes(b"x")
    assert plugins.find_plugin_library(loose) == loose / plugins.LIBRARY_NAME
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "manifest.json").write_text("{broken")
    assert plugins.find_plugin_library(tmp_path / "e") is None


def test_bundle_library_sha256(tmp_path):
    bundle = _bundle(tmp_path / "b", plugins.LIBRARY_NAME)
    lib = bundle / plugins.LIBRARY_NAME
    assert plugins.bundle_library_sha256(bundle, lib) == sha256_file(lib)
    assert plugins.bundle_library_sha256(bundle, tmp_path / "elsewhere.so") is None


# ---- load_plugin_library


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_load_missing(tmp_path):
    with pytest.raises(SDKError) as e:
        plugins.load_plugin_library(None)
    assert "no TensorRT plugin library" in _one_line(e) and "cmake -S plugins" in str(e.value)
    with pytest.raises(SDKError) as e:
        plugins.load_plugin_library(tmp_path / "gone.so")
    msg = _one_line(e)
    assert "gone.so" in msg and "not found" in msg and plugins.ENV_VAR in msg


@needs_cxx
def test_load_checks_sha256_and_loads_global(stand_in):
    with pytest.raises(SDKError) as e:
        plugins.load_plugin_library(stand_in, expected_sha256="0" * 64)
    assert "does not match its sha256" in _one_line(e)
    lib = plugins.load_plugin_library(stand_in, expected_sha256=sha256_file(stand_in).upper())
    assert lib.ssp_stand_in_marker_a() == 42
    assert plugins.load_plugin_library(stand_in) is lib  # loaded once per file
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
    code = ("import sys; import ssp_edge.sdk.plugins; bad = [m for m in ('torch', 'tensorrt', 'numpy') if m in sys.modules]; "
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_real_library_if_built():
    """When plugins/ has been built (`cmake --build build/plugins`), the SDK loads the real library."""
    candidates = [REPO / "build" / "plugins" / plugins.LIBRARY_NAME,
                  *sorted((REPO / "build" / "plugins-test").glob(f"trt-*/{plugins.LIBRARY_NAME}"))]
    lib = next((c for c in candidates if c.is_file()), None)
    if lib is None:
        pytest.skip("the plugin library is not built (cmake -S plugins -B build/plugins && cmake --build build/plugins)")
    code = ("import sys; from ssp_edge.sdk.plugins import load_plugin_library; import ctypes; "
            "so = load_plugin_library(sys.argv[1]); so.sspPluginsBuildInfo.restype = ctypes.c_char_p; "
            "print(so.sspPluginsBuildInfo().decode())")
    r = subprocess.run([sys.executable, "-c", code, str(lib)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ssp_trt_plugins 1; TensorRT headers ")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None,
                    reason="tensorrt does not import here (PyPI has only its bindings); TensorRT code is not faked")
def test_register_with_tensorrt_for_real():  # pragma: no cover - needs TensorRT and a built library
    lib = plugins.find_plugin_library()
    if lib is None or not lib.is_file():
        pytest.skip("no built plugin library (cmake -S plugins -B build/plugins)")
    plugins.register_with_tensorrt(lib)
    plugins.register_with_tensorrt(lib)  # a second call is a no-op
