"""The crash-safe commit of ``ssp calibrate`` (moved here from :mod:`calibration.pipeline`), which also writes the
manifest's accuracy record.

Everything is built in a staging folder beside the bundle; only when all of it succeeded are the new graphs moved
into the bundle under names the current manifest does not use (atomic renames, so no listed file is ever
touched), then ``manifest.json`` is saved atomically through :mod:`sdk.bundle`, and only then are the replaced
graphs deleted and the report moved to ``DIR/calibration/``. Killed at any point, the bundle opens and verifies,
in its old or its new state (``SSP_TEST_KILL_AT`` names the points for the crash tests: ``commit:staged``,
``commit:moving``, ``commit:moved``, ``commit:saved``, ``commit:cleaned``). A failure leaves the bundle as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssp_edge.sdk.backends.precision_choice import record_covers
from ssp_edge.sdk.bundle import Bundle, GraphEntry, Manifest
from ssp_edge.sdk.errors import BundleError
from ssp_edge.sdk.fsio import atomic_replace_file, fsync_dir, kill_point

from .errors import CalibrationError

__all__ = ["REPORT_DIR", "CalibrationResult", "staging", "staged_bundle", "commit"]

REPORT_DIR = "calibration"


@dataclass
class CalibrationResult:
    bundle: str
    report: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)  # kind -> path (report_json, report_md, report_png, ...)
    graphs: list[str] = field(default_factory=list)  # files added / replaced in the bundle


@contextlib.contextmanager
def staging(root: Path) -> Iterator[Path]:
    """A temporary folder beside the bundle (same filesystem: renames are atomic), removed afterwards."""
    parent = root.parent
    try:
        d = Path(tempfile.mkdtemp(prefix=f".{root.name}.calibrate-", dir=parent))
    except OSError:
        d = Path(tempfile.mkdtemp(prefix=f".{root.name}.calibrate-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def staged_bundle(bundle: Bundle, stage: Path, entries: list[GraphEntry]) -> Bundle:
    """A Bundle object rooted at ``stage``: the original files hard-linked in (inside the staging folder, as a
    bundle's files must be; nothing writes into them), the new graphs added."""
    for rel in bundle.manifest.files:
        dst = stage / rel
        if dst.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        src = bundle.path(rel)
        try:
            os.link(src, dst)
        except OSError:  # another filesystem, or no hard links
            shutil.copyfile(src, dst)
    man = Manifest.from_dict(json.loads(bundle.manifest.to_json()))
    staged = Bundle(stage, man)
    for e in entries:
        staged.add_graph(e)
    return staged


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fresh_name(bundle: Bundle, file: str, digest: str) -> str:
    """Where a new graph goes: its usual name unless the current manifest lists that name with other bytes, then
    the name with a digest suffix. Never a name the manifest lists for different content."""
    files = bundle.manifest.files
    if files.get(file, digest) == digest:
        return file
    stem, dot, ext = file.rpartition(".")
    alt = f"{stem}.{digest[:16]}.{ext}" if dot else f"{file}.{digest[:16]}"
    if files.get(alt, digest) != digest:  # pragma: no cover - a 64-bit digest prefix collision
        raise CalibrationError(f"bundle {str(bundle.root)!r} already lists {alt!r} with other content")
    return alt


def commit(
    bundle: Bundle,
    stage: Path,
    entries: list[GraphEntry],
    rep_files: dict[str, Path],
    report: dict[str, Any],
    accuracy: dict[str, Any] | None = None,
) -> CalibrationResult:
    """New graphs in under unused names, then the manifest (atomic), then the replaced graphs out, then the report.
    ``accuracy`` becomes the manifest's accuracy record. Without an INT8 measurement in it (``--no-int8``,
    ``--eval-samples 0``) the old record stays where it still covers the graphs the bundle now has (same sha256:
    untouched INT8 graphs keep their evidence), else it goes (it was about replaced graphs).

    Until the manifest is saved the old manifest and all its files are untouched; from then on every file the new
    manifest lists is in place. So an interrupt at any point leaves a bundle that opens and verifies."""
    root = bundle.root
    old_record = bundle.manifest.accuracy
    staged = {e.file for e in entries}
    final = {f: _fresh_name(bundle, f, _file_sha256(stage / f)) for f in sorted(staged)}
    kill_point("commit:staged")
    for i, (f, name) in enumerate(final.items()):
        atomic_replace_file(stage / f, bundle.target(name), 0o644)
        if i == 0:
            kill_point("commit:moving")
    kill_point("commit:moved")
    replaced = set()
    for e in entries:
        old = [
            g.file
            for g in bundle.manifest.graphs
            if (g.name, g.flavour, g.precision) == (e.name, e.flavour, e.precision)
        ]
        replaced.update(old)
        bundle.add_graph(dataclasses.replace(e, file=final[e.file]))
    used = {g.file for g in bundle.manifest.graphs} | {e.file for e in bundle.manifest.engines}
    stale = sorted(f for f in replaced if f not in used)
    for f in stale:
        bundle.manifest.files.pop(f, None)
    if (accuracy is None or "int8" not in accuracy["metrics"]) and record_covers(bundle, old_record):
        accuracy = old_record
    bundle.manifest.accuracy = accuracy
    bundle.save()
    kill_point("commit:saved")
    for f in stale:
        with contextlib.suppress(OSError, BundleError):
            bundle.target(f)  # inside the bundle (the old manifest was validated; checked again all the same)
            (root / f).unlink(missing_ok=True)
    fsync_dir(root)
    kill_point("commit:cleaned")
    (root / REPORT_DIR).mkdir(exist_ok=True)
    files: dict[str, str] = {}
    for kind, p in rep_files.items():
        dst = root / REPORT_DIR / p.name
        _move(p, dst)
        files[kind] = str(dst)
    return CalibrationResult(str(root), report, files, list(final.values()))


def _move(src: Path, dst: Path) -> None:
    atomic_replace_file(src, dst, 0o644)
