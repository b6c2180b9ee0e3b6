"""The deployment bundle: one folder with ``manifest.json``, ``tokenizer.json``, ONNX graphs and engines.

This is the one reader/writer of manifests, used by the converter, the calibration tools and the SDK
(numpy-free, torch-free: json + hashlib only). A bundle is data from someone else, so:

* the manifest is validated by type and range in one place (:mod:`.manifest_schema`) before anything uses it;
* every path in it is relative, normalised, and resolves (symlinks included) inside the bundle folder, and every
  file the SDK reads is listed in ``files`` with its sha256 (an unlisted or outside path is never opened, not
  even to hash it);
* consumers get a file's bytes from :meth:`Bundle.read_bytes`: read once, hashed, and exactly those bytes handed
  to ONNX Runtime / TensorRT / the tokenizer, so a file swapped after :meth:`Bundle.open` is refused;
* optionally the manifest carries a detached Ed25519 signature (:mod:`.signing`), checked over the same bytes
  that are parsed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import BundleError
from .fsio import atomic_write_bytes
from .manifest_schema import FIX, check_rel_path, validate_manifest

__all__ = [
    "FORMAT",
    "MANIFEST",
    "GRAPHS",
    "TensorSpec",
    "GraphEntry",
    "EngineEntry",
    "Manifest",
    "Bundle",
    "sha256_file",
    "atomic_write_bytes",
    "is_bundle_folder",
    "MAX_MANIFEST_BYTES",
]

FORMAT = "ssp-edge-bundle/1"
MANIFEST = "manifest.json"
#: the three deployment graphs, in the order a frame runs them
GRAPHS = ("text_encoder", "image_encoder", "mask_decoder")
MAX_MANIFEST_BYTES = 16 << 20
_SIGNATURE = "manifest.json.sig"  # sdk.signing.SIGNATURE (not imported: signing is optional)


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
    vocab_size: int | None = None  # rows of the text graph's word embedding: token ids must stay below it
    #: accuracy per precision as `ssp calibrate` measured it on a held-out set, with the sha256 of each graph it ran
    #: (``{"data", "samples", "metrics": {precision: {metric: value}}, "graphs": {precision: {graph: sha256}}}``):
    #: the evidence the default precision is chosen from (sdk/backends/precision_choice.py); None when unmeasured
    accuracy: dict[str, Any] | None = None

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        if d["accuracy"] is None:  # left out when unmeasured: bundles without it stay readable by older releases
            del d["accuracy"]
        return json.dumps(d, indent=1, sort_keys=False, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any, where: str = MANIFEST) -> Manifest:
        """A checked Manifest from parsed JSON; any malformed field is a BundleError naming it."""
        if isinstance(data, dict) and data.get("format") != FORMAT:
            raise BundleError(
                f"{where}: format {data.get('format')!r} is not {FORMAT!r}; re-export the bundle with "
                "`ssp convert export` from this ssp-edge version"
            )
        known = {
            f.name: f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            for f in dataclasses.fields(cls)
        }
        d = validate_manifest(data, where, known)
        d["graphs"] = [
            GraphEntry(
                **{
                    **g,
                    "inputs": [TensorSpec(**t) for t in g["inputs"]],
                    "outputs": [TensorSpec(**t) for t in g["outputs"]],
                }
            )
            for g in d.get("graphs", [])
        ]
        d["engines"] = [EngineEntry(**e) for e in d.get("engines", [])]
        return cls(**d)


def is_bundle_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder holding a manifest.json of ours (a JSON object with this format)."""
    mf = Path(path) / MANIFEST
    try:
        if not Path(path).is_dir() or mf.is_symlink() or not mf.is_file() or mf.stat().st_size > MAX_MANIFEST_BYTES:
            return False
        data = json.loads(mf.read_bytes())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT


