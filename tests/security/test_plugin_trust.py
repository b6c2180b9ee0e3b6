"""Native code only by the caller's choice (ARCHITECTURE.md §6, issue 15): a bundle can name a plugin library in
every way an attacker would (absolute path, `../`, an unlisted file in the folder, a swapped file with a re-written
sha256, a listed symlink to a file outside), and opening it with the TensorRT backend never loads that library
unless the caller opted in with ``trust_bundle_plugins=True``, and then only the listed, hash-checked file inside
the bundle. ``plugin_lib=`` and ``$SSP_PLUGIN_LIB`` load the library they name (the operator's explicit choice).

The stand-in library is compiled here with gcc; its load constructor appends a line to the file named by
$SSP_TEST_MARKER, so "loaded" means its code ran. Each case runs the real ``TensorRTBackend`` constructor in a fresh
process, with test doubles of TensorRT and cuda-python (tests/plugins/trt_doubles.py) standing in for the GPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

from ssp_edge.sdk.bundle import Bundle, EngineEntry, Manifest, sha256_file

GCC = shutil.which("gcc") or shutil.which("cc")
pytestmark = pytest.mark.skipif(GCC is None, reason="no C compiler (gcc) to build the stand-in plugin library")

MARKER_SO = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void ssp_test_mark(void) {
    const char* p = getenv("SSP_TEST_MARKER");
    if (p) { FILE* f = fopen(p, "a"); if (f) { fputs("%(tag)s\n", f); fclose(f); } }
}
__attribute__((visibility("default"))) void* const* getCreators(int32_t* n) { *n = 0; return 0; }
"""

RUNNER = r"""
import importlib.util, json, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("trt_doubles", sys.argv[1])
d = importlib.util.module_from_spec(spec); spec.loader.exec_module(d)
d.install()
from ssp_edge.sdk.bundle import Bundle
from ssp_edge.sdk.backends.tensorrt import TensorRTBackend
kwargs = json.loads(sys.argv[3])
try:
    b = Bundle.open(sys.argv[2])
    be = TensorRTBackend(b, "fp16", **kwargs)
    print(json.dumps({"ok": True, "loaded": [c[1] for c in d.LOG if c[0] == "load_library"]}))
except Exception as e:
    print(json.dumps({"ok": False, "type": type(e).__name__, "error": str(e)}))
"""


def _compile(tmp: Path, name: str, tag: str) -> Path:
    src = tmp / f"{name}.c"
    src.write_text(MARKER_SO % {"tag": tag})
    out = tmp / name
    subprocess.run([GCC, "-shared", "-fPIC", "-o", str(out), str(src)], check=True, capture_output=True, timeout=120)
    return out


@pytest.fixture(scope="module")
def libs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("marker_libs")
    return {"evil": _compile(d, "libevil.so", "evil"), "good": _compile(d, "libgood.so", "good")}


def _bundle(
    root: Path,
    plugin_library: str,
    files: dict[str, Path] | None = None,
    hashed: dict[str, Path] | None = None,
    symlinks: dict[str, Path] | None = None,
) -> Path:
    """A bundle of plugin-flavour fp16 engines (TensorRT 10.3.0.26, sm_87) naming ``plugin_library``; ``files``
    copied in and listed with their sha256, ``hashed`` listed with the sha256 of another file, ``symlinks`` listed
    links to files outside."""
    b = Bundle.create(
        root,
        Manifest(
            config={},
            input_size=32,
            mean=[0.5] * 3,
            std=[0.5] * 3,
            max_tokens=20,
            thresholds={},
            source={},
            dynamic_axes={},
        ),
    )
    (root / "tokenizer.json").write_text("{}")  # a bundle with a text encoder must list its tokenizer
    b.add_file("tokenizer.json")
    for g in ("text_encoder", "image_encoder", "mask_decoder"):
        name = f"{g}.plugin.fp16.engine"
        (root / name).write_bytes(b"engine " + g.encode())
        b.add_engine(EngineEntry(g, "plugin", "fp16", name, "10.3.0.26", "8.7", f"{g}.onnx", plugin_library))
    for rel, src in (files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, root / rel)
        b.add_file(rel)
    for rel, src in (symlinks or {}).items():
        os.symlink(src, root / rel)
        b.manifest.files[rel] = sha256_file(src)
    for rel, digest_of in (hashed or {}).items():
        b.manifest.files[rel] = sha256_file(digest_of)
    # written as an attacker would, without Bundle.save's validation (which refuses absolute / ../ paths)
    (root / "manifest.json").write_text(b.manifest.to_json())
    return root


