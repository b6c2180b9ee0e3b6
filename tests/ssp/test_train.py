"""`ssp train` on a small random-init config: the grounding phase trains exactly the layers before the
upsampling decoder, the full phase continues from its weights, runs resume from their saved state,
and the grounding split of the decoder gives the same outputs as the full forward pass."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from ssp_edge.ssp.config import get_config
from ssp_edge.ssp.models.ssp import build_model
from ssp_edge.ssp.options import TrainOptions
from ssp_edge.ssp.train import train

SMALL = dict(pretrained=False, dim=32, heads=2, decoder_channels=(16, 8, 8, 4), prior_channels=4, input_size=64)


def _cfg():
    return get_config("ssp_lite", **SMALL)


def _opt(out, **kw) -> TrainOptions:
    base = dict(
        out=str(out),
        steps=2,
        images_per_batch=2,
        exprs_per_image=3,
        spixel_steps=1,
        warmup=1,
        val_every=1,
        val_samples=4,
        amp="off",
        tensorboard=False,
    )
    return TrainOptions(**{**base, **kw})


def _init_weights(cfg, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)  # train() seeds the same way before it builds the model
    return {k: v.clone() for k, v in build_model(cfg).state_dict().items()}


def _changed(before: dict, after: dict, prefix: str) -> list[str]:
    return [
        k
        for k in before
        if k.startswith(prefix) and before[k].is_floating_point() and not torch.equal(before[k], after[k])
    ]


@pytest.fixture(scope="module")
def ground_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "ground"
    final = train(_cfg(), _opt(out, ground_only=True))
    return out, final


def test_ground_only_trains_the_grounding_layers_and_leaves_the_decoder(ground_run):
    out, final = ground_run
    before = _init_weights(_cfg())
    after = load_file(str(final))
    assert _changed(before, after, "decoder.pwt."), "PWT should train in the grounding phase"
    assert _changed(before, after, "decoder.swt."), "SWT should train in the grounding phase"
    assert _changed(before, after, "decoder.exists."), "the target-exists head should train"
    assert not _changed(before, after, "decoder.decoder."), "the upsampling decoder must not change"
    assert not _changed(before, after, "decoder.prior."), "the prior projection feeds only the decoder"
    recs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2]
    assert all(0.0 <= r["rel_iou"] <= 1.0 for r in recs)
    assert "train_rel_iou" in recs[-1] and "val" not in recs[-1]  # no full-mask validation in this phase


def test_full_phase_from_grounding_weights_trains_the_decoder(ground_run, tmp_path):
    _, ground_final = ground_run
    final = train(_cfg(), _opt(tmp_path / "full", steps=1, init=str(ground_final)))
    before = load_file(str(ground_final))
    after = load_file(str(final))
    assert _changed(before, after, "decoder.decoder."), "the full phase trains the upsampling decoder"
    rec = json.loads((tmp_path / "full" / "log.jsonl").read_text().splitlines()[-1])
    assert {"dice", "bce", "rel_iou"} <= set(rec) and "mIoU" in rec["val"]


def test_run_resumes_from_its_saved_state(tmp_path):
    out = tmp_path / "resume"
    train(_cfg(), _opt(out, steps=1, ground_only=True))
    train(_cfg(), _opt(out, steps=2, ground_only=True))
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2], "the second call must continue at step 2, not start over"
    assert json.loads((out / "state.json").read_text())["step"] == 2


def test_ground_matches_the_full_forward_pass():
    cfg = _cfg()
    torch.manual_seed(3)
    model = build_model(cfg).eval()
    image = torch.randn(2, 3, cfg.input_size, cfg.input_size)
    ids = torch.randint(1000, 5000, (2, cfg.max_tokens))
    am = torch.ones(2, cfg.max_tokens, dtype=torch.int64)
    am[1, 5:] = 0
    with torch.no_grad():
        out = model(image, ids, am)
        words, sent = model.text(ids, am)
        g = model.decoder.ground(*model.image(image), words, am, sent)
    torch.testing.assert_close(g.target, out.target_logit)
    torch.testing.assert_close(g.coarse, out.coarse_logits)
    torch.testing.assert_close(g.relevance, out.relevance_logits)


def test_training_leaves_denormals_as_it_found_them(ground_run):
    """The trainer flushes denormals while it runs (CPU speed) and turns that off again: the flag is process-wide
    (numpy and hypothesis in the same process failed on it)."""
    import numpy as np

    tiny = np.array([1e-40], dtype=np.float32)  # a float32 denormal: zero when flushed
    assert float((tiny * np.float32(1.0))[0]) != 0.0
    assert float((torch.tensor([1e-40]) * 1.0)[0]) != 0.0


def test_text_cache_that_fills_up_still_returns_every_text_of_the_batch():
    """A batch whose texts were partly cached when the cache hit its cap: the cap clears the cache before the
    batch is encoded, so every text of the batch comes back (a v2 ground run once died at step 2396 with a
    KeyError here), each equal to encoding it alone."""
    from ssp_edge.ssp.models.text import Tokenizer
    from ssp_edge.ssp.train import _TextCache

    torch.manual_seed(0)
    cfg = get_config("ssp_lite", pretrained=False, dim=32, heads=2, input_size=64)
    model = build_model(cfg).eval()
    tok = Tokenizer(cfg.max_tokens)
    cache = _TextCache(model, tok, torch.device("cpu"), cap=3)
    cache(["the red circle", "the blue square"])
    batch = ["the red circle", "all of the orange stars", "both circles", "the red circle"]
    hid, mask = cache(batch)  # 2 cached + 2 new > cap 3: cleared, then the batch is encoded
    assert hid.shape[0] == mask.shape[0] == len(batch)
    for i, text in enumerate(batch):
        t = tok([text])
        with torch.no_grad():
            alone = model.text.encoder(t.input_ids, t.attention_mask).float()[0]
        assert torch.equal(mask[i], t.attention_mask[0])
        torch.testing.assert_close(hid[i], alone, atol=1e-5, rtol=1e-5)
