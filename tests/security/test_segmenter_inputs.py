"""A Segmenter under careless or hostile callers: prompts that are not text, cache sizes that cannot hold one
frame's prompts, frames too large to process, huge frames with small masks, and one Segmenter shared by threads
(each thread's results carry its own prompts; set_prompts during segment never breaks a call)."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from ssp_edge.sdk.errors import SDKError
from ssp_edge.sdk.segmenter import DEFAULT_MAX_FRAME_PIXELS, Segmenter


@pytest.fixture(scope="module")
def seg(lite_bundle):
    s = Segmenter.open(lite_bundle, backend="onnxruntime")
    yield s
    s.close()


def _scene() -> tuple[np.ndarray, list[str]]:
    frame = np.full((120, 160, 3), 60, np.uint8)
    cv2.circle(frame, (50, 60), 25, (0, 0, 230), -1)  # red circle (BGR)
    cv2.rectangle(frame, (100, 30), (140, 70), (230, 60, 0), -1)  # blue square
    return frame, ["the red circle", "the blue square", "the green triangle", "the shape on the left"]


# ----------------------------------------------------------------------------- prompts


@pytest.mark.parametrize(
    "prompts, words",
    [
        ([None], ["prompt 0", "NoneType", "not str"]),
        ([42], ["prompt 0", "int", "not str"]),
        ([b"x"], ["prompt 0", "bytes", "not str"]),
        (["the red circle", 3.5], ["prompt 1", "float"]),
        (["ok", ["nested"]], ["prompt 1", "list"]),
        (b"the red circle", ["list of strings", "bytes"]),
        (42, ["list of strings", "int"]),
        (None, None),  # segment(prompts=None) with no default prompts
    ],
)
def test_prompts_that_are_not_text_are_one_clear_error(seg, prompts, words):
    frame = np.zeros((32, 32, 3), np.uint8)
    fresh = Segmenter(seg.bundle, seg.backend)  # no default prompts
    calls = [lambda: fresh.segment(frame, prompts)]
    if prompts is not None:
        calls += [lambda: fresh.set_prompts(prompts), lambda: fresh.encode_prompts(prompts)]
    for call in calls:
        with pytest.raises(SDKError) as e:
            call()
        for w in words or ["no prompts"]:
            assert w in str(e.value), str(e.value)
    assert fresh.prompts == [] and fresh.cache_misses == 0  # nothing was encoded or changed


# ----------------------------------------------------------------------------- cache_size


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "8", None])
def test_cache_size_must_be_a_whole_number_of_at_least_one(lite_bundle, bad):
    with pytest.raises(SDKError, match="cache_size must be a whole number >= 1"):
        Segmenter.open(lite_bundle, backend="onnxruntime", cache_size=bad)


def test_cache_size_below_one_frames_prompts_is_raised_to_the_frame_limit(seg):
    """Documented clamp: a frame's prompts always fit, so a full frame of prompts never loses one of its own
    encodings (the old KeyError), and each result still carries its prompt."""
    small = Segmenter(seg.bundle, seg.backend, cache_size=2)
    assert small.cache_size == small.max_prompts == 16
    frame, _ = _scene()
    prompts = [f"the shape number {i}" for i in range(16)]
    results = small.segment(frame, prompts)
    assert [r.prompt for r in results] == prompts and len(small._cache) == 16
    small.segment(frame, ["one more prompt"])  # evicts the least recently used, never one in use
    assert len(small._cache) == 16 and "the shape number 0" not in small._cache


# ----------------------------------------------------------------------------- frame size, mask size


def test_a_frame_over_max_frame_pixels_is_refused_before_any_work(seg):
    assert DEFAULT_MAX_FRAME_PIXELS == 50_000_000 and seg.max_frame_pixels == DEFAULT_MAX_FRAME_PIXELS
    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (8000, 7000, 3))  # 56 MP, no memory behind it
    misses = seg.cache_misses
    with pytest.raises(SDKError, match="7000x8000 = 56,000,000 pixels, more than max_frame_pixels = 50,000,000"):
        seg.segment(huge, ["the red circle"])
    with pytest.raises(SDKError, match="frame 1 is 7000x8000"):
        seg.encode_image([np.zeros((8, 8, 3), np.uint8), huge])
    assert seg.cache_misses == misses


@pytest.mark.parametrize("bad", [0, -5, 1.5, "big"])
def test_bad_max_frame_pixels_and_mask_size(lite_bundle, bad):
    with pytest.raises(SDKError, match="max_frame_pixels must be"):
        Segmenter.open(lite_bundle, backend="onnxruntime", max_frame_pixels=bad)
    with pytest.raises(SDKError, match="mask_size must be"):
        Segmenter.open(lite_bundle, backend="onnxruntime", mask_size=bad)


def test_max_frame_pixels_none_lifts_the_limit_and_a_lower_one_applies(seg):
    frame, prompts = _scene()
    strict = Segmenter(seg.bundle, seg.backend, max_frame_pixels=10_000)
    with pytest.raises(SDKError, match="160x120 = 19,200 pixels, more than max_frame_pixels = 10,000"):
        strict.segment(frame, prompts[:1])  # 19,200 pixels
    (r,) = Segmenter(seg.bundle, seg.backend, max_frame_pixels=None).segment(frame, prompts[:1])
    assert r.mask.shape == frame.shape[:2]


def test_mask_size_returns_smaller_masks_that_match_the_full_size_ones(seg):
    """A large frame with mask_size: masks and probabilities at the capped size, aspect kept, and the same masks
    as the full-size result scaled down (the independent reference)."""
    frame, prompts = _scene()
    big = cv2.resize(frame, (1600, 1200), interpolation=cv2.INTER_NEAREST)
    full = seg.segment(big, prompts[:2])
    small = Segmenter(seg.bundle, seg.backend, mask_size=200).segment(big, prompts[:2])
    for f, s in zip(full, small):
        assert s.mask.shape == s.prob.shape == (150, 200) and f.mask.shape == (1200, 1600)
        assert s.score == pytest.approx(f.score, abs=1e-6) and s.exists == f.exists
        want = cv2.resize(f.mask, (200, 150), interpolation=cv2.INTER_NEAREST).astype(bool)
        got = s.mask.astype(bool)
        union = (want | got).sum()
        assert union == 0 or (want & got).sum() / union >= 0.9
    # a frame already within mask_size keeps its own size
    (r,) = Segmenter(seg.bundle, seg.backend, mask_size=500).segment(frame, prompts[:1])
    assert r.mask.shape == frame.shape[:2]


# ----------------------------------------------------------------------------- threads


@pytest.mark.slow
def test_four_threads_share_one_segmenter_each_with_its_own_prompts(seg):
    """4 threads x 25 calls on one Segmenter: every result carries its thread's prompt and equals what a
    single-threaded call gives for that prompt."""
    frame, prompts = _scene()
    alone = {p: seg.segment(frame, [p])[0] for p in prompts}
    errors: list[BaseException] = []
    got: dict[int, list] = {i: [] for i in range(4)}

    def work(i: int) -> None:
        try:
            for _ in range(25):
                got[i].append(seg.segment(frame, [prompts[i]]))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    for i, calls in got.items():
        assert len(calls) == 25
        for results in calls:
            assert [r.prompt for r in results] == [prompts[i]]
            np.testing.assert_array_equal(results[0].mask, alone[prompts[i]].mask)
            assert results[0].score == pytest.approx(alone[prompts[i]].score, abs=1e-5)


@pytest.mark.slow
def test_set_prompts_while_other_threads_segment(seg):
    """One thread switches the default prompts back and forth while three segment with them: no call fails, and
    every call's results are exactly one of the two prompt sets, in order."""
    frame, prompts = _scene()
    sets = (prompts[:2], prompts[2:])
    shared = Segmenter(seg.bundle, seg.backend)
    shared.set_prompts(sets[0])
    errors: list[BaseException] = []
    seen: list[list[str]] = []
    stop = threading.Event()

    def switch() -> None:
        k = 0
        while not stop.is_set():
            k += 1
            shared.set_prompts(sets[k % 2])

    def work() -> None:
        try:
            for _ in range(10):
                seen.append([r.prompt for r in shared.segment(frame)])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    workers = [threading.Thread(target=work) for _ in range(3)]
    switcher = threading.Thread(target=switch)
    switcher.start()
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=600)
    stop.set()
    switcher.join(timeout=60)
    assert not errors, errors
    assert len(seen) == 30 and all(s in (sets[0], sets[1]) for s in seen), seen
