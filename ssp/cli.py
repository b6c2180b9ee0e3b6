"""`ssp train`, `ssp eval` and `ssp summary` (registered through entry points; torch is imported only when they run)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ssp_edge.sdk.cli import require_modules

__all__ = ["register_train", "register_eval", "register_summary", "add_train_args", "run_train"]


def _need_model_extra() -> None:
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError:
        from .errors import SSPError

        raise SSPError("this command needs PyTorch: pip install 'ssp-edge[model]'") from None


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except Exception:  # pragma: no cover - transformers missing is reported where it is used
        pass


def _parse_overrides(items: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items, validated against SSPConfig (see :func:`ssp.options.parse_config_overrides`)."""
    from .options import parse_config_overrides

    return parse_config_overrides(items)


# ----------------------------------------------------------------------------- train


def add_train_args(p: argparse.ArgumentParser) -> None:
    """``ssp train``'s options: --config, --set, one option per TrainOptions field (generated), --nproc."""
    from .options import add_option_args

    p.add_argument("--config", default="ssp_lite", help="model config: ssp_lite or ssp_paper")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, validated against SSPConfig (repeatable), e.g. --set "
        "decoder=bilinear, --set freeze_text=false, --set backbone_weights=DIR",
    )
    add_option_args(p)
    p.add_argument("--no-bf16", dest="amp", action="store_const", const="off", help=argparse.SUPPRESS)  # = --amp off
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="train with N processes on this machine: runs torchrun --standalone --nproc-per-node N "
        "(DDP; several machines: run torchrun -m ssp_edge.ssp.train yourself)",
    )


def register_train(sub: argparse._SubParsersAction) -> None:
    require_modules("torch")
    p = sub.add_parser(
        "train",
        help="train an SSP model (superpixel pretraining, then SSP)",
        description="Train an SSP model on RefShapes, RefCOCO / RefCOCO+ / RefCOCOg or gRefCOCO, on "
        "CPU or GPUs, in one or several processes (torchrun). Resumes from OUT/state.json "
        "when present. Writes OUT/final.safetensors.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_train_args(p)
    p.set_defaults(func=run_train)


def _torchrun(args: argparse.Namespace) -> int:
    """Re-run this command as ``torchrun --standalone --nproc-per-node N -m ssp_edge.ssp.train ...`` (exec)."""
    import os

    from .errors import SSPError

    argv = list(sys.argv)
    try:
        rest = argv[argv.index("train") + 1 :]
    except ValueError:
        raise SSPError(
            "--nproc: cannot find the train options on the command line; run torchrun "
            "--nproc-per-node N -m ssp_edge.ssp.train ... directly"
        ) from None
    out: list[str] = []
    skip = False
    for a in rest:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={args.nproc}",
        "-m",
        "ssp_edge.ssp.train",
        *out,
    ]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, cmd)
    return 0  # pragma: no cover - exec does not return


def run_train(args: argparse.Namespace) -> int:
    """Validate the config overrides and options, then train here or exec torchrun for --nproc N."""
    import os

    _need_model_extra()
    _quiet_transformers()
    from .config import get_config
    from .errors import SSPError
    from .options import options_from_args, parse_config_overrides

    cfg = get_config(args.config, **parse_config_overrides(args.overrides))
    opt = options_from_args(args)
    if args.nproc < 1:
        raise SSPError(f"--nproc must be at least 1, got {args.nproc}")
    if args.nproc > 1 and "LOCAL_RANK" not in os.environ:
        from .train import resolve_device

        dev = resolve_device(opt.device, world=1)  # one-line error for --device cuda without a GPU
        if dev.type == "cuda":
            import torch

            if torch.cuda.device_count() < args.nproc:
                raise SSPError(f"--nproc {args.nproc}: only {torch.cuda.device_count()} GPU(s) visible")
        return _torchrun(args)
    from .train import train

    final = train(cfg, opt)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"wrote {final}")
    return 0


# ----------------------------------------------------------------------------- eval


