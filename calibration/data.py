"""Calibration and evaluation data.

Calibration works on *frames*: one image with up to K expressions, the unit the SDK runs (the image
encoder once, the mask decoder once with a batch of K expressions). Sources (``--data``):

* ``refshapes:SPLIT`` / ``refshapes2:SPLIT`` (default: the val split of the family the bundle's checkpoint was
  trained on, :func:`default_specs`; its test split, the evaluation default, is a disjoint seed stream) - scenes
  drawn without replacement by a seeded permutation, K expressions per scene;
* ``refcoco:ROOT:DATASET:SPLITBY:SPLIT`` - a RefCOCO-format folder through :func:`ssp.data.spec.open_data`;
  images drawn by a seeded permutation, up to K of their referring expressions each;
* ``jsonl:PATH`` (or a bare ``.jsonl`` path or folder) - a JSONL file of ``{"image": ..., "expression": ...}``
  lines, image paths relative to the JSONL file; a folder must hold exactly one ``*.jsonl`` file.
  Lines naming the same image form one frame.

Sampling is deterministic: the same spec, count, K and seed give the same frames on any machine.
Evaluation (``--eval-data``) needs ground-truth masks, so it takes RefShapes or RefCOCO specs; its
samples are the data set's first N in order (as ``ssp eval --limit N``) minus any whose image is also a
calibration frame.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ssp_edge.ssp.data.sample import Sample

from .errors import CalibrationError

__all__ = ["Frame", "FrameSet", "open_frames", "EvalSet", "open_eval", "read_image", "default_specs"]


@dataclass
class Frame:
    """One calibration frame: an RGB image and the expressions asked about it."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    expressions: list[str]
    key: str  # identifies the image (for disjointness from the evaluation set)


class FrameSet:
    """``len()`` frames, produced lazily (images are loaded or rendered when iterated)."""

    def __init__(self, spec: str, keys: Sequence[str], load, available: int):
        self.spec = spec
        self.keys = list(keys)
        self._load = load
        self.available = available  # frames the source has in all

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> Frame:
        return self._load(i)

    def __iter__(self) -> Iterator[Frame]:
        for i in range(len(self)):
            yield self[i]


def _pick(n_available: int, count: int, seed: int) -> list[int]:
    """``count`` distinct indices of ``range(n_available)``, seeded, in increasing order."""
    rng = np.random.default_rng([seed, 5])
    if count >= n_available:
        return list(range(n_available))
    return sorted(int(i) for i in rng.choice(n_available, size=count, replace=False))


def read_image(path: Path, where: str) -> np.ndarray:
    """RGB uint8 image (EXIF orientation ignored, as COCO annotations do); one-line error naming ``where``."""
    try:
        buf = np.fromfile(str(path), np.uint8)
    except OSError as e:
        raise CalibrationError(
            f"{where}: cannot read image {path} ({e.strerror or e}); fix the path or remove the line"
        ) from None
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if buf.size else None
    if img is None:
        raise CalibrationError(
            f"{where}: image {path} is not a readable image (empty or corrupt); replace it "
            "with a JPEG/PNG or remove the line"
        )
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def open_frames(spec: str, count: int, prompts: int = 2, seed: int = 0) -> FrameSet:
    """The calibration frames of ``spec`` (see the module docstring); errors name the input and the fix."""
    if count < 1:
        raise CalibrationError(f"--samples must be at least 1, got {count}")
    if prompts < 1:
        raise CalibrationError(f"--prompts must be at least 1, got {prompts}")
    kind, _, rest = spec.partition(":")
    if kind in _REFSHAPES:
        return _refshapes_frames(kind, rest or "val", count, prompts, seed)
    if kind == "refcoco":
        return _refcoco_frames(spec, count, prompts, seed)
    if kind == "jsonl":
        return _jsonl_frames(Path(rest), count, prompts, seed)
    p = Path(spec)
    if p.is_dir() or p.suffix == ".jsonl":
        return _jsonl_frames(p, count, prompts, seed)
    raise CalibrationError(
        f"--data {spec!r}: expected refshapes:SPLIT, refshapes2:SPLIT, refcoco:ROOT:DATASET:SPLITBY:SPLIT or "
        'jsonl:PATH (a JSONL file of {"image": ..., "expression": ...} lines, or a folder '
        "holding one)"
    )


