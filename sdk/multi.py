"""Many cameras through one Segmenter: ``ssp run --source A --source B ...``.

Each round takes the newest frame of every source (live sources keep only the newest; files go frame by frame),
runs the image encoder once on all of them (``Segmenter.encode_image(frames)``: one batch, up to the bundle's frame
batch), reuses every prompt's cached encoding (``Segmenter.encode_prompts``), and decodes them with
``Segmenter.decode(features, [encodings per frame])`` (one decoder batch over all (frame, prompt) pairs when the
decoder graph takes a ``frame_index``, else one per frame). Reports FPS per camera and in total.
:func:`segment_frames` is that round, also used by ``ssp serve`` for the frames of concurrent requests.

On a backend that takes concurrent runs (ONNX Runtime CPU) the round is split across camera workers instead: each
worker thread encodes and decodes its frames with the same Segmenter (one copy of the weights, one prompt cache)
and sessions sized for them (``Segmenter.open(callers=workers)``: physical cores / workers threads per run).
Measured on a 2-core Zen CPU, 20 frames per camera, 2 prompts: batched rounds 37.1 / 33.0 frames/s for 2 / 4
cameras, separate Segmenters in threads 40.8 / 37.7, two workers 43.6 / 42.4 (batching pays on a GPU, where one
larger batch uses the device better; on a CPU the convolutions are compute-bound at batch 1 and two single-threaded
runs at once waste less time in thread synchronisation than one two-threaded run).
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .errors import SDKError
from .segmenter import PromptEncodings, Result, Segmenter, clean_prompts
from .video import Frame, Sink, VideoSource

__all__ = ["CameraStats", "MultiStats", "frame_groups", "segment_frames", "run_sources", "run_cli"]


def frame_groups(seg: Segmenter, prompt_counts: Sequence[int]) -> list[list[int]]:
    """Consecutive frames per image-encoder call: at most the bundle's frame batch and, when the decoder takes the
    prompts of several frames in one batch, at most its prompt limit of (frame, prompt) pairs."""
    groups: list[list[int]] = []
    pairs = 0
    for i, k in enumerate(prompt_counts):
        full = groups and (
            len(groups[-1]) >= seg.max_frames or (seg.decodes_frames_together and pairs + k > seg.max_prompts)
        )
        if not groups or full:
            groups.append([])
            pairs = 0
        groups[-1].append(i)
        pairs += k
    return groups


def segment_frames(
    seg: Segmenter,
    frames: Sequence[np.ndarray],
    encodings: PromptEncodings | Sequence[PromptEncodings],
    pool: ThreadPoolExecutor | None = None,
) -> list[list[Result]]:
    """Results per frame for its prompts (one PromptEncodings for all frames or one per frame): the Segmenter's
    ``encode_image`` on each :func:`frame_groups` group (one call when the frames fit) and ``decode`` on it; with a
    ``pool`` (camera workers) on a Segmenter that :attr:`~Segmenter.runs_concurrently`, each frame on its own in
    the pool's threads. ``Result.frame`` is the frame's index in ``frames``; every Result carries the per-stage
    times of the round (summed over its calls)."""
    encs = [encodings] * len(frames) if isinstance(encodings, PromptEncodings) else list(encodings)
    if len(encs) != len(frames):
        raise SDKError(
            f"segment_frames needs one PromptEncodings for all frames or one per frame ({len(frames)}), got {len(encs)}"
        )
    out: list[list[Result]] = [[] for _ in frames]
    times: dict[str, float] = {}
    if pool is not None and seg.runs_concurrently and len(frames) > 1:
        groups = [[i] for i in range(len(frames))]
        calls = list(pool.map(lambda i: seg.decode(seg.encode_image(frames[i]), encs[i]), range(len(frames))))
    else:
        groups = frame_groups(seg, [len(e) for e in encs])
        calls = [seg.decode(seg.encode_image([frames[i] for i in g]), [encs[i] for i in g]) for g in groups]
    for group, results in zip(groups, calls):
        for k, v in results[0].times_ms.items():
            times[k] = times.get(k, 0.0) + v
        for r in results:
            r.frame = group[r.frame]
            out[r.frame].append(r)
    times["text_encoder"] = sum({id(e): e.text_encoder_ms for e in encs}.values())  # each encoding counted once
    for rs in out:
        for r in rs:
            r.times_ms = times
    return out


@dataclass
class CameraStats:
    source: str
    frames: int = 0
    dropped: int = 0
    ended: str | None = None
    found: dict[str, int] = field(default_factory=dict)

    def summary(self, seconds: float) -> dict:
        fps = round(self.frames / seconds, 2) if seconds else 0.0
        out = {
            "source": self.source,
            "frames": self.frames,
            "fps": fps,
            "dropped": self.dropped,
            "found_frames": dict(self.found),
        }
        return {**out, "ended": self.ended} if self.ended else out


@dataclass
class MultiStats:
    cameras: list[CameraStats]
    rounds: int = 0
    seconds: float = 0.0
    stage_ms: dict[str, list[float]] = field(
        default_factory=lambda: {"text_encoder": [], "image_encoder": [], "mask_decoder": [], "round": []}
    )
    prompt_changes: int = 0

    @property
    def frames(self) -> int:
        return sum(c.frames for c in self.cameras)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict:
        from .pipeline import stage_summary

        stages = stage_summary(self.stage_ms)
        return {
            "cameras": [c.summary(self.seconds) for c in self.cameras],
            "frames": self.frames,
            "rounds": self.rounds,
            "seconds": round(self.seconds, 3),
            "fps": round(self.fps, 2),
            "stages": stages,
            "prompt_changes": self.prompt_changes,
        }

    def table(self) -> str:
        s = self.summary()
        lines = [
            f"{s['frames']} frames from {len(self.cameras)} sources in {s['seconds']:.1f} s: {s['fps']:.2f} FPS "
            f"in total, {s['rounds']} rounds (one image-encoder batch each)"
        ]
        for c in s["cameras"]:
            lines.append(f"  {c['source']}: {c['frames']} frames, {c['fps']:.2f} FPS ({c['dropped']} dropped)")
        lines.append(f"  {'stage':<14}{'median ms':>10}{'p90 ms':>10}")
        for k, v in s["stages"].items():
            lines.append(f"  {k:<14}{v['median_ms']:>10.1f}{v['p90_ms']:>10.1f}")
        return "\n".join(lines)


def run_sources(
    seg: Segmenter,
    sources: Sequence[VideoSource],
    prompts: Sequence[str],
    sinks: Sequence[Sink | None] | None = None,
    max_frames: int | None = None,
    prompt_queue: queue.Queue[list[str]] | None = None,
    on_frame: Callable[[int, Frame, Sequence[Result], np.ndarray | None], None] | None = None,
    workers: int = 1,
) -> MultiStats:
    """Segment the newest frame of every source per round until all end (or ``max_frames`` per source);
    ``workers`` > 1 on a Segmenter that runs concurrently: the round's frames in that many threads."""
    from .overlay import draw

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SDKError(f"workers must be a whole number >= 1, got {workers!r}")
    pool = ThreadPoolExecutor(workers, "ssp-camera") if workers > 1 and seg.runs_concurrently else None

    current = clean_prompts(prompts, seg.max_prompts)  # a bad prompt fails before any frame is read
    stats = MultiStats([CameraStats(s.uri) for s in sources])
    active = list(range(len(sources)))
    t_start = time.perf_counter()
    try:
        while active:
            if prompt_queue is not None:
                while not prompt_queue.empty():
                    current = clean_prompts(prompt_queue.get_nowait(), seg.max_prompts)
                    stats.prompt_changes += 1
            got: list[tuple[int, Frame]] = []
            for i in list(active):
                f = None if max_frames is not None and stats.cameras[i].frames >= max_frames else sources[i].read()
                if f is None:
                    active.remove(i)
                    continue
                got.append((i, f))
            if not got:
                break
            t0 = time.perf_counter()
            results = segment_frames(seg, [f.image for _, f in got], seg.encode_prompts(current), pool)  # cached
            stats.stage_ms["round"].append((time.perf_counter() - t0) * 1e3)
            for k in ("text_encoder", "image_encoder", "mask_decoder"):
                stats.stage_ms[k].append(results[0][0].times_ms[k])
            stats.rounds += 1
            for (i, f), res in zip(got, results):
                cam = stats.cameras[i]
                cam.frames += 1
                for r in res:
                    cam.found[r.prompt] = cam.found.get(r.prompt, 0) + int(r.exists and r.area > 0)
                sink = sinks[i] if sinks else None
                shown = draw(f.image, res, None) if (sink is not None or on_frame is not None) else None
                if sink is not None and shown is not None:
                    sink.write(shown)
                if on_frame is not None:
                    on_frame(i, f, res, shown)
            if sinks and any(s is not None and s.closed_by_user for s in sinks):
                break
    finally:
        if pool is not None:
            pool.shutdown()
        stats.seconds = time.perf_counter() - t_start
        for cam, src in zip(stats.cameras, sources):
            cam.dropped, cam.ended = src.dropped, src.ended
    return stats


