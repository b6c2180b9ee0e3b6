"""Training batches as a torch ``Dataset`` + batch sampler, for a ``DataLoader`` with workers and pinned memory.

A *unit* is one image with several expressions (one image encoding serves them all, as at deployment): a
RefShapes scene with ``k`` generated expressions, or a RefCOCO / gRefCOCO ref with ``k`` of its sentences
(sampled without replacement). Every image is letterboxed with the SDK's ``letterbox``; real photos get the
augmentation of :mod:`.augment`. Randomness comes from ``(seed, epoch, unit)`` only, so a unit looks the same
in any worker, process or world size.

Batches (:class:`StepBatches`):

* RefShapes (unbounded, deterministic by index): step ``s`` of process ``r`` reads the scenes
  ``g*B*W + r*B + j`` with ``g = (s + seed*10**6)*accum + micro``, the same scenes the single-process trainer
  read (W = 1, accum = 1).
* RefCOCO / gRefCOCO: epochs over the refs, each shuffled by torch's ``DistributedSampler`` (seed + epoch);
  process r of W takes every W-th ref, so W processes with B images each see exactly the refs of one process
  with W*B images.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from ..errors import SSPError
from .augment import AugmentParams, color_jitter, hflip, zoom_shift
from .refshapes import RefShapes
from .refshapes2 import RefShapes2
from .transforms import letterbox, normalize, pad_value

__all__ = ["Unit", "TrainUnits", "StepBatches", "collate_units", "has_no_target"]


@dataclass
class Unit:
    """One letterboxed image and its expressions (masks at the input size)."""

    image: np.ndarray  # (S, S, 3) uint8
    masks: np.ndarray  # (k, S, S) uint8
    expressions: list[str]
    exists: list[bool]
    types: list[str]


def has_no_target(source: Any) -> bool:
    """Whether a training source has no-target expressions (only then does the target-exists head train)."""
    if isinstance(source, RefShapes):
        return "no_target" in source.types
    if isinstance(source, RefShapes2):  # a share of every type names nothing
        return source.no_target_rate > 0
    return bool(getattr(source, "has_no_target", False))


class TrainUnits(Dataset):
    """``units[(i, epoch)]`` -> :class:`Unit` (RefShapes scene i, or ref i of a RefCOCO / gRefCOCO split)."""

    def __init__(
        self, source: Any, size: int, mean: Sequence[float], k: int, augment: AugmentParams | None, seed: int = 0
    ):
        self.source, self.size, self.k, self.augment, self.seed = source, size, k, augment, seed
        self.pad = pad_value(tuple(mean))  # type: ignore[arg-type]
        self.refshapes = isinstance(source, (RefShapes, RefShapes2))  # same scene_samples(i, k) interface
        if not self.refshapes and not hasattr(source, "load_ref"):
            raise SSPError(f"training needs RefShapes, RefCOCO or gRefCOCO data, not {type(source).__name__}")

    def __len__(self) -> int:
        return len(self.source) if self.refshapes else self.source.num_refs()

    def _letterbox(self, image: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        img, _ = letterbox(image, self.size, self.pad)
        out = (
            np.stack([letterbox(m, self.size, (0, 0, 0), cv2.INTER_NEAREST)[0] for m in masks])
            if len(masks)
            else np.zeros((0, self.size, self.size), np.uint8)
        )
        return img, out

    def __getitem__(self, key: tuple[int, int]) -> Unit:
        i, epoch = key
        if self.refshapes:
            ss = self.source.scene_samples(i, self.k)
            if not ss:
                return Unit(
                    np.zeros((self.size, self.size, 3), np.uint8),
                    np.zeros((0, self.size, self.size), np.uint8),
                    [],
                    [],
                    [],
                )
            img, masks = self._letterbox(ss[0].image, np.stack([s.mask for s in ss]))
            return Unit(img, masks, [s.expression for s in ss], [bool(s.exists) for s in ss], [s.type for s in ss])
        rng = np.random.default_rng([self.seed, epoch, i, 7])
        ref = self.source.load_ref(i)
        if not ref.sentences:
            raise SSPError(f"{ref.source} has no sentences; remove it from the refs file")
        pick = rng.choice(len(ref.sentences), size=min(self.k, len(ref.sentences)), replace=False)
        sents = [ref.sentences[j] for j in pick]
        image, mask = ref.image, ref.mask
        a = self.augment
        if a is not None:
            image = color_jitter(image, rng, a.color)
        img, masks = self._letterbox(image, mask[None])
        mask = masks[0]
        if a is not None:
            if rng.random() < a.flip:
                img, mask, sents = hflip(img, mask, sents)
            img, mask = zoom_shift(img, mask, rng, a.scale, self.pad)
        n = len(sents)
        return Unit(img, np.repeat(mask[None], n, 0), sents, [ref.exists] * n, [ref.type] * n)


def collate_units(units: list[Unit], mean: Sequence[float], std: Sequence[float]) -> dict[str, Any]:
    """Stack units into the tensors of one step (units without expressions are skipped)."""
    units = [u for u in units if u.expressions]
    if not units:
        raise SSPError("a training batch has no expressions; check the data")
    idx = [j for j, u in enumerate(units) for _ in u.expressions]
    return {
        "image": torch.from_numpy(np.stack([normalize(u.image, tuple(mean), tuple(std)) for u in units])),
        "mask": torch.from_numpy(np.concatenate([u.masks for u in units])).float()[:, None],
        "exists": torch.tensor([float(e) for u in units for e in u.exists]),
        "index": torch.tensor(idx),
        "expressions": [t for u in units for t in u.expressions],
        "types": [t for u in units for t in u.types],
    }


class StepBatches(Sampler):
    """Per-process unit keys for every micro-batch of steps ``start .. steps-1`` (see the module docstring)."""

    def __init__(
        self,
        n_units: int,
        batch: int,
        steps: int,
        start: int = 0,
        accum: int = 1,
        world: int = 1,
        rank: int = 0,
        seed: int = 0,
        refshapes: bool = False,
    ):
        self.n, self.b, self.steps, self.start, self.accum = n_units, batch, steps, start, accum
        self.world, self.rank, self.seed, self.refshapes = world, rank, seed, refshapes
        if not refshapes:
            self.dist = DistributedSampler(
                range(n_units), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True
            )
            self.per_epoch = (n_units // world) // batch
            if self.per_epoch == 0:
                raise SSPError(
                    f"the training data has {n_units} refs, fewer than one global batch "
                    f"({batch} images x {world} processes); lower --images-per-batch"
                )
        self._epoch: int = -1
        self._order: list[int] = []

    def __len__(self) -> int:
        return max(0, self.steps - self.start) * self.accum

    def keys(self, step: int, micro: int) -> list[tuple[int, int]]:
        """Unit keys of one micro-batch of this process."""
        if self.refshapes:
            g = (step + self.seed * 10**6) * self.accum + micro
            base = g * self.b * self.world + self.rank * self.b
            return [(base + j, 0) for j in range(self.b)]
        g = step * self.accum + micro
        epoch, within = divmod(g, self.per_epoch)
        if epoch != self._epoch:
            self.dist.set_epoch(epoch)
            self._epoch, self._order = epoch, list(self.dist)
        return [(self._order[within * self.b + j], epoch) for j in range(self.b)]

    def epoch_of(self, step: int) -> float:
        """Fractional epoch at the start of ``step`` (refs seen / refs), for logs."""
        if self.refshapes:
            return 0.0
        return step * self.accum / self.per_epoch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.steps):
            for m in range(self.accum):
                yield self.keys(step, m)
