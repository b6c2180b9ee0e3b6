"""`ssp convert export | check | build | info` (registered through the ``ssp_edge.commands`` entry points)."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    from ssp_edge.ssp.cli import require_modules

    require_modules("torch", "onnx")
    p = sub.add_parser("convert", help="export ONNX bundles, check parity, build TensorRT engines, show costs",
                       description="Turn a trained checkpoint into a deployable bundle and engines.")
    s = p.add_subparsers(dest="convert_command", metavar="STEP", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    e = s.add_parser("export", formatter_class=fmt, help="export the three graphs (plugin and/or portable flavour)",
                     description="Export text_encoder, image_encoder and mask_decoder to ONNX (opset 18, onnxsim, "
                                 "checker) with tokenizer.json and manifest.json into OUT.")
    src = e.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", default=None, help="shipped checkpoint name or .safetensors path "
                                                        "(default: ssp_lite_refshapes unless --config is given)")
    e.add_argument("--config", default=None, help="with --checkpoint: the config it must be; alone: export a "
                                                  "randomly initialised model of this config (e.g. ssp_paper)")
    e.add_argument("--seed", type=int, default=0, help="random-init seed (with --config alone)")
    e.add_argument("--out", required=True, help="bundle folder to create")
    e.add_argument("--flavour", choices=("plugin", "portable", "both"), default="both")
    e.add_argument("--max-frames", type=int, default=4, help="largest image_encoder batch in engine profiles")
    e.add_argument("--max-prompts", type=int, default=16, help="largest expression batch in engine profiles")
    e.add_argument("--no-simplify", action="store_true", help="skip onnxsim")
    e.add_argument("--force", action="store_true", help="replace an existing bundle in OUT")
    e.set_defaults(func=_export)

    c = s.add_parser("check", formatter_class=fmt, help="ONNX Runtime vs PyTorch parity on RefShapes inputs",
                     description="Run every graph of the bundle on ONNX Runtime CPU (plugin graphs with reference "
                                 "implementations of the ssp:: ops) against PyTorch; exit 1 above tolerance "
                                 "(1e-3 on logits, thresholded-mask IoU >= 0.999).")
    c.add_argument("bundle")
    c.add_argument("--samples", type=int, default=8, help="RefShapes test scenes (3 expressions each)")
    c.add_argument("--flavour", choices=("plugin", "portable", "both"), default="both")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.set_defaults(func=_check)

    b = s.add_parser("build", formatter_class=fmt, help="build TensorRT engines (TensorRT 10 or 11)",
                     description="Build one TensorRT engine per graph into the bundle. FP16/INT8 use the graphs "
                                 "`ssp calibrate` adds (TensorRT 10 can also build FP16 from FP32 with its flag).")
    b.add_argument("bundle")
    b.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16")
    b.add_argument("--flavour", choices=("plugin", "portable"), default=None,
                   help="default: plugin when a plugin library is given, else portable")
    b.add_argument("--plugins", default=os.environ.get("SSP_PLUGIN_LIB"), metavar="LIB",
                   help="libssp_trt_plugins.so (default: $SSP_PLUGIN_LIB)")
    b.add_argument("--workspace", type=int, default=1024, metavar="MB")
    b.add_argument("--version-compatible", action="store_true",
                   help="build version-compatible engines (plugins serialized into them)")
    b.add_argument("--verbose", action="store_true", help="TensorRT verbose log")
    b.set_defaults(func=_build)

    i = s.add_parser("info", formatter_class=fmt, help="graphs, engines, parameters and FLOPs per module",
                     description="Show what a bundle holds and the parameters / FLOPs per graph and per SSP module "
                                 "at its input size.")
    i.add_argument("bundle")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_info)

    from .triton import add_subcommand as add_triton  # ssp convert triton (a Triton model repository)

    add_triton(s, fmt)


def _quiet() -> None:
    from ssp_edge.ssp.cli import _quiet_transformers

    _quiet_transformers()


def _export(args: argparse.Namespace) -> int:
    from ssp_edge.ssp.errors import SSPError

    _quiet()
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.force:
        raise SSPError(f"--out {str(out)!r} is not empty; pass --force to replace it or choose another folder")
    if args.max_frames < 1 or args.max_prompts < 1:
        raise SSPError("--max-frames and --max-prompts must be at least 1")
    from .export import FLAVOURS, export_bundle
    from .source import load_source

    checkpoint = args.checkpoint or (None if args.config else "ssp_lite_refshapes")
    src = load_source(checkpoint=checkpoint, config=args.config, seed=args.seed)
    flavours = FLAVOURS if args.flavour == "both" else (args.flavour,)
    axes = {"frames": [1, 1, args.max_frames], "expressions": [1, min(4, args.max_prompts), args.max_prompts]}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:  # export into a temporary folder, then swap: a failed export leaves OUT as it was
        res = export_bundle(src.model, src.cfg, tmp, src.record, src.thresholds, flavours, not args.no_simplify, axes)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    total = sum(res.seconds.values())
    print(f"exported {src.cfg.name} ({src.record.get('checkpoint', 'random init')}) to {out} in {total:.0f} s: "
          + ", ".join(f"{k} {v:.0f}s" for k, v in res.seconds.items()), file=sys.stderr)
    print(f"next: ssp convert check {out}", file=sys.stderr)
    return 0


def _check(args: argparse.Namespace) -> int:
    from ssp_edge.ssp.errors import SSPError

    _quiet()
    if args.samples < 1:
        raise SSPError(f"--samples must be at least 1, got {args.samples}")
    from .check import check_bundle

    flavours = None if args.flavour == "both" else (args.flavour,)
    rep = check_bundle(args.bundle, samples=args.samples, flavours=flavours, progress=not args.json)
    print(json.dumps(rep.to_dict()) if args.json else rep.table())
    return 0 if rep.ok else 1


def _build(args: argparse.Namespace) -> int:
    from .trt_build import BuildError, build_engines, planned_commands

    try:
        built = build_engines(args.bundle, args.precision, args.flavour, args.plugins, args.workspace,
                              args.version_compatible, args.verbose)
    except BuildError as e:
        if "not usable here" in str(e):  # show what to run on the target, then the one-line error
            for strongly in (False, True):
                print(f"# TensorRT {'11 (strongly typed)' if strongly else '10'}:", file=sys.stderr)
                try:
                    for cmd in planned_commands(args.bundle, args.precision, args.flavour, args.plugins,
                                                args.workspace, args.version_compatible, strongly):
                        print(cmd, file=sys.stderr)
                except BuildError as e2:
                    print(f"#   {e2}", file=sys.stderr)
        raise
    for b in built:
        print(f"{b.graph}: {b.file} ({b.seconds:.0f} s)\n  equivalent: {b.trtexec}")
    return 0


def _info(args: argparse.Namespace) -> int:
    _quiet()
    from .info import bundle_info, format_info

    info = bundle_info(args.bundle)
    print(json.dumps(info) if args.json else format_info(info))
    return 0
