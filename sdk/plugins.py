"""Choosing and loading the SSP TensorRT plugin library (``libssp_trt_plugins.so``, built from plugins/), and the
op spec it implements (``plugins/ops.json``, shipped as ``ssp_edge/sdk/plugin_ops.json``).

Torch-free and TensorRT-free at import. A bundle is data from someone else (ARCHITECTURE.md §6), so native code is
loaded only by the caller's explicit choice, never because a bundle names a library:

1. ``plugin_lib=`` (``--plugins``), else ``$SSP_PLUGIN_LIB``: that file is loaded as given (the operator's choice);
2. otherwise, only with ``trust_bundle_plugins=True`` (``--trust-bundle-plugins``): the library an engine of the
   bundle names, if the manifest lists it, it resolves inside the bundle and its bytes match the recorded sha256.
   Those exact bytes are copied into a sealed in-memory file (``memfd``, or a private temporary file where memfd
   is missing) and loaded from there, so nothing can swap the file between the check and ``dlopen``;
3. otherwise nothing is loaded, and the error says how to choose.

Loading registers nothing with TensorRT (the library has no load-time side effects; ``libssp_trt_plugins_autoreg.so``
is the variant that registers on load, for Triton / DeepStream / ``LD_PRELOAD``): a runtime that deserializes plugin
engines calls :func:`register_with_tensorrt` once TensorRT is imported.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SDKError

__all__ = [
    "LIBRARY_NAME",
    "ENV_VAR",
    "BUILD_HINT",
    "OPS",
    "OpSpec",
    "AttributeSpec",
    "PLUGIN_NAMES",
    "PLUGIN_NAMESPACE",
    "PLUGIN_VERSION",
    "DOMAIN",
    "PluginChoice",
    "choose_plugin_library",
    "load_plugin_library",
    "load_bundle_plugin_library",
    "load_chosen",
    "register_with_tensorrt",
    "plugin_build_info",
    "op_spec",
]

ENV_VAR = "SSP_PLUGIN_LIB"
_SPEC_FILE = Path(__file__).with_name("plugin_ops.json")  # a link to plugins/ops.json in a source checkout


@dataclass(frozen=True)
class AttributeSpec:
    """One node attribute / plugin field: name, spec type ("int" | "float"), default (None: required), bounds."""

    name: str
    type: str
    default: int | float | None
    min: float | None = None
    choices: tuple[int, ...] | None = None

    @property
    def required(self) -> bool:
        return self.default is None


@dataclass(frozen=True)
class OpSpec:
    """One ``ssp::`` op: ONNX node / plugin name, torch op name, I/O names, attributes in creator field order."""

    name: str
    torch_name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: tuple[AttributeSpec, ...]
    doc: str


def op_spec(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The op spec as parsed JSON (``plugins/ops.json``); a clear error when the file is missing or broken."""
    p = Path(path) if path is not None else _SPEC_FILE
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise SDKError(f"the ssp op spec {str(p)!r} cannot be read ({e}); reinstall ssp-edge") from None
    if not isinstance(data, dict) or data.get("format") != "ssp-ops/1":
        raise SDKError(f"{str(p)!r} is not an ssp op spec (format ssp-ops/1); reinstall ssp-edge")
    return data


def _ops(data: dict[str, Any]) -> tuple[OpSpec, ...]:
    out = []
    for op in data["ops"]:
        attrs = tuple(
            AttributeSpec(
                a["name"], a["type"], a.get("default"), a.get("min"), tuple(a["choices"]) if a.get("choices") else None
            )
            for a in op["attributes"]
        )
        out.append(
            OpSpec(op["name"], op["torch_name"], tuple(op["inputs"]), tuple(op["outputs"]), attrs, op.get("doc", ""))
        )
    return tuple(out)


