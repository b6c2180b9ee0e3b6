"""Data specs used on the command line: ``refshapes:SPLIT``, ``refshapes2:SPLIT`` (RefShapes v2),
``refcoco:ROOT:DATASET:SPLITBY:SPLIT`` or ``grefcoco:ROOT:SPLIT``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..errors import SSPError
from .sample import Sample

__all__ = ["Dataset", "open_data", "default_val_spec", "refshapes_family", "REFSHAPES_FAMILIES", "SPEC_HELP"]

SPEC_HELP = "refshapes:SPLIT, refshapes2:SPLIT, refcoco:ROOT:DATASET:SPLITBY:SPLIT or grefcoco:ROOT:SPLIT"


class Dataset(Protocol):
    def __len__(self) -> int: ...
    def __getitem__(self, i: int) -> Sample: ...


def _refcoco_parts(spec: str, rest: str) -> Sequence[str]:
    parts: Sequence[str] = rest.rsplit(":", 3)
    if len(parts) != 4 or not all(parts):
        raise SSPError(
            f"bad data spec {spec!r}: expected refcoco:ROOT:DATASET:SPLITBY:SPLIT, "
            "e.g. refcoco:/data/refer:refcoco:unc:val"
        )
    return parts


def _grefcoco_parts(spec: str, rest: str) -> Sequence[str]:
    parts: Sequence[str] = rest.rsplit(":", 1)
    if len(parts) != 2 or not all(parts):
        raise SSPError(f"bad data spec {spec!r}: expected grefcoco:ROOT:SPLIT, e.g. grefcoco:/data/grefer:val")
    return parts


def open_data(spec: str, size: int = 320) -> Dataset:
    """Open a data set from its spec string (clear error for malformed specs)."""
    kind, _, rest = spec.partition(":")
    if kind == "refshapes":
        from .refshapes import RefShapes

        return RefShapes(rest or "test", size=size)
    if kind == "refshapes2":
        from .refshapes2 import RefShapes2

        return RefShapes2(rest or "test", size=size)
    if kind == "refcoco":
        from .refcoco import RefCOCO

        root, dataset, split_by, split = _refcoco_parts(spec, rest)
        return RefCOCO(root, dataset, split_by, split)
    if kind == "grefcoco":
        from .grefcoco import GRefCOCO

        root, split = _grefcoco_parts(spec, rest)
        return GRefCOCO(root, split)
    raise SSPError(f"bad data spec {spec!r}: expected {SPEC_HELP}")


#: the RefShapes generators (spec prefixes): v1 and v2
REFSHAPES_FAMILIES = ("refshapes", "refshapes2")


def refshapes_family(spec: str | None) -> str | None:
    """The RefShapes family of a data spec (``"refshapes2:train"`` -> ``"refshapes2"``), None for other data."""
    kind = str(spec or "").partition(":")[0]
    return kind if kind in REFSHAPES_FAMILIES else None


def default_val_spec(spec: str) -> str:
    """The validation split that goes with a training spec (its ``val`` split)."""
    kind, _, rest = spec.partition(":")
    if refshapes_family(spec):
        return f"{kind}:val"
    if kind == "refcoco":
        root, dataset, split_by, _ = _refcoco_parts(spec, rest)
        return f"refcoco:{root}:{dataset}:{split_by}:val"
    if kind == "grefcoco":
        root, _ = _grefcoco_parts(spec, rest)
        return f"grefcoco:{root}:val"
    raise SSPError(f"bad data spec {spec!r}: expected {SPEC_HELP}")
