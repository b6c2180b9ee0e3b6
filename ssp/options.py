"""Training options, defined once: the :class:`TrainOptions` dataclass carries each option's help text, and
``ssp train``'s argparse options are generated from its fields (no hand copy). ``--set KEY=VALUE`` config
overrides are validated against :class:`~ssp_edge.ssp.config.SSPConfig` (nearest keys for a typo, the
expected type for a bad value). Torch-free, so the CLI can describe them without importing PyTorch."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from .errors import SSPError

__all__ = [
    "TrainOptions",
    "AMP_MODES",
    "V1_TRAIN_TYPE_WEIGHTS",
    "add_option_args",
    "options_from_args",
    "parse_config_overrides",
]

AMP_MODES = ("bf16", "fp16", "off")
AUGMENT_MODES = ("auto", "on", "off")


def _opt(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    factory: Any = None,
    cli: bool = True,
    flag: str | None = None,
    metavar: str | None = None,
    choices: tuple | None = None,
) -> Any:
    meta = {"help": help, "cli": cli, "flag": flag, "metavar": metavar, "choices": choices}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


#: RefShapes v1's training mix when --type-weights is not given (more of the types that need spatial reasoning)
V1_TRAIN_TYPE_WEIGHTS: dict[str, float] = {
    "attribute": 0.14,
    "position": 0.22,
    "relation": 0.27,
    "ordinal": 0.23,
    "no_target": 0.14,
}


@dataclass
class TrainOptions:
    """Hyper-parameters of `ssp train` (the shipped checkpoint's four-phase recipe is in ssp/checkpoints/README.md)."""

    # ---- run and data
    out: str = _opt("runs/ssp_lite", "run folder (checkpoints, log.csv / log.jsonl, curves PNG, resumable state)")
    data: str = _opt(
        "refshapes:train",
        "training data: refshapes:SPLIT, refcoco:ROOT:DATASET:SPLITBY:SPLIT "
        "(RefCOCO / RefCOCO+ / RefCOCOg) or grefcoco:ROOT:SPLIT (gRefCOCO)",
    )
    val: str | None = _opt(
        None, "validation data spec; default: the val split of --data (refshapes:val, ...:val); 'none' skips validation"
    )
    steps: int = _opt(1300, "optimizer steps")
    images_per_batch: int = _opt(
        4, "images per batch and process (one image encoding each); the global batch is this x processes x --accum"
    )
    exprs_per_image: int = _opt(
        4,
        "expressions per image (share its encoding): per RefShapes scene, or "
        "sentences sampled from each RefCOCO / gRefCOCO ref (at most as many as it has)",
    )
    accum: int = _opt(1, "gradient accumulation: micro-batches per optimizer step")
    # ---- optimisation
    lr: float = _opt(8e-4, "learning rate of the SSP layers (PWT / SWT / EPT, decoder, heads, FPN)")
    backbone_lr: float = _opt(1e-4, "learning rate of the backbone's last trainable stage")
    text_lr: float | None = _opt(
        None,
        "learning rate of the text encoder when it is fine-tuned (--set freeze_text=false); default: --backbone-lr",
    )
    layer_decay: float = _opt(
        1.0,
        "layer-wise learning-rate decay over backbone stages: stage s of n gets "
        "backbone_lr * decay^(n-1-s) (1 = one rate for the whole backbone)",
    )
    weight_decay: float = _opt(0.01, "AdamW weight decay")
    warmup: int = _opt(60, "linear warm-up steps before the cosine decay")
    backbone_trainable_from: int = _opt(
        5,
        "EfficientNet-Lite0: first trainable block (5 = stride 16 and "
        "deeper); used when --backbone-trainable-stages is not given",
    )
    backbone_trainable_stages: int | None = _opt(
        None,
        "unfreeze the last N backbone stages (EfficientNet-Lite0: "
        "stem + 7 block groups; Swin: patch embedding + 4 stages + "
        "final norm); default: EfficientNet from "
        "--backbone-trainable-from, Swin all",
    )
    freeze_bn: bool = _opt(
        False,
        "keep every BatchNorm on its running statistics (batch-size independent; "
        "multi-process CPU runs then match one process exactly)",
    )
    sync_bn: bool = _opt(
        True,
        "multi-GPU runs: SyncBatchNorm (statistics over the global batch); gloo on CPU "
        "has none, so CPU processes keep per-process statistics",
    )
    spixel_steps: int = _opt(250, "superpixel pretraining steps (SpixelFCN loss on RefShapes scenes)")
    finetune_spixel: bool = _opt(False, "also train the superpixel net in the SSP phase")
    ground_only: bool = _opt(
        False,
        "grounding phase: train the layers before the upsampling decoder on the "
        "stride-16 and superpixel losses only (about 3x more expressions per second); "
        "continue with --init",
    )
    type_weights: dict[str, float] | None = _opt(
        None,
        "RefShapes expression-type mix for training (JSON object of the generator's types; 'no_target': the share "
        "of no-target expressions); default: RefShapes v1 "
        + json.dumps(V1_TRAIN_TYPE_WEIGHTS)
        + ", RefShapes v2 its generator's mix (refshapes2.TYPE_WEIGHTS, 25%% no-target); RefShapes data only",
    )
    # ---- augmentation (real photos)
    augment: str = _opt(
        "auto",
        "augmentation: auto = on for RefCOCO / gRefCOCO photos, off for RefShapes (its generator randomises already)",
        choices=AUGMENT_MODES,
    )
    aug_scale: float = _opt(0.25, "random zoom in [1-a, 1+a] inside the letterbox (the target kept in view)")
    aug_color: float = _opt(0.2, "brightness / contrast / saturation jitter (no hue: colour words must stay true)")
    aug_flip: float = _opt(0.5, "horizontal-flip probability; 'left' / 'right' words are swapped in the sentences")
    # ---- validation, checkpoints, logs
    val_every: int = _opt(200, "validate (and save the resumable state) every N steps")
    val_samples: int = _opt(150, "validation samples: a fixed random subset (--val-seed) of the validation data")
    val_seed: int = _opt(0, "seed of the validation subset")
    save_every: int = _opt(0, "also save the resumable state every N steps (0: only at validation and the end)")
    keep_best: bool = _opt(False, "keep best.safetensors, the checkpoint with the best validation mIoU")
    tensorboard: bool = _opt(True, "also log to OUT/tensorboard when the tensorboard package is installed")
    time_budget_min: float | None = _opt(None, "stop and save after MIN minutes", flag="--time-budget", metavar="MIN")
    # ---- devices
    device: str = _opt(
        "auto", "auto (CUDA when available), cpu, cuda or cuda:N; under torchrun each process takes cuda:LOCAL_RANK"
    )
    amp: str = _opt(
        "bf16",
        "mixed precision: bf16 autocast (CPU or GPU), fp16 autocast with a gradient scaler (GPU), or off (float32)",
        choices=AMP_MODES,
    )
    compile: bool = _opt(False, "torch.compile the training step (PyTorch 2; first steps are slow)")
    workers: int | None = _opt(None, "DataLoader worker processes (default: 0 on CPU, min(8, CPUs) on GPU)")
    seed: int = _opt(0, "random seed (model init, sampling, augmentation)")
    init: str | None = _opt(None, "start from this checkpoint's weights")
    resume: bool = _opt(True, "resume from OUT's saved state when present")
    extra: dict[str, Any] = _opt(help="free-form notes kept with the options", factory=dict, cli=False)

    def __post_init__(self) -> None:
        if self.amp not in AMP_MODES:
            raise SSPError(f"--amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        if self.augment not in AUGMENT_MODES:
            raise SSPError(f"--augment must be one of {', '.join(AUGMENT_MODES)}, got {self.augment!r}")
        for name in ("steps", "images_per_batch", "exprs_per_image", "accum", "val_every"):
            if getattr(self, name) < 1:
                raise SSPError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.layer_decay <= 0:
            raise SSPError(f"--layer-decay must be positive, got {self.layer_decay}")


# ----------------------------------------------------------------------------- argparse from the dataclass


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """(inner type, allows None) of ``X | None``."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else tp), True
    return tp, False


def _json_object(text: str) -> dict:
    try:
        v = json.loads(text)
    except json.JSONDecodeError:
        v = None
    if not isinstance(v, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return v


def add_option_args(p: argparse.ArgumentParser, cls: type = TrainOptions) -> None:
    """Add one argparse option per CLI field of ``cls`` (flag, type, default and help from the field)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        tp, _ = _unwrap_optional(hints[f.name])
        help_ = meta.get("help", "")
        if tp is bool:
            if default:
                p.add_argument(
                    "--no-" + flag[2:], dest=f.name, action="store_false", help=f"turn off (on by default): {help_}"
                )
            else:
                p.add_argument(flag, dest=f.name, action="store_true", help=help_)
            continue
        kw: dict[str, Any] = {"dest": f.name, "default": default, "help": help_}
        if typing.get_origin(tp) is dict or tp is dict:
            kw["type"] = _json_object
            kw["metavar"] = "JSON"
        else:
            kw["type"] = tp
        if meta.get("metavar"):
            kw["metavar"] = meta["metavar"]
        if meta.get("choices"):
            kw["choices"] = meta["choices"]
        p.add_argument(flag, **kw)


def options_from_args(args: argparse.Namespace, cls: type = TrainOptions) -> Any:
    """Build ``cls`` from the parsed options :func:`add_option_args` added."""
    kw = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)
        if f.metadata.get("cli", True) and hasattr(args, f.name)
    }
    return cls(**kw)


