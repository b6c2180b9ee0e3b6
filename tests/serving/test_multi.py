"""Many cameras through one Segmenter (sdk/multi.py, sdk/stages.py): the same masks as a Segmenter per camera,
one image-encoder run per round, per-camera FPS from `ssp run --source A --source B`, and the (frame, prompt)
decoder batch for graphs that take a ``frame_index`` (checked on a stand-in backend against per-frame decoding)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from helpers import assert_ok, assert_one_line_error, run_ssp

from ssp_edge.sdk.bundle import GraphEntry, Manifest, TensorSpec
from ssp_edge.sdk.multi import run_sources
from ssp_edge.sdk.preprocess import Letterbox
from ssp_edge.sdk.segmenter import Segmenter
from ssp_edge.sdk.stages import FrameBatch, decode_frames
from ssp_edge.sdk.video import open_source

PROMPTS = ["the red circle", "the blue square"]


class CountingBackend:
    """Wraps a backend and counts runs per graph and the frame batch of each image-encoder run."""

    def __init__(self, inner):
        self.inner, self.name, self.precisions = inner, inner.name, inner.precisions
        self.runs: dict[str, int] = {}
        self.image_batches: list[int] = []

    def run(self, graph, feeds, to_host=True):
        self.runs[graph] = self.runs.get(graph, 0) + 1
        if graph == "image_encoder":
            self.image_batches.append(len(feeds["image"]))
        return self.inner.run(graph, feeds, to_host)

    def close(self):
        self.inner.close()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from ssp_edge.ssp.data.refshapes import render_video

    d = tmp_path_factory.mktemp("cams")
    paths = []
    for seed in range(5):
        render_video(str(d / f"cam{seed}.mp4"), seed=seed, frames=3)
        paths.append(str(d / f"cam{seed}.mp4"))
    return paths


@pytest.mark.parametrize("n", [3, 5])
def test_one_segmenter_many_sources_matches_one_per_camera(lite_bundle, videos, n):
    seg = Segmenter.open(lite_bundle, backend="onnxruntime")
    spy = CountingBackend(seg.backend)
    seg.backend = spy
    got: dict[int, list] = {i: [] for i in range(n)}
    sources = [open_source(v) for v in videos[:n]]
    stats = run_sources(seg, sources, PROMPTS, on_frame=lambda i, f, res, shown: got[i].append(res))
    for s in sources:
        s.close()
    assert stats.rounds == 3 and [c.frames for c in stats.cameras] == [3] * n
    # one image-encoder batch per round, split only where the bundle's frame batch (4) is exceeded
    assert spy.image_batches == ([n] if n <= 4 else [4, n - 4]) * 3
    assert spy.runs["mask_decoder"] == 3 * n  # the decoder has no frame_index yet: one run per frame
    assert spy.runs["text_encoder"] == 1  # both prompts encoded once, for every camera
    ref = Segmenter.open(lite_bundle, backend="onnxruntime")
    ref.set_prompts(PROMPTS)
    for i in range(n):
        with open_source(videos[i]) as src:
            for k, frame in enumerate(src):
                for a, b in zip(got[i][k], ref.segment(frame.image)):
                    assert a.prompt == b.prompt and np.array_equal(a.mask, b.mask)
                    assert abs(a.score - b.score) < 1e-5
    summary = stats.summary()
    assert summary["frames"] == 3 * n and all(c["fps"] > 0 for c in summary["cameras"])


def test_ssp_run_several_sources_reports_per_camera_fps(lite_bundle, videos, tmp_path):
    r = assert_ok(run_ssp("run", "--bundle", str(lite_bundle), "--source", videos[0], "--source", videos[1],
                          "--prompt", "the red circle", "--backend", "onnxruntime", "--no-stdin", "--json",
                          "--out", str(tmp_path / "cam{i}.mp4")))
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert [c["source"] for c in s["cameras"]] == videos[:2]
    assert [c["frames"] for c in s["cameras"]] == [3, 3] and s["rounds"] == 3
    assert all(c["fps"] > 0 for c in s["cameras"]) and s["fps"] > 0
    assert (tmp_path / "cam0.mp4").stat().st_size > 0 and (tmp_path / "cam1.mp4").stat().st_size > 0
    assert_one_line_error(run_ssp("run", "--bundle", str(lite_bundle), "--source", videos[0], "--source",
                                  videos[1], "--prompt", "x", "--out", str(tmp_path / "one.mp4")), "{i}")


def _spec(name, shape):
    return TensorSpec(name, shape, "float32" if name not in ("attention_mask", "frame_index") else "int64")


class FrameIndexBackend:
    """A stand-in decoder that takes features of F frames + frame_index: logits = feature[frame] * sentence."""

    name, precisions = "stand-in", {}

    def __init__(self):
        self.calls: list[dict] = []

    def run(self, graph, feeds, to_host=True):
        assert graph == "mask_decoder"
        self.calls.append(feeds)
        idx = feeds.get("frame_index", np.zeros(len(feeds["sentence"]), np.int64))
        feat = feeds["feat"][idx]  # (K, 1, S, S)
        logits = feat * feeds["sentence"][:, :1, None, None]
        return {"mask_logits": logits, "target_logit": feeds["sentence"][:, 0] - 0.5}


def test_decoder_batch_over_frame_prompt_pairs_with_frame_index():
    S = 8
    decoder = GraphEntry("mask_decoder", "portable", "fp32", "d.onnx",
                         [_spec("feat", ["frames", 1, S, S]), _spec("sentence", ["expressions", 2]),
                          _spec("attention_mask", ["expressions", 4]), _spec("frame_index", ["expressions"])],
                         [_spec("mask_logits", ["expressions", 1, S, S]), _spec("target_logit", ["expressions"])])
    man = Manifest({}, S, [0.5] * 3, [0.5] * 3, 4, {}, {}, {"frames": [1, 1, 4], "expressions": [1, 4, 16]},
                   graphs=[decoder])
    be = FrameIndexBackend()
    seg = SimpleNamespace(bundle=SimpleNamespace(manifest=man), backend=be, mask_threshold=0.5,
                          exists_threshold=0.5, max_prompts=16)
    rng = np.random.default_rng(0)
    feats = {"feat": rng.normal(size=(3, 1, S, S)).astype(np.float32)}
    lbs = [Letterbox(1.0, 0, 0, S, S, S, S)] * 3
    prompts = [["a", "b"], ["c"], ["d", "e", "f"]]
    encs = [[{"sentence": rng.normal(size=2).astype(np.float32), "attention_mask": np.ones(4, np.int64)}
             for _ in ps] for ps in prompts]
    batched = decode_frames(seg, FrameBatch(feats, lbs), encs, prompts)
    assert len(be.calls) == 1 and list(be.calls[0]["frame_index"]) == [0, 0, 1, 2, 2, 2]
    for i, ps in enumerate(prompts):  # the same as decoding each frame alone (its features only)
        alone = decode_frames(seg, FrameBatch({"feat": feats["feat"][i:i + 1]}, [lbs[i]]), [encs[i]], [ps])[0]
        for a, b in zip(batched[i], alone):
            assert a.prompt == b.prompt and np.allclose(a.prob, b.prob) and a.score == b.score
            expect = 1 / (1 + np.exp(-feats["feat"][i, 0] * encs[i][ps.index(a.prompt)]["sentence"][0]))
            assert np.allclose(a.prob, expect, atol=1e-6)
