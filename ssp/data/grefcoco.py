"""gRefCOCO (GRES: expressions with zero, one or several targets) from a local copy in the layout of the
``grefer`` API (henghuiding/gRefCOCO, ReLA)::

    ROOT/grefcoco/grefs(unc).json   list of refs: ref_id, image_id, ann_id (a list; [-1] = no target), split,
                                    sentences [{sent, raw, sent_id, tokens}], category_id, ...
                                    (grefs(unc).p is read too, through the restricted refs unpickler)
    ROOT/grefcoco/instances.json    COCO-style images / annotations
    ROOT/images/train2014/<file_name>   (or the other refer image folders; or pass image_root)

The target mask of an expression is the union of its referred instances (crowd annotations left out, as
grefer does, unless the ref names only crowd ones); a no-target expression has an all-zero mask and
``exists=False``. ``type`` is ``no_target``, ``single`` or ``multi`` (per-type mIoU in ``ssp eval``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SSPError
from .refcoco import RefUnit, find_image, load_refs, read_image, segmentation_to_mask, sentence_text
from .sample import Sample

__all__ = ["GRefCOCO"]


def _ann_ids(ref: dict[str, Any]) -> list[Any]:
    ids = ref.get("ann_id")
    ids = ids if isinstance(ids, list) else [ids]
    return [a for a in ids if a not in (-1, None)]


class GRefCOCO:
    """gRefCOCO referring segmentation: one sample per (ref, sentence) of the chosen split (or ``all``)."""

    has_no_target: bool

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str,
        split_by: str = "unc",
        image_root: str | os.PathLike[str] | None = None,
    ):
        self.root = Path(root)
        self.split, self.split_by = split, split_by
        self.image_root = Path(image_root) if image_root is not None else None
        if not self.root.is_dir():
            raise SSPError(
                f"gRefCOCO root {self.root} is not a directory; point it at the folder holding grefcoco/ and images/"
            )
        ddir = self.root / "grefcoco"
        if not ddir.is_dir():
            raise SSPError(
                f"gRefCOCO folder {ddir} not found; ROOT must hold grefcoco/grefs({split_by}).json, "
                "grefcoco/instances.json and images/train2014/"
            )
        refs_json, refs_p = ddir / f"grefs({split_by}).json", ddir / f"grefs({split_by}).p"
        if refs_json.is_file():
            try:
                all_refs = json.loads(refs_json.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise SSPError(
                    f"cannot read {refs_json} as JSON ({type(e).__name__}: {e}); use the gRefCOCO "
                    f"grefs({split_by}).json"
                ) from None
            refs_path = refs_json
        elif refs_p.is_file():
            all_refs, refs_path = load_refs(refs_p), refs_p
        else:
            raise SSPError(f"refs file {refs_json} not found; copy gRefCOCO's grefs({split_by}).json into {ddir}")
        if not isinstance(all_refs, list) or not all(isinstance(r, dict) for r in all_refs):
            raise SSPError(f"{refs_path} is not a gRefCOCO refs file: expected a list of ref dicts")
        for r in all_refs:
            missing = [k for k in ("ref_id", "image_id", "ann_id", "split", "sentences") if k not in r]
            if missing or not isinstance(r["sentences"], list):
                raise SSPError(
                    f"{refs_path} is not a gRefCOCO refs file: ref {r.get('ref_id', '?')} lacks "
                    f"{', '.join(missing) or 'a list of sentences'}"
                )
        self._splits = sorted({str(r["split"]) for r in all_refs})
        if split != "all" and split not in self._splits:
            raise SSPError(
                f"unknown split {split!r} in {refs_path}; splits present: {', '.join(self._splits)} (or 'all')"
            )
        self._refs = [r for r in all_refs if split == "all" or r["split"] == split]
        inst_path = ddir / "instances.json"
        if not inst_path.is_file():
            raise SSPError(f"{inst_path} not found; copy gRefCOCO's instances.json next to {refs_path.name}")
        try:
            inst = json.loads(inst_path.read_text(encoding="utf-8"))
            anns = {a["id"]: a for a in inst["annotations"]}
            imgs = {im["id"]: im for im in inst["images"]}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SSPError(f"cannot read {inst_path} as COCO instances ({type(e).__name__}: {e})") from None
        self._anns: dict[Any, dict[str, Any]] = {}
        self._imgs: dict[Any, dict[str, Any]] = {}
        for r in self._refs:
            if r["image_id"] not in imgs or not isinstance(imgs[r["image_id"]].get("file_name"), str):
                raise SSPError(
                    f"ref {r['ref_id']} names image {r['image_id']}, which {inst_path} lacks (or it has "
                    "no file_name); refs and instances.json must come from the same data set"
                )
            self._imgs[r["image_id"]] = imgs[r["image_id"]]
            for a in _ann_ids(r):
                if a not in anns:
                    raise SSPError(
                        f"ref {r['ref_id']} names annotation {a}, which {inst_path} lacks; refs and "
                        "instances.json must come from the same data set"
                    )
                self._anns[a] = anns[a]
        self._items = [(r, s) for r in self._refs for s in r["sentences"] if isinstance(s, dict)]
        self.has_no_target = any(not _ann_ids(r) or r.get("no_target") for r in self._refs)

    def splits(self) -> list[str]:
        return list(self._splits)

    def __len__(self) -> int:
        return len(self._items)

    def _image(self, image_id: Any) -> np.ndarray:
        info = self._imgs[image_id]
        return read_image(find_image(self.root, self.image_root, info["file_name"]), info)

    def _mask(self, ref: dict[str, Any], h: int, w: int) -> tuple[np.ndarray, bool]:
        """Union of the referred instances, and whether the expression has a target."""
        ids = [] if ref.get("no_target") else _ann_ids(ref)
        mask = np.zeros((h, w), np.uint8)
        if not ids:
            return mask, False
        anns = [self._anns[a] for a in ids]
        use = [a for a in anns if not a.get("iscrowd")] or anns
        for a in use:
            try:
                mask |= segmentation_to_mask(a["segmentation"], h, w)
            except (ValueError, KeyError, TypeError) as e:
                raise SSPError(
                    f"annotation {a.get('id')} of ref {ref['ref_id']} has a bad segmentation ({e}); "
                    "check instances.json"
                ) from None
        return mask, True

    @staticmethod
    def _type(ref: dict[str, Any], exists: bool) -> str:
        return "no_target" if not exists else ("multi" if len(_ann_ids(ref)) > 1 else "single")

    def __getitem__(self, i: int) -> Sample:
        n = len(self._items)
        if not -n <= i < n:
            raise IndexError(i)
        ref, sent = self._items[i]
        image = self._image(ref["image_id"])
        mask, exists = self._mask(ref, *image.shape[:2])
        return Sample(
            image=image,
            mask=mask,
            expression=sentence_text(sent),
            type=self._type(ref, exists),
            exists=exists,
            source=f"grefcoco:{self.split}:{ref['ref_id']}:{sent.get('sent_id', '')}",
        )

    def num_refs(self) -> int:
        return len(self._refs)

    def load_ref(self, i: int) -> RefUnit:
        ref = self._refs[i]
        image = self._image(ref["image_id"])
        mask, exists = self._mask(ref, *image.shape[:2])
        sents = [t for t in (sentence_text(s) for s in ref["sentences"] if isinstance(s, dict)) if t]
        return RefUnit(image, mask, sents, exists, self._type(ref, exists), f"grefcoco:{ref['ref_id']}")
