"""The one validator of ``manifest.json``: every field checked by type and range before anything uses it.

A bundle is data from someone else, so a manifest is parsed into plain, checked Python values here (no
``AttributeError`` / ``TypeError`` / ``MemoryError`` later): each error names the field (``graphs[1].file``),
what is wrong and the fix. Paths are checked to be relative and normalised (no ``..``, no absolute or drive
paths, no backslashes); :class:`~ssp_edge.sdk.bundle.Bundle` then checks that they resolve inside the folder.
Numpy-free and torch-free (stdlib only).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from pathlib import PurePosixPath
from typing import Any

from .errors import BundleError

__all__ = ["FIX", "LIMITS", "validate_manifest", "check_rel_path", "SHA256_RE", "PRECISIONS", "FLAVOURS", "DTYPES"]

FIX = "re-export the bundle with `ssp convert export`"
PRECISIONS = ("fp32", "fp16", "int8")
FLAVOURS = ("portable", "plugin")
QDQ_PLANS = ("tensorrt", "onnxruntime")  # an INT8 graph's Q/DQ placement: for TensorRT, or nodes int8 speeds up on CPU
DTYPES = ("float32", "float16", "bfloat16", "int64", "int32", "int8", "uint8", "bool")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/-]{0,127}$")
_CC_RE = re.compile(r"^[0-9]{1,2}\.[0-9]{1,2}$")
_VERSION_RE = re.compile(r"^[0-9A-Za-z.+_-]{1,64}$")

#: ranges a bundle of this SDK can have; anything outside is a broken or hostile manifest
LIMITS = {
    "input_size": (16, 8192),
    "max_tokens": (2, 4096),
    "vocab_size": (2, 10_000_000),
    "axis": (1, 4096),  # dynamic_axes / profiles values
    "dim": (0, 1 << 20),  # a static tensor dimension
    "rank": 8,
    "files": 10_000,
    "list": 10_000,  # graphs, engines, inputs, outputs
    "path": 512,  # characters of a relative path
    "text": 4096,  # characters of a free-text string
    "std_min": 1e-6,
}


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _kind(v: Any) -> str:
    return {
        dict: "object",
        list: "list",
        str: "string",
        bool: "boolean",
        int: "integer",
        float: "number",
        type(None): "null",
    }.get(type(v), type(v).__name__)


class _Checker:
    """Field checks that raise one-line BundleErrors naming ``where`` and the field."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, field: str, what: str, fix: str = FIX) -> BundleError:
        return BundleError(f"{self.where}: field {field!r} {what}; {fix}")

    def obj(self, v: Any, field: str) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise self.fail(field, f"must be a JSON object, got {_kind(v)} {_short(v)}")
        for k in v:
            if not isinstance(k, str):  # cannot happen from JSON, but from_dict takes Python dicts too
                raise self.fail(field, f"has a non-string key {_short(k)}")
        return v

    def lst(self, v: Any, field: str, max_len: int = LIMITS["list"]) -> list[Any]:
        if not isinstance(v, list):
            raise self.fail(field, f"must be a JSON list, got {_kind(v)} {_short(v)}")
        if len(v) > max_len:
            raise self.fail(field, f"has {len(v)} entries, more than the {max_len} allowed")
        return v

    def string(self, v: Any, field: str, max_len: int = LIMITS["text"], empty: bool = True) -> str:
        if not isinstance(v, str):
            raise self.fail(field, f"must be a string, got {_kind(v)} {_short(v)}")
        if len(v) > max_len:
            raise self.fail(field, f"is {len(v)} characters long, more than {max_len}")
        if not empty and not v:
            raise self.fail(field, "must not be empty")
        if "\x00" in v:
            raise self.fail(field, "contains a NUL character")
        return v

    def choice(self, v: Any, field: str, options: tuple[str, ...]) -> str:
        if not isinstance(v, str) or v not in options:
            raise self.fail(field, f"must be one of {', '.join(options)}, got {_short(v)}")
        return v

    def pattern(self, v: Any, field: str, rx: re.Pattern[str], what: str) -> str:
        if not isinstance(v, str) or not rx.match(v):
            raise self.fail(field, f"must be {what}, got {_short(v)}")
        return v

    def integer(self, v: Any, field: str, lo: int, hi: int) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(field, f"must be an integer in [{lo}, {hi}], got {_kind(v)} {_short(v)}")
        if not lo <= v <= hi:
            raise self.fail(field, f"must be an integer in [{lo}, {hi}], got {_short(v)}")
        return v

    def number(self, v: Any, field: str, lo: float, hi: float, lo_open: bool = False) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail(field, f"must be a number, got {_kind(v)} {_short(v)}")
        f = float(v)
        if not math.isfinite(f):
            raise self.fail(field, f"must be a finite number, got {_short(v)}")
        if f < lo or f > hi or (lo_open and f <= lo):
            span = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
            raise self.fail(field, f"must be in {span}, got {_short(v)}")
        return f

    def boolean(self, v: Any, field: str) -> bool:
        if not isinstance(v, bool):
            raise self.fail(field, f"must be true or false, got {_kind(v)} {_short(v)}")
        return v

    def path(self, v: Any, field: str) -> str:
        return check_rel_path(v, field, self.where)

    def json_value(self, v: Any, field: str, depth: int = 0) -> Any:
        """Free-form JSON (config, source): only JSON types, finite numbers, bounded depth."""
        if depth > 32:
            raise self.fail(field, "is nested more than 32 levels deep")
        if isinstance(v, dict):
            return {
                self.string(k, f"{field}.<key>"): self.json_value(x, f"{field}.{k}", depth + 1)
                for k, x in self.obj(v, field).items()
            }
        if isinstance(v, list):
            return [self.json_value(x, f"{field}[{i}]", depth + 1) for i, x in enumerate(self.lst(v, field))]
        if isinstance(v, float) and not math.isfinite(v):
            raise self.fail(field, f"must be a finite number, got {_short(v)}")
        if isinstance(v, str):
            return self.string(v, field, 1 << 16)
        if v is None or isinstance(v, (bool, int, float)):
            return v
        raise self.fail(field, f"is not a JSON value ({_kind(v)})")


