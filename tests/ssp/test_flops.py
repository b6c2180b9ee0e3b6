"""FLOPs accounting (ssp/flops.py) against hand counts from the layer shapes, its per-frame / per-prompt split along
the deployment graphs, and issue 19's acceptance: v2 ssp_lite <= 3.3 GFLOPs per frame and prompt (image encoder +
decoder, 320x320), the RUS decoder no dearer than the bilinear decoder at equal width."""

from __future__ import annotations

import pytest
import torch

from ssp_edge.ssp.config import SSPConfig, get_config
from ssp_edge.ssp.flops import decoder_block_table, model_cost
from ssp_edge.ssp.models.ssp import build_model

CONFIGS = {
    "v2": lambda d: get_config("ssp_lite", pretrained=False, decoder=d),
    "v1": lambda d: SSPConfig(pretrained=False, decoder=d),
}


@pytest.fixture(scope="module")
def costs():
    out = {}
    for name, make in CONFIGS.items():
        for dec in ("rus", "bilinear"):
            cfg = make(dec)
            torch.manual_seed(0)
            out[name, dec] = (cfg, model_cost(build_model(cfg), cfg))
    return out


def _block_flops(cfg: SSPConfig, stride: int) -> tuple[int, int]:
    """(per-frame, per-prompt) FLOPs of the decoder block ending at ``stride``, from its layer shapes (2 per
    multiply-add; bilinear 4 multiply-adds per output value; ReplicationUpsample 1 per output value)."""
    s = cfg.input_size
    c, dc = cfg.dim, cfg.decoder_channels
    i = (8, 4, 2, 1).index(stride)
    cin = c if i == 0 else dc[i - 1]
    cout = dc[i]
    skip = (c, dc[1] + 1 + cfg.prior_channels, dc[2], dc[3])[i]
    hw = (s // stride) ** 2
    low = hw // 4
    fuse_k = 3 if i < 2 else 1
    fuse = 2 * cout * cout * fuse_k**2 * hw
    extra = 1 + cfg.prior_channels if stride == 4 else 0  # prompt-dependent skip channels at stride 4
    frame_skip, prompt_skip = 2 * (skip - extra) * cout * hw, 2 * extra * cout * hw
    if cfg.decoder == "bilinear":
        return frame_skip, prompt_skip + 2 * cin * cout * low + 8 * cout * hw + fuse
    assert cfg.rus_form == "grouped"
    gate = 2 * cout * hw
    frame_gate, prompt_gate = (0, gate) if stride == 4 else (gate, 0)
    sr, cr, rep = 2 * cin * cout * low, 2 * 2 * 4 * cout * low, 2 * cout * hw
    return frame_skip + frame_gate, prompt_skip + prompt_gate + sr + cr + rep + fuse


@pytest.mark.parametrize("dec", ["rus", "bilinear"])
def test_decoder_blocks_cost_what_their_layers_say(costs, dec):
    cfg, cost = costs["v2", dec]
    for stride in (8, 4, 2, 1):
        frame, prompt = _block_flops(cfg, stride)
        got = cost.blocks[f"stride{stride}"]
        assert (got["frame_flops"], got["prompt_flops"]) == (frame, prompt), stride
    assert cost.blocks["head"]["prompt_flops"] == 2 * cfg.decoder_channels[-1] * cfg.input_size**2


def test_the_graphs_split_per_frame_and_per_prompt_work(costs):
    for (_name, dec), (_cfg, c) in costs.items():
        assert c.graphs["image_encoder"]["flops"] == c.frame_flops
        assert c.graphs["mask_decoder"]["flops"] == c.prompt_flops
        assert sum(g["flops"] for g in c.graphs.values()) == c.flops
        assert sum(p["flops"] for p in c.parts.values()) == c.flops
        assert sum(p["parameters"] for p in c.parts.values()) == c.parameters
        for k, p in c.parts.items():
            assert p["frame_flops"] + p["prompt_flops"] + p["text_flops"] == p["flops"], k
        # the image encoder's own work is per frame only; transformers per prompt; skip projections per frame
        for k in ("backbone", "superpixel_net", "image_neck"):
            assert c.parts[k]["prompt_flops"] == 0 and c.parts[k]["frame_flops"] > 0
        for k in ("PWT", "EPT"):
            assert c.parts[k]["frame_flops"] == 0 and c.parts[k]["prompt_flops"] > 0
        d = c.parts["RUS_decoder" if dec == "rus" else "bilinear_decoder"]
        assert d["frame_flops"] > 0 and d["prompt_flops"] > 0
        # method-level work (the blocks' frame_terms / step) is attributed to its module, not left as glue
        assert c.parts["other"]["flops"] < 0.01 * c.flops


def test_issue19_acceptance_flops(costs):
    _, v2 = costs["v2", "rus"]
    _, v2b = costs["v2", "bilinear"]
    _, v1 = costs["v1", "rus"]
    _, v1b = costs["v1", "bilinear"]
    assert v2.frame_and_prompt_flops <= 3.3e9 < v1.frame_and_prompt_flops
    assert v2.parts["RUS_decoder"]["flops"] <= v2b.parts["bilinear_decoder"]["flops"]
    assert v1.parts["RUS_decoder"]["flops"] > v1b.parts["bilinear_decoder"]["flops"]  # what v2 fixed
    for k in ("stride8", "stride4", "stride2", "stride1"):
        assert v2.blocks[k]["flops"] <= v2b.blocks[k]["flops"]
    # 100 superpixel tokens: SWT (4 layers) + EPT cost less than half of v1's (2 layers over 400 tokens)
    v2_t = v2.parts["SWT"]["flops"] + v2.parts["EPT"]["flops"]
    v1_t = v1.parts["SWT"]["flops"] + v1.parts["EPT"]["flops"]
    assert v2_t < 0.6 * v1_t
    assert v2.parts["superpixel_net"]["flops"] < v1.parts["superpixel_net"]["flops"]
    rows = decoder_block_table(*(cost.__dict__ for cost in (v2, v2b)))
    assert rows[0].split()[0] == "block" and len(rows) == 1 + 5 + 1
