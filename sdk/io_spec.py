"""Feeds checked against a graph's tensor specs from the manifest (as Polygraphy's ``check_inputs``): missing or
extra names, dtype, rank, fixed dimensions, dynamic-axis ranges and one size per named axis, each error naming
the graph and the tensor. Every backend runs this before its runtime sees the feeds, so a bad feed is one clear
:class:`~ssp_edge.sdk.errors.SDKError` instead of a runtime traceback."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .bundle import GraphEntry, TensorSpec
from .errors import SDKError

__all__ = ["check_feeds", "spec_dtype", "feed_shape"]

_EXPORT_FLAG = {"frames": "--max-frames", "expressions": "--max-prompts"}  # the export option that sets each range


def spec_dtype(spec: TensorSpec) -> np.dtype:
    """The numpy dtype a spec declares (``"float32"``, ``"int64"``, ...)."""
    try:
        return np.dtype(spec.dtype)
    except TypeError:
        raise SDKError(
            f"tensor {spec.name!r} declares dtype {spec.dtype!r}, which numpy does not know; re-export the bundle"
        ) from None


def feed_shape(value: Any) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a feed: a numpy array, or a device handle with ``shape`` and ``dtype`` attributes."""
    if isinstance(value, np.ndarray):
        return value.shape, value.dtype
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # e.g. the TensorRT backend's DeviceTensor
        return tuple(int(d) for d in value.shape), np.dtype(value.dtype)
    a = np.asarray(value)
    return a.shape, a.dtype


def check_feeds(entry: GraphEntry, feeds: Mapping[str, Any], dynamic_axes: Mapping[str, Sequence[int]]) -> None:
    """Raise :class:`SDKError` naming the tensor unless ``feeds`` match ``entry.inputs`` exactly.

    ``dynamic_axes`` maps an axis name to ``[min, opt, max]`` (the manifest's ``dynamic_axes``); a named dimension
    without a range only has to be at least 1 and the same in every feed that uses it.
    """
    where = f"{entry.name} ({entry.flavour}, {entry.precision})"
    names = [t.name for t in entry.inputs]
    missing = [n for n in names if n not in feeds]
    extra = sorted(set(feeds) - set(names))
    if missing or extra:
        parts = ([f"missing {', '.join(map(repr, missing))}"] if missing else []) + (
            [f"unexpected {', '.join(map(repr, extra))}"] if extra else []
        )
        raise SDKError(
            f"{where}: feeds do not match the graph's inputs ({'; '.join(parts)}); it takes {', '.join(names)}"
        )
    sizes: dict[str, tuple[int, str]] = {}  # axis name -> (size, the first tensor that set it)
    for spec in entry.inputs:
        shape, dtype = feed_shape(feeds[spec.name])
        want = spec_dtype(spec)
        if dtype != want:
            raise SDKError(f"{where}: input {spec.name!r} has dtype {dtype}, expected {want}")
        if len(shape) != len(spec.shape):
            raise SDKError(
                f"{where}: input {spec.name!r} has shape {tuple(shape)} (rank {len(shape)}), expected "
                f"rank {len(spec.shape)}: {_fmt(spec.shape)}"
            )
        for axis, (got, dim) in enumerate(zip(shape, spec.shape)):
            if isinstance(dim, int) and dim > 0:
                if got != dim:
                    raise SDKError(
                        f"{where}: input {spec.name!r} has shape {tuple(shape)}, expected "
                        f"{_fmt(spec.shape)} (axis {axis} must be {dim})"
                    )
                continue
            name = str(dim)
            lo, hi = 1, None
            if name in dynamic_axes:
                rng = list(dynamic_axes[name])
                lo, hi = int(rng[0]), int(rng[-1])
            if got < lo or (hi is not None and got > hi):
                rng_s = f"{lo}..{hi}" if hi is not None else f">= {lo}"
                hint = _EXPORT_FLAG.get(name) if hi is not None and got > hi else None
                raise SDKError(
                    f"{where}: input {spec.name!r} axis {axis} ({name}) is {got}, outside this bundle's "
                    f"range {rng_s}" + (f"; re-export with `ssp convert export {hint} N`" if hint else "")
                )
            if name in sizes and sizes[name][0] != got:
                raise SDKError(
                    f"{where}: input {spec.name!r} axis {axis} ({name}) is {got} but {sizes[name][1]!r} "
                    f"has {name} = {sizes[name][0]}; every input must agree"
                )
            sizes.setdefault(name, (got, spec.name))


def _fmt(shape: Sequence[int | str]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"