class Bundle:
    """A bundle folder and its manifest. ``Bundle.open`` verifies; ``Bundle.create`` starts a new one."""

    def __init__(self, root: Path, manifest: Manifest, manifest_bytes: bytes | None = None):
        self.root = Path(root)
        self.manifest = manifest
        #: the exact bytes the manifest was parsed from (and its signature checked over); None for a new bundle
        self.manifest_bytes = manifest_bytes
        self.signed = False  # True when Bundle.open checked a signature

    # ---- paths
    def _where(self) -> str:
        return f"bundle {str(self.root)!r}"

    def _real_root(self) -> Path:
        try:
            return self.root.resolve(strict=True)
        except OSError:
            raise BundleError(
                f"{self._where()} is not a folder; create one with `ssp convert export --checkpoint NAME --out DIR`"
            ) from None

    def _inside(self, rel: str, field: str) -> Path:
        """``rel`` checked (relative, normalised) and resolved, symlinks included, strictly inside the bundle."""
        check_rel_path(rel, field, f"{self._where()}: {MANIFEST}")
        root = self._real_root()
        p = (root / rel).resolve()
        if p == root or root not in p.parents:
            raise BundleError(
                f"{self._where()}: {rel!r} ({field}) resolves outside the bundle folder (a symbolic "
                "link or a path that leaves it); every file must be inside the bundle"
            )
        return p

    def _listed(self, rel: str) -> Path:
        if not isinstance(rel, str) or rel not in self.manifest.files:
            raise BundleError(
                f"{self._where()}: {rel!r} is not listed in {MANIFEST}'s files (with its sha256), so "
                f"it is not read; {FIX}"
            )
        return self._inside(rel, f"files[{rel!r}]")

    def path(self, rel: str) -> Path:
        """The absolute path of a file the manifest lists; anything unlisted or outside the bundle is refused."""
        return self._listed(rel)

    def target(self, rel: str) -> Path:
        """Where a writer puts the bundle file ``rel`` (not necessarily listed yet): a relative, normalised path
        that stays inside the bundle folder, else :class:`BundleError`."""
        return self._inside(rel, "file name")

    # ---- reading
    def _open(self, p: Path, rel: str) -> IO[bytes]:
        """A regular file opened without following a final symlink (swapped in after the check) and without
        blocking on FIFOs or devices."""
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(p, flags)
        except FileNotFoundError:
            raise BundleError(
                f"{self._where()}: {rel} is missing; re-export or rebuild it "
                "(`ssp convert export` / `ssp convert build`)"
            ) from None
        except OSError as e:
            raise BundleError(
                f"{self._where()}: cannot read {rel} ({e.strerror or e}); re-export or rebuild it "
                "(`ssp convert export` / `ssp convert build`)"
            ) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise BundleError(f"{self._where()}: {rel} is not a regular file; re-export the bundle")
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def _read(self, p: Path, rel: str, limit: int | None = None) -> bytes:
        with self._open(p, rel) as f:
            data = f.read() if limit is None else f.read(limit + 1)
        if limit is not None and len(data) > limit:
            size = f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit} bytes"
            raise BundleError(f"{self._where()}: {rel} is larger than {size}, so not one this SDK wrote; {FIX}")
        return data

    def _sha256(self, p: Path, rel: str) -> str:
        h = hashlib.sha256()
        with self._open(p, rel) as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    def _mismatch(self, rel: str) -> BundleError:
        return BundleError(
            f"{self._where()}: {rel} does not match its sha256 in {MANIFEST} (modified, swapped or "
            "truncated); re-export or rebuild it"
        )

    @classmethod
    def open(
        cls,
        root: str | os.PathLike[str],
        verify: bool = True,
        verify_key: str | os.PathLike[str] | bytes | bool | None = None,
    ) -> Bundle:
        """Read and validate ``root/manifest.json``; with ``verify`` check every listed file is inside the bundle and
        matches its sha256. With ``verify_key`` (an Ed25519 public key: PEM path, text or bytes; default
        ``$SSP_BUNDLE_PUBKEY``) the manifest must carry a valid signature (``manifest.json.sig``); ``False``
        checks no signature even when the variable is set (for tools that write bundles, e.g. the signer)."""
        root = Path(root)
        if not root.is_dir():
            raise BundleError(
                f"bundle {str(root)!r} is not a folder; create one with "
                "`ssp convert export --checkpoint NAME --out DIR`"
            )
        empty = cls(root, Manifest({}, 0, [], [], 0, {}, {}, {}))
        try:
            mf = empty._inside(MANIFEST, MANIFEST)
        except BundleError:
            raise BundleError(
                f"bundle {str(root)!r}: {MANIFEST} is a link that leaves the bundle folder; refusing it"
            ) from None
        if not mf.is_file():
            raise BundleError(
                f"bundle {str(root)!r} has no {MANIFEST}; create it with "
                "`ssp convert export --checkpoint NAME --out DIR`"
            )
        data = empty._read(mf, MANIFEST, MAX_MANIFEST_BYTES)
        key = None
        if verify_key is True:
            raise BundleError("verify_key=True names no key: pass the public key (PEM path or bytes), or None")
        if verify_key is not False and (verify_key is not None or os.environ.get("SSP_BUNDLE_PUBKEY", "").strip()):
            from .signing import resolve_verify_key, verify_manifest

            key = resolve_verify_key(verify_key)
            sig_path = root / _SIGNATURE
            sig = None
            if sig_path.exists() or sig_path.is_symlink():
                sig = empty._read(empty._inside(_SIGNATURE, _SIGNATURE), _SIGNATURE, 4096)
            verify_manifest(data, sig, key, str(root))
        where = str(root / MANIFEST)
        try:
            parsed = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, over-long ints, nesting
            reason = " ".join(str(e).split())[:120] if not isinstance(e, RecursionError) else "nested too deeply"
            raise BundleError(f"{where}: not valid JSON ({reason}); re-export the bundle") from None
        bundle = cls(root, Manifest.from_dict(parsed, where), data)
        bundle.signed = key is not None
        if verify:
            bundle.verify()
        return bundle

    def verify(self, names: Iterable[str] | None = None) -> None:
        """Raise :class:`BundleError` for an unlisted, outside, missing or mismatched file (all files, or ``names``).

        Every path is checked to stay inside the bundle before any file is opened, so the sha list can never be
        used to learn about files outside it."""
        files = self.manifest.files
        rels = list(names if names is not None else files)
        paths = [self._listed(rel) for rel in rels]
        for rel, p in zip(rels, paths):
            if self._sha256(p, rel) != files[rel]:
                raise self._mismatch(rel)

    def read_bytes(self, rel: str) -> bytes:
        """A listed file's bytes, read once and checked against its sha256: hand these bytes to ONNX Runtime,
        TensorRT or the tokenizer, so nothing can swap the file between the check and its use."""
        data = self._read(self._listed(rel), rel)
        if hashlib.sha256(data).hexdigest() != self.manifest.files[rel]:
            raise self._mismatch(rel)
        return data

    def graph(
        self, name: str, flavour: str = "portable", precision: str = "fp32", qdq_plan: str | None = None
    ) -> GraphEntry:
        """The graph entry for (name, flavour, precision); a clear error lists what the bundle has. Where a portable
        INT8 graph exists in two Q/DQ plans, ``qdq_plan`` picks one; by default the one that is not the TensorRT
        plan (ONNX Runtime's)."""
        found = [
            g
            for g in self.manifest.graphs
            if (g.name, g.flavour, g.precision) == (name, flavour, precision)
            and (qdq_plan is None or g.qdq_plan == qdq_plan)
        ]
        if found:
            return sorted(found, key=lambda g: qdq_plan is None and len(found) > 1 and g.qdq_plan == "tensorrt")[0]
        have = ", ".join(sorted({f"{g.name}/{g.flavour}/{g.precision}" for g in self.manifest.graphs})) or "none"
        hint = (
            "run `ssp calibrate` to add int8/fp16 graphs"
            if precision != "fp32"
            else "re-export with `ssp convert export --flavour both`"
        )
        raise BundleError(
            f"bundle {str(self.root)!r} has no {name} graph in flavour {flavour!r}, precision "
            f"{precision!r} (has: {have}); {hint}"
        )

    def has_graph(self, name: str, flavour: str = "portable", precision: str = "fp32") -> bool:
        return any((g.name, g.flavour, g.precision) == (name, flavour, precision) for g in self.manifest.graphs)

    # ---- writing
    @classmethod
    def create(cls, root: str | os.PathLike[str], manifest: Manifest) -> Bundle:
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        return cls(root, manifest)

    def add_file(self, rel: str) -> str:
        """Record (or refresh) the sha256 of a file already written into the bundle; returns it."""
        digest = self._sha256(self.target(rel), rel)
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
        """Write ``manifest.json`` atomically (validated first: a writer cannot produce a bundle that will not
        open). A signature of the previous manifest no longer applies and is removed (sign again)."""
        text = self.manifest.to_json()
        Manifest.from_dict(json.loads(text), f"{self._where()}: new {MANIFEST}")
        data = text.encode()
        path = atomic_write_bytes(self.target(MANIFEST), data)
        self.manifest_bytes = data
        sig = self.root / _SIGNATURE
        if sig.exists() or sig.is_symlink():
            sig.unlink()
            warnings.warn(
                f"{self._where()}: {MANIFEST} changed, so its signature was removed; sign it again with "
                "`ssp convert sign`",
                stacklevel=2,
            )
        return path
