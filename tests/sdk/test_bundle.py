"""sdk.bundle: manifest round trip, sha256 verification, clear errors; importable without torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import REPO, small_manifest

from ssp_edge.sdk.bundle import FORMAT, MANIFEST, Bundle, EngineEntry, GraphEntry, Manifest, TensorSpec, sha256_file
from ssp_edge.sdk.errors import BundleError


def _manifest() -> Manifest:
    return small_manifest()


@pytest.fixture
def bundle(tmp_path):
    b = Bundle.create(tmp_path / "b", _manifest())
    (b.root / "g.onnx").write_bytes(b"graph bytes")
    (b.root / "tokenizer.json").write_text("{}")
    b.add_file("tokenizer.json")
    b.add_graph(
        GraphEntry(
            "image_encoder",
            "portable",
            "fp32",
            "g.onnx",
            [TensorSpec("image", ["frames", 3, 320, 320], "float32")],
            [TensorSpec("q", ["frames", 9, 80, 80], "float32")],
        )
    )
    (b.root / "e.engine").write_bytes(b"engine")
    b.add_engine(EngineEntry("image_encoder", "portable", "fp16", "e.engine", "10.3.0", "8.7", "g.onnx"))
    b.save()
    return b.root


def test_round_trip(bundle):
    b = Bundle.open(bundle)
    assert b.manifest.format == FORMAT
    g = b.graph("image_encoder")
    assert g.inputs[0].shape == ["frames", 3, 320, 320] and g.file == "g.onnx"
    assert b.manifest.engines[0].compute_capability == "8.7"
    assert b.manifest.files["g.onnx"] == sha256_file(bundle / "g.onnx")
    assert json.loads((bundle / MANIFEST).read_text())["dynamic_axes"]["expressions"] == [1, 4, 16]


def test_tampered_file_is_refused(bundle):
    (bundle / "g.onnx").write_bytes(b"graph bytez")
    with pytest.raises(BundleError, match=r"g\.onnx does not match its sha256"):
        Bundle.open(bundle)
    Bundle.open(bundle, verify=False)  # reading the manifest alone still works


def test_missing_file_and_missing_manifest(bundle, tmp_path):
    (bundle / "e.engine").unlink()
    with pytest.raises(BundleError, match=r"e\.engine is missing"):
        Bundle.open(bundle)
    with pytest.raises(BundleError, match="has no manifest.json"):
        Bundle.open(tmp_path)
    with pytest.raises(BundleError, match="is not a folder"):
        Bundle.open(tmp_path / "nope")


def test_other_format_and_malformed(bundle):
    data = json.loads((bundle / MANIFEST).read_text())
    (bundle / MANIFEST).write_text(json.dumps({**data, "format": "other/9"}))
    with pytest.raises(BundleError, match="re-export"):
        Bundle.open(bundle)
    (bundle / MANIFEST).write_text("{")
    with pytest.raises(BundleError, match="not valid JSON"):
        Bundle.open(bundle)


def test_unknown_graph_lists_what_exists(bundle):
    with pytest.raises(BundleError, match=r"image_encoder/portable/fp32.*ssp calibrate"):
        Bundle.open(bundle).graph("image_encoder", "portable", "int8")


def test_manifest_write_is_atomic_and_replaces(bundle):
    b = Bundle.open(bundle)
    b.add_graph(GraphEntry("image_encoder", "portable", "fp32", "g.onnx", [], []))  # replace, not duplicate
    b.save()
    assert len(Bundle.open(bundle).manifest.graphs) == 1
    assert not [p for p in bundle.iterdir() if p.name.endswith(".tmp")]


def test_sdk_bundle_imports_without_torch():
    code = (
        "import sys, ssp_edge.sdk.bundle, ssp_edge.sdk.signing, ssp_edge.sdk.errors; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
