"""RefCOCO / RefCOCO+ / RefCOCOg loading from a local copy laid out like the ``refer`` API (lichengunc/refer).

Layout read (nothing is downloaded)::

    ROOT/DATASET/refs(SPLITBY).p     pickle: list of refs (ref_id, ann_id, image_id, split, sentences, ...)
    ROOT/DATASET/instances.json      COCO-style images / annotations / categories
    ROOT/images/mscoco/images/train2014/<file_name>   (refer's default; ROOT/images/train2014/ and
                                                      ROOT/images/ are tried too, or pass image_root)

The refs pickle is read with a restricted unpickler that refuses every global, so a tampered file cannot
run code. Masks are decoded without pycocotools: polygons with ``cv2.fillPoly`` (pixel-centre rule, as
COCO) and RLE (uncompressed and COCO's compressed string form) in numpy.
"""

from __future__ import annotations

import io
import json
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import SSPError
from .sample import Sample

__all__ = [
    "RefCOCO",
    "RefUnit",
    "load_refs",
    "rle_string_to_counts",
    "decode_rle",
    "polygons_to_mask",
    "segmentation_to_mask",
    "sentence_text",
    "find_image",
    "read_image",
    "IMAGE_SUBDIRS",
]

# Tried in order under ROOT/images/ when no image_root is given.
IMAGE_SUBDIRS: tuple[str, ...] = ("mscoco/images/train2014", "train2014", "")
_POLY_SHIFT = 4  # fixed-point bits for cv2.fillPoly: vertices rounded to 1/16 px (pycocotools: 1/5 px)
_POLY_YSCALE = 8  # polygons are drawn 8x taller (even: pixel-centre rows are whole rows); see polygons_to_mask


# ----------------------------------------------------------------------------------------------- refs pickle
#: caps on what a refs pickle may build: the real refcoco/+/g refs files hold well under 5 M objects, nest 4 deep
MAX_PICKLE_OBJECTS = 50_000_000
MAX_PICKLE_DEPTH = 100
MAX_PICKLE_BYTES = 1 << 30


