"""What trains and how fast: the EfficientNet rule of the shipped recipe, stage-wise unfreezing with a
layer-wise learning rate (EfficientNet-Lite0 and Swin), the text encoder's own group when unfrozen, the frozen
exists head without no-target data; and every trainable parameter gets a gradient from one step (DDP without
find_unused_parameters relies on it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssp_edge.ssp.config import get_config
from ssp_edge.ssp.models.ssp import build_model
from ssp_edge.ssp.options import TrainOptions
from ssp_edge.ssp.train import Runtime, _set_trainable, _Step, param_groups
from ssp_edge.ssp.train_bench import _batch

TINY = dict(pretrained=False, dim=32, heads=2, decoder_channels=(16, 8, 8, 4), prior_channels=4, input_size=64)
SWIN = dict(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=2)
BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


@pytest.fixture(scope="module")
def lite():
    cfg = get_config("ssp_lite", **TINY)
    return cfg, build_model(cfg)


def test_shipped_rule_trains_efficientnet_blocks_from_5(lite):
    cfg, model = lite
    _set_trainable(model, cfg, TrainOptions())
    on = {n for n, p in model.image.backbone.named_parameters() if p.requires_grad}
    assert on and all(n.startswith("blocks.") and int(n.split(".")[1]) >= 5 for n in on)
    assert {n.split(".")[1] for n in on} == {str(i) for i in range(5, 16)}
    groups = param_groups(model, TrainOptions())
    assert [g["name"] for g in groups] == ["ssp", "backbone"]
    n_on = sum(p.numel() for n, p in model.image.backbone.named_parameters() if n in on)
    assert sum(p.numel() for p in groups[1]["params"]) == n_on


def test_layer_wise_rates_by_stage(lite):
    cfg, model = lite
    opt = TrainOptions(backbone_trainable_stages=3, layer_decay=0.5, backbone_lr=1e-4)
    _set_trainable(model, cfg, opt)
    bb = model.image.backbone
    stages = {bb.stage_of(n) for n, p in bb.named_parameters() if p.requires_grad}
    assert stages == {5, 6, 7}  # the last 3 of stem + 7 block groups
    lrs = {g["name"]: g["lr"] for g in param_groups(model, opt)}
    assert lrs == {"ssp": opt.lr, "backbone.stage7": 1e-4, "backbone.stage6": 5e-5, "backbone.stage5": 2.5e-5}


def test_swin_text_and_exists_groups():
    cfg = get_config(
        "ssp_paper", **{**TINY, "pretrained": False}, backbone_config=SWIN, text_config=BERT, freeze_text=False
    )
    model = build_model(cfg)
    opt = TrainOptions(layer_decay=0.8, text_lr=2e-5)
    _set_trainable(model, cfg, opt, train_exists=False)
    assert all(p.requires_grad for p in model.image.backbone.parameters()), "Swin trains all stages by default"
    assert not any(p.requires_grad for p in model.decoder.exists.parameters())
    groups = {g["name"]: g for g in param_groups(model, opt)}
    assert groups["text"]["lr"] == 2e-5 and len(groups["text"]["params"]) == len(list(model.text.encoder.parameters()))
    assert [n for n in groups if n.startswith("backbone.")] == [f"backbone.stage{s}" for s in (4, 3, 2, 1, 0)]
    assert groups["backbone.stage0"]["lr"] == pytest.approx(opt.backbone_lr * 0.8**4)


@pytest.mark.parametrize("which", ["lite", "paper_unfrozen"])
def test_every_trainable_parameter_gets_a_gradient(which):
    if which == "lite":
        cfg = get_config("ssp_lite", **TINY)
    else:
        cfg = get_config("ssp_paper", **TINY, backbone_config=SWIN, text_config=BERT, freeze_text=False)
    torch.manual_seed(0)
    model = build_model(cfg)
    opt = TrainOptions(amp="off")
    _set_trainable(model, cfg, opt)
    step = _Step(model, cfg, opt, Runtime(torch.device("cpu"), "off"), train_exists=True)
    b = _batch(cfg, np.random.default_rng(0), 2, 2, torch.device("cpu"))
    hid = None if not cfg.freeze_text else model.text.encoder(b["ids"], b["amask"]).detach()
    model.train()
    out = step(b["image"], b["index"], b["mask"], b["exists"], hid, b["amask"], b["ids"])
    out["total"].backward()
    idle = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not idle, idle[:5]
