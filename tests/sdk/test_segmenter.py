"""sdk.Segmenter on ONNX Runtime against the PyTorch reference, the tokenizer against transformers',
the prompt cache, bad input, and no torch anywhere in the runtime path."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
from helpers import REPO

from ssp_edge.sdk.errors import SDKError
from ssp_edge.sdk.segmenter import Segmenter

N_SCENES = 6


@pytest.fixture(scope="module")
def seg(lite_bundle):
    return Segmenter.open(lite_bundle, backend="onnxruntime")


@pytest.mark.slow
def test_masks_equal_the_pytorch_reference(seg):
    """Same frames, same prompts: SDK masks (ORT) vs ssp.evaluate.Predictor masks (PyTorch), IoU >= 0.99."""
    import torch

    from ssp_edge.ssp.checkpoint import load_checkpoint
    from ssp_edge.ssp.data.refshapes import RefShapes
    from ssp_edge.ssp.evaluate import Predictor

    model, info = load_checkpoint("ssp_lite_refshapes")
    ref = Predictor.with_thresholds(model, info.config, info.thresholds)
    data = RefShapes("test")
    inter = union = 0
    for i in range(N_SCENES):
        group = data.scene_samples(i, 3)
        frame = cv2.cvtColor(group[0].image, cv2.COLOR_RGB2BGR)
        results = seg.segment(frame, [s.expression for s in group])
        with torch.no_grad():
            preds = ref.predict([s.image for s in group], [s.expression for s in group])
        for r, (prob, score) in zip(results, preds):
            want = ref.binarize(prob, score)
            assert r.mask.shape == want.shape == group[0].image.shape[:2]
            assert abs(r.score - score) < 1e-3 and r.exists == (score >= ref.exists_threshold)
            inter += int((r.mask & want).sum())
            union += int((r.mask | want).sum())
    assert union > 0 and inter / union >= 0.99


def test_letterbox_inverse_on_a_non_square_frame(seg):
    """A wide frame: the mask comes back at frame size, padding never leaks into it."""
    frame = np.full((180, 420, 3), 40, np.uint8)
    cv2.circle(frame, (300, 90), 40, (0, 0, 230), -1)  # red in BGR
    (r,) = seg.segment(frame, ["the red circle"])
    assert r.mask.shape == (180, 420) and r.prob.shape == (180, 420) and r.prob.dtype == np.float32
    assert set(np.unique(r.mask)) <= {0, 1}
    assert set(r.times_ms) == {"preprocess", "text_encoder", "image_encoder", "mask_decoder", "postprocess"}


def test_prompt_cache_runs_the_text_encoder_once_per_prompt(lite_bundle):
    s = Segmenter.open(lite_bundle, backend="onnxruntime", cache_size=16)
    frame = np.zeros((64, 64, 3), np.uint8)
    s.set_prompts(["a", "b"])
    assert (s.cache_hits, s.cache_misses) == (0, 2)
    r = s.segment(frame)
    assert r[0].times_ms["text_encoder"] == 0.0 and s.cache_hits == 2
    s.set_prompts([f"p{i}" for i in range(14)])  # fills the cache
    s.segment(frame, ["a"])  # "a" is used again: now "b" is the least recently used
    s.set_prompts(["c"])  # evicts the least recently used
    assert len(s._cache) == 16 and "b" not in s._cache and "a" in s._cache
    enc = s.encode_prompts(["a", "c", "a"])  # cached and duplicate prompts: no text encoder run
    assert enc.text_encoder_ms == 0.0 and enc.prompts == ("a", "c", "a")
    np.testing.assert_array_equal(enc.tensors["words"][0], enc.tensors["words"][2])


def test_bad_input_is_clear(seg):
    with pytest.raises(SDKError, match="non-empty prompt"):
        seg.set_prompts(["ok", "  "])
    with pytest.raises(SDKError, match="dtype float32 is not supported"):
        seg.segment(np.zeros((10, 10), np.float32), ["x"])
    with pytest.raises(SDKError, match="limit of 16"):
        seg.set_prompts([f"p{i}" for i in range(17)])
    with pytest.raises(SDKError, match="backend must be one of"):
        Segmenter.open(seg.bundle, backend="cuda")
    with pytest.raises(SDKError, match="mask_threshold"):
        Segmenter.open(seg.bundle, backend="onnxruntime", mask_threshold=1.5)


def test_int8_without_calibrated_graphs_says_how(lite_bundle):
    with pytest.raises(SDKError, match="ssp calibrate"):
        Segmenter.open(lite_bundle, backend="onnxruntime", precision="int8")


def _expressions() -> list[str]:
    from ssp_edge.ssp.data.refshapes import RefShapes

    data = RefShapes("test")
    out = [s.expression for i in range(60) for s in data.scene_samples(i, 4)]
    out += [
        "the red circle, left of the blue one!",
        "Was ist das? Der rote Kreis.",
        "le carré à gauche — oui",
        "東京の赤い丸",
        "emoji 🙂 circle",
        "  leading and trailing  ",
        "UPPER case Words",
        "it's the one (2nd)",
        "a " * 30,
        "",
        "naïve café déjà vu",
        "tab\tseparated\nnewline",
        "quotes \"double\" and 'single'",
    ]
    return out


def test_tokenizer_ids_equal_transformers(lite_bundle):
    """sdk.tokenizer (tokenizers, no transformers) vs transformers' BERT tokenizer on the same vocabulary."""
    from transformers import AutoTokenizer

    from ssp_edge.sdk.bundle import Bundle
    from ssp_edge.sdk.tokenizer import Tokenizer
    from ssp_edge.ssp.models.text import tokenizer_path

    texts = _expressions()
    assert len(texts) >= 200
    b = Bundle.open(lite_bundle)
    ours = Tokenizer(b.path(b.manifest.tokenizer), b.manifest.max_tokens)(texts, warn=False)
    hf = AutoTokenizer.from_pretrained(str(tokenizer_path().parent))
    theirs = hf(texts, padding="max_length", truncation=True, max_length=b.manifest.max_tokens, return_tensors="np")
    np.testing.assert_array_equal(ours.input_ids, theirs["input_ids"])
    np.testing.assert_array_equal(ours.attention_mask, theirs["attention_mask"])


def test_long_prompt_warns_once(lite_bundle):
    from ssp_edge.sdk.bundle import Bundle
    from ssp_edge.sdk.tokenizer import Tokenizer

    b = Bundle.open(lite_bundle)
    with pytest.warns(UserWarning, match="truncated") as rec:
        t = Tokenizer(b.path(b.manifest.tokenizer), 20)(["word " * 40, "short"])
    assert len(rec) == 1 and t.truncated == [True, False] and t.attention_mask[0].sum() == 20


def test_runtime_path_never_imports_torch(lite_bundle):
    code = (
        "import sys, numpy as np; from ssp_edge.sdk.segmenter import Segmenter; "
        f"s = Segmenter.open(r'{lite_bundle}', backend='auto'); "
        "r = s.segment(np.zeros((120, 160, 3), np.uint8), ['the blue square']); "
        "assert r[0].mask.shape == (120, 160); assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=300)
