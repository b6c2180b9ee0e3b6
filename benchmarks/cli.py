"""`ssp bench DIR [--quick] [--json]` (entry point ``bench``)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["register"]

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def register(sub: argparse._SubParsersAction) -> None:
    from ssp_edge.ssp.cli import require_modules

    require_modules("torch", "matplotlib")
    p = sub.add_parser("bench", help="latency, throughput, memory, FLOPs per backend and precision",
                       description="Benchmark a bundle on every available backend and precision in one run "
                                   "(PyTorch eager as the reference, ONNX Runtime FP32 / FP16 / INT8, TensorRT where "
                                   "present); writes bench.json, bench.md and PNG plots.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--quick", action="store_true", help="2 warm-up + 6 measured frames per setting (< 3 min)")
    p.add_argument("--iters", type=int, default=None, help="measured frames per setting (default 30, quick 6)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for PyTorch / ONNX Runtime (0 = all)")
    p.add_argument("--out-dir", default=str(DEFAULT_OUT))
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ssp_edge.ssp.cli import _quiet_transformers

    from .bench import BenchSettings, run_bench

    _quiet_transformers()
    s = BenchSettings.quick() if args.quick else BenchSettings()
    if args.iters is not None:
        if args.iters < 1:
            from ssp_edge.sdk.errors import SDKError

            raise SDKError(f"--iters must be at least 1, got {args.iters}")
        s.iters = args.iters
    s.threads = args.threads
    res = run_bench(args.bundle, s, args.out_dir, progress=not args.json)
    if args.json:
        print(json.dumps(res))
    else:
        print(Path(res["report"]).read_text())
        print(f"written: {res['report']}, {', '.join(res['plots'])}", file=sys.stderr)
    return 0
