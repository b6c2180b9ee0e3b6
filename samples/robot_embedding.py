"""Segmenter inside a robot control loop: the mask of the referred object becomes a target centroid
and box, and a steering command (normalized offset from the image centre). Frames older than the
latency budget are skipped, so the robot never acts on a stale view.

    python samples/robot_embedding.py --bundle build/bundle --source 0 --prompt "the red ball" --budget-ms 250

Each processed frame prints one JSON line: {"frame", "age_ms", "found", "centroid", "box", "steer", ...}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from ssp_edge.sdk.errors import SDKError
from ssp_edge.sdk.segmenter import Segmenter
from ssp_edge.sdk.video import Frame, open_source


@dataclass
class Target:
    frame: int
    age_ms: float  # capture -> decision
    found: bool
    score: float
    centroid: tuple[float, float] | None  # pixels (x, y)
    box: tuple[int, int, int, int] | None  # x0, y0, x1, y1
    steer: tuple[float, float] | None  # (x, y) offset of the centroid from the centre, in [-1, 1]


class TargetTracker:
    """Frame -> Target for one prompt, skipping frames that are already too old to act on."""

    def __init__(self, seg: Segmenter, prompt: str, budget_ms: float = 250.0):
        self.seg = seg
        self.seg.set_prompts([prompt])
        self.budget_ms = budget_ms
        self.skipped = 0

    def update(self, frame: Frame, now: float | None = None) -> Target | None:
        age = ((now if now is not None else time.monotonic()) - frame.timestamp) * 1e3
        if age > self.budget_ms:  # stale before we even start: drop it, wait for a fresher one
            self.skipped += 1
            return None
        (r,) = self.seg.segment(frame.image)
        age = (time.monotonic() - frame.timestamp) * 1e3
        ys, xs = np.nonzero(r.mask)
        if not r.exists or len(xs) == 0:
            return Target(frame.index, round(age, 1), False, r.score, None, None, None)
        h, w = r.mask.shape
        cx, cy = float(xs.mean()), float(ys.mean())
        return Target(
            frame.index,
            round(age, 1),
            True,
            round(r.score, 3),
            (round(cx, 1), round(cy, 1)),
            (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())),
            (round(2 * cx / w - 1, 3), round(2 * cy / h - 1, 3)),
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True)
    p.add_argument("--source", default="0")
    p.add_argument("--prompt", default="the red circle")
    p.add_argument("--budget-ms", type=float, default=250.0, help="skip frames older than this")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--backend", default="auto", choices=("auto", "tensorrt", "onnxruntime"))
    a = p.parse_args(argv)
    try:
        seg = Segmenter.open(a.bundle, backend=a.backend)
        tracker = TargetTracker(seg, a.prompt, a.budget_ms)
        n = 0
        with open_source(a.source, policy="latest") as src:
            for frame in src:
                target = tracker.update(frame)
                if target is None:
                    continue
                print(json.dumps(asdict(target)), flush=True)  # a real robot would command its motors here
                n += 1
                if a.max_frames and n >= a.max_frames:
                    break
    except SDKError as e:
        print(f"robot_embedding: error: {e}", file=sys.stderr)
        return 2
    print(f"{n} frames acted on, {tracker.skipped} skipped as stale (> {a.budget_ms:.0f} ms)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
