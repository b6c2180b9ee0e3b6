"""Run a Segmenter over a video source into a sink, with live prompt changes and per-stage statistics
(the loop behind `ssp run`, reusable by robot code and samples)."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .overlay import draw
from .segmenter import STAGES, Result, Segmenter
from .video import Frame, Sink, VideoSource

__all__ = ["StreamStats", "run_stream", "parse_prompts", "stage_summary"]


def parse_prompts(line: str) -> list[str]:
    """``"the red circle; the blue square"`` -> two prompts (blank parts dropped)."""
    return [p.strip() for p in line.split(";") if p.strip()]


def stage_summary(stage_ms: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Median and p90 milliseconds of every stage that has samples (``ssp run``'s summaries)."""
    return {
        s: {"median_ms": round(float(np.median(v)), 2), "p90_ms": round(float(np.percentile(v, 90)), 2)}
        for s, v in stage_ms.items()
        if v
    }


@dataclass
class StreamStats:
    frames: int = 0
    seconds: float = 0.0
    dropped: int = 0  # frames the 'latest' policy skipped because processing was slower than capture
    stage_ms: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in (*STAGES, "total")})
    found: dict[str, int] = field(default_factory=dict)  # prompt -> frames where it was found
    prompt_changes: int = 0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict:
        stages = stage_summary(self.stage_ms)
        return {
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "fps": round(self.fps, 2),
            "dropped": self.dropped,
            "stages": stages,
            "found_frames": dict(self.found),
            "prompt_changes": self.prompt_changes,
        }

    def table(self) -> str:
        s = self.summary()
        lines = [
            f"{s['frames']} frames in {s['seconds']:.1f} s: {s['fps']:.2f} FPS ({s['dropped']} dropped)",
            f"  {'stage':<14}{'median ms':>10}{'p90 ms':>10}",
        ]
        for k, v in s["stages"].items():
            lines.append(f"  {k:<14}{v['median_ms']:>10.1f}{v['p90_ms']:>10.1f}")
        for p, n in s["found_frames"].items():
            lines.append(f"  found {p!r} in {n}/{s['frames']} frames")
        return "\n".join(lines)


def run_stream(
    seg: Segmenter,
    source: VideoSource,
    sink: Sink | None = None,
    max_frames: int | None = None,
    prompt_queue: queue.Queue[list[str]] | None = None,
    on_frame: Callable[[Frame, Sequence[Result], np.ndarray], None] | None = None,
    progress: bool = False,
) -> StreamStats:
    """Segment every frame the source delivers (until it ends, ``max_frames`` or the window is closed)."""
    from tqdm import tqdm

    stats = StreamStats()
    t_start = time.perf_counter()
    fps_ema: float | None = None
    bar = tqdm(total=max_frames, unit="frame", desc="run", disable=not progress)
    try:
        for frame in source:
            if prompt_queue is not None:
                while not prompt_queue.empty():
                    seg.set_prompts(prompt_queue.get_nowait())
                    stats.prompt_changes += 1
            t0 = time.perf_counter()
            results = seg.segment(frame.image)
            total = (time.perf_counter() - t0) * 1e3
            for k, v in results[0].times_ms.items():
                stats.stage_ms[k].append(v)
            stats.stage_ms["total"].append(total)
            fps_ema = 1e3 / total if fps_ema is None else 0.9 * fps_ema + 0.1 * 1e3 / total
            shown = draw(frame.image, results, fps_ema)
            if sink is not None:
                sink.write(shown)
            for r in results:
                stats.found[r.prompt] = stats.found.get(r.prompt, 0) + int(r.exists and r.area > 0)
            if on_frame is not None:
                on_frame(frame, results, shown)
            stats.frames += 1
            bar.update(1)
            if (max_frames is not None and stats.frames >= max_frames) or (sink is not None and sink.closed_by_user):
                break
    finally:
        bar.close()
        stats.seconds = time.perf_counter() - t_start
        stats.dropped = source.dropped
    return stats