# ----------------------------------------------------------------------------- --set validation


def _type_name(tp: Any) -> str:
    inner, opt = _unwrap_optional(tp)
    origin = typing.get_origin(inner)
    if inner is bool:
        name = "a boolean (true / false)"
    elif inner is int:
        name = "an integer"
    elif inner is float:
        name = "a number"
    elif inner is str:
        name = "a string"
    elif origin is tuple:
        args = typing.get_args(inner)
        elem = "integers" if args and args[0] is int else "numbers"
        name = f"a JSON list of {len(args)} {elem}" if args and args[-1] is not Ellipsis else f"a JSON list of {elem}"
    elif origin is dict or inner is dict:
        name = "a JSON object"
    else:
        name = str(inner)
    return name + (" or none" if opt else "")


def _coerce(key: str, raw: str, tp: Any) -> Any:
    """``raw`` (the text after '=') as a value of type ``tp``; SSPError naming the expected type otherwise."""
    inner, optional = _unwrap_optional(tp)
    if optional and raw.strip().lower() in ("none", "null", ""):
        return None
    try:
        val = json.loads(raw)
    except json.JSONDecodeError:
        val = raw
    bad = SSPError(f"--set {key}={raw}: {key} must be {_type_name(tp)}, got {raw!r}")
    origin = typing.get_origin(inner)
    if inner is bool:
        if isinstance(val, bool):
            return val
        low = raw.strip().lower()
        if low in ("yes", "on", "1"):
            return True
        if low in ("no", "off", "0"):
            return False
        raise bad
    if inner is int:
        if isinstance(val, int) and not isinstance(val, bool):
            return val
        raise bad
    if inner is float:
        if isinstance(val, (int, float)) and not isinstance(val, bool):
            return float(val)
        raise bad
    if inner is str:
        return raw
    if origin is tuple:
        args = typing.get_args(inner)
        if not isinstance(val, list) or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in val):
            raise bad
        if args and args[-1] is not Ellipsis and len(val) != len(args):
            raise bad
        if args and args[0] is int and any(not isinstance(v, int) for v in val):
            raise bad
        return tuple(val)
    if origin is dict or inner is dict:
        if not isinstance(val, dict):
            raise bad
        return val
    return val


def parse_config_overrides(items: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items -> config overrides, validated against :class:`SSPConfig`'s fields and types.

    An unknown key is one line with the nearest keys; a wrong value one line naming the expected type."""
    from .config import SSPConfig

    hints = typing.get_type_hints(SSPConfig)
    keys = [f.name for f in dataclasses.fields(SSPConfig)]
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SSPError(f"--set {item!r}: expected KEY=VALUE, e.g. --set decoder=bilinear")
        if key not in hints:
            near = difflib.get_close_matches(key, keys, n=3, cutoff=0.0)
            raise SSPError(f"--set {item}: SSPConfig has no key {key!r}; nearest: {', '.join(near)}")
        out[key] = _coerce(key, raw, hints[key])
    return out
