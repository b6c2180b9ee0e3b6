"""`--set backbone_weights=DIR` / `text_weights=DIR`: tiny Hugging Face folders saved here (SwinModel, BertModel,
BertForMaskedLM, v4-style Swin key names, another Swin window) load into swin_b / bert_base with tiny config
overrides, compared tensor by tensor with the saved models; a wrong folder is a one-line error naming the key."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_one_line_error, run_ssp
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertForMaskedLM, BertModel, SwinConfig, SwinModel

from ssp_edge.ssp.config import get_config
from ssp_edge.ssp.errors import SSPError
from ssp_edge.ssp.models.backbones import SwinB
from ssp_edge.ssp.models.ssp import build_model
from ssp_edge.ssp.models.weights import load_part_weights, load_pretrained_parts

SWIN = dict(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=2)
BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
TINY = dict(input_size=64, dim=32, heads=2, decoder_channels=(16, 8, 8, 4), prior_channels=4)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(1)
    swin = SwinModel(SwinConfig(image_size=64, **SWIN), add_pooling_layer=False)
    swin.save_pretrained(root / "swin")
    bert = BertModel(BertConfig(**BERT))
    bert.save_pretrained(root / "bert")
    mlm = BertForMaskedLM(BertConfig(**BERT))
    mlm.save_pretrained(root / "bert_mlm")
    SwinModel(SwinConfig(image_size=64, **{**SWIN, "window_size": 4}), add_pooling_layer=False).save_pretrained(
        root / "swin_w4"
    )
    SwinModel(SwinConfig(image_size=64, **{**SWIN, "depths": [1, 1, 2, 1]}), add_pooling_layer=False).save_pretrained(
        root / "swin_deeper"
    )
    # transformers 4 named Swin's attention weights attention.self.query / output.dense / intermediate.dense
    sd = load_file(str(root / "swin" / "model.safetensors"))
    v4 = {}
    for k, v in sd.items():
        k = k.replace("attention.q_proj", "attention.self.query").replace("attention.k_proj", "attention.self.key")
        k = k.replace("attention.v_proj", "attention.self.value").replace("attention.o_proj", "attention.output.dense")
        k = k.replace("mlp.fc1", "intermediate.dense").replace("mlp.fc2", "output.dense")
        v4["swin." + k] = v.contiguous()
    v4["classifier.weight"] = torch.zeros(10, 128)
    save_file(v4, str(root / "swin_v4.safetensors"))
    return root, swin.state_dict(), bert.state_dict(), mlm.bert.state_dict()


def _cfg(**kw):
    return get_config("ssp_paper", **TINY, backbone_config=SWIN, text_config=BERT, **kw)


def test_swin_and_bert_folders_load_exactly(folders):
    root, swin_sd, bert_sd, _ = folders
    cfg = _cfg(backbone_weights=str(root / "swin"), text_weights=str(root / "bert"))
    model = build_model(cfg)
    rep = load_pretrained_parts(model, cfg)
    own_bb = model.image.backbone.state_dict()
    for k, v in swin_sd.items():
        assert torch.equal(own_bb["swin." + k], v), k
    own_t = model.text.encoder.state_dict()
    for k, v in bert_sd.items():
        if not k.startswith("pooler."):
            assert torch.equal(own_t["bert." + k], v), k
    assert rep["backbone"].kept and all(k.startswith("stem2.") for k in rep["backbone"].kept)
    assert model.image.backbone.channels == (64, 16, 32, 64, 128)


def test_heads_prefixes_v4_names_and_other_windows(folders):
    root, swin_sd, _, mlm_bert_sd = folders
    model = build_model(_cfg())
    load_part_weights(model.text.encoder, root / "bert_mlm", "text encoder")  # bert. prefix + cls.* head
    own_t = model.text.encoder.state_dict()
    assert all(torch.equal(own_t["bert." + k], v) for k, v in mlm_bert_sd.items() if not k.startswith("pooler."))
    bb = model.image.backbone
    rep = load_part_weights(bb, root / "swin_v4.safetensors", "backbone")
    assert rep.dropped == 1  # the classifier
    assert torch.equal(
        bb.state_dict()["swin.encoder.layers.0.blocks.0.attention.q_proj.weight"],
        swin_sd["encoder.layers.0.blocks.0.attention.q_proj.weight"],
    )
    rep = load_part_weights(bb, root / "swin_w4", "backbone")  # window 4 -> 2: bias tables resized
    assert rep.adapted and all(k.endswith("relative_position_bias_table") for k in rep.adapted)


def test_swin_stages_for_layer_wise_rates():
    bb = SwinB(64, config=SWIN)
    stages = {bb.stage_of(n) for n, _ in bb.named_parameters()}
    assert stages == set(range(bb.num_stages))
    assert bb.stage_of("swin.encoder.layers.2.blocks.0.mlp.fc1.weight") == 3
    assert bb.stage_of("stem2.0.weight") == 0 and bb.stage_of("swin.layernorm.weight") == 4


def test_mismatched_folders_name_the_first_bad_key(folders, tmp_path):
    root = folders[0]
    bb = build_model(_cfg()).image.backbone
    with pytest.raises(SSPError, match=r"unexpected key 'swin\.encoder\.layers\.2\.blocks\.1\..*depths=\[1, 1, 2, 1\]"):
        load_part_weights(bb, root / "swin_deeper", "backbone")
    with pytest.raises(SSPError, match="model_type 'bert'"):
        load_part_weights(bb, root / "bert", "backbone")
    with pytest.raises(SSPError, match="not found"):
        load_part_weights(bb, tmp_path / "nothing", "backbone")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SSPError, match="no model.safetensors"):
        load_part_weights(bb, tmp_path / "empty", "backbone")


def test_wrong_folder_is_one_line_on_the_command_line(folders, tmp_path):
    root = folders[0]
    r = run_ssp(
        "train",
        "--config",
        "ssp_paper",
        "--set",
        "input_size=64",
        "--set",
        f"backbone_config={SWIN}".replace("'", '"'),
        "--set",
        f"backbone_weights={root / 'swin_deeper'}",
        "--out",
        str(tmp_path / "r"),
        "--steps",
        "1",
        "--spixel-steps",
        "0",
        "--data",
        "refshapes:train",
        "--val",
        "none",
    )
    assert_one_line_error(r, "backbone weights", "unexpected key")