def _per_source(pattern: str, i: int, n: int, flag: str) -> str:
    if pattern in ("none", "window") and flag == "--out":
        return pattern
    if "{i}" not in pattern:
        raise SDKError(
            f"{flag} {pattern!r}: with {n} sources give a name with {{i}} (the source number), e.g. "
            f"{flag} cam{{i}}.mp4, or none"
        )
    return pattern.replace("{i}", str(i))


def run_cli(args: argparse.Namespace) -> int:
    """``ssp run`` with several ``--source``: one Segmenter; per round one image-encoder batch, or on ONNX Runtime
    the frames split across ``--camera-workers`` threads."""
    from .backends.onnxruntime import physical_cores
    from .options import backend_kwargs
    from .pipeline import parse_prompts
    from .video import open_sink, open_source

    n = len(args.source)
    if args.max_frames is not None and args.max_frames < 1:
        raise SDKError(f"--max-frames must be at least 1, got {args.max_frames}")
    if args.out == "window":
        raise SDKError("--out window shows one stream; with several sources write files (--out cam{i}.mp4) or none")
    prompts = [p for item in args.prompt for p in parse_prompts(item)]
    sinks = [open_sink(_per_source(args.out, i, n, "--out")) for i in range(n)]
    saves = [_per_source(args.save_frame, i, n, "--save-frame") for i in range(n)] if args.save_frame else None
    workers = getattr(args, "camera_workers", 0)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise SDKError(
            f"--camera-workers must be 0 (one per physical core, at most one per source) or more, got {workers!r}"
        )
    workers = workers or min(n, physical_cores())
    seg = Segmenter.open(
        args.bundle,
        mask_threshold=args.mask_threshold,
        exists_threshold=args.exists_threshold,
        callers=workers,
        **backend_kwargs(args),
    )
    sources: list[VideoSource] = []
    last: dict[int, np.ndarray] = {}
    try:
        for uri in args.source:
            sources.append(open_source(uri, policy=args.policy))
        for s, src in zip(sinks, sources):
            s.fps = src.fps
        q: queue.Queue[list[str]] = queue.Queue()
        if not args.no_stdin and sys.stdin is not None and sys.stdin.isatty():
            import threading

            from .run import _stdin_reader

            threading.Thread(target=_stdin_reader, args=(q,), daemon=True).start()

        def keep(i: int, frame: Frame, results: Sequence[Result], shown: np.ndarray | None) -> None:
            if shown is not None:
                last[i] = shown

        stats = run_sources(seg, sources, prompts, sinks, args.max_frames, q, keep if saves else None, workers)
    finally:
        for src in sources:
            src.close()
        for s in sinks:
            s.close()
    for cam in stats.cameras:
        if cam.ended:
            print(f"ssp run: {cam.ended}; stopped after {cam.frames} frames", file=sys.stderr)
    if stats.frames == 0:
        raise SDKError(f"sources {args.source} delivered no frames")
    if saves:
        import cv2

        for i, path in enumerate(saves):
            if i in last and not cv2.imwrite(path, last[i]):
                raise SDKError(f"--save-frame {path!r}: cannot write this file (folder missing or not .png?)")
    summary = {
        "bundle": args.bundle,
        "sources": list(args.source),
        "backend": seg.backend.name,
        "precisions": seg.backend.precisions,
        "prompts": prompts,
        "camera_workers": workers if seg.runs_concurrently else 1,
        **stats.summary(),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{seg.backend.name} ({', '.join(f'{k} {v}' for k, v in seg.backend.precisions.items())}); "
            + (f"{workers} camera workers" if seg.runs_concurrently else "one image-encoder batch per round")
        )
        print(stats.table())
    seg.close()
    return 0