def check_rel_path(v: Any, field: str, where: str = "manifest.json") -> str:
    """``v`` as a relative, normalised POSIX path inside a bundle (no ``..``, ``.``, ``//``, ``\\``, absolute or
    drive paths), else a BundleError naming ``field``. Where it resolves to is the Bundle's check."""
    c = _Checker(where)
    s = c.string(v, field, LIMITS["path"], empty=False)
    fix = "paths in a manifest must be relative to the bundle folder and stay inside it (e.g. 'model.onnx')"
    if "\\" in s or s.startswith("/") or (len(s) >= 2 and s[1] == ":") or any(ord(ch) < 32 for ch in s):
        raise c.fail(field, f"is not a relative path inside the bundle: {_short(s)}", fix)
    parts = s.split("/")
    if any(p in ("", ".", "..") for p in parts) or PurePosixPath(s).as_posix() != s:
        raise c.fail(field, f"is not a normalised relative path inside the bundle: {_short(s)}", fix)
    return s


# ----------------------------------------------------------------------------------------------- the schema
def _tensor(c: _Checker, v: Any, f: str) -> dict[str, Any]:
    d = _exact(c, v, f, {"name", "shape", "dtype"})
    shape = []
    for i, x in enumerate(c.lst(d["shape"], f"{f}.shape", LIMITS["rank"])):
        if isinstance(x, str):
            shape.append(c.pattern(x, f"{f}.shape[{i}]", _NAME_RE, "an axis name"))
        else:
            shape.append(c.integer(x, f"{f}.shape[{i}]", *LIMITS["dim"]))
    return {
        "name": c.string(d["name"], f"{f}.name", 256, empty=False),
        "shape": shape,
        "dtype": c.choice(d["dtype"], f"{f}.dtype", DTYPES),
    }


def _exact(c: _Checker, v: Any, f: str, required: set[str], optional: Mapping[str, Any] | None = None) -> dict:
    """An object with exactly the ``required`` keys plus any of ``optional`` (filled with their defaults)."""
    d = c.obj(v, f)
    optional = optional or {}
    missing = sorted(required - d.keys())
    if missing:
        raise c.fail(f, f"lacks {', '.join(missing)}")
    extra = sorted(d.keys() - required - optional.keys())
    if extra:
        raise c.fail(f, f"has unknown field(s) {', '.join(map(repr, extra))}")
    return {**optional, **d}


def _graph(c: _Checker, v: Any, f: str) -> dict[str, Any]:
    d = _exact(
        c, v, f, {"name", "flavour", "precision", "file", "inputs", "outputs"}, {"custom_ops": {}, "qdq_plan": None}
    )
    plan = d["qdq_plan"]
    return {
        "qdq_plan": None if plan is None else c.choice(plan, f"{f}.qdq_plan", QDQ_PLANS),
        "name": c.pattern(d["name"], f"{f}.name", _NAME_RE, "a graph name such as 'image_encoder'"),
        "flavour": c.choice(d["flavour"], f"{f}.flavour", FLAVOURS),
        "precision": c.choice(d["precision"], f"{f}.precision", PRECISIONS),
        "file": c.path(d["file"], f"{f}.file"),
        "inputs": [_tensor(c, t, f"{f}.inputs[{i}]") for i, t in enumerate(c.lst(d["inputs"], f"{f}.inputs"))],
        "outputs": [_tensor(c, t, f"{f}.outputs[{i}]") for i, t in enumerate(c.lst(d["outputs"], f"{f}.outputs"))],
        "custom_ops": {
            c.string(k, f"{f}.custom_ops.<key>", 256): c.integer(n, f"{f}.custom_ops.{k}", 0, 1 << 20)
            for k, n in c.obj(d["custom_ops"], f"{f}.custom_ops").items()
        },
    }


