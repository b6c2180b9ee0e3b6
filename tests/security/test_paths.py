"""Paths in a bundle: every file the SDK reads is listed, hashed and inside the folder (symlinks resolved);
the files map is never an oracle for files outside; a file swapped after open is refused."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest
from sec_helpers import read_manifest, write_manifest

from ssp_edge.sdk.bundle import MANIFEST, Bundle
from ssp_edge.sdk.errors import BundleError


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.mark.parametrize(
    "rel",
    [
        "/etc/hostname",
        "../outside.onnx",
        "sub/../g.onnx",
        "./g.onnx",
        "sub//t.onnx",
        "sub\\t.onnx",
        "C:/x.onnx",
        "",
        "g.onnx/",
        "a\x00b",
    ],
)
def test_graph_file_must_be_a_normalised_relative_path(mini, rel):
    data = read_manifest(mini)
    data["graphs"][0]["file"] = rel
    data["files"][rel] = data["files"]["g.onnx"]
    write_manifest(mini, data)
    with pytest.raises(BundleError, match=r"graphs\[0\]\.file|files\["):
        Bundle.open(mini)


def test_graph_naming_an_unlisted_file_is_refused(mini):
    """The reported attack: a graph entry pointing at an unlisted file with changed weights."""
    (mini / "evil.onnx").write_bytes(b"negated weights")
    data = read_manifest(mini)
    data["graphs"][0]["file"] = "evil.onnx"
    write_manifest(mini, data)
    with pytest.raises(BundleError, match=r"'graphs\[0\]\.file' names 'evil.onnx', which is not listed"):
        Bundle.open(mini)


def test_unlisted_tokenizer_and_plugin_library_are_refused(mini):
    data = read_manifest(mini)
    write_manifest(mini, {**data, "tokenizer": "other.json"})
    with pytest.raises(BundleError, match=r"'tokenizer' names 'other.json', which is not listed"):
        Bundle.open(mini)
    data["engines"][0]["plugin_library"] = "libssp_trt_plugins.so"
    write_manifest(mini, data)
    with pytest.raises(BundleError, match=r"'engines\[0\]\.plugin_library' names 'libssp_trt_plugins.so'"):
        Bundle.open(mini)


@pytest.mark.parametrize("rel", ["../../../../etc/hostname", "/etc/hostname"])
def test_files_key_outside_is_refused_before_hashing(mini, rel, monkeypatch):
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda p, *a, **k: (opened.append(str(p)), real_open(p, *a, **k))[1])
    data = read_manifest(mini)
    data["files"][rel] = "0" * 64
    write_manifest(mini, data)
    with pytest.raises(BundleError, match="not a normalised relative path|not a relative path"):
        Bundle.open(mini)
    assert not [p for p in opened if "hostname" in p]


def test_files_map_is_no_oracle_for_outside_files(mini, tmp_path):
    """A symlink out of the bundle gives the same error whether its target exists, and its sha matches, or not."""
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"secret")
    errors = []
    for target, digest in (
        (outside, _sha(b"secret")),
        (tmp_path / "missing.txt", _sha(b"secret")),
        (outside, "0" * 64),
    ):
        link = mini / "peek"
        if link.is_symlink():
            link.unlink()
        link.symlink_to(target)
        data = read_manifest(mini)
        data["files"]["peek"] = digest
        write_manifest(mini, data)
        with pytest.raises(BundleError) as e:
            Bundle.open(mini)
        errors.append(str(e.value))
    assert len(set(errors)) == 1 and "resolves outside the bundle folder" in errors[0]


def test_symlinked_graph_to_outside_is_refused_even_with_the_right_sha(mini, tmp_path):
    outside = tmp_path / "outside.onnx"
    shutil.copy(mini / "g.onnx", outside)
    (mini / "g.onnx").unlink()
    (mini / "g.onnx").symlink_to(outside)
    with pytest.raises(BundleError, match=r"'g.onnx' \(files\['g.onnx'\]\) resolves outside"):
        Bundle.open(mini)


def test_symlink_inside_the_bundle_is_fine(mini):
    (mini / "g.onnx").rename(mini / "real.onnx")
    (mini / "g.onnx").symlink_to("real.onnx")
    assert Bundle.open(mini).read_bytes("g.onnx") == b"graph bytes"


def test_manifest_symlinked_to_outside_is_refused(mini, tmp_path):
    outside = tmp_path / "m.json"
    shutil.move(mini / MANIFEST, outside)
    (mini / MANIFEST).symlink_to(outside)
    with pytest.raises(BundleError, match="manifest.json is a link that leaves the bundle"):
        Bundle.open(mini)


def test_bundle_folder_reached_through_a_symlink_opens(mini, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(mini)
    assert Bundle.open(link).read_bytes("sub/t.onnx") == b"text graph"


def test_file_swapped_after_open_is_refused(mini):
    b = Bundle.open(mini)
    (mini / "g.onnx").write_bytes(b"graph bytez")
    with pytest.raises(BundleError, match="g.onnx does not match its sha256"):
        b.read_bytes("g.onnx")


def test_file_replaced_by_an_outside_symlink_after_open_is_refused(mini, tmp_path):
    b = Bundle.open(mini)
    outside = tmp_path / "o.onnx"
    outside.write_bytes(b"graph bytes")  # even the same bytes
    (mini / "g.onnx").unlink()
    (mini / "g.onnx").symlink_to(outside)
    with pytest.raises(BundleError, match="resolves outside"):
        b.read_bytes("g.onnx")
    with pytest.raises(BundleError, match="resolves outside"):
        b.path("g.onnx")


def test_fifo_or_folder_in_place_of_a_file_is_refused_without_hanging(mini):
    (mini / "e.engine").unlink()
    os.mkfifo(mini / "e.engine")
    with pytest.raises(BundleError, match="e.engine is not a regular file"):
        Bundle.open(mini)
    (mini / "e.engine").unlink()
    (mini / "e.engine").mkdir()
    with pytest.raises(BundleError, match="e.engine is not a regular file"):
        Bundle.open(mini)


def test_read_bytes_and_path_refuse_unlisted_names(mini):
    (mini / "extra.bin").write_bytes(b"x")
    b = Bundle.open(mini)
    for rel in ("extra.bin", "../etc/passwd", "manifest.json"):
        with pytest.raises(BundleError, match="is not listed"):
            b.read_bytes(rel)
        with pytest.raises(BundleError, match="is not listed"):
            b.path(rel)


@pytest.mark.parametrize("rel", ["../x.onnx", "/tmp/x.onnx", "a/./b"])
def test_writers_cannot_leave_the_bundle(mini, rel):
    b = Bundle.open(mini)
    with pytest.raises(BundleError, match="file name"):
        b.target(rel)
    with pytest.raises(BundleError):
        b.add_file(rel)


def test_real_bundle_with_an_unlisted_graph_is_refused_by_segmenter(lite_bundle, tmp_path):
    from ssp_edge.sdk.segmenter import Segmenter

    b = tmp_path / "b"
    shutil.copytree(lite_bundle, b, copy_function=os.link)
    (b / "evil.onnx").write_bytes((b / "mask_decoder.portable.onnx").read_bytes())
    data = json.loads((b / MANIFEST).read_text())
    i = next(i for i, g in enumerate(data["graphs"]) if g["name"] == "mask_decoder" and g["flavour"] == "portable")
    data["graphs"][i]["file"] = "evil.onnx"
    (b / MANIFEST).unlink()
    (b / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(BundleError, match=rf"graphs\[{i}\]\.file' names 'evil.onnx'"):
        Segmenter.open(b, backend="onnxruntime")
