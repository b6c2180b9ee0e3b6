"""Tokenizer vs text graph: the manifest records the text graph's vocabulary size at export; a tokenizer whose
ids can exceed it is refused (BundleError) before any id reaches ONNX Runtime."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from ssp_edge.sdk.bundle import MANIFEST, Bundle
from ssp_edge.sdk.errors import BundleError, SDKError
from ssp_edge.sdk.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tok_bytes(lite_bundle):
    return (lite_bundle / "tokenizer.json").read_bytes()


def test_export_records_the_text_graph_vocabulary(lite_bundle):
    import onnx
    from tokenizers import Tokenizer as HFTokenizer

    man = Bundle.open(lite_bundle).manifest
    m = onnx.load(str(lite_bundle / "text_encoder.onnx"), load_external_data=False)
    rows = {tuple(i.dims)[0] for i in m.graph.initializer if "word_embeddings" in i.name}
    assert man.vocab_size in rows  # the embedding table's rows, read independently of the export code
    assert HFTokenizer.from_file(str(lite_bundle / "tokenizer.json")).get_vocab_size() == man.vocab_size


def test_tokenizer_within_the_vocabulary_works(tok_bytes):
    t = Tokenizer(tok_bytes, 20, vocab_size=30522)
    out = t(["the red circle"])
    assert out.input_ids.shape == (1, 20) and int(out.input_ids.max()) < 30522


@pytest.mark.parametrize("vocab", [1000, 30521])
def test_tokenizer_beyond_the_vocabulary_is_refused(tok_bytes, vocab):
    with pytest.raises(BundleError, match=rf"token ids up to 30521, but the text graph's vocabulary has {vocab}"):
        Tokenizer(tok_bytes, 20, vocab_size=vocab)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_tokens": 1}, "max_tokens"),
        ({"max_tokens": "20"}, "max_tokens"),
        ({"max_tokens": 20, "vocab_size": 0}, "vocab_size"),
        ({"max_tokens": 20, "vocab_size": 2.5}, "vocab_size"),
    ],
)
def test_tokenizer_options_are_checked(tok_bytes, kwargs, match):
    with pytest.raises(SDKError, match=match):
        Tokenizer(tok_bytes, **kwargs)


def test_segmenter_refuses_a_bundle_whose_tokenizer_exceeds_its_text_graph(lite_bundle, tmp_path):
    from ssp_edge.sdk.segmenter import Segmenter

    b = tmp_path / "b"
    shutil.copytree(lite_bundle, b, copy_function=os.link)
    data = json.loads((b / MANIFEST).read_text())
    data["vocab_size"] = 5000
    (b / MANIFEST).unlink()
    (b / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(BundleError, match="vocabulary has 5000 entries"):
        Segmenter.open(b, backend="onnxruntime")
