"""Test data for tests/calibration: a folder of images plus a JSONL file of expressions."""

from __future__ import annotations

import json
from pathlib import Path

import cv2


def write_jsonl_set(folder: Path, n_images: int = 4, per_image: int = 2, extra_lines: list | None = None) -> Path:
    """PNG images of RefShapes scenes and a JSONL file of their expressions (paths relative to it)."""
    from ssp_edge.ssp.data.refshapes import RefShapes

    ds = RefShapes("demo", size=96)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n_images):
        samples = ds.scene_samples(i, per_image)
        cv2.imwrite(str(folder / "img" / f"{i}.png"), cv2.cvtColor(samples[0].image, cv2.COLOR_RGB2BGR))
        lines += [json.dumps({"image": f"img/{i}.png", "expression": s.expression}) for s in samples]
    lines += [json.dumps(x) if not isinstance(x, str) else x for x in (extra_lines or [])]
    (folder / "calib.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "calib.jsonl"