_SPEC = op_spec()
#: the ops the plugin library implements, in the order of its getCreators()
OPS: tuple[OpSpec, ...] = _ops(_SPEC)
PLUGIN_NAMES: tuple[str, ...] = tuple(o.name for o in OPS)
PLUGIN_NAMESPACE: str = _SPEC["plugin_namespace"]
PLUGIN_VERSION: str = _SPEC["plugin_version"]
DOMAIN: str = _SPEC["domain"]
LIBRARY_NAME: str = _SPEC["library"]
BUILD_HINT = (
    "build it with `make plugins` (or `cmake -S plugins -B build/plugins && cmake --build build/plugins`, "
    f"plugins/README.md) and pass plugin_lib= / --plugins or set {ENV_VAR}=/path/to/{LIBRARY_NAME}"
)

_LOADED: dict[str, ctypes.CDLL] = {}
_KEEP_FDS: list[int] = []  # memfds of loaded bundle libraries stay open for the life of the process
_LOCK = threading.Lock()


@dataclass(frozen=True)
class PluginChoice:
    """The library to load and why: ``origin`` is "explicit" (plugin_lib=), "environment" ($SSP_PLUGIN_LIB) or
    "bundle" (the bundle's listed copy, with trust_bundle_plugins=True; ``rel`` is its manifest name)."""

    origin: str
    path: Path | None = None
    rel: str | None = None


def choose_plugin_library(
    bundle: Any = None,
    plugin_lib: str | os.PathLike[str] | None = None,
    trust_bundle_plugins: bool = False,
    needed: str | None = None,
) -> PluginChoice | None:
    """Which plugin library to load (see the module docstring); None when the caller chose none.

    ``needed``: the library the bundle's engines name (their ``plugin_library``); only used with
    ``trust_bundle_plugins``. Nothing is opened or loaded here.
    """
    if plugin_lib:
        return PluginChoice("explicit", Path(plugin_lib).expanduser())
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return PluginChoice("environment", Path(env).expanduser())
    if trust_bundle_plugins and bundle is not None and needed:
        return PluginChoice("bundle", rel=needed)
    return None


