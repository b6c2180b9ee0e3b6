"""`ssp train`, `ssp eval` and `ssp summary` (registered through entry points; torch is imported only when they run)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register_train", "register_eval", "register_summary", "add_train_args", "run_train"]


def require_modules(*names: str) -> None:
    """Raise ImportError for the first missing module, so the dispatcher lists the command as unavailable."""
    import importlib.util

    for n in names:
        if importlib.util.find_spec(n) is None:
            raise ImportError(f"No module named {n!r}", name=n)


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
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, validated against SSPConfig (repeatable), e.g. --set "
                        "decoder=bilinear, --set freeze_text=false, --set backbone_weights=DIR")
    add_option_args(p)
    p.add_argument("--no-bf16", dest="amp", action="store_const", const="off", help=argparse.SUPPRESS)  # = --amp off
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="train with N processes on this machine: runs torchrun --standalone --nproc-per-node N "
                        "(DDP; several machines: run torchrun -m ssp_edge.ssp.train yourself)")


def register_train(sub: argparse._SubParsersAction) -> None:
    require_modules("torch")
    p = sub.add_parser("train", help="train an SSP model (superpixel pretraining, then SSP)",
                       description="Train an SSP model on RefShapes, RefCOCO / RefCOCO+ / RefCOCOg or gRefCOCO, on "
                                   "CPU or GPUs, in one or several processes (torchrun). Resumes from OUT/state.json "
                                   "when present. Writes OUT/final.safetensors.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_train_args(p)
    p.set_defaults(func=run_train)


def _torchrun(args: argparse.Namespace) -> int:
    """Re-run this command as ``torchrun --standalone --nproc-per-node N -m ssp_edge.ssp.train ...`` (exec)."""
    import os

    from .errors import SSPError

    argv = list(sys.argv)
    try:
        rest = argv[argv.index("train") + 1:]
    except ValueError:
        raise SSPError("--nproc: cannot find the train options on the command line; run torchrun "
                       "--nproc-per-node N -m ssp_edge.ssp.train ... directly") from None
    out: list[str] = []
    skip = False
    for a in rest:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
           "-m", "ssp_edge.ssp.train", *out]
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
    p = sub.add_parser("eval", help="evaluate a checkpoint (oIoU, mIoU, Prec@X; GRES gIoU, cIoU, N-acc, T-acc)",
                       description="Evaluate a checkpoint with PyTorch on a data set. --json prints one JSON object.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", default="ssp_lite_refshapes", help="shipped checkpoint name or .safetensors path")
    p.add_argument("--data", default="refshapes:test",
                   help="refshapes:SPLIT, refcoco:ROOT:DATASET:SPLITBY:SPLIT or grefcoco:ROOT:SPLIT")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N samples")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--save-vis", default=None, metavar="PNG", help="also write a grid of predictions to this PNG")
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    _need_model_extra()
    _quiet_transformers()
    import torch

    from .checkpoint import load_checkpoint, read_checkpoint_info
    from .data.spec import open_data
    from .errors import SSPError
    from .evaluate import evaluate

    if args.limit is not None and args.limit <= 0:
        raise SSPError(f"--limit must be positive, got {args.limit}")
    cfg = read_checkpoint_info(args.checkpoint).config  # cheap checks first: header, then the data
    data = open_data(args.data, cfg.input_size)
    if len(data) == 0:
        raise SSPError(f"data {args.data!r} has no samples")
    model, info = load_checkpoint(args.checkpoint)
    with torch.inference_mode():
        summary = evaluate(model, cfg, data, limit=args.limit, batch=args.batch, progress=not args.json,
                           thresholds=info.thresholds)
    summary["thresholds"] = info.thresholds
    summary = {"checkpoint": str(info.path.name), "data": args.data, **summary}
    if args.save_vis:
        from .visualize import save_prediction_grid

        save_prediction_grid(model, cfg, data, args.save_vis, thresholds=info.thresholds)
    if args.json:
        print(json.dumps(summary))
        return 0
    rows = [("samples", summary["n"]), ("oIoU", summary["oIoU"]), ("mIoU", summary["mIoU"]),
            ("gIoU", summary["gIoU"]), ("cIoU", summary["cIoU"])] + \
           [(k, v) for k, v in summary.items() if k.startswith("prec@")] + \
           [("N-acc", summary["N-acc"]), ("T-acc", summary["T-acc"])] + \
           [(f"mIoU[{k}]", v) for k, v in summary["by_type"].items()]
    for k, v in rows:
        print(f"{k:>18}  {v:.4f}" if isinstance(v, float) else f"{k:>18}  {v}")
    if args.save_vis:
        print(f"{'visualization':>18}  {args.save_vis}", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- summary

def register_summary(sub: argparse._SubParsersAction) -> None:
    require_modules("torch")
    p = sub.add_parser("summary", help="parameter counts per part and one forward pass at the input size",
                       description="Build a config (or a checkpoint's model), count parameters per SSP part and run "
                                   "one forward pass at the config's input size. ssp_paper is random init.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
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
    out: dict[str, Any] = {"config": cfg.name, "input_size": cfg.input_size, "parameters": count_parameters(model),
                           "parameters_by_part": parts}
    if not args.no_forward:
        from .models.text import Tokenizer

        t = Tokenizer(cfg.max_tokens)(["the red circle left of the blue square"])
        x = torch.randn(1, 3, cfg.input_size, cfg.input_size)
        with torch.inference_mode():
            t0 = time.perf_counter()
            o = model(x, t.input_ids, t.attention_mask)
            out["forward_seconds"] = round(time.perf_counter() - t0, 3)
        out["outputs"] = {"mask_logits": list(o.mask_logits.shape), "target_logit": list(o.target_logit.shape),
                          "q": list(o.q.shape)}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{cfg.name}: {out['parameters'] / 1e6:.2f} M parameters at {cfg.input_size}x{cfg.input_size}")
    for k, v in parts.items():
        print(f"  {k:>16}  {v / 1e6:8.3f} M")
    if "outputs" in out:
        print(f"  forward pass (batch 1, CPU): {out['forward_seconds']:.2f} s, mask {out['outputs']['mask_logits']}")
    return 0