def register_eval(sub: argparse._SubParsersAction) -> None:
    require_modules("torch")
    from ssp_edge.sdk.options import add_backend_args, add_bundle_trust_args, add_json_arg, add_native_code_args

    from .data.spec import SPEC_HELP
    from .torch_backend import ALL_BACKENDS

    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint or a bundle (oIoU, mIoU, Prec@X; GRES gIoU, cIoU, N-acc, T-acc)",
        description="Evaluate a checkpoint on PyTorch, or a bundle as it is deployed (ONNX Runtime, "
        "TensorRT, or the PyTorch model it was exported from), through the SDK's "
        "Segmenter stages. --json prints one JSON object (the same keys either way).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--checkpoint", default=None, help="shipped checkpoint name or .safetensors path (default: ssp_lite_refshapes)"
    )
    src.add_argument("--bundle", default=None, metavar="DIR", help="bundle folder (ssp convert export)")
    p.add_argument("--data", default="refshapes:test", help=f"evaluation data: {SPEC_HELP}")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N samples")
    p.add_argument("--batch", type=int, default=8, help="samples per image-encoder / decoder batch")
    add_json_arg(p)
    p.add_argument("--save-vis", default=None, metavar="PNG", help="also write a grid of predictions to this PNG")
    add_backend_args(
        p,
        backends=ALL_BACKENDS,
        default=None,
        backend_help="with --bundle: auto (default: TensorRT when usable, else ONNX Runtime), tensorrt, "
        "onnxruntime, or pytorch (the checkpoint the bundle was exported from); a "
        "--checkpoint runs on pytorch",
    )
    add_native_code_args(p)
    add_bundle_trust_args(p)
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    _need_model_extra()
    _quiet_transformers()
    from .data.spec import open_data
    from .errors import SSPError
    from .evaluate import Predictor, evaluate_segmenter

    if args.limit is not None and args.limit <= 0:
        raise SSPError(f"--limit must be positive, got {args.limit}")
    if args.batch < 1:
        raise SSPError(f"--batch must be at least 1, got {args.batch}")
    if args.bundle is None:
        if args.backend not in (None, "pytorch") or args.precision not in (None, "fp32"):
            raise SSPError(
                "--backend / --precision choose how a --bundle runs; a --checkpoint runs on PyTorch fp32 "
                "(export it with `ssp convert export` to evaluate other backends)"
            )
        from .checkpoint import load_checkpoint, read_checkpoint_info
        from .torch_backend import reference_segmenter

        cfg = read_checkpoint_info(args.checkpoint or "ssp_lite_refshapes").config  # cheap checks first
        data = open_data(args.data, cfg.input_size)
        if len(data) == 0:
            raise SSPError(f"data {args.data!r} has no samples")
        model, info = load_checkpoint(args.checkpoint or "ssp_lite_refshapes")
        seg = reference_segmenter(model, info.thresholds, threads=args.threads)
        head: dict[str, Any] = {"checkpoint": str(info.path.name), "data": args.data}
    else:
        from ssp_edge.sdk.options import backend_kwargs
        from ssp_edge.sdk.segmenter import Segmenter, open_bundle

        from .torch_backend import open_any_backend

        kw = backend_kwargs(args)
        bundle = open_bundle(args.bundle, kw.pop("verify_key"))
        data = open_data(args.data, bundle.manifest.input_size)
        if len(data) == 0:
            raise SSPError(f"data {args.data!r} has no samples")
        backend = open_any_backend(bundle, kw.pop("backend") or "auto", kw.pop("precision"), **kw)
        seg = Segmenter(bundle, backend)
        src = bundle.manifest.source
        head = {
            "checkpoint": src.get("checkpoint", f"random init of {src.get('config')}"),
            "data": args.data,
            "bundle": str(args.bundle),
            "backend": backend.name,
            "precisions": dict(backend.precisions),
        }
        choice = getattr(backend, "choice", None)  # how a default precision was chosen (ONNX Runtime)
        if choice is not None:
            head["precision_choice"] = choice.reason
    with seg:
        summary = evaluate_segmenter(seg, data, limit=args.limit, batch=args.batch, progress=not args.json)
        summary["thresholds"] = {"mask": seg.mask_threshold, "exists": seg.exists_threshold}
        summary = {**head, **summary}
        if args.save_vis:
            from .visualize import save_prediction_grid

            save_prediction_grid(data, args.save_vis, Predictor(segmenter=seg))
    if args.json:
        print(json.dumps(summary))
        return 0
    rows = (
        [
            ("samples", summary["n"]),
            ("oIoU", summary["oIoU"]),
            ("mIoU", summary["mIoU"]),
            ("gIoU", summary["gIoU"]),
            ("cIoU", summary["cIoU"]),
        ]
        + [(k, v) for k, v in summary.items() if k.startswith("prec@")]
        + [("N-acc", summary["N-acc"]), ("T-acc", summary["T-acc"])]
        + [(f"mIoU[{k}]", v) for k, v in summary["by_type"].items()]
    )
    if args.bundle:
        used = ", ".join(f"{k} {v}" for k, v in summary["precisions"].items())
        rows.insert(0, ("backend", f"{summary['backend']} ({used})"))
        if "precision_choice" in summary:
            rows.insert(1, ("default precision", summary["precision_choice"]))
    for k, v in rows:
        print(f"{k:>18}  {v:.4f}" if isinstance(v, float) else f"{k:>18}  {v}")
    if args.save_vis:
        print(f"{'visualization':>18}  {args.save_vis}", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- summary


def register_summary(sub: argparse._SubParsersAction) -> None:
    require_modules("torch")
    p = sub.add_parser(
        "summary",
        help="parameter counts per part and one forward pass at the input size",
        description="Build a config (or a checkpoint's model), count parameters per SSP part and run "
        "one forward pass at the config's input size. ssp_paper is random init.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--config", default=None, help="config name: ssp_lite or ssp_paper")
    g.add_argument("--checkpoint", default=None, help="shipped checkpoint name or .safetensors path")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--no-forward", action="store_true", help="only count parameters")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run_summary)


def _run_summary(args: argparse.Namespace) -> int:
    _need_model_extra()
    _quiet_transformers()
    import time

    import torch

    from .checkpoint import load_checkpoint
    from .config import get_config
    from .models.ssp import build_model

    if args.checkpoint:
        model, info = load_checkpoint(args.checkpoint)
        cfg = info.config
    else:
        cfg = get_config(args.config or "ssp_lite", **_parse_overrides(args.overrides))
        model = build_model(cfg).eval()

    from .models.parts import PARTS, count_parameters, part_modules

    parts = {k: count_parameters(part_modules(model, k)) for k in PARTS}
    if cfg.decoder != "rus":
        parts["bilinear_decoder"] = parts.pop("RUS_decoder")
    out: dict[str, Any] = {
        "config": cfg.name,
        "input_size": cfg.input_size,
        "parameters": count_parameters(model),
        "parameters_by_part": parts,
    }
    if not args.no_forward:
        from .models.text import Tokenizer

        t = Tokenizer(cfg.max_tokens)(["the red circle left of the blue square"])
        x = torch.randn(1, 3, cfg.input_size, cfg.input_size)
        with torch.inference_mode():
            t0 = time.perf_counter()
            o = model(x, t.input_ids, t.attention_mask)
            out["forward_seconds"] = round(time.perf_counter() - t0, 3)
        out["outputs"] = {
            "mask_logits": list(o.mask_logits.shape),
            "target_logit": list(o.target_logit.shape),
            "q": list(o.q.shape),
        }
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{cfg.name}: {out['parameters'] / 1e6:.2f} M parameters at {cfg.input_size}x{cfg.input_size}")
    for k, v in parts.items():
        print(f"  {k:>16}  {v / 1e6:8.3f} M")
    if "outputs" in out:
        print(f"  forward pass (batch 1, CPU): {out['forward_seconds']:.2f} s, mask {out['outputs']['mask_logits']}")
    return 0