def _axes(c: _Checker, v: Any, f: str) -> list[int]:
    """[min, opt, max] with 1 <= min <= opt <= max."""
    lo, hi = LIMITS["axis"]
    xs = c.lst(v, f, 3)
    if len(xs) != 3:
        raise c.fail(f, f"must be [min, opt, max], got {_short(xs)}")
    a, b, m = (c.integer(x, f"{f}[{i}]", lo, hi) for i, x in enumerate(xs))
    if not a <= b <= m:
        raise c.fail(f, f"must be [min, opt, max] with min <= opt <= max, got {xs}")
    return [a, b, m]


def _engine(c: _Checker, v: Any, f: str) -> dict[str, Any]:
    d = _exact(
        c,
        v,
        f,
        {"name", "flavour", "precision", "file", "tensorrt_version", "compute_capability", "source"},
        {"plugin_library": None, "profiles": {}, "version_compatible": False, "plugin_build": None},
    )
    lib, build = d["plugin_library"], d["plugin_build"]
    return {
        "plugin_build": None if build is None else c.string(build, f"{f}.plugin_build", 1024),
        "name": c.pattern(d["name"], f"{f}.name", _NAME_RE, "a graph name such as 'image_encoder'"),
        "flavour": c.choice(d["flavour"], f"{f}.flavour", FLAVOURS),
        "precision": c.choice(d["precision"], f"{f}.precision", PRECISIONS),
        "file": c.path(d["file"], f"{f}.file"),
        "tensorrt_version": c.pattern(
            d["tensorrt_version"], f"{f}.tensorrt_version", _VERSION_RE, "a version such as '10.3.0'"
        ),
        "compute_capability": c.pattern(
            d["compute_capability"], f"{f}.compute_capability", _CC_RE, "a compute capability such as '8.7'"
        ),
        "source": c.path(d["source"], f"{f}.source"),
        "plugin_library": None if lib is None else c.path(lib, f"{f}.plugin_library"),
        "profiles": {
            c.pattern(k, f"{f}.profiles.<key>", _NAME_RE, "an axis name"): _axes(c, x, f"{f}.profiles.{k}")
            for k, x in c.obj(d["profiles"], f"{f}.profiles").items()
        },
        "version_compatible": c.boolean(d["version_compatible"], f"{f}.version_compatible"),
    }


def _files(c: _Checker, v: Any, f: str) -> dict[str, str]:
    d = c.obj(v, f)
    if len(d) > LIMITS["files"]:
        raise c.fail(f, f"lists {len(d)} files, more than {LIMITS['files']}")
    out = {}
    for k, h in d.items():
        rel = c.path(k, f"{f}[{_short(k)}]")
        if rel == "manifest.json" or rel.startswith("manifest.json."):
            raise c.fail(f"{f}[{rel!r}]", "names the manifest or its signature, which cannot list itself")
        out[rel] = c.pattern(h, f"{f}[{rel!r}]", SHA256_RE, "a lowercase hex sha256 (64 characters)")
    return out


def _mean_std(c: _Checker, v: Any, f: str, std: bool) -> list[float]:
    xs = c.lst(v, f, 3)
    if len(xs) != 3:
        raise c.fail(f, f"must list 3 numbers (R, G, B), got {len(xs)}")
    lo = LIMITS["std_min"] if std else -1e3
    return [c.number(x, f"{f}[{i}]", lo, 1e3) for i, x in enumerate(xs)]


def _thresholds(c: _Checker, v: Any, f: str) -> dict[str, float]:
    return {c.string(k, f"{f}.<key>", 64): c.number(x, f"{f}.{k}", 0.0, 1.0) for k, x in c.obj(v, f).items()}


