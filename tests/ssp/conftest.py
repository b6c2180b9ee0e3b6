"""Tiny refer-layout (RefCOCO) and grefer-layout (gRefCOCO) data sets written for the training tests: PNG
photos of several sizes with coloured rectangles, rectangle polygons in instances.json, refs with 2-3
sentences each (some with 'left' / 'right'), and gRefCOCO refs with one, two or no targets."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

SIZES = [(48, 64), (64, 48), (40, 72), (56, 56), (72, 40), (60, 80)]  # (h, w) per image
COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 200, 60)}
TINY = dict(pretrained=False, dim=32, heads=2, decoder_channels=(16, 8, 8, 4), prior_channels=4, input_size=64)
TINY_SET = ["pretrained=false", "dim=32", "heads=2", "decoder_channels=[16,8,8,4]", "prior_channels=4", "input_size=64"]


def _scene(i: int, h: int, w: int) -> tuple[np.ndarray, list[tuple[str, list[float]]]]:
    """An image with a left and a right rectangle; returns (RGB image, [(colour, [x0, y0, x1, y1])])."""
    rng = np.random.default_rng(i)
    img = rng.integers(90, 160, (h, w, 3), dtype=np.uint8)
    names = list(COLOURS)
    objs = []
    for j, (x0, x1) in enumerate(((0.08, 0.42), (0.55, 0.92))):
        c = names[(i + j) % 3]
        box = [round(x0 * w), round(0.2 * h), round(x1 * w), round(0.8 * h)]
        img[box[1] : box[3], box[0] : box[2]] = COLOURS[c]
        objs.append((c, box))
    return img, objs


def _poly(box: list[float]) -> list[list[float]]:
    x0, y0, x1, y1 = box
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _write_images(root: Path, n: int, offset: int = 0):
    (root / "images" / "train2014").mkdir(parents=True, exist_ok=True)
    images, anns, scenes = [], [], []
    for i in range(n):
        h, w = SIZES[i % len(SIZES)]
        img, objs = _scene(i + offset, h, w)
        name = f"COCO_train2014_{i:012d}.png"
        cv2.imwrite(str(root / "images" / "train2014" / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
        ids = []
        for j, (_, box) in enumerate(objs):
            aid = 100 * (i + 1) + j
            anns.append(
                {
                    "id": aid,
                    "image_id": i + 1,
                    "category_id": 1,
                    "iscrowd": 0,
                    "segmentation": _poly(box),
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                }
            )
            ids.append(aid)
        scenes.append((objs, ids))
    return images, anns, scenes


def write_refer(root: Path, n_train: int = 4, n_val: int = 2) -> Path:
    """ROOT/refcoco/refs(unc).p + instances.json + ROOT/images/train2014/*.png (2 refs per image)."""
    images, anns, scenes = _write_images(root, n_train + n_val)
    refs = []
    for i, (objs, ids) in enumerate(scenes):
        split = "train" if i < n_train else "val"
        for j, ((colour, _), aid) in enumerate(zip(objs, ids)):
            side = "left" if j == 0 else "right"
            sents = [f"the {colour} box", f"{colour} thing on the {side}", f"the {side} one"][: 2 + (i + j) % 2]
            refs.append(
                {
                    "ref_id": len(refs),
                    "ann_id": aid,
                    "image_id": i + 1,
                    "split": split,
                    "category_id": 1,
                    "sentences": [
                        {"sent": s, "raw": s, "sent_id": 10 * len(refs) + k, "tokens": s.split()}
                        for k, s in enumerate(sents)
                    ],
                }
            )
    d = root / "refcoco"
    d.mkdir(parents=True, exist_ok=True)
    (d / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    (d / "instances.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "box"}]})
    )
    return root


def write_grefer(root: Path, n_train: int = 4, n_val: int = 2) -> Path:
    """ROOT/grefcoco/grefs(unc).json + instances.json: per image a one-target, a two-target and a no-target ref."""
    images, anns, scenes = _write_images(root, n_train + n_val, offset=50)
    refs = []
    for i, (objs, ids) in enumerate(scenes):
        split = "train" if i < n_train else "val"
        missing = next(c for c in COLOURS if c not in {o[0] for o in objs})
        for ann_id, sents in (
            ([ids[0]], [f"the {objs[0][0]} box", "the left box"]),
            (ids, ["both boxes", "the two boxes"]),
            ([-1], [f"the {missing} box", f"a {missing} circle"]),
        ):
            refs.append(
                {
                    "ref_id": len(refs),
                    "ann_id": ann_id,
                    "image_id": i + 1,
                    "split": split,
                    "category_id": [1],
                    "no_target": ann_id == [-1],
                    "sentences": [
                        {"sent": s, "raw": s, "sent_id": 10 * len(refs) + k, "tokens": s.split()}
                        for k, s in enumerate(sents)
                    ],
                }
            )
    d = root / "grefcoco"
    d.mkdir(parents=True, exist_ok=True)
    (d / "grefs(unc).json").write_text(json.dumps(refs))
    (d / "instances.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "box"}]})
    )
    return root


@pytest.fixture(scope="session")
def refer_root(tmp_path_factory) -> Path:
    return write_refer(tmp_path_factory.mktemp("refer"))


@pytest.fixture(scope="session")
def grefer_root(tmp_path_factory) -> Path:
    return write_grefer(tmp_path_factory.mktemp("grefer"))