def _open(bundle: Path, marker: Path, env: dict[str, str] | None = None, **kwargs) -> dict:
    e = {k: v for k, v in os.environ.items() if k != "SSP_PLUGIN_LIB"}
    e.update(env or {})
    e["SSP_TEST_MARKER"] = str(marker)
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            RUNNER,
            str(REPO / "tests" / "plugins" / "trt_doubles.py"),
            str(bundle),
            json.dumps(kwargs),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=e,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def _marks(marker: Path) -> list[str]:
    return marker.read_text().split() if marker.exists() else []


def _variants(tmp: Path, libs: dict[str, Path]) -> dict[str, Path]:
    """Every way a bundle can name a library (see the module docstring)."""
    outside = tmp / "outside"
    outside.mkdir()
    evil = outside / "libssp_trt_plugins.so"
    shutil.copyfile(libs["evil"], evil)
    v = {
        "absolute": _bundle(tmp / "absolute", str(evil)),
        "dotdot": _bundle(tmp / "b" / "dotdot", "../../outside/libssp_trt_plugins.so"),
        "unlisted": _bundle(tmp / "unlisted", "libssp_trt_plugins.so"),
        "swapped_rehashed": _bundle(
            tmp / "swapped_rehashed", "libssp_trt_plugins.so", files={"libssp_trt_plugins.so": libs["evil"]}
        ),
        "swapped": _bundle(
            tmp / "swapped",
            "libssp_trt_plugins.so",
            files={"libssp_trt_plugins.so": libs["evil"]},
            hashed={"libssp_trt_plugins.so": libs["good"]},
        ),
        "symlinked": _bundle(tmp / "symlinked", "libssp_trt_plugins.so", symlinks={"libssp_trt_plugins.so": evil}),
    }
    shutil.copyfile(libs["evil"], v["unlisted"] / "libssp_trt_plugins.so")  # lies in the folder, not in files
    return v


#: variants whose manifest or files Bundle.open itself refuses (the words its error must contain)
REFUSED_AT_OPEN = {
    "absolute": "relative path",
    "dotdot": "relative path",
    "swapped": "sha256",
    "symlinked": "outside",
    "unlisted": "not listed",
}


def test_no_bundle_variant_loads_native_code_without_the_opt_in(tmp_path, libs):
    for name, bundle in _variants(tmp_path, libs).items():
        marker = tmp_path / f"{name}.marker"
        res = _open(bundle, marker)
        assert _marks(marker) == [], f"{name}: the bundle's library ran without the opt-in"
        assert not res["ok"], (name, res)
        if name in REFUSED_AT_OPEN:  # Bundle.open refuses the manifest or its files before anything else
            assert res["type"] == "BundleError", (name, res)
            assert REFUSED_AT_OPEN[name] in res["error"], (name, res["error"])
            continue
        assert res["type"] == "SDKError", (name, res)
        assert "trust_bundle_plugins=True" in res["error"] and "plugin_lib=" in res["error"], res["error"]


def test_with_the_opt_in_only_the_listed_hash_checked_file_inside_loads(tmp_path, libs):
    outcomes = {}
    for name, bundle in _variants(tmp_path, libs).items():
        marker = tmp_path / f"{name}.marker"
        res = _open(bundle, marker, trust_bundle_plugins=True)
        outcomes[name] = (res["ok"], _marks(marker), res.get("type"), res.get("error", ""))
    # the caller trusted this bundle, whose listed library matches its manifest: it loads, from its checked bytes
    ok, marks, _, _ = outcomes.pop("swapped_rehashed")
    assert ok and marks == ["evil"]
    for name, (ok, marks, typ, err) in outcomes.items():
        assert not ok and marks == [], (name, err)
        assert typ == "BundleError", (name, typ, err)
    assert "relative path" in outcomes["absolute"][3] and "relative path" in outcomes["dotdot"][3]
    assert "not listed" in outcomes["unlisted"][3]
    assert "sha256" in outcomes["swapped"][3]
    assert "outside" in outcomes["symlinked"][3]


