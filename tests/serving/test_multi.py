"""Many cameras through one Segmenter (sdk/multi.py over the Segmenter's stages): the same masks as a Segmenter per
camera, one image-encoder run per round, per-camera FPS from `ssp run --source A --source B`, and the (frame, prompt)
decoder batch for graphs that take a ``frame_index`` (a stand-in decoder over ONNX Runtime, against per-frame
decoding)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import assert_ok, assert_one_line_error, run_ssp

from ssp_edge.sdk.multi import frame_groups, run_sources, segment_frames
from ssp_edge.sdk.segmenter import Segmenter
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
    # the exported decoder declares frame_index: one decoder run per image-encoder batch, over its (frame, prompt)s
    assert spy.runs["mask_decoder"] == len(spy.image_batches)
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


class ConcurrentBackend(CountingBackend):
    """A backend that takes concurrent runs; the first two image-encoder runs wait for each other at a barrier,
    so the test fails (BrokenBarrierError after 20 s) unless the two camera workers really run at once."""

    concurrent_runs = True

    def __init__(self, inner):
        super().__init__(inner)
        import threading

        self.barrier = threading.Barrier(2, timeout=20)
        self.lock = threading.Lock()
        self.waits = 0

    def run(self, graph, feeds, to_host=True):
        with self.lock:
            wait = graph == "image_encoder" and self.waits < 2
            self.waits += wait
            self.runs[graph] = self.runs.get(graph, 0) + 1
            if graph == "image_encoder":
                self.image_batches.append(len(feeds["image"]))
        if wait:
            self.barrier.wait()
        return self.inner.run(graph, feeds, to_host)


def test_camera_workers_run_frames_at_once_and_match_one_segmenter_per_camera(lite_bundle, videos):
    n = 3
    seg = Segmenter.open(lite_bundle, backend="onnxruntime", callers=2)
    assert seg.runs_concurrently and seg.backend.describe()["threads"] >= 1
    spy = ConcurrentBackend(seg.backend)
    seg.backend = spy
    got: dict[int, list] = {i: [] for i in range(n)}
    sources = [open_source(v) for v in videos[:n]]
    stats = run_sources(seg, sources, PROMPTS, on_frame=lambda i, f, res, shown: got[i].append(res), workers=2)
    for s in sources:
        s.close()
    assert stats.rounds == 3 and [c.frames for c in stats.cameras] == [3] * n
    assert spy.image_batches == [1] * (3 * n)  # each frame on its own, in the workers
    assert spy.runs["mask_decoder"] == 3 * n and spy.runs["text_encoder"] == 1  # prompts encoded once for all
    ref = Segmenter.open(lite_bundle, backend="onnxruntime")
    ref.set_prompts(PROMPTS)
    for i in range(n):
        with open_source(videos[i]) as src:
            for k, frame in enumerate(src):
                res = got[i][k]
                assert [r.prompt for r in res] == PROMPTS
                for a, b in zip(res, ref.segment(frame.image)):
                    assert np.array_equal(a.mask, b.mask) and abs(a.score - b.score) < 1e-5
    with pytest.raises(Exception, match="workers must be"):
        run_sources(seg, [], PROMPTS, workers=0)


def test_ssp_run_several_sources_reports_per_camera_fps(lite_bundle, videos, tmp_path):
    r = assert_ok(
        run_ssp(
            "run",
            "--bundle",
            str(lite_bundle),
            "--source",
            videos[0],
            "--source",
            videos[1],
            "--prompt",
            "the red circle",
            "--backend",
            "onnxruntime",
            "--no-stdin",
            "--json",
            "--out",
            str(tmp_path / "cam{i}.mp4"),
        )
    )
    s = json.loads(r.stdout.strip().splitlines()[-1])
    from ssp_edge.sdk.backends.onnxruntime import physical_cores

    assert s["camera_workers"] == min(2, physical_cores())  # ONNX Runtime: camera workers by default
    assert [c["source"] for c in s["cameras"]] == videos[:2]
    assert [c["frames"] for c in s["cameras"]] == [3, 3] and s["rounds"] == 3
    assert all(c["fps"] > 0 for c in s["cameras"]) and s["fps"] > 0
    assert (tmp_path / "cam0.mp4").stat().st_size > 0 and (tmp_path / "cam1.mp4").stat().st_size > 0
    assert_one_line_error(
        run_ssp(
            "run",
            "--bundle",
            str(lite_bundle),
            "--source",
            videos[0],
            "--source",
            videos[1],
            "--prompt",
            "x",
            "--out",
            str(tmp_path / "one.mp4"),
        ),
        "{i}",
    )


class FrameIndexBackend:
    """The exported ONNX Runtime backend (its decoder declares ``frame_index``), recording each image-encoder batch
    and the ``frame_index`` of each decoder run."""

    def __init__(self, inner):
        self.inner, self.name, self.precisions, self.entries = inner, "recording", inner.precisions, inner.entries
        self.decoder_calls: list[list[int]] = []
        self.image_batches: list[int] = []

    def run(self, graph, feeds, to_host=True):
        if graph == "image_encoder":
            self.image_batches.append(len(feeds["image"]))
        if graph == "mask_decoder":
            self.decoder_calls.append(feeds["frame_index"].tolist())
        return self.inner.run(graph, feeds, to_host)

    def close(self):
        self.inner.close()


def test_segment_frames_decodes_frame_prompt_pairs_in_one_batch(lite_bundle, camera_frames):
    """With a frame_index decoder, one decode over every (frame, prompt) pair; groups are cut at the bundle's frame
    batch (4) and prompt limit (16 pairs); each frame's results equal a Segmenter on that frame alone."""
    ref = Segmenter.open(lite_bundle, backend="onnxruntime")
    be = FrameIndexBackend(Segmenter.open(lite_bundle, backend="onnxruntime").backend)
    seg = Segmenter(ref.bundle, be)
    assert seg.decodes_frames_together and any(t.name == "frame_index" for t in seg.entries["mask_decoder"].inputs)
    frames = list(camera_frames[:3])
    many = [f"shape {i}" for i in range(7)]
    for prompts, image_batches, calls in (
        (
            [["the red circle", "the blue square"], ["the red circle"], PROMPTS + ["the green triangle"]],
            [3],
            [[0, 0, 1, 2, 2, 2]],
        ),
        ([many, many, many], [2, 1], [[0] * 7 + [1] * 7, [0] * 7]),
    ):  # 21 pairs > 16: two groups
        be.image_batches.clear()
        be.decoder_calls.clear()
        got = segment_frames(seg, frames, [seg.encode_prompts(ps) for ps in prompts])
        assert be.image_batches == image_batches and be.decoder_calls == calls
        for f, (frame, ps) in enumerate(zip(frames, prompts)):
            assert [(r.frame, r.prompt) for r in got[f]] == [(f, p) for p in ps]
            for a, b in zip(got[f], ref.segment(frame, ps)):
                assert np.array_equal(a.mask, b.mask) and np.abs(a.prob - b.prob).max() < 1e-5
                assert abs(a.score - b.score) < 1e-6
    five = segment_frames(seg, list(camera_frames[:5]), seg.encode_prompts(PROMPTS))  # the same prompts for all
    assert be.image_batches[-2:] == [4, 1] and [len(r) for r in five] == [2] * 5
    assert frame_groups(seg, [2] * 5) == [[0, 1, 2, 3], [4]] and frame_groups(seg, [9, 9]) == [[0], [1]]
    ref.close()
