"""One camera client process for the serving tests and benchmark: RemoteSegmenter over FRAMES (npz), masks and
scores saved to OUT (npz). Usage: remote_client.py URL FRAMES.npz OUT.npz PROMPT [PROMPT ...]"""

from __future__ import annotations

import sys
import time

import numpy as np


def main(argv: list[str]) -> int:
    url, frames_path, out, *prompts = argv
    from ssp_edge.sdk.remote import RemoteSegmenter

    frames = np.load(frames_path)["frames"]
    seg = RemoteSegmenter.open(url, retry_for=60.0, timeout=60.0)
    seg.set_prompts(prompts)
    masks, scores = [], []
    t0 = time.perf_counter()
    for f in frames:
        res = seg.segment(f)
        masks.append(np.stack([r.mask for r in res]))
        scores.append([r.score for r in res])
    seconds = time.perf_counter() - t0
    np.savez(out, masks=np.stack(masks), scores=np.asarray(scores), seconds=seconds)
    seg.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
