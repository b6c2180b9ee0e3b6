"""The RefCOCO refs unpickler: no globals, linear in the file size (shared references stay shared), caps on
objects and depth, and a clear SSPError for anything else."""

from __future__ import annotations

import pickle
import time

import pytest

from ssp_edge.ssp.data import refcoco
from ssp_edge.ssp.data.refcoco import load_refs
from ssp_edge.ssp.errors import SSPError


def _refs(tokens: object) -> list[dict]:
    return [{"ref_id": 1, "ann_id": 2, "image_id": 3, "split": "train", "sentences": [{"sent": "x", "tokens": tokens}]}]


def _write(tmp_path, obj, protocol=2) -> str:
    p = tmp_path / "refs(unc).p"
    p.write_bytes(pickle.dumps(obj, protocol=protocol))
    return str(p)


def test_shared_references_load_in_linear_time(tmp_path):
    a: list = ["w"]
    for _ in range(40):  # 2**40 leaves if shared references were copied
        a = [a, a]
    path = _write(tmp_path, _refs(a))
    assert (tmp_path / "refs(unc).p").stat().st_size < 450
    t0 = time.perf_counter()
    refs = load_refs(path)
    assert time.perf_counter() - t0 < 0.5
    tok = refs[0]["sentences"][0]["tokens"]
    assert tok[0] is tok[1]  # still shared, not copied


def test_python2_byte_strings_are_decoded_and_sharing_kept(tmp_path):
    shared = b"caf\xc3\xa9"
    refs = [
        {
            b"ref_id": 1,
            b"ann_id": 2,
            b"image_id": 3,
            b"split": b"train",
            b"sentences": [{b"sent": shared, b"raw": shared, b"latin": b"\xe9t\xe9"}],
        }
    ]
    p = tmp_path / "refs.p"
    p.write_bytes(pickle.dumps(refs, protocol=3))
    s = load_refs(p)[0]["sentences"][0]
    assert s["sent"] == "café" and s["raw"] is s["sent"] and s["latin"] == "été"


def test_cycles_are_kept_as_cycles(tmp_path):
    a: list = []
    a.append(a)
    tok = load_refs(_write(tmp_path, _refs(a)))[0]["sentences"][0]["tokens"]
    assert tok[0] is tok


def test_depth_cap(tmp_path):
    deep: list = []
    for _ in range(150):
        deep = [deep]
    with pytest.raises(SSPError, match=r"refusing to load .*refs\(unc\)\.p: the pickle holds nested more than 100"):
        load_refs(_write(tmp_path, _refs(deep)))


def test_object_cap(tmp_path):
    path = _write(tmp_path, _refs([[i] for i in range(1000)]))
    with pytest.raises(SSPError, match="more than 500 objects"):
        load_refs(path, max_objects=500)
    assert len(load_refs(path)[0]["sentences"][0]["tokens"]) == 1000


def test_file_size_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(refcoco, "MAX_PICKLE_BYTES", 100)
    with pytest.raises(SSPError, match="larger than 0 MiB"):
        load_refs(_write(tmp_path, _refs(["x" * 200])))


@pytest.mark.parametrize(
    "payload, match",
    [
        (b"cos\nsystem\n(S'echo pwned'\ntR.", "global os.system is not allowed"),
        (b"\x80\x02]q\x00(K\x01", "not a plain-data refs pickle"),  # truncated
        (b"", "not a plain-data refs pickle"),
    ],
)
def test_globals_and_corrupt_pickles_are_refused(tmp_path, payload, match):
    p = tmp_path / "refs.p"
    p.write_bytes(payload)
    with pytest.raises(SSPError, match=match):
        load_refs(p)


def test_not_a_refs_list(tmp_path):
    with pytest.raises(SSPError, match="expected a list of ref dicts, got dict"):
        load_refs(_write(tmp_path, {"a": 1}))
