"""The deployment bundle: one folder with ``manifest.json``, ``tokenizer.json``, ONNX graphs and engines.

This is the one reader/writer of manifests, used by the converter, the calibration tools and the SDK
(numpy-free, torch-free: json + hashlib only). Every file the manifest names carries its sha256, and
opening a bundle verifies them, so a tampered or truncated file is refused before anything runs it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .errors import BundleError
from .fsio import atomic_write_bytes

__all__ = ["FORMAT", "MANIFEST", "GRAPHS", "TensorSpec", "GraphEntry", "EngineEntry", "Manifest", "Bundle",
           "sha256_file", "atomic_write_bytes"]

FORMAT = "ssp-edge-bundle/1"
MANIFEST = "manifest.json"
#: the three deployment graphs, in the order a frame runs them
GRAPHS = ("text_encoder", "image_encoder", "mask_decoder")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class TensorSpec:
    """A graph input or output: name, shape (ints, or names of dynamic axes) and dtype name."""

    name: str
    shape: list[int | str]
    dtype: str


@dataclass
class GraphEntry:
    """One ONNX graph of the bundle in one flavour ("portable" | "plugin") and precision."""

    name: str  # one of GRAPHS
    flavour: str
    precision: str  # "fp32" | "fp16" | "int8"
    file: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    custom_ops: dict[str, int] = field(default_factory=dict)  # "ssp::Op" -> count
    qdq_plan: str | None = None  # int8 graphs: whose Q/DQ placement they carry ("tensorrt" | "onnxruntime")


@dataclass
class EngineEntry:
    """A TensorRT engine built from one graph, valid for one TensorRT version and GPU architecture."""

    name: str
    flavour: str
    precision: str
    file: str
    tensorrt_version: str
    compute_capability: str  # e.g. "8.7"
    source: str  # the ONNX file it was built from
    plugin_library: str | None = None  # file in the bundle or None
    profiles: dict[str, list[int]] = field(default_factory=dict)  # dynamic axis -> [min, opt, max]
    version_compatible: bool = False
    plugin_build: str | None = None  # sspPluginsBuildInfo() of the library it was built with (TensorRT, CUDA)


@dataclass
class Manifest:
    """Everything the runtime needs to preprocess, run and postprocess without the training code."""

    config: dict[str, Any]  # the SSPConfig as a dict
    input_size: int
    mean: list[float]
    std: list[float]
    max_tokens: int
    thresholds: dict[str, float]
    source: dict[str, Any]  # checkpoint name / path / sha256, or {"random_init_seed": n}
    dynamic_axes: dict[str, list[int]]  # "frames" / "expressions" -> [min, opt, max]
    tokenizer: str = "tokenizer.json"
    graphs: list[GraphEntry] = field(default_factory=list)
    engines: list[EngineEntry] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    format: str = FORMAT
    created_by: str = ""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = MANIFEST) -> "Manifest":
        if data.get("format") != FORMAT:
            raise BundleError(f"{where}: format {data.get('format')!r} is not {FORMAT!r}; re-export the bundle with "
                              "`ssp convert export` from this ssp-edge version")
        try:
            d = dict(data)
            d["graphs"] = [GraphEntry(**{**g, "inputs": [TensorSpec(**t) for t in g["inputs"]],
                                         "outputs": [TensorSpec(**t) for t in g["outputs"]]})
                           for g in d.get("graphs", [])]
            d["engines"] = [EngineEntry(**e) for e in d.get("engines", [])]
            return cls(**d)
        except (TypeError, KeyError) as e:
            raise BundleError(f"{where}: malformed manifest ({e}); re-export the bundle with `ssp convert export`") \
                from None


class Bundle:
    """A bundle folder and its manifest. ``Bundle.open`` verifies; ``Bundle.create`` starts a new one."""

    def __init__(self, root: Path, manifest: Manifest):
        self.root = Path(root)
        self.manifest = manifest

    # ---- reading
    @classmethod
    def open(cls, root: str | os.PathLike[str], verify: bool = True) -> "Bundle":
        """Read ``root/manifest.json``; with ``verify`` check every listed file exists and matches its sha256."""
        root = Path(root)
        mf = root / MANIFEST
        if not root.is_dir():
            raise BundleError(f"bundle {str(root)!r} is not a folder; create one with "
                              "`ssp convert export --checkpoint NAME --out DIR`")
        if not mf.is_file():
            raise BundleError(f"bundle {str(root)!r} has no {MANIFEST}; create it with "
                              "`ssp convert export --checkpoint NAME --out DIR`")
        try:
            data = json.loads(mf.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BundleError(f"{mf}: not valid JSON ({e}); re-export the bundle") from None
        bundle = cls(root, Manifest.from_dict(data, str(mf)))
        if verify:
            bundle.verify()
        return bundle

    def verify(self, names: Iterable[str] | None = None) -> None:
        """Raise :class:`BundleError` for a missing file or a sha256 mismatch (all files, or ``names``)."""
        files = self.manifest.files
        for rel in (names if names is not None else files):
            if rel not in files:
                raise BundleError(f"bundle {str(self.root)!r}: {rel!r} is not listed in {MANIFEST}")
            p = self.root / rel
            if not p.is_file():
                raise BundleError(f"bundle {str(self.root)!r}: {rel} is missing; re-export or rebuild it "
                                  "(`ssp convert export` / `ssp convert build`)")
            if sha256_file(p) != files[rel]:
                raise BundleError(f"bundle {str(self.root)!r}: {rel} does not match its sha256 in {MANIFEST} "
                                  "(modified or truncated); re-export or rebuild it")

    def path(self, rel: str) -> Path:
        """The absolute path of a file the manifest lists; anything unlisted or outside the bundle is refused."""
        if rel not in self.manifest.files:
            raise BundleError(f"bundle {str(self.root)!r}: {rel!r} is not listed in {MANIFEST}'s files; re-export "
                              "the bundle (`ssp convert export`)")
        root = self.root.resolve()
        p = (root / rel).resolve()
        if p == root or root not in p.parents:
            raise BundleError(f"bundle {str(self.root)!r}: {rel!r} points outside the bundle folder; paths in "
                              f"{MANIFEST} must be relative and stay inside it")
        return p

    def target(self, rel: str) -> Path:
        """Where a writer puts the bundle file ``rel`` (not necessarily listed yet): a relative, normalised path
        that stays inside the bundle folder, else :class:`BundleError`."""
        pure = Path(rel)
        if not rel or pure.is_absolute() or ".." in pure.parts or pure.as_posix() != rel.replace("\\", "/"):
            raise BundleError(f"bundle file name {rel!r} must be a relative, normalised path inside the bundle")
        root = self.root.resolve()
        p = (root / rel).resolve()
        if p == root or root not in p.parents:
            raise BundleError(f"bundle file {rel!r} resolves outside the bundle folder {str(self.root)!r}")
        return p

    def read_bytes(self, rel: str) -> bytes:
        """A listed file's bytes, read once and checked against its sha256: hand these bytes to ONNX Runtime,
        TensorRT or the tokenizer, so nothing can swap the file between the check and its use."""
        p = self.path(rel)
        try:
            data = p.read_bytes()
        except OSError as e:
            raise BundleError(f"bundle {str(self.root)!r}: cannot read {rel} ({e.strerror}); re-export or rebuild "
                              "it (`ssp convert export` / `ssp convert build`)") from None
        if hashlib.sha256(data).hexdigest() != self.manifest.files[rel]:
            raise BundleError(f"bundle {str(self.root)!r}: {rel} does not match its sha256 in {MANIFEST} "
                              "(modified or truncated); re-export or rebuild it")
        return data

    def graph(self, name: str, flavour: str = "portable", precision: str = "fp32",
              qdq_plan: str | None = None) -> GraphEntry:
        """The graph entry for (name, flavour, precision); a clear error lists what the bundle has. Where a portable
        INT8 graph exists in two Q/DQ plans, ``qdq_plan`` picks one; by default the one that is not the TensorRT
        plan (ONNX Runtime's)."""
        found = [g for g in self.manifest.graphs if (g.name, g.flavour, g.precision) == (name, flavour, precision)
                 and (qdq_plan is None or g.qdq_plan == qdq_plan)]
        if found:
            return sorted(found, key=lambda g: qdq_plan is None and len(found) > 1 and g.qdq_plan == "tensorrt")[0]
        have = ", ".join(sorted({f"{g.name}/{g.flavour}/{g.precision}" for g in self.manifest.graphs})) or "none"
        hint = ("run `ssp calibrate` to add int8/fp16 graphs" if precision != "fp32"
                else "re-export with `ssp convert export --flavour both`")
        raise BundleError(f"bundle {str(self.root)!r} has no {name} graph in flavour {flavour!r}, precision "
                          f"{precision!r} (has: {have}); {hint}")

    def has_graph(self, name: str, flavour: str = "portable", precision: str = "fp32") -> bool:
        return any((g.name, g.flavour, g.precision) == (name, flavour, precision) for g in self.manifest.graphs)

    # ---- writing
    @classmethod
    def create(cls, root: str | os.PathLike[str], manifest: Manifest) -> "Bundle":
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        return cls(root, manifest)

    def add_file(self, rel: str) -> str:
        """Record (or refresh) the sha256 of a file already written into the bundle; returns it."""
        digest = sha256_file(self.root / rel)
        self.manifest.files[rel] = digest
        return digest

    def add_graph(self, entry: GraphEntry) -> None:
        """Add or replace a graph entry (same name, flavour, precision, Q/DQ plan) and record its file's sha256."""
        key = (entry.name, entry.flavour, entry.precision, entry.qdq_plan)
        self.manifest.graphs = [g for g in self.manifest.graphs if (g.name, g.flavour, g.precision, g.qdq_plan) != key]
        self.manifest.graphs.append(entry)
        self.add_file(entry.file)

    def add_engine(self, entry: EngineEntry) -> None:
        """Add or replace an engine entry (same file name) and record its sha256."""
        self.manifest.engines = [e for e in self.manifest.engines if e.file != entry.file]
        self.manifest.engines.append(entry)
        self.add_file(entry.file)

    def save(self) -> Path:
        """Write ``manifest.json`` atomically."""
        atomic_write_bytes(self.root / MANIFEST, self.manifest.to_json().encode())
        return self.root / MANIFEST