class _PlainUnpickler(pickle.Unpickler):
    """Unpickler that resolves no globals: only plain containers and scalars can be built."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")


class _Limit(Exception):
    """A refs pickle that is too large or too deep (caught and reported as SSPError)."""


class _Decoder:
    """Python 2 ``str`` values arrive as bytes (encoding="bytes"): decode them (UTF-8, else Latin-1) in one pass.

    Shared references stay shared (memoised by id), so the work is linear in the number of distinct objects,
    which is at most linear in the file size: a small pickle whose list refers to itself twice per level cannot
    expand to 2**n copies. Cycles are kept as cycles. Objects and depth are capped."""

    def __init__(self, max_objects: int, max_depth: int):
        self.memo: dict[int, Any] = {}
        self.count = 0
        self.max_objects, self.max_depth = max_objects, max_depth

    def __call__(self, obj: Any, depth: int = 0) -> Any:
        if isinstance(obj, (int, float, bool, type(None), str)):
            return obj
        key = id(obj)
        if key in self.memo:
            return self.memo[key]
        self.count += 1
        if self.count > self.max_objects:
            raise _Limit(f"more than {self.max_objects} objects")
        if depth > self.max_depth:
            raise _Limit(f"nested more than {self.max_depth} levels deep")
        if isinstance(obj, bytes):
            try:
                out: Any = obj.decode("utf-8")
            except UnicodeDecodeError:
                out = obj.decode("latin-1")
        elif isinstance(obj, dict):
            out = {}
            self.memo[key] = out  # before the children: a cycle back to this dict finds the new one
            for k, v in obj.items():
                out[self(k, depth + 1)] = self(v, depth + 1)
        elif isinstance(obj, list):
            out = []
            self.memo[key] = out
            out.extend(self(v, depth + 1) for v in obj)
        elif isinstance(obj, tuple):
            out = tuple(self(v, depth + 1) for v in obj)
        elif isinstance(obj, (set, frozenset)):
            out = type(obj)(self(v, depth + 1) for v in obj)
        else:
            out = obj
        self.memo[key] = out
        return out


def _to_str(obj: Any, max_objects: int = MAX_PICKLE_OBJECTS, max_depth: int = MAX_PICKLE_DEPTH) -> Any:
    """Decode Python 2 byte strings everywhere in ``obj`` (see :class:`_Decoder`)."""
    return _Decoder(max_objects, max_depth)(obj)


_REF_KEYS = ("ref_id", "ann_id", "image_id", "split", "sentences")


def load_refs(
    path: str | os.PathLike[str], max_objects: int = MAX_PICKLE_OBJECTS, max_depth: int = MAX_PICKLE_DEPTH
) -> list[dict[str, Any]]:
    """Read a refer ``refs(SPLITBY).p`` file safely (no globals; Python 2 and 3 pickles; at most ``max_objects``
    distinct objects nested at most ``max_depth`` deep; time linear in the file size) and check its shape."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_PICKLE_BYTES:
            raise SSPError(
                f"refusing to load {path}: larger than {MAX_PICKLE_BYTES >> 20} MiB, so not a refer refs "
                "pickle; use the original refer refs(SPLITBY).p file"
            )
        data = path.read_bytes()
    except OSError as e:
        raise SSPError(f"cannot read refs file {path}: {e.strerror or e}") from None
    try:
        # encoding="bytes": py2 ``str`` -> bytes, decoded by _to_str as UTF-8, so non-ASCII sentences survive.
        refs = _to_str(_PlainUnpickler(io.BytesIO(data), encoding="bytes").load(), max_objects, max_depth)
    except pickle.UnpicklingError as e:
        raise SSPError(
            f"refusing to load {path}: it is not a plain-data refs pickle ({e}); "
            "use the original refer refs(SPLITBY).p file"
        ) from None
    except _Limit as e:
        raise SSPError(
            f"refusing to load {path}: the pickle holds {e}, more than a refer refs file; "
            "use the original refer refs(SPLITBY).p file"
        ) from None
    except RecursionError:
        raise SSPError(
            f"refusing to load {path}: the pickle is nested too deeply for a refs file; "
            "use the original refer refs(SPLITBY).p file"
        ) from None
    except MemoryError:
        raise SSPError(
            f"refusing to load {path}: the pickle needs more memory than this machine has; "
            "use the original refer refs(SPLITBY).p file"
        ) from None
    except Exception as e:  # truncated / corrupt: EOFError, ValueError, TypeError, ...
        raise SSPError(
            f"cannot read {path}: it is not a plain-data refs pickle ({type(e).__name__}: {e}); "
            "use the original refer refs(SPLITBY).p file"
        ) from None
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise SSPError(f"{path} is not a refs file: expected a list of ref dicts, got {type(refs).__name__}")
    for r in refs:
        missing = [k for k in _REF_KEYS if k not in r]
        sents = r.get("sentences")
        if missing or not isinstance(sents, list) or not all(isinstance(x, dict) for x in sents):
            raise SSPError(
                f"{path} is not a refs file: ref {r.get('ref_id', '?')} lacks "
                f"{', '.join(missing) or 'a list of sentence dicts'}"
            )
    return refs


# ----------------------------------------------------------------------------------------------- masks
def rle_string_to_counts(s: str | bytes) -> list[int]:
    """Decode COCO's compressed RLE string (pycocotools ``rleFrString``) into run lengths.

    Each count is a LEB128-like group of 6-bit chars (ASCII 48..111): 5 data bits, bit 0x20 = "more follows",
    and bit 0x10 of the last char is the sign. From the 4th count on (index > 2) a count is stored as the
    difference to the count two places earlier.
    """
    if isinstance(s, bytes):
        s = s.decode("ascii")
    counts: list[int] = []
    p, n = 0, len(s)
    while p < n:
        x = k = 0
        more = True
        while more:
            if p >= n:
                raise ValueError("compressed RLE string ends inside a count")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"bad character {s[p]!r} in compressed RLE string")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)  # sign-extend
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """(h, w) uint8 {0,1} mask of a COCO RLE ``{"size": [h, w], "counts": list | str}``.

    Runs alternate 0,1,0,... starting with zeros and go down columns (column-major / Fortran order).
    """
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    runs = rle_string_to_counts(counts) if isinstance(counts, (str, bytes)) else [int(c) for c in counts]
    arr = np.asarray(runs, np.int64)
    if (arr < 0).any() or int(arr.sum()) != h * w:
        raise ValueError(f"RLE counts sum to {int(arr.sum())}, expected {h}*{w}={h * w}")
    values = (np.arange(len(arr)) % 2).astype(np.uint8)
    return np.repeat(values, arr).reshape((h, w), order="F")