#: the RefShapes families (ssp.data.spec.REFSHAPES_FAMILIES, not imported here: this module loads without the
#: model code); a scene's key is "FAMILY:SPLIT:SCENE"
_REFSHAPES = ("refshapes", "refshapes2")


def default_specs(source: dict) -> tuple[str, str]:
    """(calibration spec, evaluation spec) for a bundle whose manifest ``source`` is given: the val and test
    splits of the RefShapes family its checkpoint was trained on (``source["data"]``), else RefShapes v1."""
    from ssp_edge.ssp.data.spec import refshapes_family

    family = refshapes_family(source.get("data")) or "refshapes"
    return f"{family}:val", f"{family}:test"


def _refshapes_frames(kind: str, split: str, count: int, prompts: int, seed: int) -> FrameSet:
    from ssp_edge.ssp.data.spec import open_data

    ds = open_data(f"{kind}:{split}")  # SSPError (user-facing) for an unknown split
    idx = _pick(len(ds), count, seed)

    def load(i: int) -> Frame:
        samples = ds.scene_samples(idx[i], prompts)
        if not samples:  # pragma: no cover - every scene admits at least one expression type
            samples = [ds[idx[i]]]
        return Frame(samples[0].image, [s.expression for s in samples], f"{kind}:{split}:{idx[i]}")

    return FrameSet(f"{kind}:{split}", [f"{kind}:{split}:{i}" for i in idx], load, len(ds))


def _refcoco_index(ds) -> list[tuple[object, int]]:
    """(image id, sample index) for every sample of a RefCOCO data set, in sample order."""
    out = []
    k = 0
    for r in ds.refs:
        for _ in r["sentences"]:
            out.append((r["image_id"], k))
            k += 1
    return out


def _refcoco_frames(spec: str, count: int, prompts: int, seed: int) -> FrameSet:
    from ssp_edge.ssp.data.spec import open_data

    ds = open_data(spec)
    by_image: dict[object, list[int]] = {}
    for image_id, k in _refcoco_index(ds):
        by_image.setdefault(image_id, []).append(k)
    if not by_image:
        raise CalibrationError(f"--data {spec!r}: the split has no referring expressions; choose another split")
    images = sorted(by_image, key=str)
    chosen = [images[i] for i in _pick(len(images), count, seed)]
    rng = np.random.default_rng([seed, 6])
    picks = [
        sorted(rng.choice(by_image[im], size=min(prompts, len(by_image[im])), replace=False).tolist()) for im in chosen
    ]

    def load(i: int) -> Frame:
        samples: list[Sample] = [ds[k] for k in picks[i]]
        return Frame(
            samples[0].image, [s.expression for s in samples if s.expression] or ["object"], f"coco:{chosen[i]}"
        )

    return FrameSet(spec, [f"coco:{im}" for im in chosen], load, len(images))


def _jsonl_path(path: Path) -> Path:
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            if not any(path.iterdir()):
                raise CalibrationError(
                    f"calibration folder {path} is empty; put the images and a JSONL file of "
                    '{"image": "a.jpg", "expression": "the red cup"} lines in it'
                )
            raise CalibrationError(
                f"calibration folder {path} has no *.jsonl file; add one with "
                '{"image": "a.jpg", "expression": "the red cup"} lines (paths relative to it)'
            )
        if len(files) > 1:
            raise CalibrationError(
                f"calibration folder {path} has {len(files)} JSONL files "
                f"({', '.join(f.name for f in files[:4])}); pass one as --data jsonl:FILE"
            )
        return files[0]
    if not path.is_file():
        raise CalibrationError(
            f"--data jsonl:{path}: no such file or folder; give a JSONL file of "
            '{"image": ..., "expression": ...} lines or the folder holding it'
        )
    return path


