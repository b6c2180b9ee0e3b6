"""Data specs used on the command line: ``refshapes:SPLIT``, ``refshapes2:SPLIT`` (RefShapes v2) or
``refcoco:ROOT:DATASET:SPLITBY:SPLIT``."""
from __future__ import annotations

from typing import Protocol, Sequence

from ..errors import SSPError
from .sample import Sample

__all__ = ["Dataset", "open_data"]


class Dataset(Protocol):
    def __len__(self) -> int: ...
    def __getitem__(self, i: int) -> Sample: ...


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
        parts: Sequence[str] = rest.rsplit(":", 3)
        if len(parts) != 4 or not all(parts):
            raise SSPError(f"bad data spec {spec!r}: expected refcoco:ROOT:DATASET:SPLITBY:SPLIT, "
                           "e.g. refcoco:/data/refer:refcoco:unc:val")
        from .refcoco import RefCOCO

        root, dataset, split_by, split = parts
        return RefCOCO(root, dataset, split_by, split)
    raise SSPError(f"bad data spec {spec!r}: expected refshapes:SPLIT, refshapes2:SPLIT or "
                   "refcoco:ROOT:DATASET:SPLITBY:SPLIT")
