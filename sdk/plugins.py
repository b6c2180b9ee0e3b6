"""Finding and loading the SSP TensorRT plugin library (``libssp_trt_plugins.so``, built from plugins/).

Torch-free and TensorRT-free at import: this only locates the file, checks it and maps it into the process with
ctypes (RTLD_GLOBAL). Loading does not register the plugin creators with TensorRT (the library has no load-time
side effects, so that ``trtexec --dynamicPlugins`` / ``IPluginRegistry::loadLibrary`` can register it): a runtime
that deserializes plugin engines calls :func:`register_with_tensorrt` once TensorRT is imported (version-compatible
engines built with the library serialized into them need no registration).

Typical use::

    path = find_plugin_library(bundle.root, plugin_lib)
    load_plugin_library(path, bundle_library_sha256(bundle.root, path))
    register_with_tensorrt(trt, path)
"""
from __future__ import annotations

import ctypes
import json
import os
import threading
from pathlib import Path

from .bundle import MANIFEST, sha256_file
from .errors import SDKError

__all__ = ["LIBRARY_NAME", "ENV_VAR", "BUILD_HINT", "PLUGIN_NAMES", "PLUGIN_NAMESPACE", "PLUGIN_VERSION",
           "find_plugin_library", "bundle_library_sha256", "load_plugin_library", "register_with_tensorrt"]

LIBRARY_NAME = "libssp_trt_plugins.so"
ENV_VAR = "SSP_PLUGIN_LIB"
BUILD_HINT = ("build it with `cmake -S plugins -B build/plugins && cmake --build build/plugins` "
              f"(plugins/README.md) or set {ENV_VAR}=/path/to/{LIBRARY_NAME}")
#: where `cmake -S plugins -B build/plugins` puts the library in a source checkout
_REPO_BUILD = Path(__file__).resolve().parents[1] / "build" / "plugins" / LIBRARY_NAME

#: the creators the library registers (plugins/README.md; converter/schemas.py writes the same into the ONNX nodes)
PLUGIN_NAMES = ("SuperpixelAggregate", "SuperpixelPropagate", "ReplicationUpsample")
PLUGIN_NAMESPACE = "ssp"
PLUGIN_VERSION = "1"

_LOADED: dict[str, ctypes.CDLL] = {}
_LOCK = threading.Lock()


def _manifest_entries(bundle_root: Path) -> tuple[list[str], dict[str, str]]:
    """(plugin library files named by the bundle's engines or file list, the manifest's file -> sha256 map)."""
    try:
        data = json.loads((bundle_root / MANIFEST).read_text())
    except (OSError, ValueError):
        return [], {}
    files = data.get("files") if isinstance(data, dict) else None
    files = files if isinstance(files, dict) else {}
    named = [e.get("plugin_library") for e in data.get("engines") or [] if isinstance(e, dict)]
    named += [rel for rel in files if Path(rel).name == LIBRARY_NAME]
    return [n for n in dict.fromkeys(named) if isinstance(n, str) and n], files


def find_plugin_library(bundle_root: str | os.PathLike[str] | None = None,
                        explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The plugin library to use, or None when there is none.

    Order: ``explicit`` (e.g. a ``--plugins`` option), then ``$SSP_PLUGIN_LIB``, then a ``libssp_trt_plugins.so``
    the bundle lists (an engine's ``plugin_library`` or a manifest file; else one lying in the bundle folder), then
    ``build/plugins/libssp_trt_plugins.so`` of this source checkout. An explicit or environment path is returned
    even if missing, so that :func:`load_plugin_library` reports it instead of silently taking another library.
    """
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    if bundle_root is not None:
        root = Path(bundle_root)
        named, _ = _manifest_entries(root)
        for rel in named:
            if (root / rel).is_file():
                return root / rel
        if named:  # listed but missing: let the loader say so
            return root / named[0]
        if (root / LIBRARY_NAME).is_file():
            return root / LIBRARY_NAME
    if _REPO_BUILD.is_file():
        return _REPO_BUILD
    return None


def bundle_library_sha256(bundle_root: str | os.PathLike[str], library: str | os.PathLike[str]) -> str | None:
    """The sha256 the bundle's manifest records for ``library`` (a file inside the bundle), else None."""
    root = Path(bundle_root)
    _, files = _manifest_entries(root)
    try:
        rel = Path(library).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None
    digest = files.get(rel)
    return digest if isinstance(digest, str) else None


def load_plugin_library(path: str | os.PathLike[str] | None, expected_sha256: str | None = None) -> ctypes.CDLL:
    """Check ``path`` (exists, matches ``expected_sha256`` when given) and load it with ctypes, RTLD_GLOBAL.

    Loading the same file again returns the same handle. Raises :class:`SDKError` (one line, with the fix) when the
    library is missing, does not match its sha256, cannot be loaded, or is not an SSP plugin library.
    """
    if path is None:
        raise SDKError(f"no TensorRT plugin library ({LIBRARY_NAME}) found; {BUILD_HINT}")
    p = Path(path).expanduser()
    if not p.is_file():
        raise SDKError(f"plugin library {str(p)!r} not found; {BUILD_HINT}")
    if expected_sha256 is not None:
        actual = sha256_file(p)
        if actual.lower() != expected_sha256.strip().lower():
            raise SDKError(f"plugin library {str(p)!r} does not match its sha256 (expected {expected_sha256[:12]}..., "
                           f"got {actual[:12]}...): restore the file, or rebuild the engines with the library you "
                           "have (`ssp convert build --plugins LIB`)")
    key = str(p.resolve())
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key]
        try:
            lib = ctypes.CDLL(key, mode=ctypes.RTLD_GLOBAL)
        except OSError as e:
            reason = " ".join(str(e).split())
            raise SDKError(f"could not load plugin library {str(p)!r} ({reason}); it must be built for this machine's "
                           f"CPU, CUDA and TensorRT: {BUILD_HINT}") from None
        if not hasattr(lib, "getCreators"):
            raise SDKError(f"{str(p)!r} is not an SSP TensorRT plugin library (no getCreators entry point); "
                           f"{BUILD_HINT}")
        _LOADED[key] = lib
        return lib


def register_with_tensorrt(path: str | os.PathLike[str]) -> None:
    """Register the library's creators with TensorRT's plugin registry, through ``registry.load_library`` like
    ``trtexec --dynamicPlugins``. A no-op when the ssp creators are already registered in this process (a second
    registration would be refused)."""
    import tensorrt as trt

    registry = trt.get_plugin_registry()
    if all(registry.get_creator(n, PLUGIN_VERSION, PLUGIN_NAMESPACE) is not None for n in PLUGIN_NAMES):
        return
    if registry.load_library(str(Path(path).expanduser())) is None:
        raise SDKError(f"TensorRT could not register the plugins of {str(path)!r} (built for another TensorRT major "
                       f"version or CUDA?); {BUILD_HINT}")
    missing = [n for n in PLUGIN_NAMES if registry.get_creator(n, PLUGIN_VERSION, PLUGIN_NAMESPACE) is None]
    if missing:
        raise SDKError(f"{str(path)!r} did not register {', '.join(missing)} (namespace {PLUGIN_NAMESPACE!r}, version "
                       f"{PLUGIN_VERSION!r}): not this ssp-edge's plugin library; {BUILD_HINT}")
