"""Ship a trained checkpoint into ``ssp/checkpoints``: tune the mask / target-exists thresholds on the
validation split of the data it was trained on, write the checkpoint with those thresholds and its training
record in the metadata, and record the test metrics the tests re-check (``<name>.eval.json``): the full test
slice of each test set and the first 100 samples of the first one (``primary``).

    python -m ssp_edge.ssp.release runs/v2/tune320/final.safetensors ssp_lite_refshapes
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from .checkpoint import CHECKPOINT_DIR, CheckpointInfo, load_checkpoint, save_checkpoint
from .config import SSPConfig
from .data.refshapes import render_video
from .data.spec import open_data, refshapes_family
from .errors import SSPError
from .evaluate import Predictor, evaluate, tune_thresholds
from .models.ssp import SSP

__all__ = ["ship", "demo_check", "default_specs", "HEAD_SAMPLES"]

#: the prompt `make demo` follows through the moving-shapes video
DEMO_PROMPT = "the red circle"
#: test samples of the primary test set that ``make test`` re-evaluates (tests/ssp/test_shipped_checkpoint.py)
HEAD_SAMPLES = 100


def default_specs(info: CheckpointInfo) -> tuple[str, list[str]]:
    """(validation spec, test specs) for a checkpoint: the val / test splits of the RefShapes family it was
    trained on (metadata ``data``), and for RefShapes v2 also the old RefShapes test set for comparison."""
    data = str(info.metadata.get("data", "refshapes:train"))
    family = refshapes_family(data)
    if family is not None:
        return f"{family}:val", [f"{family}:test"] + (["refshapes:test"] if family != "refshapes" else [])
    raise SSPError(
        f"the checkpoint was trained on {data!r}; ssp.release tunes and tests on RefShapes only: "
        "pass --val and --tests with RefShapes specs (e.g. --val refshapes2:val --tests refshapes2:test)"
    )


def ship(
    src: str | Path,
    name: str,
    val_samples: int = 300,
    test_samples: int = 500,
    val: str | None = None,
    tests: Sequence[str] | None = None,
) -> dict:
    """Tune, write ``CHECKPOINT_DIR/<name>.safetensors`` and ``<name>.eval.json``; return the record."""
    model, info = load_checkpoint(src)
    cfg = info.config
    dval, dtests = default_specs(info) if val is None or not tests else (val, list(tests))
    val, tests = val or dval, list(tests or dtests)
    run = Path(src).parent
    with torch.inference_mode():
        th = tune_thresholds(model, cfg, open_data(val, cfg.input_size), limit=val_samples)
    thresholds = {"mask": th["mask"], "exists": th["exists"]}
    training = {}
    if (run / "options.json").is_file():
        training["options"] = json.loads((run / "options.json").read_text())
    if (run / "state.json").is_file():
        training["state"] = json.loads((run / "state.json").read_text())
    dst = save_checkpoint(
        model,
        cfg,
        CHECKPOINT_DIR / f"{name}.safetensors",
        {
            **{k: info.metadata[k] for k in ("data", "exists_head") if k in info.metadata},  # what it trained on
            "thresholds": thresholds,
            "training": training,
            "threshold_tuning": {"data": f"{val}[:{th['n']}]", "gIoU": th["gIoU"]},
        },
    )
    model, info = load_checkpoint(dst)  # evaluate exactly what was written
    record: dict = {"checkpoint": dst.name, "thresholds": thresholds, "primary": tests[0]}
    with torch.inference_mode():
        for spec in tests:
            data = open_data(spec, cfg.input_size)
            record[f"{spec}[:{test_samples}]"] = evaluate(model, cfg, data, limit=test_samples, thresholds=thresholds)
        head = evaluate(
            model, cfg, open_data(tests[0], cfg.input_size), limit=HEAD_SAMPLES, progress=False, thresholds=thresholds
        )
        record[f"{tests[0]}[:{HEAD_SAMPLES}]"] = head
    demo = demo_check(model, cfg, info.thresholds)
    if demo["hits"] < demo["frames"] - 2:
        print(
            f"warning: {name} follows {DEMO_PROMPT!r} on only {demo['hits']}/{demo['frames']} demo video frames "
            f"(lowest target score {demo['min_score']:.2f}, threshold {thresholds['exists']}): `make demo` and "
            "the video tests will miss it; do not ship this checkpoint",
            file=sys.stderr,
        )
    record.update(
        {
            "demo_video": demo,
            "threshold_tuning": {"data": val, **th},
            "training_state": {k: training.get("state", {}).get(k) for k in ("step", "minutes")},
        }
    )
    (CHECKPOINT_DIR / f"{name}.eval.json").write_text(json.dumps(record, indent=1) + "\n")
    _write_readme_table(name, record, tests, test_samples)
    return record


def demo_check(model: SSP, cfg: SSPConfig, thresholds: dict[str, float], frames: int = 30) -> dict:
    """Follow :data:`DEMO_PROMPT` through the demo video (``render_video``, mp4-compressed like `make demo`):
    a frame is a hit when the object is called present and the mask centroid lies inside the true circle.
    Val/test thresholds say nothing about this video, and a checkpoint that misses it breaks the demo."""
    pred = Predictor.with_thresholds(model, cfg, thresholds)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "demo.mp4")
        render_video(path, frames=frames)
        truth = json.loads(Path(path + ".objects.json").read_text())["frames"]
        cap = cv2.VideoCapture(path)
        images = []
        while len(images) < frames:
            ok, bgr = cap.read()
            if not ok:
                break
            images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        cap.release()
    scores, hits = [], 0
    with torch.inference_mode():
        for i in range(0, len(images), 8):
            chunk = images[i : i + 8]
            for j, (prob, score) in enumerate(pred.predict(chunk, [DEMO_PROMPT] * len(chunk))):
                red = next(o for o in truth[i + j] if o["colour"] == "red" and o["shape"] == "circle")
                ys, xs = np.nonzero(pred.binarize(prob, score))
                hits += int(len(xs) > 0 and np.hypot(xs.mean() - red["x"], ys.mean() - red["y"]) < red["r"])
                scores.append(score)
    return {
        "prompt": DEMO_PROMPT,
        "frames": len(images),
        "hits": hits,
        "min_score": round(float(min(scores)), 4),
        "mean_score": round(float(np.mean(scores)), 4),
    }


def _write_readme_table(name: str, record: dict, tests: Sequence[str], test_samples: int) -> None:
    """Replace the metrics block of ``checkpoints/README.md`` with the numbers just measured."""
    readme = CHECKPOINT_DIR / "README.md"
    text = readme.read_text()
    begin, end = "<!-- metrics:begin -->", "<!-- metrics:end -->"
    if begin not in text or end not in text:
        return
    primary = tests[0]
    m = record[f"{primary}[:{test_samples}]"]
    th = record["thresholds"]
    state = record.get("training_state") or {}
    tuned = record["threshold_tuning"]["data"]
    rows = [
        f"`ssp eval --checkpoint {name} --data {primary} --limit {test_samples} --json` prints "
        f"(thresholds: mask {th['mask']}, target-exists {th['exists']}, tuned on `{tuned}`):",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    keys = ("n", "n_target", "n_no_target", "mIoU", "oIoU", "gIoU", "prec@0.5", "prec@0.6", "prec@0.7")
    keys += ("prec@0.8", "prec@0.9", "bF@2px", "N-acc", "T-acc", "gIoU_multi_target")
    for k in keys:
        v = m.get(k)
        if v is not None:
            rows.append(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |")
    for t, v in m["by_type"].items():
        rows.append(f"| mIoU [{t}] | {v:.4f} |")
    for tag, g in (m.get("by_tag") or {}).items():
        if isinstance(g, dict) and g.get("mIoU") is not None:
            rows.append(f"| mIoU [{tag}] | {g['mIoU']:.4f} |")
    for spec in tests[1:]:
        o = record[f"{spec}[:{test_samples}]"]
        rows += [
            "",
            f"On `{spec}[:{test_samples}]`: mIoU {o['mIoU']:.4f}, oIoU {o['oIoU']:.4f}, N-acc {o['N-acc']:.4f}.",
        ]
    if state.get("step"):
        rows += [
            "",
            f"The last training command stopped at step {state['step']} after {state['minutes']:.1f} min "
            "on this 2-core CPU.",
        ]
    block = "\n".join([begin, *rows, end])
    readme.write_text(text[: text.index(begin)] + block + text[text.index(end) + len(end) :])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ssp_edge.ssp.release", description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="trained checkpoint (e.g. runs/ssp_lite_refshapes/final.safetensors)")
    p.add_argument("name", help="shipped name, e.g. ssp_lite_refshapes")
    p.add_argument("--val-samples", type=int, default=300)
    p.add_argument("--test-samples", type=int, default=500)
    p.add_argument("--val", default=None, help="threshold-tuning data (default: val split of the training data)")
    p.add_argument("--tests", nargs="+", default=None, help="test data specs; the first is the primary one")
    a = p.parse_args(argv)
    try:
        rec = ship(a.src, a.name, a.val_samples, a.test_samples, a.val, a.tests)
    except SSPError as e:
        print(f"release: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in rec.items() if k != "threshold_tuning"}, indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
