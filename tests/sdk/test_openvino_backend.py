"""OpenVINO backend: the same name-keyed contract as ONNX Runtime on the same portable graphs. Op-test style (as
mmdeploy's backend-parametrized op tests): every graph run on each backend, compared with the PyTorch reference the
bundle was exported from; OpenVINO FP32 also against ONNX Runtime directly; bf16 only as an opt-in precision with a
stated bound; feeds checked by name; model bytes taken from Bundle.read_bytes (hash-checked)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from ssp_edge.sdk.errors import SDKError

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
needs_openvino = pytest.mark.skipif(
    not HAS_OPENVINO, reason="OpenVINO is not installed (pip install 'ssp-edge[openvino]')"
)
BACKENDS = ["onnxruntime", pytest.param("openvino", marks=needs_openvino)]


@pytest.fixture(scope="module")
def graph_inputs(lite_bundle):
    """Feeds of every graph for 2 prompts on one RefShapes frame, built by the SDK's own stages, and the PyTorch
    reference outputs of each graph on those feeds."""
    import cv2

    from ssp_edge.sdk.segmenter import Segmenter
    from ssp_edge.ssp.data.refshapes import RefShapes
    from ssp_edge.ssp.torch_backend import TorchBackend

    g = RefShapes("test").scene_samples(0, 2)
    frame = cv2.cvtColor(g[0].image, cv2.COLOR_RGB2BGR)
    prompts = [x.expression for x in g][:2] or ["the red circle", "the blue square"]
    seg = Segmenter.open(lite_bundle, backend="onnxruntime")
    text = seg.text_feeds(prompts)
    image, _ = seg.image_feeds(frame)
    dec = seg.decoder_feeds(seg.encode_image(frame), seg.encode_prompts(prompts))
    feeds = {"text_encoder": text, "image_encoder": image, "mask_decoder": {k: np.asarray(v) for k, v in dec.items()}}
    ref = TorchBackend.from_bundle(seg.bundle)
    expected = {gname: ref.run(gname, f) for gname, f in feeds.items()}
    seg.close()
    return feeds, expected


# absolute bounds per graph (FP32 kernels of different libraries; logits up to ~30 in magnitude)
ATOL = {"text_encoder": 1e-4, "image_encoder": 1e-3, "mask_decoder": 2e-3}


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("graph", ["text_encoder", "image_encoder", "mask_decoder"])
def test_graph_outputs_match_pytorch(lite_bundle, graph_inputs, backend, graph):
    from ssp_edge.sdk.backends.base import open_backend
    from ssp_edge.sdk.bundle import Bundle

    feeds, expected = graph_inputs
    be = open_backend(Bundle.open(lite_bundle), backend, "fp32")
    out = be.run(graph, feeds[graph])
    assert set(out) == set(expected[graph])  # keyed by the manifest's output names
    for name, ref in expected[graph].items():
        got = np.asarray(out[name])
        assert got.shape == ref.shape and got.dtype == np.float32, name
        np.testing.assert_allclose(got, ref, atol=ATOL[graph], rtol=1e-3, err_msg=f"{backend} {graph}.{name}")
    be.close()


@needs_openvino
@pytest.mark.slow
def test_openvino_fp32_matches_onnxruntime_segments(lite_bundle):
    """Whole frames through Segmenters on both backends: probability maps within 1e-4, identical masks."""
    import cv2

    from ssp_edge.sdk.segmenter import Segmenter
    from ssp_edge.ssp.data.refshapes import RefShapes

    prompts = ["the red circle", "the blue square", "the green triangle"]
    ort = Segmenter.open(lite_bundle, backend="onnxruntime")
    ov = Segmenter.open(lite_bundle, backend="openvino")
    assert ov.backend.name == "openvino" and set(ov.backend.precisions.values()) == {"fp32"}
    for i in range(2):
        frame = cv2.cvtColor(RefShapes("test").scene_samples(i, 1)[0].image, cv2.COLOR_RGB2BGR)
        for a, b in zip(ort.segment(frame, prompts), ov.segment(frame, prompts)):
            assert np.abs(a.prob - b.prob).max() < 1e-4
            assert (a.mask != b.mask).mean() < 1e-4 and abs(a.score - b.score) < 1e-4


@needs_openvino
def test_openvino_defaults_to_fp32_and_bf16_is_opt_in(lite_bundle):
    """OpenVINO's CPU plugin would pick bf16 by itself on CPUs that have it: the backend sets the f32 hint unless
    bf16 is asked for; bf16 applies to the per-frame graphs, the text encoder stays FP32."""
    import openvino as ov

    from ssp_edge.sdk.backends.base import describe_backend, open_backend
    from ssp_edge.sdk.bundle import Bundle

    b = Bundle.open(lite_bundle)
    be = open_backend(b, "openvino")
    d = describe_backend(be)
    assert d["precision"] == "fp32" and set(d["options"]["inference_precision_hint"].values()) == {"f32"}
    assert d["threads"] >= 1
    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        with pytest.raises(SDKError, match="no bf16"):
            open_backend(b, "openvino", "bf16")
        return
    bf = open_backend(b, "openvino", "bf16")
    assert bf.precisions == {"text_encoder": "fp32", "image_encoder": "bf16", "mask_decoder": "bf16"}


@needs_openvino
def test_feeds_are_checked_by_name_and_models_come_from_read_bytes(lite_bundle, monkeypatch):
    from ssp_edge.sdk.backends.openvino import OpenVINOBackend
    from ssp_edge.sdk.bundle import Bundle

    b = Bundle.open(lite_bundle)
    read: list[str] = []
    original = Bundle.read_bytes
    monkeypatch.setattr(Bundle, "read_bytes", lambda self, rel: (read.append(rel), original(self, rel))[1])
    be = OpenVINOBackend(b)
    assert sorted(read) == sorted(be.entries[g].file for g in be.entries)  # every model from the hash-checked bytes
    ids = np.zeros((1, 20), np.int64)
    with pytest.raises(SDKError, match="attention_mask"):
        be.run("text_encoder", {"input_ids": ids})  # missing input named
    with pytest.raises(SDKError, match="input_ids"):
        be.run("text_encoder", {"input_ids": ids.astype(np.float32), "attention_mask": ids})  # wrong dtype named
    with pytest.raises(SDKError, match="no graph 'nope'"):
        be.run("nope", {})


def test_bf16_is_openvinos_precision_only(lite_bundle):
    from ssp_edge.sdk.backends.base import open_backend
    from ssp_edge.sdk.bundle import Bundle

    with pytest.raises(SDKError, match="--backend openvino --precision bf16"):
        open_backend(Bundle.open(lite_bundle), "onnxruntime", "bf16")


def test_without_openvino_the_error_names_the_extra(lite_bundle, monkeypatch):
    import sys

    from ssp_edge.sdk.backends.base import open_backend
    from ssp_edge.sdk.bundle import Bundle

    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    with pytest.raises(SDKError, match=r"pip install 'ssp-edge\[openvino\]'"):
        open_backend(Bundle.open(lite_bundle), "openvino")
