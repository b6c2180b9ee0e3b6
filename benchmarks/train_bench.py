"""Training benchmark: samples (image, expression pairs) per second for ssp_lite and ssp_paper on this machine's
CPU (or a GPU with --device cuda), random backbones and synthetic batches (:func:`ssp.train_bench.train_steps`).

    python -m ssp_edge.benchmarks.train_bench [--device cpu] [--json]     # ~3 min on a 2-core CPU

Writes ``train_bench.json`` and ``train_bench.md`` into ``--out-dir`` (``bench_results/`` under the working directory,
as ``ssp bench``: never inside the installed package). On CPU ssp_paper runs 2 measured steps
of 1 image x 2 expressions at 480 px (a Swin-B + BERT-base step takes tens of seconds on 2 cores); on CUDA
both configs run the GPU-check batch sizes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["SETTINGS", "run_train_bench", "main"]

from .cli import DEFAULT_OUT  # "bench_results", relative to the working directory

#: (config, steps, images per batch, expressions per image, warm-up steps[, config overrides]) per device kind
SETTINGS: dict[str, list[tuple]] = {
    "cpu": [("ssp_lite", 4, 2, 4, 1), ("ssp_paper", 2, 1, 2, 1)],
    "cuda": [("ssp_lite", 50, 8, 4, 3), ("ssp_paper", 50, 4, 4, 3)],
}


def run_train_bench(
    device: str = "cpu",
    amp: str = "bf16",
    out_dir: str | Path | None = DEFAULT_OUT,
    settings: list[tuple] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Benchmark each config; returns {"device", "amp", "rows": [train_steps results]} and writes JSON + Markdown."""
    from ssp_edge.ssp.train_bench import train_steps

    kind = "cuda" if device.startswith("cuda") else "cpu"
    rows = []
    for config, steps, images, exprs, warm, *over in settings or SETTINGS[kind]:
        if progress:
            print(f"train bench: {config} {steps} steps of {images} x {exprs} on {device} ({amp})", file=sys.stderr)
        rows.append(
            train_steps(
                config,
                steps,
                device,
                amp,
                images_per_batch=images,
                exprs_per_image=exprs,
                warmup=warm,
                **(over[0] if over else {}),
            )
        )
    res: dict[str, Any] = {"device": device, "amp": amp, "rows": rows}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        from ssp_edge.sdk.fsio import atomic_write_text

        atomic_write_text(out / "train_bench.json", json.dumps(res, indent=1) + "\n")
        atomic_write_text(out / "train_bench.md", report(res))
        res["report"] = str(out / "train_bench.md")
    return res


def report(res: dict[str, Any]) -> str:
    lines = [
        f"# Training benchmark ({res['device']}, {res['amp']})",
        "",
        "Random backbones, synthetic batches; samples = (image, expression) pairs; the trainer's own step "
        "(forward, losses, backward, clipping, AdamW).",
        "",
        "| config | input | batch (images x exprs) | s / step | steps / s | samples / s | CPU s / step | "
        "samples / s, unshared (est.) | peak memory MB | loss finite |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['config']} | {r['input_size']} | {r['images_per_batch']} x {r['exprs_per_image']} | "
            f"{r['sec_per_step']} | {r['steps_per_s']} | {r['samples_per_s']} | {r['cpu_sec_per_step']} | "
            f"{r['samples_per_s_unshared_estimate'] or '-'} | {r['peak_memory_mb']} ({r['memory_kind']}) | "
            f"{r['loss_finite']} |"
        )
    load = [r["load_average"] for r in res["rows"] if r.get("load_average") is not None]
    if load:
        lines += [
            "",
            f"1-minute load average during the runs: {', '.join(map(str, load))} "
            f"(on a shared machine the wall-clock columns are slower than the machine; the unshared "
            f"estimate divides the CPU seconds by the {res['rows'][0]['threads']} threads).",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m ssp_edge.benchmarks.train_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--amp", default="bf16", choices=("bf16", "fp16", "off"))
    p.add_argument("--out-dir", default=DEFAULT_OUT, help="output folder (relative to the working directory)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = p.parse_args(argv)
    from ssp_edge.sdk.errors import SSPEdgeError

    try:
        res = run_train_bench(args.device, args.amp, args.out_dir, progress=not args.json)
    except SSPEdgeError as e:
        print(f"train bench: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res) if args.json else report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
