"""The exported graphs' I/O after the per-frame / per-prompt cut (ARCHITECTURE.md §6, §8) and their parity with
the PyTorch graph modules on several frames in one decoder batch, both flavours: the shipped checkpoint and a
randomly initialised ssp_lite of the other model version (v2: cell 8, grouped RUS, coordinates; v1: the dataclass
defaults older checkpoints carry), so both versions keep exporting; one export each per session."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import onnx
import pytest
import torch
from helpers import assert_ok, run_ssp, write_tiny_checkpoint

from ssp_edge.converter.ort_ops import make_session
from ssp_edge.sdk.bundle import Bundle
from ssp_edge.sdk.preprocess import letterbox, normalize, pad_value
from ssp_edge.ssp.checkpoint import read_checkpoint_info
from ssp_edge.ssp.config import SSPConfig, config_from_json
from ssp_edge.ssp.data.refshapes import RefShapes
from ssp_edge.ssp.models.graphs import graph_io, graph_modules, run_graph
from ssp_edge.ssp.models.text import Tokenizer

FLAVOURS = ("plugin", "portable")


def _shipped_is_v1() -> bool:
    return read_checkpoint_info("ssp_lite_refshapes").config.cell == SSPConfig().cell


@pytest.fixture(scope="module")
def other_version_bundle(tmp_path_factory):
    """ssp_lite of the version the shipped checkpoint is not, random init, both flavours."""
    tmp = tmp_path_factory.mktemp("bundle_other")
    if _shipped_is_v1():
        args = ["--config", "ssp_lite"]  # the named config is v2
    else:
        v1 = {k: v for k, v in asdict(SSPConfig()).items() if k != "name"} | {"pretrained": False}
        ckpt = write_tiny_checkpoint(tmp / "v1.safetensors", **v1)
        args = ["--checkpoint", str(ckpt)]
    out = tmp / "ssp_lite_other"
    assert_ok(run_ssp("convert", "export", *args, "--out", str(out), timeout=1200))
    return out


@pytest.fixture(params=["shipped", "other_version_random"])
def bundle(request, lite_bundle):
    return lite_bundle if request.param == "shipped" else request.getfixturevalue("other_version_bundle")


def _io(b: Bundle):
    import json

    return graph_io(config_from_json(json.dumps(b.manifest.config)))


def _dims(values) -> dict[str, list]:
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}


@pytest.mark.slow
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_decoder_takes_per_frame_features_of_f_frames_and_frame_index(bundle, flavour):
    b = Bundle.open(bundle)
    io = _io(b)
    enc = onnx.load(str(b.path(b.graph("image_encoder", flavour).file))).graph
    dec = onnx.load(str(b.path(b.graph("mask_decoder", flavour).file))).graph
    outs, ins = _dims(enc.output), _dims(dec.input)
    assert list(outs) == list(io["image_encoder"].outputs)
    assert list(ins) == list(io["mask_decoder"].inputs)
    for name, shape in outs.items():  # every image feature keeps the frames axis into the decoder
        assert shape[0] == "frames" and ins[name] == shape, name
    assert ins["frame_index"] == ["expressions"] and ins["words"][0] == "expressions"
    assert {i.name: i.type.tensor_type.elem_type for i in dec.input}["frame_index"] == onnx.TensorProto.INT64
    assert _dims(dec.output)["mask_logits"] == ["expressions", 1, 320, 320]


@pytest.mark.slow
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_no_expand_and_no_depth_to_space(bundle, flavour):
    """No K copies by Expand, no nearest replication by Expand, no DepthToSpace transpose at full resolution:
    a frame's features are selected per expression by Gather on frame_index only."""
    b = Bundle.open(bundle)
    for graph in ("image_encoder", "mask_decoder"):
        ops = [n.op_type for n in onnx.load(str(b.path(b.graph(graph, flavour).file))).graph.node]
        assert "Expand" not in ops and "Tile" not in ops, (graph, flavour)
        if flavour == "portable":
            assert "DepthToSpace" not in ops, graph
    dec = onnx.load(str(b.path(b.graph("mask_decoder", flavour).file))).graph
    gathers = [n for n in dec.node if n.op_type == "Gather" and "frame_index" in n.input]
    assert {n.input[0] for n in gathers} >= {"q", "gate1", "skip1", "gate2", "skip2"}


def _frames(n: int, size: int, mean, std) -> np.ndarray:
    data = RefShapes("test", size=size)
    ims = [
        normalize(letterbox(data.scene_samples(i, 1)[0].image, size, pad_value(mean))[0], mean, std) for i in range(n)
    ]
    return np.stack(ims).astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_multi_frame_decoder_batch_matches_pytorch_and_per_frame_runs(bundle, flavour):
    b = Bundle.open(bundle)
    man = b.manifest
    from ssp_edge.converter.source import load_manifest_source

    mods = graph_modules(load_manifest_source(man).model)
    enc = make_session(b.path(b.graph("image_encoder", flavour).file))
    dec = make_session(b.path(b.graph("mask_decoder", flavour).file))
    text = make_session(b.path(b.graph("text_encoder", flavour).file))
    image = _frames(3, man.input_size, man.mean, man.std)
    tok = Tokenizer(man.max_tokens, b.path(man.tokenizer))(
        ["the red circle", "the blue square", "the green shape", "the leftmost shape", "the big triangle"]
    )
    ids, am = tok.input_ids.numpy(), tok.attention_mask.numpy()
    frame_index = np.array([2, 0, 1, 0, 2], np.int64)
    words, sent = text.run(["words", "sentence"], {"input_ids": ids, "attention_mask": am})
    io = _io(b)
    feats = dict(zip(io["image_encoder"].outputs, enc.run(list(io["image_encoder"].outputs), {"image": image})))
    feeds = {**feats, "words": words, "attention_mask": am, "sentence": sent, "frame_index": frame_index}
    mask, target = dec.run(["mask_logits", "target_logit"], feeds)
    with torch.no_grad():
        ref = run_graph(mods["mask_decoder"], "mask_decoder", {k: torch.from_numpy(v) for k, v in feeds.items()})
    np.testing.assert_allclose(mask, ref["mask_logits"].numpy(), atol=1e-3, rtol=0)
    np.testing.assert_allclose(target, ref["target_logit"].numpy(), atol=1e-3, rtol=0)
    for f in range(3):  # the same prompts decoded with their frame alone (F = 1, frame_index zeros)
        sel = np.flatnonzero(frame_index == f)
        one = {
            **{k: v[f : f + 1] for k, v in feats.items()},
            "words": words[sel],
            "attention_mask": am[sel],
            "sentence": sent[sel],
            "frame_index": np.zeros(len(sel), np.int64),
        }
        m1, t1 = dec.run(["mask_logits", "target_logit"], one)
        np.testing.assert_allclose(m1, mask[sel], atol=1e-4, rtol=0)
        np.testing.assert_allclose(t1, target[sel], atol=1e-4, rtol=0)
    with pytest.raises(Exception, match="(?i)indices|out of bounds|invalid"):
        dec.run(["mask_logits"], {**feeds, "frame_index": np.array([0, 1, 2, 3, 0], np.int64)})
