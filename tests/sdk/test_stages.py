"""The Segmenter's public stages: encode_prompts / encode_image / decode compose to what segment() returns, several
frames in one image-encoder call give each frame's own results, graphs are fed by the manifest's names (a decoder
input nothing produces is refused at open), device-resident features are not decoded after their buffers were
reused, and the PyTorch backend's frame_index batch equals one decoder batch per frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ssp_edge.sdk.bundle import GraphEntry, TensorSpec
from ssp_edge.sdk.errors import SDKError
from ssp_edge.sdk.segmenter import ImageFeatures, PromptEncodings, Segmenter


@pytest.fixture(scope="module")
def seg(lite_bundle):
    s = Segmenter.open(lite_bundle, backend="onnxruntime")
    yield s
    s.close()


def _frames() -> list[np.ndarray]:
    from ssp_edge.ssp.data.refshapes import RefShapes

    data = RefShapes("test")
    return [cv2.cvtColor(data.scene_samples(i, 1)[0].image, cv2.COLOR_RGB2BGR) for i in range(3)]


PROMPTS = ["the red circle", "the blue square", "the shape on the left"]


def _same(a, b, atol=1e-4) -> None:
    assert a.prompt == b.prompt and a.mask.shape == b.mask.shape
    assert a.score == pytest.approx(b.score, abs=atol)
    np.testing.assert_allclose(a.prob, b.prob, atol=atol)


def test_stages_compose_to_segment(seg):
    frame = _frames()[0]
    want = seg.segment(frame, PROMPTS)
    enc = seg.encode_prompts(PROMPTS)
    assert isinstance(enc, PromptEncodings) and len(enc) == 3 and enc.tensors["words"].shape[0] == 3
    feats = seg.encode_image(frame)
    assert isinstance(feats, ImageFeatures) and feats.frames == 1 and not feats.on_device
    assert set(feats.tensors) == {t.name for t in seg.entries["image_encoder"].outputs}
    got = seg.decode(feats, enc)
    assert [r.frame for r in got] == [0, 0, 0]
    for a, b in zip(got, want):
        _same(a, b)


def test_several_frames_in_one_call_equal_one_call_each(seg):
    frames = _frames()[:2] + [cv2.resize(_frames()[2], (400, 240))]  # a non-square frame too
    feats = seg.encode_image(frames)
    assert feats.frames == 3 and feats.tensors["f16"].shape[0] == 3  # one image-encoder batch
    same = seg.decode(feats, seg.encode_prompts(PROMPTS))  # the same prompts on every frame
    assert [r.frame for r in same] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    own = seg.decode(feats, [seg.encode_prompts(PROMPTS[: i + 1]) for i in range(3)])  # prompts per frame
    assert [(r.frame, r.prompt) for r in own] == [(f, p) for f in range(3) for p in PROMPTS[: f + 1]]
    for f, frame in enumerate(frames):
        alone = seg.segment(frame, PROMPTS)
        for a, b in zip([r for r in same if r.frame == f], alone):
            _same(a, b)
        for a, b in zip([r for r in own if r.frame == f], alone):
            _same(a, b)


def test_frames_beyond_the_bundle_limit_and_mismatched_encodings(seg):
    frame = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(SDKError, match="5 frames in one call .* takes \\(4\\).*--max-frames"):
        seg.encode_image([frame] * 5)
    with pytest.raises(SDKError, match="empty list of frames"):
        seg.encode_image([])
    feats = seg.encode_image([frame, frame])
    with pytest.raises(SDKError, match="one PromptEncodings for all frames or one per frame \\(2\\), got 3"):
        seg.decode(feats, [seg.encode_prompts(["a"])] * 3)
    dec = seg.decoder_feeds(feats, seg.encode_prompts(["a"]))  # this decoder declares frame_index: one batch
    assert dec["frame_index"].tolist() == [0, 1]


def test_feeds_are_the_manifests_names(seg):
    frame = _frames()[0]
    text = seg.text_feeds(PROMPTS)
    assert set(text) == {t.name for t in seg.entries["text_encoder"].inputs}
    image, lbs = seg.image_feeds(frame)
    assert set(image) == {"image"} and image["image"].shape == (1, 3, 320, 320) and len(lbs) == 1
    dec = seg.decoder_feeds(seg.encode_image(frame), seg.encode_prompts(PROMPTS))
    assert set(dec) == {t.name for t in seg.entries["mask_decoder"].inputs}
    out = seg.backend.run("mask_decoder", dec)
    assert set(out) == {"mask_logits", "target_logit"} and out["mask_logits"].shape == (3, 1, 320, 320)
    with pytest.raises(SDKError, match="mask_decoder .*missing 'sentence'"):
        seg.backend.run("mask_decoder", {k: v for k, v in dec.items() if k != "sentence"})


class _Wrapped:
    """The ONNX Runtime backend with other tensor specs (``entries``), or with image features "on the device"."""

    name = "wrapped"

    def __init__(self, inner, entries=None, device=False):
        self.inner, self.device = inner, device
        self.entries = entries or inner.entries
        self.precisions = inner.precisions

    def run(self, graph, feeds, to_host=True):
        feeds = {k: (v.array if isinstance(v, _Dev) else v) for k, v in feeds.items()}
        out = self.inner.run(graph, feeds)
        if self.device and not to_host:
            return {k: _Dev(v) for k, v in out.items()}
        return out

    def close(self):
        pass


class _Dev:
    """A device-tensor stand-in (shape and dtype, no host array)."""

    def __init__(self, array):
        self.array, self.shape, self.dtype = array, array.shape, array.dtype


def test_a_decoder_input_nothing_produces_is_refused_at_open(seg):
    dec = seg.entries["mask_decoder"]
    odd = GraphEntry(
        dec.name,
        dec.flavour,
        dec.precision,
        dec.file,
        [*dec.inputs, TensorSpec("skip_projection", [1, 8, 20, 20], "float32")],
        dec.outputs,
    )
    with pytest.raises(SDKError, match="mask_decoder input 'skip_projection' is neither an image_encoder output"):
        Segmenter(seg.bundle, _Wrapped(seg.backend, {**seg.entries, "mask_decoder": odd}))


def test_renamed_and_added_image_features_are_fed_by_name(seg):
    """A bundle whose image encoder has an extra output the decoder does not take still runs: feeds by name."""
    ie = seg.entries["image_encoder"]
    more = GraphEntry(ie.name, ie.flavour, ie.precision, ie.file, ie.inputs, list(reversed(ie.outputs)))
    s = Segmenter(seg.bundle, _Wrapped(seg.backend, {**seg.entries, "image_encoder": more}))
    frame = _frames()[0]
    for a, b in zip(s.segment(frame, PROMPTS), seg.segment(frame, PROMPTS)):
        _same(a, b, atol=0)


def test_device_features_are_not_decoded_after_a_later_encode(seg):
    s = Segmenter(seg.bundle, _Wrapped(seg.backend, device=True))
    frames = _frames()
    enc = s.encode_prompts(PROMPTS[:1])
    first = s.encode_image(frames[0])
    assert first.on_device
    second = s.encode_image(frames[1])
    with pytest.raises(SDKError, match="later encode_image call has reused"):
        s.decode(first, enc)
    _same(s.decode(second, enc)[0], seg.segment(frames[1], PROMPTS[:1])[0])


@pytest.mark.slow
def test_pytorch_frame_index_batch_equals_one_batch_per_frame():
    """The PyTorch backend declares frame_index: the prompts of three frames run as one decoder batch, and give
    what each frame alone gives (frame-major, each prompt on its own frame)."""
    from ssp_edge.ssp.checkpoint import load_checkpoint
    from ssp_edge.ssp.torch_backend import reference_segmenter

    model, info = load_checkpoint("ssp_lite_refshapes")
    ref = reference_segmenter(model, info.thresholds)
    assert any(t.name == "frame_index" for t in ref.entries["mask_decoder"].inputs)
    frames = _frames()
    feats = ref.encode_image(frames)
    encs = [ref.encode_prompts(PROMPTS[:2]), ref.encode_prompts(PROMPTS[1:]), ref.encode_prompts(PROMPTS[:1])]
    feeds = ref.decoder_feeds(feats, encs)
    assert feeds["frame_index"].tolist() == [0, 0, 1, 1, 2] and feeds["words"].shape[0] == 5
    got = ref.decode(feats, encs)
    assert [(r.frame, r.prompt) for r in got] == [
        (0, PROMPTS[0]),
        (0, PROMPTS[1]),
        (1, PROMPTS[1]),
        (1, PROMPTS[2]),
        (2, PROMPTS[0]),
    ]
    for f, frame in enumerate(frames):
        for a, b in zip([r for r in got if r.frame == f], ref.segment(frame, list(encs[f].prompts))):
            _same(a, b, atol=1e-4)