def _jsonl_frames(path: Path, count: int, prompts: int, seed: int) -> FrameSet:
    f = _jsonl_path(path)
    try:
        text = f.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CalibrationError(f"{f}: cannot read it as UTF-8 text ({e}); save it as UTF-8 JSONL") from None
    by_image: dict[str, list[tuple[int, str]]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{f}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise CalibrationError(
                f"{where}: not valid JSON ({e.msg}); each line must be one object like "
                '{"image": "a.jpg", "expression": "the red cup"}'
            ) from None
        if not isinstance(obj, dict):
            raise CalibrationError(
                f"{where}: expected a JSON object, got {type(obj).__name__}; write "
                '{"image": "a.jpg", "expression": "the red cup"}'
            )
        missing = [k for k in ("image", "expression") if not isinstance(obj.get(k), str) or not obj[k].strip()]
        if missing:
            raise CalibrationError(
                f"{where}: missing or empty field {' and '.join(repr(k) for k in missing)}; "
                'each line needs a non-empty "image" path and "expression" text'
            )
        by_image.setdefault(obj["image"].strip(), []).append((n, obj["expression"].strip()))
    if not by_image:
        raise CalibrationError(
            f'{f} has no calibration lines; add {{"image": "a.jpg", "expression": '
            '"the red cup"} lines (image paths relative to the JSONL file)'
        )
    images = list(by_image)
    chosen = [images[i] for i in _pick(len(images), count, seed)]
    base = f.parent
    paths = [(base / rel) if not Path(rel).is_absolute() else Path(rel) for rel in chosen]
    for rel, p in zip(chosen, paths):  # fail before the long run, not in the middle of it
        if not p.is_file():
            raise CalibrationError(
                f"{f}:{by_image[rel][0][0]}: image {rel!r} not found (looked for {p}); image "
                "paths are relative to the JSONL file"
            )

    def load(i: int) -> Frame:
        lines = by_image[chosen[i]]
        return Frame(
            read_image(paths[i], f"{f}:{lines[0][0]}"), [e for _, e in lines[:prompts]], f"jsonl:{paths[i].resolve()}"
        )

    return FrameSet(f"jsonl:{f}", [f"jsonl:{p.resolve()}" for p in paths], load, len(images))


# ----------------------------------------------------------------------------- evaluation data


class EvalSet:
    """The held-out evaluation samples: the first ``n`` of a data set whose image is not a calibration frame."""

    def __init__(self, spec: str, ds, indices: list[int], skipped: int):
        self.spec = spec
        self._ds = ds
        self.indices = indices
        self.skipped = skipped  # samples passed over because their image is in the calibration set

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Sample:
        return self._ds[self.indices[i]]

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]


def open_eval(spec: str, count: int, exclude_keys: Sequence[str] = ()) -> EvalSet:
    """First ``count`` samples of ``spec`` (RefShapes / RefCOCO), skipping images in ``exclude_keys``."""
    if count < 1:
        raise CalibrationError(f"--eval-samples must be at least 1, got {count}")
    kind = spec.partition(":")[0]
    if kind not in (*_REFSHAPES, "refcoco"):
        raise CalibrationError(
            f"--eval-data {spec!r}: evaluation needs ground-truth masks; use refshapes:SPLIT, refshapes2:SPLIT "
            "or refcoco:ROOT:DATASET:SPLITBY:SPLIT"
        )
    from ssp_edge.ssp.data.spec import open_data

    ds = open_data(spec)
    excl = set(exclude_keys)
    if kind == "refshapes":
        split = spec.partition(":")[2] or "test"
        key_of = lambda k: f"refshapes:{split}:{k}"  # noqa: E731 - scene index = sample index
        order: Sequence = range(len(ds))
    elif kind == "refshapes2":
        split = spec.partition(":")[2] or "test"
        key_of = lambda k: f"refshapes2:{split}:{ds.text_sample(k).tags['scene']}"  # noqa: E731 - its scene
        order = range(len(ds))
    else:
        idx = _refcoco_index(ds)
        key_of = lambda k: f"coco:{idx[k][0]}"  # noqa: E731 - COCO image id, shared by all RefCOCO sets
        order = range(len(idx))
    chosen: list[int] = []
    skipped = 0
    for k in order:
        if len(chosen) == count:
            break
        if key_of(k) in excl:
            skipped += 1
            continue
        chosen.append(k)
    if not chosen:
        raise CalibrationError(
            f"--eval-data {spec!r} has no samples outside the calibration set; choose another "
            "split (e.g. refshapes:test)"
        )
    return EvalSet(spec, ds, chosen, skipped)