def _dlopen(key: str, shown: str) -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(key, mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        reason = " ".join(str(e).split())
        raise SDKError(
            f"could not load plugin library {shown!r} ({reason}); it must be built for this machine's "
            f"CPU, CUDA and TensorRT: {BUILD_HINT}"
        ) from None
    if not hasattr(lib, "getCreators"):
        raise SDKError(f"{shown!r} is not an SSP TensorRT plugin library (no getCreators entry point); {BUILD_HINT}")
    return lib


def load_plugin_library(path: str | os.PathLike[str] | None, expected_sha256: str | None = None) -> ctypes.CDLL:
    """Load the library the caller chose (``plugin_lib=`` / ``$SSP_PLUGIN_LIB``) with ctypes, RTLD_GLOBAL.

    With ``expected_sha256`` the bytes are checked first and the checked bytes are what gets loaded (as for bundle
    libraries). Loading the same file again returns the same handle. Raises :class:`SDKError` (one line, with the
    fix) when the library is missing, does not match, cannot be loaded, or is not an SSP plugin library.
    """
    if path is None:
        raise SDKError(f"no TensorRT plugin library ({LIBRARY_NAME}) chosen; {BUILD_HINT}")
    p = Path(path).expanduser()
    if not p.is_file():
        raise SDKError(f"plugin library {str(p)!r} not found; {BUILD_HINT}")
    if expected_sha256 is not None:
        data = p.read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha256.strip().lower():
            raise SDKError(
                f"plugin library {str(p)!r} does not match its sha256 (expected {expected_sha256[:12]}..., "
                f"got {actual[:12]}...): restore the file, or rebuild the engines with the library you "
                "have (`ssp convert build --plugins LIB`)"
            )
        return _load_bytes(data, str(p))
    key = str(p.resolve())
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = _dlopen(key, str(p))
        return _LOADED[key]


def _sealed_file(data: bytes) -> tuple[int, str]:
    """An fd holding exactly ``data`` that no one can change any more, and the path to dlopen it by."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("ssp_trt_plugins", getattr(os, "MFD_ALLOW_SEALING", 2) | getattr(os, "MFD_CLOEXEC", 1))
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            seals = (
                getattr(fcntl, "F_SEAL_SEAL", 1)
                | getattr(fcntl, "F_SEAL_SHRINK", 2)
                | getattr(fcntl, "F_SEAL_GROW", 4)
                | getattr(fcntl, "F_SEAL_WRITE", 8)
            )
            fcntl.fcntl(fd, getattr(fcntl, "F_ADD_SEALS", 1033), seals)
        except OSError:
            os.close(fd)
            raise
        return fd, f"/proc/self/fd/{fd}"
    folder = tempfile.mkdtemp(prefix="ssp-plugins-")  # 0700: only this user can swap it
    path = os.path.join(folder, LIBRARY_NAME)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o500)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return -1, path


def _load_bytes(data: bytes, shown: str) -> ctypes.CDLL:
    digest = hashlib.sha256(data).hexdigest()
    with _LOCK:
        key = f"sha256:{digest}"
        if key in _LOADED:
            return _LOADED[key]
        fd, path = _sealed_file(data)
        try:
            lib = _dlopen(path, shown)
        except SDKError:
            if fd >= 0:
                os.close(fd)
            raise
        if fd >= 0:
            _KEEP_FDS.append(fd)
        lib.ssp_loaded_from = path  # type: ignore[attr-defined]  # for register_with_tensorrt (same inode)
        _LOADED[key] = lib
        return lib


def load_bundle_plugin_library(bundle: Any, rel: str) -> ctypes.CDLL:
    """Load the plugin library ``rel`` of a bundle the caller trusts: listed in the manifest, inside the bundle,
    sha256-checked (``Bundle.read_bytes``), and loaded from those checked bytes. Raises BundleError / SDKError."""
    data = bundle.read_bytes(rel)
    return _load_bytes(data, f"{bundle.root}/{rel}")


def load_chosen(choice: PluginChoice, bundle: Any = None) -> tuple[ctypes.CDLL, str]:
    """Load what :func:`choose_plugin_library` chose; returns the handle and the path TensorRT can load it by."""
    if choice.origin == "bundle":
        assert choice.rel is not None
        lib = load_bundle_plugin_library(bundle, choice.rel)
        return lib, lib.ssp_loaded_from
    assert choice.path is not None
    lib = load_plugin_library(choice.path)
    return lib, str(choice.path.resolve())


def plugin_build_info(lib: ctypes.CDLL) -> str:
    """``sspPluginsBuildInfo()`` of a loaded library ("ssp_trt_plugins 1; TensorRT headers ...; CUDA ..."), or ""."""
    fn = getattr(lib, "sspPluginsBuildInfo", None)
    if fn is None:
        return ""
    fn.restype = ctypes.c_char_p
    fn.argtypes = []
    raw = fn()
    return raw.decode(errors="replace") if raw else ""


def register_with_tensorrt(path: str | os.PathLike[str]) -> None:
    """Register the library's creators with TensorRT's plugin registry, through ``registry.load_library`` like
    ``trtexec --dynamicPlugins``. A no-op when the ssp creators are already registered in this process (a second
    registration would be refused)."""
    import tensorrt as trt

    registry = trt.get_plugin_registry()
    if all(registry.get_creator(n, PLUGIN_VERSION, PLUGIN_NAMESPACE) is not None for n in PLUGIN_NAMES):
        return
    if registry.load_library(str(path)) is None:
        raise SDKError(
            f"TensorRT could not register the plugins of {str(path)!r} (built for another TensorRT major "
            f"version or CUDA?); {BUILD_HINT}"
        )
    missing = [n for n in PLUGIN_NAMES if registry.get_creator(n, PLUGIN_VERSION, PLUGIN_NAMESPACE) is None]
    if missing:
        raise SDKError(
            f"{str(path)!r} did not register {', '.join(missing)} (namespace {PLUGIN_NAMESPACE!r}, version "
            f"{PLUGIN_VERSION!r}): not this ssp-edge's plugin library; {BUILD_HINT}"
        )
