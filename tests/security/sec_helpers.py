"""Helpers of tests/security: small synthetic bundles (no ONNX needed to test the trust checks) and a loader for
the web demo sample."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from helpers import small_manifest

from ssp_edge.sdk.bundle import MANIFEST, Bundle, EngineEntry, GraphEntry, TensorSpec

REPO = Path(__file__).resolve().parents[2]


def make_bundle(root: Path) -> Path:
    """A bundle of four small files: tokenizer, two graphs, one engine (all listed and hashed)."""
    b = Bundle.create(root, small_manifest(vocab_size=30522))
    (root / "tokenizer.json").write_text("{}")
    b.add_file("tokenizer.json")
    (root / "g.onnx").write_bytes(b"graph bytes")
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
    (root / "sub").mkdir()
    (root / "sub" / "t.onnx").write_bytes(b"text graph")
    b.add_graph(
        GraphEntry(
            "text_encoder",
            "portable",
            "fp32",
            "sub/t.onnx",
            [TensorSpec("input_ids", ["expressions", 20], "int64")],
            [TensorSpec("words", ["expressions", 20, 128], "float32")],
        )
    )
    (root / "e.engine").write_bytes(b"engine")
    b.add_engine(EngineEntry("image_encoder", "portable", "fp16", "e.engine", "10.3.0", "8.7", "g.onnx"))
    b.save()
    return root


def read_manifest(root: Path) -> dict:
    return json.loads((root / MANIFEST).read_text())


def write_manifest(root: Path, data: object) -> None:
    (root / MANIFEST).write_text(json.dumps(data))


def load_web_demo():
    name = "ssp_web_demo_server"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "samples" / "web_demo" / "server.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
