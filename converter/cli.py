"""`ssp convert export | check | build | info | keygen | sign` (registered through the ``ssp_edge.commands``
entry points)."""

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
    from ssp_edge.sdk.cli import require_modules
    from ssp_edge.sdk.options import add_backend_args, add_json_arg, add_native_code_args

    require_modules("torch", "onnx", "onnxruntime", extra="convert")
    p = sub.add_parser(
        "convert",
        help="export ONNX bundles, check parity, build TensorRT engines, show costs",
        description="Turn a trained checkpoint into a deployable bundle and engines.",
    )
    s = p.add_subparsers(dest="convert_command", metavar="STEP", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    e = s.add_parser(
        "export",
        formatter_class=fmt,
        help="export the three graphs (plugin and/or portable flavour)",
        description="Export text_encoder, image_encoder and mask_decoder to ONNX (opset 18, onnxsim, "
        "checker) with tokenizer.json and manifest.json into OUT.",
    )
    src = e.add_mutually_exclusive_group()
    src.add_argument(
        "--checkpoint",
        default=None,
        help="shipped checkpoint name or .safetensors path (default: ssp_lite_refshapes unless --config is given)",
    )
    e.add_argument(
        "--config",
        default=None,
        help="with --checkpoint: the config it must be; alone: export a "
        "randomly initialised model of this config (e.g. ssp_paper)",
    )
    e.add_argument("--seed", type=int, default=0, help="random-init seed (with --config alone)")
    e.add_argument("--out", required=True, help="bundle folder to create")
    e.add_argument("--flavour", choices=("plugin", "portable", "both"), default="both")
    e.add_argument("--max-frames", type=int, default=4, help="largest image_encoder batch in engine profiles")
    e.add_argument("--max-prompts", type=int, default=16, help="largest expression batch in engine profiles")
    e.add_argument("--no-simplify", action="store_true", help="skip onnxsim")
    e.add_argument(
        "--force",
        action="store_true",
        help="replace an existing bundle in OUT (only a bundle or an empty folder is ever replaced)",
    )
    e.set_defaults(func=_export)

    c = s.add_parser(
        "check",
        formatter_class=fmt,
        help="ONNX Runtime vs PyTorch parity on RefShapes inputs",
        description="Run every graph of the bundle on ONNX Runtime CPU (plugin graphs with reference "
        "implementations of the ssp:: ops) against PyTorch; exit 1 above tolerance "
        "(1e-3 on logits, thresholded-mask IoU >= 0.999).",
    )
    c.add_argument("bundle")
    c.add_argument("--samples", type=int, default=8, help="RefShapes test scenes (3 expressions each)")
    c.add_argument("--flavour", choices=("plugin", "portable", "both"), default="both")
    add_json_arg(c)
    add_backend_args(c, which=("threads",))
    c.set_defaults(func=_check)

    b = s.add_parser(
        "build",
        formatter_class=fmt,
        help="build TensorRT engines (TensorRT 10 or 11)",
        description="Build one TensorRT engine per graph into the bundle (all or nothing: the manifest is "
        "replaced atomically at the end). FP16/INT8 use the graphs `ssp calibrate` adds "
        "(TensorRT 10 can also build FP16 from FP32 with its flag). Without TensorRT here it "
        "prints the trtexec lines to run on the target and the --import line that registers "
        "each engine they write.",
    )
    b.add_argument("bundle")
    add_backend_args(
        b,
        which=("precision",),
        precision_default="fp16",
        precisions=("fp32", "fp16", "int8"),
        precision_help="engine precision: fp32, fp16 or int8 (default: fp16; int8 / fp16 graphs come "
        "from `ssp calibrate`, TensorRT 10 can also build fp16 from fp32)",
    )
    b.add_argument(
        "--flavour",
        choices=("plugin", "portable"),
        default=None,
        help="default: plugin when a plugin library is given, else portable",
    )
    add_native_code_args(b, which=("plugins",))
    b.add_argument("--workspace", type=int, default=1024, metavar="MB")
    b.add_argument(
        "--version-compatible",
        action="store_true",
        help="build version-compatible engines (plugins serialized into them; running them needs "
        "--allow-engine-host-code)",
    )
    b.add_argument("--verbose", action="store_true", help="TensorRT verbose log")
    b.add_argument(
        "--import",
        dest="import_engine",
        default=None,
        metavar="ENGINE",
        help="register an engine built with a printed trtexec line instead of building (needs --graph)",
    )
    b.add_argument(
        "--graph",
        default=None,
        choices=("text_encoder", "image_encoder", "mask_decoder"),
        help="with --import: the graph the engine was built from",
    )
    b.add_argument(
        "--compute-capability",
        default=None,
        metavar="X.Y",
        help="with --import: the GPU the engine was built on (default: this machine's GPU)",
    )
    b.set_defaults(func=_build)

    i = s.add_parser(
        "info",
        formatter_class=fmt,
        help="graphs, engines, parameters and FLOPs per module",
        description="Show what a bundle holds and the parameters / FLOPs per graph and per SSP module "
        "at its input size.",
    )
    i.add_argument("bundle")
    add_json_arg(i)
    i.set_defaults(func=_info)

    k = s.add_parser(
        "keygen",
        formatter_class=fmt,
        help="make an Ed25519 key pair for signing bundles",
        description="Write OUT.pem (private key, mode 0600: keep it secret) and OUT.pub.pem (public key: "
        "give it to whoever opens your bundles, as verify_key= / $SSP_BUNDLE_PUBKEY / "
        "--verify-key).",
    )
    k.add_argument("--out", required=True, metavar="KEYNAME", help="path prefix of the two key files")
    k.add_argument("--force", action="store_true", help="replace an existing key pair")
    k.set_defaults(func=_keygen)

    g = s.add_parser(
        "sign",
        formatter_class=fmt,
        help="sign a bundle's manifest (Ed25519, detached)",
        description="Verify every file of BUNDLE against its manifest, then write manifest.json.sig: an "
        "Ed25519 signature over manifest.json, which holds the sha256 of every file. Any "
        "later change to the manifest removes the signature; sign again.",
    )
    g.add_argument("bundle")
    g.add_argument("--key", required=True, metavar="KEY.pem", help="private key from `ssp convert keygen`")
    g.add_argument(
        "--check-key", default=None, metavar="KEY.pub.pem", help="also check the new signature with this public key"
    )
    g.set_defaults(func=_sign)
    from .triton import add_subcommand as add_triton  # ssp convert triton (a Triton model repository)

    add_triton(s, fmt)


def _quiet() -> None:
    from ssp_edge.ssp.cli import _quiet_transformers

    _quiet_transformers()


def _check_out(out: Path, force: bool) -> bool:
    """Whether OUT exists and will be replaced; refuses (SSPError, OUT untouched) anything but a missing or empty
    folder, or a bundle of ours with ``--force``."""
    from ssp_edge.sdk.bundle import is_bundle_folder
    from ssp_edge.ssp.errors import SSPError

    if out.is_symlink():
        raise SSPError(f"--out {str(out)!r} is a symbolic link; give the real folder (nothing was changed)")
    if not out.exists():
        return False
    if not out.is_dir():
        raise SSPError(f"--out {str(out)!r} exists and is not a folder; choose another path (nothing was changed)")
    try:
        entries = sorted(p.name for p in out.iterdir())
    except OSError as e:
        raise SSPError(f"--out {str(out)!r} cannot be listed ({e.strerror or e}); choose another folder") from None
    if not entries:
        return True
    if not is_bundle_folder(out):
        shown = ", ".join(repr(n) for n in entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise SSPError(
            f"--out {str(out)!r} is not empty and is not an ssp-edge bundle (no manifest.json of ours; it "
            f"holds {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}: {shown}); refusing to replace "
            f"it{' even with --force' if force else ''}: choose another folder, or empty it first "
            "(nothing was changed)"
        )
    if not force:
        raise SSPError(
            f"--out {str(out)!r} already holds a bundle; pass --force to replace it or choose another folder"
        )
    return True


def _swap_in(tmp: Path, out: Path) -> None:
    """Move the finished export to OUT: the old bundle is renamed aside first and removed only after the new one
    is in place, so an interrupt leaves either bundle, never neither."""
    from ssp_edge.sdk.fsio import fsync_dir

    if _check_out(out, True):  # checked again: nothing may have put other files there during the export
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        old.rmdir()
        os.rename(out, old)
        try:
            os.rename(tmp, out)
        except BaseException:
            os.rename(old, out)
            raise
        fsync_dir(out.parent)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)
    fsync_dir(out.parent)


def _export(args: argparse.Namespace) -> int:
    from ssp_edge.sdk.fsio import umask_mode
    from ssp_edge.ssp.errors import SSPError

    _quiet()
    out = Path(args.out)
    _check_out(out, args.force)
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
        os.chmod(tmp, umask_mode(0o755))  # mkdtemp makes 0700: a bundle must be readable by a service account
        res = export_bundle(src.model, src.cfg, tmp, src.record, src.thresholds, flavours, not args.no_simplify, axes)
        _swap_in(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    total = sum(res.seconds.values())
    print(
        f"exported {src.cfg.name} ({src.record.get('checkpoint', 'random init')}) to {out} in {total:.0f} s: "
        + ", ".join(f"{k} {v:.0f}s" for k, v in res.seconds.items()),
        file=sys.stderr,
    )
    print(f"next: ssp convert check {out}", file=sys.stderr)
    return 0


def _check(args: argparse.Namespace) -> int:
    from ssp_edge.ssp.errors import SSPError

    _quiet()
    if args.samples < 1:
        raise SSPError(f"--samples must be at least 1, got {args.samples}")
    from .check import check_bundle

    flavours = None if args.flavour == "both" else (args.flavour,)
    rep = check_bundle(
        args.bundle, samples=args.samples, flavours=flavours, progress=not args.json, threads=args.threads
    )
    print(json.dumps(rep.to_dict()) if args.json else rep.table())
    return 0 if rep.ok else 1


def _build(args: argparse.Namespace) -> int:
    from ssp_edge.sdk.errors import SSPEdgeError

    from .trt_build import BuildError, TensorRTMissing, build_engines, import_engine, planned_commands

    plugins = args.plugins or os.environ.get("SSP_PLUGIN_LIB") or None
    if args.import_engine:
        if not args.graph:
            raise BuildError("--import ENGINE needs --graph (text_encoder, image_encoder or mask_decoder)")
        flavour = args.flavour or ("plugin" if plugins else "portable")
        e = import_engine(
            args.bundle,
            args.import_engine,
            args.graph,
            args.precision,
            flavour,
            args.version_compatible,
            plugins,
            args.compute_capability,
        )
        sm = e.compute_capability.replace(".", "")
        print(f"{e.name}: registered {e.file} (TensorRT {e.tensorrt_version}, sm_{sm}, {e.precision}, {e.flavour})")
        return 0
    try:
        built = build_engines(
            args.bundle, args.precision, args.flavour, plugins, args.workspace, args.version_compatible, args.verbose
        )
    except TensorRTMissing:  # no TensorRT here: show what to run on the target, then the one-line error
        for strongly in (False, True):
            print(f"# TensorRT {'11 (strongly typed)' if strongly else '10'}:", file=sys.stderr)
            try:
                for cmd in planned_commands(
                    args.bundle,
                    args.precision,
                    args.flavour,
                    plugins,
                    args.workspace,
                    args.version_compatible,
                    strongly,
                ):
                    print(cmd, file=sys.stderr)
            except SSPEdgeError as e2:  # no plan for this bundle (e.g. a graph missing): say so, keep going
                print(f"#   {e2}", file=sys.stderr)
        raise
    for b in built:
        print(
            f"{b.graph}: {b.file} ({b.seconds:.0f} s)"
            + "".join(f"\n  note: {n}" for n in b.notes)
            + f"\n  equivalent: {b.trtexec}"
        )
    return 0


def _info(args: argparse.Namespace) -> int:
    _quiet()
    from .info import bundle_info, format_info

    info = bundle_info(args.bundle)
    print(json.dumps(info) if args.json else format_info(info))
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from ssp_edge.sdk.signing import generate_keypair

    priv, pub = generate_keypair(args.out, force=args.force)
    print(f"private key {priv} (keep it secret), public key {pub}", file=sys.stderr)
    print(f"next: ssp convert sign BUNDLE --key {priv}", file=sys.stderr)
    return 0


def _sign(args: argparse.Namespace) -> int:
    from ssp_edge.sdk.signing import sign_bundle

    path = sign_bundle(args.bundle, args.key, args.check_key)
    print(f"signed {args.bundle}: {path}", file=sys.stderr)
    print("open it with Bundle.open(..., verify_key=KEY.pub.pem) or SSP_BUNDLE_PUBKEY=KEY.pub.pem", file=sys.stderr)
    return 0