def _accuracy(c: _Checker, v: Any, f: str) -> dict[str, Any] | None:
    """``ssp calibrate``'s measured accuracy: metrics in [0, 1] and the sha256 of each graph run, per precision."""
    if v is None:
        return None
    d = _exact(c, v, f, {"data", "samples", "metrics", "graphs"})
    out: dict[str, Any] = {
        "data": c.string(d["data"], f"{f}.data", LIMITS["text"]),
        "samples": c.integer(d["samples"], f"{f}.samples", 0, 10_000_000),
        "metrics": {},
        "graphs": {},
    }
    for p, m in c.obj(d["metrics"], f"{f}.metrics").items():
        p = c.choice(p, f"{f}.metrics.<key>", PRECISIONS)
        out["metrics"][p] = {
            c.string(k, f"{f}.metrics.{p}.<key>", 64): c.number(x, f"{f}.metrics.{p}.{k}", 0.0, 1.0)
            for k, x in c.obj(m, f"{f}.metrics.{p}").items()
        }
    for p, g in c.obj(d["graphs"], f"{f}.graphs").items():
        p = c.choice(p, f"{f}.graphs.<key>", PRECISIONS)
        out["graphs"][p] = {
            c.pattern(k, f"{f}.graphs.{p}.<key>", _NAME_RE, "a graph name such as 'image_encoder'"): c.pattern(
                h, f"{f}.graphs.{p}.{k}", SHA256_RE, "a lowercase hex sha256 (64 characters)"
            )
            for k, h in c.obj(g, f"{f}.graphs.{p}").items()
        }
    return out


_FIELDS: dict[str, Callable[[_Checker, Any, str], Any]] = {
    "format": lambda c, v, f: c.string(v, f, 128),
    "config": lambda c, v, f: c.json_value(c.obj(v, f), f),
    "input_size": lambda c, v, f: c.integer(v, f, *LIMITS["input_size"]),
    "mean": lambda c, v, f: _mean_std(c, v, f, False),
    "std": lambda c, v, f: _mean_std(c, v, f, True),
    "max_tokens": lambda c, v, f: c.integer(v, f, *LIMITS["max_tokens"]),
    "thresholds": _thresholds,
    "source": lambda c, v, f: c.json_value(c.obj(v, f), f),
    "dynamic_axes": lambda c, v, f: {
        c.pattern(k, f"{f}.<key>", _NAME_RE, "an axis name"): _axes(c, x, f"{f}.{k}") for k, x in c.obj(v, f).items()
    },
    "tokenizer": lambda c, v, f: c.path(v, f),
    "graphs": lambda c, v, f: [_graph(c, g, f"{f}[{i}]") for i, g in enumerate(c.lst(v, f))],
    "engines": lambda c, v, f: [_engine(c, e, f"{f}[{i}]") for i, e in enumerate(c.lst(v, f))],
    "files": _files,
    "created_by": lambda c, v, f: c.string(v, f, 256),
    "vocab_size": lambda c, v, f: None if v is None else c.integer(v, f, *LIMITS["vocab_size"]),
    "accuracy": _accuracy,
}


def validate_manifest(data: Any, where: str, known: Mapping[str, bool]) -> dict[str, Any]:
    """Checked, plain copy of a parsed manifest. ``known``: field name -> required (the Manifest dataclass's
    fields); a field this module has no check for is accepted as free-form JSON."""
    c = _Checker(where)
    if not isinstance(data, dict):
        raise BundleError(
            f"{where}: must be a JSON object (the bundle manifest), got {_kind(data)} {_short(data)}; {FIX}"
        )
    unknown = sorted(data.keys() - known.keys())
    if unknown:
        raise BundleError(
            f"{where}: unknown field(s) {', '.join(map(repr, unknown))} (a newer ssp-edge, or not an "
            f"ssp-edge manifest); {FIX} from this version"
        )
    missing = sorted(k for k, req in known.items() if req and k not in data)
    if missing:
        raise BundleError(f"{where}: lacks the field(s) {', '.join(missing)}; {FIX}")
    out = {k: (_FIELDS[k](c, v, k) if k in _FIELDS else c.json_value(v, k)) for k, v in data.items()}
    _cross_check(c, out)
    return out


def _cross_check(c: _Checker, d: dict[str, Any]) -> None:
    """Every file a field names is listed in ``files`` (so it is hashed before use)."""
    files = d.get("files", {})
    graphs = d.get("graphs", [])
    named = [(f"graphs[{i}].file", g["file"]) for i, g in enumerate(graphs)]
    if any(g["name"] == "text_encoder" for g in graphs):  # a runnable bundle: its tokenizer is read too
        named.insert(0, ("tokenizer", d.get("tokenizer", "tokenizer.json")))
    for i, e in enumerate(d.get("engines", [])):
        named += [(f"engines[{i}].file", e["file"]), (f"engines[{i}].plugin_library", e["plugin_library"])]
    for field, rel in named:
        if rel is not None and rel not in files:
            raise c.fail(
                field,
                f"names {rel!r}, which is not listed (with its sha256) in 'files'",
                "every file a bundle uses must be listed and hashed; " + FIX,
            )
