"""RefCOCO-format loading: a tiny refer-layout tree is written into tmp_path and read back.

Reference masks are made independently of the loader: rectangles by numpy slicing, RLE by a small
column-major run encoder and a COCO compressed-string encoder written here from the pycocotools spec.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from ssp_edge.ssp.data.refcoco import RefCOCO, decode_rle, load_refs, polygons_to_mask, rle_string_to_counts
from ssp_edge.ssp.data.spec import open_data
from ssp_edge.ssp.errors import SSPError

SIZES = {1: (24, 32), 2: (20, 28), 3: (40, 48)}  # image_id -> (h, w)


# ------------------------------------------------------------------------------------ independent encoders
def rle_counts(mask: np.ndarray) -> list[int]:
    """COCO uncompressed RLE: alternating 0/1 run lengths (starting with 0s) down the columns."""
    counts, cur, n = [], 0, 0
    for v in mask.flatten(order="F"):
        if v != cur:
            counts.append(n)
            cur, n = v, 0
        n += 1
    counts.append(n)
    return counts


def rle_string(counts: list[int]) -> str:
    """COCO compressed RLE (pycocotools rleToString): from index 3 on store count - count[i-2]; 5 bits/char,
    0x20 = more chars follow, 0x10 of the last char = sign; char = value + 48."""
    out = []
    for i, c in enumerate(counts):
        x = c - counts[i - 2] if i > 2 else c
        while True:
            ch = x & 0x1F
            x >>= 5
            more = x != -1 if ch & 0x10 else x != 0
            out.append(chr((ch | 0x20 if more else ch) + 48))
            if not more:
                break
    return "".join(out)


def py2_pickle(obj) -> bytes:
    """Protocol-2 pickle as Python 2 writes plain data: ``str`` values as byte strings (SHORT_BINSTRING)."""
    out = bytearray(b"\x80\x02")

    def emit(o) -> None:
        if isinstance(o, dict):
            out.extend(b"}(")
            for k, v in o.items():
                emit(k)
                emit(v)
            out.extend(b"u")
        elif isinstance(o, list):
            out.extend(b"](")
            for v in o:
                emit(v)
            out.extend(b"e")
        elif isinstance(o, str):
            b = o.encode("utf-8")
            out.extend(b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b)
        elif isinstance(o, bool):
            out.extend(b"\x88" if o else b"\x89")
        elif isinstance(o, int):
            out.extend(b"J" + struct.pack("<i", o))
        elif o is None:
            out.extend(b"N")
        else:
            raise TypeError(type(o))

    emit(obj)
    out.extend(b".")
    return bytes(out)


# ------------------------------------------------------------------------------------ the tiny tree
def poly_mask() -> np.ndarray:
    m = np.zeros(SIZES[1], np.uint8)
    m[5:17, 4:14] = 1  # polygon x 4..14, y 5..17 covers columns 4..13 and rows 5..16 (COCO area w*h)
    return m


def rle_mask() -> np.ndarray:
    m = np.zeros(SIZES[2], np.uint8)
    m[0, 0] = 1  # first run of zeros has length 0
    m[3:9, 5:20] = 1  # wide: row-major runs would differ
    m[12:18, 2:4] = 1
    m[19, 27] = 1  # last pixel
    return m


def crle_mask() -> np.ndarray:
    m = np.zeros(SIZES[3], np.uint8)
    m[5:7, 2] = 1
    m[:, 10:30] = 1  # an 800-pixel run: multi-char counts
    m[20:22, 40] = 1  # short runs after long ones: negative deltas
    m[0:3, 47] = 1
    return m


def sent(i: int, text: str) -> dict:
    return {"sent": text, "raw": text.capitalize(), "sent_id": i, "tokens": text.split()}


def ref(ref_id: int, ann_id: int, image_id: int, split: str, texts: list[str]) -> dict:
    sents = [sent(ref_id * 10 + k, t) for k, t in enumerate(texts)]
    return {
        "ref_id": ref_id,
        "ann_id": ann_id,
        "image_id": image_id,
        "split": split,
        "sentences": sents,
        "category_id": 1,
        "sent_ids": [s["sent_id"] for s in sents],
        "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.png",
    }


UNC = [
    ref(10, 1, 1, "train", ["left box", "the square on the left"]),
    ref(11, 2, 2, "val", ["man in red", "guy with red shirt", "person on the right"]),
    ref(12, 3, 3, "testA", ["big stripe"]),
    ref(13, 3, 3, "val", ["the café sign"]),
]
GOOGLE = [
    ref(20, 1, 1, "train", ["box"]),
    ref(21, 2, 2, "val", ["red man", "red shirt"]),
    ref(22, 3, 3, "val", ["stripe"]),
]


def image_rgb(image_id: int) -> np.ndarray:
    return np.random.default_rng(image_id).integers(0, 256, (*SIZES[image_id], 3), dtype=np.uint8)


def make_tree(root: Path, image_dir: str = "images/mscoco/images/train2014") -> Path:
    ddir = root / "refcoco"
    ddir.mkdir(parents=True)
    idir = root / image_dir
    idir.mkdir(parents=True, exist_ok=True)
    images = []
    for iid, (h, w) in SIZES.items():
        name = f"COCO_train2014_{iid:012d}.png"
        assert cv2.imwrite(str(idir / name), image_rgb(iid)[..., ::-1])  # cv2 writes BGR
        images.append({"id": iid, "file_name": name, "height": h, "width": w})
    anns = [
        {
            "id": 1,
            "image_id": 1,
            "segmentation": [[4, 5, 14, 5, 14, 17, 4, 17]],
            "bbox": [4, 5, 10, 12],
            "area": 120,
            "iscrowd": 0,
            "category_id": 1,
        },
        {
            "id": 2,
            "image_id": 2,
            "segmentation": {"size": list(SIZES[2]), "counts": rle_counts(rle_mask())},
            "bbox": [0, 0, 28, 20],
            "area": int(rle_mask().sum()),
            "iscrowd": 1,
            "category_id": 1,
        },
        {
            "id": 3,
            "image_id": 3,
            "segmentation": {"size": list(SIZES[3]), "counts": rle_string(rle_counts(crle_mask()))},
            "bbox": [2, 0, 46, 40],
            "area": int(crle_mask().sum()),
            "iscrowd": 0,
            "category_id": 1,
        },
        {
            "id": 99,
            "image_id": 1,
            "segmentation": [[0, 0, 3, 0, 3, 3]],
            "bbox": [0, 0, 3, 3],
            "area": 4.5,
            "iscrowd": 0,
            "category_id": 1,
        },  # referenced by no ref
    ]
    inst = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}
    (ddir / "instances.json").write_text(json.dumps(inst), encoding="utf-8")
    (ddir / "refs(unc).p").write_bytes(pickle.dumps(UNC, protocol=2))
    (ddir / "refs(google).p").write_bytes(pickle.dumps(GOOGLE, protocol=2))
    return root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "refer")


# ------------------------------------------------------------------------------------ masks
def test_polygon_mask(root: Path) -> None:
    ds = RefCOCO(root, "refcoco", "unc", "train")
    s = ds[0]
    assert s.mask.dtype == np.uint8 and s.mask.shape == SIZES[1]
    np.testing.assert_array_equal(s.mask, poly_mask())
    assert int(s.mask.sum()) == 10 * 12


def test_polygons_fractional_concave_and_union() -> None:
    h, w = 24, 32
    frac = [20.3, 2.6, 27.7, 2.6, 27.7, 9.2, 20.3, 9.2]  # centres c+0.5 in [20.3, 27.7) -> c in 20..27
    ell = [2, 2, 10, 2, 10, 5, 5, 5, 5, 12, 2, 12]  # concave L
    exp = np.zeros((h, w), np.uint8)
    exp[3:9, 20:28] = 1
    exp[2:5, 2:10] = 1
    exp[2:12, 2:5] = 1
    np.testing.assert_array_equal(polygons_to_mask([frac, ell], h, w), exp)
    # clipped at the border, degenerate polygons ignored
    exp = np.zeros((h, w), np.uint8)
    exp[20:, 28:] = 1
    np.testing.assert_array_equal(polygons_to_mask([[28, 20, 40, 20, 40, 30, 28, 30], [1, 1, 5, 5]], h, w), exp)


def test_polygon_triangle_pixel_centre_rule() -> None:
    h, w = 24, 32
    tri = np.array([[2.1, 1.3], [29.6, 4.2], [9.4, 21.7]])
    got = polygons_to_mask([tri.ravel().tolist()], h, w)
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    dists = []
    for (x0, y0), (x1, y1) in zip(tri, np.roll(tri, -1, axis=0)):
        cross = (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0)  # > 0 inside (vertices clockwise in image coords)
        dists.append(cross / np.hypot(x1 - x0, y1 - y0))
    d = np.min(dists, axis=0)  # signed distance-ish of each pixel centre to the edges
    exp = (d > 0).astype(np.uint8)
    assert exp.sum() > 150
    bad = got != exp
    # cv2.fillPoly's outline is a Bresenham line: only centres very near a slanted edge may disagree
    assert np.all(np.abs(d[bad]) < 0.35), f"{bad.sum()} pixels differ away from the boundary"
    assert bad.sum() <= 0.05 * exp.sum()


def test_uncompressed_rle_mask(root: Path) -> None:
    ds = RefCOCO(root, "refcoco", "unc", "val")
    np.testing.assert_array_equal(ds[0].mask, rle_mask())


def test_compressed_rle_mask(root: Path) -> None:
    ds = RefCOCO(root, "refcoco", "unc", "testA")
    assert len(ds) == 1
    np.testing.assert_array_equal(ds[0].mask, crle_mask())


def test_decode_rle_column_major() -> None:
    m = decode_rle({"size": [2, 3], "counts": [1, 1, 4]})  # second pixel in column order is (1, 0)
    np.testing.assert_array_equal(m, [[0, 0, 0], [1, 0, 0]])


def test_rle_string_known_values() -> None:
    assert rle_string_to_counts("532") == [5, 3, 2]
    assert rle_string_to_counts("0T3") == [0, 100]  # 100 = 4 + 3*32: "more" bit on the first char
    assert rle_string_to_counts("1:1H") == [1, 10, 1, 2]  # 'H' = -8, added to counts[1] = 10
    assert rle_string_to_counts(b"532") == [5, 3, 2]
    with pytest.raises(ValueError):
        rle_string_to_counts("T")  # ends inside a count


def test_rle_string_roundtrip_random() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        h, w = (int(v) for v in rng.integers(1, 60, 2))
        m = (rng.random((h, w)) < rng.uniform(0.02, 0.98)).astype(np.uint8)
        if rng.random() < 0.5:
            m = np.repeat(m[:, :1], w, axis=1)  # long runs
        counts = rle_counts(m)
        assert rle_string_to_counts(rle_string(counts)) == counts
        np.testing.assert_array_equal(decode_rle({"size": [h, w], "counts": rle_string(counts)}), m)
        np.testing.assert_array_equal(decode_rle({"size": [h, w], "counts": counts}), m)


# ------------------------------------------------------------------------------------ data set
def test_splits_and_counts(root: Path) -> None:
    unc = RefCOCO(root, "refcoco", "unc", "val")
    google = RefCOCO(root, "refcoco", "google", "val")
    assert len(unc) == 4 and len(google) == 3
    assert [r["ref_id"] for r in unc.refs] == [11, 13]
    assert [r["ref_id"] for r in google.refs] == [21, 22]
    assert unc.splits() == ["testA", "train", "val"]
    assert google.splits() == ["train", "val"]
    assert len(RefCOCO(root, "refcoco", "unc", "train")) == 2
    assert len(RefCOCO(root, "refcoco", "unc", "all")) == 7
    assert len(RefCOCO(root, "refcoco", "google", "all")) == 4


def test_sentences_expand_and_sample_fields(root: Path) -> None:
    ds = RefCOCO(root, "refcoco", "unc", "val")
    samples = [ds[i] for i in range(len(ds))]
    assert [s.expression for s in samples] == [
        "man in red",
        "guy with red shirt",
        "person on the right",
        "the café sign",
    ]
    assert [s.source for s in samples] == [
        "refcoco:refcoco:unc:val:11:110",
        "refcoco:refcoco:unc:val:11:111",
        "refcoco:refcoco:unc:val:11:112",
        "refcoco:refcoco:unc:val:13:130",
    ]
    for s in samples[:3]:
        np.testing.assert_array_equal(s.mask, rle_mask())
        np.testing.assert_array_equal(s.image, image_rgb(2))  # RGB, not BGR
    s = samples[3]
    assert s.image.dtype == np.uint8 and s.image.shape == (*SIZES[3], 3)
    np.testing.assert_array_equal(s.image, image_rgb(3))
    assert s.type == "refcoco" and s.exists is True and s.instances is None
    assert set(np.unique(s.mask)) <= {0, 1}
    assert ds[-1].source == s.source
    with pytest.raises(IndexError):
        ds[len(ds)]
    assert len(list(iter(ds))) == len(ds)  # old-style iteration stops at IndexError


def test_open_data_spec(root: Path) -> None:
    ds = open_data(f"refcoco:{root}:refcoco:unc:val")
    assert isinstance(ds, RefCOCO) and len(ds) == 4
    np.testing.assert_array_equal(ds[0].mask, rle_mask())


@pytest.mark.parametrize("image_dir", ["images/train2014", "images", "elsewhere/coco"])
def test_image_layouts(tmp_path: Path, image_dir: str) -> None:
    root = make_tree(tmp_path / "refer", image_dir)
    image_root = tmp_path / "refer" / image_dir if image_dir.startswith("elsewhere") else None
    ds = RefCOCO(root, "refcoco", "google", "train", image_root=image_root)
    np.testing.assert_array_equal(ds[0].image, image_rgb(1))


def test_py2_pickle(root: Path) -> None:
    path = root / "refcoco" / "refs(unc).p"
    path.write_bytes(py2_pickle(UNC))
    assert b"U\x05split" in path.read_bytes()  # py2 byte strings, not unicode
    refs = load_refs(path)
    assert refs == UNC and all(isinstance(k, str) for r in refs for k in r)
    ds = RefCOCO(root, "refcoco", "unc", "val")
    assert ds[3].expression == "the café sign"  # UTF-8 bytes of a py2 str decoded as UTF-8


# ------------------------------------------------------------------------------------ errors
def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(SSPError, match="not a directory") as e:
        RefCOCO(tmp_path / "nope", "refcoco", "unc", "val")
    assert "nope" in one_line(e)


def test_missing_dataset(root: Path) -> None:
    with pytest.raises(SSPError, match=r"refcocog not found; datasets in .*: refcoco$") as e:
        RefCOCO(root, "refcocog", "umd", "val")
    one_line(e)


def test_missing_refs_file(root: Path) -> None:
    with pytest.raises(SSPError, match=r"refs\(umd\)\.p not found; splitBy values in .*: google, unc") as e:
        RefCOCO(root, "refcoco", "umd", "val")
    one_line(e)


def test_missing_instances(root: Path) -> None:
    (root / "refcoco" / "instances.json").unlink()
    with pytest.raises(SSPError, match=r"instances\.json not found") as e:
        RefCOCO(root, "refcoco", "unc", "val")
    one_line(e)


def test_unknown_split(root: Path) -> None:
    with pytest.raises(SSPError, match=r"unknown split 'testB'.*splits present: testA, train, val") as e:
        RefCOCO(root, "refcoco", "unc", "testB")
    one_line(e)


def test_missing_image(root: Path) -> None:
    ds = RefCOCO(root, "refcoco", "unc", "val")
    name = "COCO_train2014_000000000002.png"
    (root / "images" / "mscoco" / "images" / "train2014" / name).unlink()
    with pytest.raises(SSPError, match="image_root") as e:
        ds[0]
    msg = one_line(e)
    assert str(root / "images" / "mscoco" / "images" / "train2014" / name) in msg
    ds = RefCOCO(root, "refcoco", "unc", "val", image_root=root / "nowhere")
    with pytest.raises(SSPError, match="image_root") as e:
        ds[0]
    assert str(root / "nowhere" / name) in one_line(e)


def test_wrong_image_size(root: Path) -> None:
    name = "COCO_train2014_000000000002.png"
    cv2.imwrite(str(root / "images" / "mscoco" / "images" / "train2014" / name), np.zeros((7, 9, 3), np.uint8))
    with pytest.raises(SSPError, match=r"is 7x9 but instances\.json says 20x28") as e:
        RefCOCO(root, "refcoco", "unc", "val")[0]
    one_line(e)


class _Evil:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


def test_malicious_pickle_refused(root: Path, tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    path = root / "refcoco" / "refs(unc).p"
    path.write_bytes(pickle.dumps([_Evil(sentinel)], protocol=2))
    with pytest.raises(SSPError, match="not a plain-data refs pickle") as e:
        RefCOCO(root, "refcoco", "unc", "val")
    assert "system" in one_line(e)
    assert not sentinel.exists()
    for proto in (0, 4, 5):  # GLOBAL / STACK_GLOBAL opcodes
        path.write_bytes(pickle.dumps([_Evil(sentinel)], protocol=proto))
        with pytest.raises(SSPError, match="not a plain-data refs pickle"):
            load_refs(path)
    assert not sentinel.exists()


def test_corrupt_or_wrong_refs(root: Path) -> None:
    path = root / "refcoco" / "refs(unc).p"
    path.write_bytes(pickle.dumps(UNC, protocol=2)[:50])
    with pytest.raises(SSPError, match="not a plain-data refs pickle") as e:
        load_refs(path)
    one_line(e)
    path.write_bytes(pickle.dumps({"refs": UNC}, protocol=2))
    with pytest.raises(SSPError, match="expected a list of ref dicts"):
        load_refs(path)
    path.write_bytes(pickle.dumps([{"ref_id": 1}], protocol=2))
    with pytest.raises(SSPError, match="ref 1 lacks ann_id, image_id, split, sentences"):
        load_refs(path)
