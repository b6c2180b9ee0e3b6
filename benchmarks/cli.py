"""`ssp bench DIR [--quick] [--json]` (entry point ``bench``). Runs on a runtime-only install: what needs PyTorch
(its row, FLOPs) or matplotlib (plots) is reported as not installed / not measured."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["register", "DEFAULT_OUT"]

#: default output folder, relative to the working directory (never inside the installed package)
DEFAULT_OUT = "bench_results"


def register(sub: argparse._SubParsersAction) -> None:
    from ssp_edge.sdk.options import add_backend_args, add_bundle_trust_args, add_json_arg, add_native_code_args

    p = sub.add_parser(
        "bench",
        help="latency, throughput, memory, FLOPs per backend and precision",
        description="Benchmark a bundle on every available backend and precision in one run "
        "(PyTorch eager as the reference when installed, ONNX Runtime FP32 / FP16 / INT8, "
        "OpenVINO FP32 / bf16 when installed, TensorRT where present), in interleaved "
        "rounds (every row once per round, medians over rounds); writes bench.json, "
        "bench.md and PNG plots.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("bundle")
    p.add_argument("--quick", action="store_true", help="2 warm-up + 6 measured frames per setting (< 3 min)")
    p.add_argument("--iters", type=int, default=None, help="measured frames per setting (default 30, quick 6)")
    p.add_argument("--out-dir", default=DEFAULT_OUT, help="output folder (relative to the working directory)")
    p.add_argument(
        "--layers",
        action="store_true",
        help="also profile per op type and per node (ONNX Runtime's profiler, OpenVINO PERF_COUNT, TensorRT "
        "IProfiler where present): layers.json, layers.md, bench_layers.png",
    )
    p.add_argument(
        "--only",
        action="append",
        default=None,
        metavar="ROW",
        help="measure only these rows (repeatable): a backend (pytorch, onnxruntime, openvino, tensorrt) or "
        "'BACKEND PRECISION', e.g. --only 'onnxruntime fp32'",
    )
    add_json_arg(p)
    add_backend_args(p, which=("threads", "providers"))
    add_native_code_args(p)
    add_bundle_trust_args(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ssp_edge.sdk.errors import SDKError
    from ssp_edge.ssp.cli import _quiet_transformers

    from .bench import BenchSettings, run_bench

    _quiet_transformers()  # a no-op without transformers
    s = BenchSettings.quick() if args.quick else BenchSettings()
    if args.iters is not None:
        if args.iters < 1:
            raise SDKError(f"--iters must be at least 1, got {args.iters}")
        s.iters = args.iters
    if args.threads < 0:
        raise SDKError(f"--threads must be 0 or more, got {args.threads}")
    s.threads, s.providers = args.threads, args.providers
    s.plugin_lib, s.trust_bundle_plugins = args.plugins, args.trust_bundle_plugins
    s.allow_engine_host_code = args.allow_engine_host_code
    s.layers = args.layers
    s.only = tuple(args.only or ())
    res = run_bench(args.bundle, s, args.out_dir, progress=not args.json, verify_key=args.verify_key)
    if args.json:
        print(json.dumps(res))
    else:
        print(Path(res["report"]).read_text())
        print(
            f"written: {res['report']}, {', '.join(res['plots']) or '(no plots: matplotlib missing)'}", file=sys.stderr
        )
    return 0