def polygons_to_mask(polygons: Sequence[Sequence[float]], h: int, w: int) -> np.ndarray:
    """(h, w) uint8 {0,1} union of COCO polygons ``[[x1, y1, x2, y2, ...], ...]``.

    Target rule (COCO's; pycocotools ``rleFrPoly`` computes it with vertices rounded to 1/5 px): pixel
    (r, c) is in the mask when its centre (c + 0.5, r + 0.5) lies inside the polygon, so the integer
    rectangle x0..x1, y0..y1 covers exactly rows y0..y1-1 and columns x0..x1-1 (area w*h, as COCO).

    ``cv2.fillPoly`` differs in two ways, compensated here: (1) it rounds vertex y to whole rows (x keeps
    the ``shift`` sub-pixel bits), so we draw y stretched by ``_POLY_YSCALE`` and read only the rows of
    pixel centres (y = r + 0.5 is stretched row 8r + 4); (2) it also paints the outline, so a row gets
    columns round(x_left)..round(x_right), both ends inclusive (one column too many): we draw one extra
    column and keep column c only when c + 1 is filled too, i.e. x_left <= c + 0.5 < x_right.
    Exact for axis-aligned edges; on slanted edges the outline is a Bresenham line between rounded
    vertices, so pixels whose centre is within ~0.3 px of an edge can differ (on COCO-like polygons ~0.8%
    of the area differs from pycocotools, against ~0.3% for the exact centre rule). Vertices are rounded
    to 1/16 px (shift=4). Each polygon is filled on its own and the results OR-ed, as pycocotools merges
    per-polygon masks (overlapping parts stay filled).
    """
    out = np.zeros((h, w), np.uint8)
    k, scale = _POLY_YSCALE, 1 << _POLY_SHIFT
    for poly in polygons:
        xy = np.asarray(poly, np.float64).ravel()
        if xy.size < 6 or not np.isfinite(xy).all():  # fewer than 3 vertices: no area
            continue
        pts = xy[: xy.size // 2 * 2].reshape(-1, 2)
        # Work in the polygon's bounding box (clipped to the image) plus one column for the erosion.
        r0, r1 = max(0, int(np.floor(pts[:, 1].min()))), min(h, int(np.ceil(pts[:, 1].max())))
        c0, c1 = max(0, int(np.floor(pts[:, 0].min())) - 1), min(w, int(np.ceil(pts[:, 0].max())) + 1)
        if r1 <= r0 or c1 <= c0:
            continue
        local = (pts - (c0, r0)) * (1.0, k)
        canvas = np.zeros((k * (r1 - r0), c1 - c0 + 1), np.uint8)
        cv2.fillPoly(canvas, [np.round(local * scale).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=_POLY_SHIFT)
        rows = canvas[k // 2 :: k]  # pixel-centre rows
        out[r0:r1, c0:c1] |= rows[:, :-1] & rows[:, 1:]
    return out


def segmentation_to_mask(segmentation: Any, h: int, w: int) -> np.ndarray:
    """(h, w) uint8 {0,1} mask of a COCO annotation ``segmentation`` (polygon list, or RLE dict)."""
    if isinstance(segmentation, dict):
        mask = decode_rle(segmentation)
        if mask.shape != (h, w):
            raise ValueError(f"RLE size {mask.shape[0]}x{mask.shape[1]} differs from the image's {h}x{w}")
        return mask
    if isinstance(segmentation, list):
        return polygons_to_mask(segmentation, h, w)
    raise ValueError(f"unknown segmentation type {type(segmentation).__name__}")


# ----------------------------------------------------------------------------------------------- data set
def _listing(paths: Sequence[str]) -> str:
    return ", ".join(sorted(paths)) if paths else "nothing"


class RefCOCO:
    """RefCOCO-family referring segmentation: one sample per (ref, sentence) of the chosen split.

    ``split="all"`` takes every ref. Images are looked up under ``image_root`` when given, otherwise under
    ``ROOT/images/{mscoco/images/train2014, train2014, .}``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        dataset: str,
        split_by: str,
        split: str,
        image_root: str | os.PathLike[str] | None = None,
    ):
        self.root = Path(root)
        self.dataset, self.split_by, self.split = dataset, split_by, split
        self.image_root = Path(image_root) if image_root is not None else None
        if not self.root.is_dir():
            raise SSPError(
                f"RefCOCO root {self.root} is not a directory; point it at the refer data folder "
                "holding refcoco/, refcoco+/, refcocog/ and images/"
            )
        ddir = self.root / dataset
        if not ddir.is_dir():
            present = [p.name for p in self.root.iterdir() if p.is_dir() and any(p.glob("refs(*).p"))]
            raise SSPError(f"RefCOCO dataset folder {ddir} not found; datasets in {self.root}: {_listing(present)}")
        refs_path = ddir / f"refs({split_by}).p"
        if not refs_path.is_file():
            present = [p.name[5:-3] for p in ddir.glob("refs(*).p")]
            raise SSPError(
                f"refs file {refs_path} not found; splitBy values in {ddir}: {_listing(present)} "
                "(refcoco: unc/google, refcoco+: unc, refcocog: umd/google)"
            )
        inst_path = ddir / "instances.json"
        if not inst_path.is_file():
            raise SSPError(
                f"{inst_path} not found; copy the refer instances.json for {dataset} next to {refs_path.name}"
            )

        all_refs = load_refs(refs_path)
        self._splits = sorted({str(r["split"]) for r in all_refs})
        if split != "all" and split not in self._splits:
            raise SSPError(
                f"unknown split {split!r} in {refs_path}; splits present: {_listing(self._splits)} (or 'all')"
            )
        self._refs = [r for r in all_refs if split == "all" or r["split"] == split]

        try:
            with open(inst_path, encoding="utf-8") as f:
                inst = json.load(f)
            anns = {a["id"]: a for a in inst["annotations"]}
            imgs = {im["id"]: im for im in inst["images"]}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SSPError(
                f"cannot read {inst_path} as COCO instances ({type(e).__name__}: {e}); use the refer instances.json"
            ) from None
        # Keep only what the selected refs use (instances.json can be tens of MB).
        self._anns: dict[Any, dict[str, Any]] = {}
        self._imgs: dict[Any, dict[str, Any]] = {}
        for r in self._refs:
            if r["ann_id"] not in anns:
                raise SSPError(
                    f"ref {r['ref_id']} names annotation {r['ann_id']}, which {inst_path} lacks; "
                    "refs and instances.json must come from the same data set"
                )
            if r["image_id"] not in imgs:
                raise SSPError(
                    f"ref {r['ref_id']} names image {r['image_id']}, which {inst_path} lacks; "
                    "refs and instances.json must come from the same data set"
                )
            if not isinstance(imgs[r["image_id"]].get("file_name"), str):
                raise SSPError(f"image {r['image_id']} in {inst_path} has no file_name; use the refer instances.json")
            self._anns[r["ann_id"]] = anns[r["ann_id"]]
            self._imgs[r["image_id"]] = imgs[r["image_id"]]
        self._items: list[tuple[dict[str, Any], dict[str, Any]]] = [(r, s) for r in self._refs for s in r["sentences"]]

    @property
    def refs(self) -> list[dict[str, Any]]:
        """The refs of the selected split (refer's dicts, strings decoded)."""
        return self._refs

    def splits(self) -> list[str]:
        """Split names present in the refs file (e.g. train, val, testA, testB)."""
        return list(self._splits)

    def __len__(self) -> int:
        return len(self._items)

    def image_path(self, image_id: Any) -> Path:
        """Path of an image, the first existing candidate (clear error naming what was tried)."""
        return find_image(self.root, self.image_root, self._imgs[image_id]["file_name"])

    def _load_image(self, image_id: Any) -> np.ndarray:
        """RGB image, pixels as stored: COCO annotations ignore EXIF orientation, so OpenCV must too."""
        return read_image(self.image_path(image_id), self._imgs[image_id])

    def _ref_mask(self, ref: dict[str, Any], h: int, w: int) -> np.ndarray:
        ann = self._anns[ref["ann_id"]]
        try:
            return segmentation_to_mask(ann["segmentation"], h, w)
        except (ValueError, KeyError, TypeError) as e:
            raise SSPError(
                f"annotation {ann.get('id')} of ref {ref['ref_id']} has a bad segmentation ({e}); check instances.json"
            ) from None

    def __getitem__(self, i: int) -> Sample:
        n = len(self._items)
        if not -n <= i < n:
            raise IndexError(i)
        ref, sent = self._items[i]
        image = self._load_image(ref["image_id"])
        mask = self._ref_mask(ref, *image.shape[:2])
        source = f"refcoco:{self.dataset}:{self.split_by}:{self.split}:{ref['ref_id']}:{sent.get('sent_id', '')}"
        return Sample(
            image=image, mask=mask, expression=sentence_text(sent), type="refcoco", exists=True, source=source
        )

    # ---- ref-level access for training (one image + mask, several sentences)
    has_no_target = False  # RefCOCO / + / g: every expression names an object

    def num_refs(self) -> int:
        return len(self._refs)

    def load_ref(self, i: int) -> RefUnit:
        """Image, mask and all sentences of the i-th ref of the split."""
        ref = self._refs[i]
        image = self._load_image(ref["image_id"])
        mask = self._ref_mask(ref, *image.shape[:2])
        sents = [t for t in (sentence_text(s) for s in ref["sentences"]) if t]
        return RefUnit(image, mask, sents, True, "refcoco", f"refcoco:{self.dataset}:{ref['ref_id']}")


# ----------------------------------------------------------------------------------------------- shared helpers
@dataclass
class RefUnit:
    """One ref for training: its image, target mask (all zero for no-target), every sentence."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    mask: np.ndarray  # (H, W) uint8 {0, 1}
    sentences: list[str]
    exists: bool
    type: str
    source: str


def sentence_text(sent: dict[str, Any]) -> str:
    """A refer sentence dict's text (``sent``, else ``raw``), stripped."""
    return str(sent.get("sent", sent.get("raw", ""))).strip()


def find_image(root: Path, image_root: Path | None, name: str) -> Path:
    """``image_root/name`` or the first of ``ROOT/images/{IMAGE_SUBDIRS}/name`` that exists."""
    if image_root is not None:
        tried = [image_root / name]
    else:
        tried = [root / "images" / d / name if d else root / "images" / name for d in IMAGE_SUBDIRS]
    for p in tried:
        if p.is_file():
            return p
    raise SSPError(
        f"image {name} not found (tried {', '.join(map(str, tried))}); "
        "pass image_root=DIR pointing at the folder with the COCO train2014 images"
    )


def read_image(path: Path, info: dict[str, Any]) -> np.ndarray:
    """RGB image, pixels as stored (EXIF orientation ignored, as COCO annotations do); size checked against
    the instances.json entry ``info``."""
    try:
        buf = np.fromfile(str(path), np.uint8)  # + imdecode: also works for non-ASCII paths
    except OSError as e:
        raise SSPError(f"cannot read image {path}: {e.strerror or e}") from None
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    img = cv2.imdecode(buf, flags) if buf.size else None
    if img is None:
        raise SSPError(f"cannot decode image {path}; replace it with a readable JPEG/PNG")
    want = (info.get("height"), info.get("width"))
    if None not in want and tuple(img.shape[:2]) != want:
        raise SSPError(
            f"image {path} is {img.shape[0]}x{img.shape[1]} but instances.json says "
            f"{want[0]}x{want[1]}; image_root must hold the original COCO train2014 images"
        )
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