def test_the_bytes_checked_are_the_bytes_loaded(tmp_path, libs):
    """A file swapped after Bundle.open (between any check and dlopen) is refused: the loaded bytes are read once,
    hashed, and dlopened from a sealed in-memory copy."""
    bundle = _bundle(tmp_path / "b", "libssp_trt_plugins.so", files={"libssp_trt_plugins.so": libs["good"]})
    marker = tmp_path / "m"
    code = RUNNER.replace(
        "    b = Bundle.open(sys.argv[2])\n",
        "    b = Bundle.open(sys.argv[2])\n    import shutil\n"
        f"    shutil.copyfile({str(libs['evil'])!r}, Path(sys.argv[2]) / 'libssp_trt_plugins.so')\n",
    )
    e = {k: v for k, v in os.environ.items() if k != "SSP_PLUGIN_LIB"}
    e["SSP_TEST_MARKER"] = str(marker)
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(REPO / "tests" / "plugins" / "trt_doubles.py"),
            str(bundle),
            json.dumps({"trust_bundle_plugins": True}),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=e,
    )
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert not res["ok"] and "sha256" in res["error"] and _marks(marker) == []
    # untouched, the trusted copy loads; TensorRT is handed the sealed copy's path, not the bundle file
    marker2 = tmp_path / "m2"
    res = _open(
        _bundle(tmp_path / "c", "libssp_trt_plugins.so", files={"libssp_trt_plugins.so": libs["good"]}),
        marker2,
        trust_bundle_plugins=True,
    )
    assert res["ok"] and _marks(marker2) == ["good"]
    assert all(p.startswith("/proc/self/fd/") or "ssp-plugins-" in p for p in res["loaded"]), res["loaded"]


@pytest.mark.parametrize("how", ["plugin_lib", "SSP_PLUGIN_LIB"])
def test_the_explicit_choice_is_loaded_instead_of_the_bundles(tmp_path, libs, how):
    variants = _variants(tmp_path, libs)
    for name in ("swapped_rehashed",):  # the variant that opens (the others are refused at Bundle.open)
        marker = tmp_path / f"{name}.{how}.marker"
        if how == "plugin_lib":
            res = _open(variants[name], marker, plugin_lib=str(libs["good"]))
        else:
            res = _open(variants[name], marker, env={"SSP_PLUGIN_LIB": str(libs["good"])})
        assert res["ok"], res
        assert _marks(marker) == ["good"], f"{name}: expected only the chosen library to run"
        assert res["loaded"] == [str(libs["good"].resolve())]


def test_choose_plugin_library_order(tmp_path, monkeypatch):
    from ssp_edge.sdk.plugins import ENV_VAR, choose_plugin_library

    monkeypatch.delenv(ENV_VAR, raising=False)
    assert choose_plugin_library(object(), None, False, "libssp_trt_plugins.so") is None
    assert choose_plugin_library(object(), None, True, None) is None  # nothing named: nothing to trust
    c = choose_plugin_library(object(), None, True, "libssp_trt_plugins.so")
    assert c is not None and (c.origin, c.rel, c.path) == ("bundle", "libssp_trt_plugins.so", None)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env.so"))
    c = choose_plugin_library(object(), None, True, "libssp_trt_plugins.so")
    assert c is not None and (c.origin, c.path) == ("environment", tmp_path / "env.so")
    c = choose_plugin_library(object(), tmp_path / "x.so", True, "libssp_trt_plugins.so")
    assert c is not None and (c.origin, c.path) == ("explicit", tmp_path / "x.so")
    monkeypatch.setenv(ENV_VAR, "  ")  # blank: ignored
    assert choose_plugin_library(object(), None, False, "libssp_trt_plugins.so") is None
