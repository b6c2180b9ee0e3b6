"""Training: superpixel pretraining (SpixelFCN unsupervised loss), then SSP training with AdamW, warm-up +
cosine schedule, BCE + Dice (+ auxiliary) losses, and resumable state (safetensors + JSON, never pickle).

* Data: RefShapes, RefCOCO / RefCOCO+ / RefCOCOg or gRefCOCO through a torch ``DataLoader`` (workers, pinned
  memory; :mod:`.data.train_data`), each image letterboxed with the SDK's ``letterbox``. A batch puts several
  expressions on each image, so one image encoding serves several decoder passes, as at deployment time.
* Devices: ``--device auto|cpu|cuda[:N]``, ``--amp bf16|fp16|off`` (fp16 with a gradient scaler), optional
  ``torch.compile``, gradient accumulation.
* Scale-out: ``torchrun --nproc-per-node N [--nnodes ...] -m ssp_edge.ssp.train ...`` (DistributedDataParallel,
  gloo on CPU, nccl on GPUs; SyncBatchNorm on GPUs); rank 0 logs, validates and writes checkpoints; every rank
  resumes from rank 0's state (broadcast, so only rank 0 needs the run folder). ``ssp train --nproc N`` runs
  torchrun on this machine.
* What trains: the SSP layers; the backbone from a stage on (layer-wise learning rates); the text encoder when
  ``freeze_text=false`` (its no-grad cache is used only while it is frozen); the target-exists head only on
  data with no-target expressions (a checkpoint trained without records ``exists_head: untrained`` and an
  exists threshold of 0, so the SDK treats every prompt as present).
* Logs: ``log.csv`` / ``log.jsonl`` / TensorBoard / ``curves.png`` (:mod:`.train_log`); checkpoints
  ``last`` (every ``--save-every`` / validation), ``best`` (``--keep-best``, validation mIoU), ``final``.

With the default options on RefShapes, one process and a given seed, the steps are numerically those of the
trainer before this rewrite (tests/ssp/test_train_repro.py checks the recorded losses).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ssp_edge.sdk.fsio import atomic_write_bytes, atomic_write_text

from .checkpoint import load_weights, read_checkpoint_info, save_checkpoint
from .config import SSPConfig
from .data.augment import AugmentParams
from .data.refshapes import RefShapes
from .data.refshapes2 import RefShapes2
from .data.spec import default_val_spec, open_data
from .data.train_data import StepBatches, TrainUnits, collate_units, has_no_target
from .data.transforms import normalize
from .errors import SSPError
from .evaluate import evaluate
from .models.backbones import EfficientNetLite0
from .models.losses import grounding_loss, ssp_loss
from .models.ssp import SSP, build_model
from .models.superpixel import spixel_loss
from .models.text import Tokenizer
from .models.weights import load_pretrained_parts
from .options import V1_TRAIN_TYPE_WEIGHTS, TrainOptions
from .train_log import TrainLog, plot_curves

__all__ = [
    "TrainOptions",
    "Runtime",
    "train",
    "main",
    "resolve_device",
    "pretrain_spixel",
    "param_groups",
    "flush_denormals",
    "optimizer_step",
]


@contextlib.contextmanager
def flush_denormals() -> Iterator[None]:
    """Denormals flushed to zero while training (denormal gradients slow CPU backward passes several times),
    then PyTorch's default (off) again: the flag is process-wide CPU state other code in the process relies on."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


# ----------------------------------------------------------------------------- devices and processes


@dataclass
class Runtime:
    """Where this process trains: device, autocast, distributed rank."""

    device: torch.device
    amp: str  # bf16 | fp16 | off
    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def autocast(self) -> Any:
        dtype = torch.float16 if self.amp == "fp16" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.amp != "off")


def resolve_device(spec: str, local_rank: int = 0, world: int = 1) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> a device (one-line SSPError when CUDA is asked for but absent)."""
    s = spec.strip().lower()
    if s == "auto":
        s = "cuda" if torch.cuda.is_available() else "cpu"
    if s == "cpu":
        return torch.device("cpu")
    if s == "cuda" or s.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise SSPError(
                f"--device {spec}: no CUDA GPU is visible to PyTorch (torch.cuda.is_available() is False; "
                f"PyTorch {torch.__version__}); use --device cpu, or install a CUDA build of PyTorch"
            )
        n = torch.cuda.device_count()
        if s == "cuda":
            idx = local_rank if world > 1 else 0
        else:
            try:
                idx = int(s[5:])
            except ValueError:
                raise SSPError(f"--device {spec}: expected cuda:N with N a GPU index") from None
            if world > 1:
                raise SSPError(
                    f"--device {spec}: under torchrun each process takes cuda:LOCAL_RANK; use --device "
                    "cuda (select GPUs with CUDA_VISIBLE_DEVICES)"
                )
        if idx >= n:
            raise SSPError(f"--device {spec}: GPU {idx} requested, {n} visible")
        return torch.device("cuda", idx)
    raise SSPError(f"--device {spec!r}: expected auto, cpu, cuda or cuda:N")


def _runtime(opt: TrainOptions) -> Runtime:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(opt.device, local_rank, world)
    if opt.amp == "fp16" and device.type != "cuda":
        raise SSPError(
            "--amp fp16 needs a CUDA GPU (fp16 autocast with a gradient scaler); on CPU use --amp bf16 or --amp off"
        )
    if opt.amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise SSPError(f"--amp bf16: {torch.cuda.get_device_name(device)} has no bfloat16 support; use --amp fp16")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Runtime(device, opt.amp, world, rank, local_rank)


def _broadcast(obj: Any, rt: Runtime) -> Any:
    """rank 0's ``obj`` on every rank (object collective between this job's own processes)."""
    if not rt.distributed:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0, device=rt.device if rt.device.type == "cuda" else None)
    return box[0]


# ----------------------------------------------------------------------------- text features


class _TextCache:
    """Frozen text-encoder states per expression (used only while the text encoder is frozen)."""

    def __init__(self, model: SSP, tok: Tokenizer, device: torch.device, cap: int = 40000):
        self.model, self.tok, self.device, self.cap = model, tok, device, cap
        self.cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        uniq = list(dict.fromkeys(texts))
        if len(self.cache) + sum(t not in self.cache for t in uniq) > self.cap:
            self.cache.clear()  # before choosing what to encode: this batch's texts are all encoded again
        new = [t for t in uniq if t not in self.cache]
        if new:
            t = self.tok(new)
            hid = self.model.text.encoder(t.input_ids.to(self.device), t.attention_mask.to(self.device)).float().cpu()
            for i, s in enumerate(new):
                self.cache[s] = (hid[i], t.attention_mask[i])
        hs, ms = zip(*(self.cache[s] for s in texts))
        return torch.stack(hs).to(self.device), torch.stack(ms).to(self.device)


# ----------------------------------------------------------------------------- what trains, and how fast


def _set_trainable(model: SSP, cfg: SSPConfig, opt: TrainOptions, train_exists: bool = True) -> None:
    for p in model.text.encoder.parameters():
        p.requires_grad_(not cfg.freeze_text)
    bb = model.image.backbone
    legacy = opt.backbone_trainable_stages is None and isinstance(bb, EfficientNetLite0)
    keep = bb.num_stages if opt.backbone_trainable_stages is None else opt.backbone_trainable_stages
    for name, p in bb.named_parameters():
        if legacy:  # EfficientNet-Lite0 by block index (the shipped recipe's rule)
            train = name.startswith("blocks.") and int(name.split(".")[1]) >= opt.backbone_trainable_from
        else:
            train = bb.stage_of(name) >= bb.num_stages - keep
        p.requires_grad_(train)
    for p in model.image.spixel.parameters():
        p.requires_grad_(opt.finetune_spixel)
    if not train_exists:  # no no-target expressions in the data: the exists head would learn "always present"
        for p in model.decoder.exists.parameters():
            p.requires_grad_(False)


def param_groups(model: SSP, opt: TrainOptions) -> list[dict[str, Any]]:
    """AdamW groups: the SSP layers at ``lr``, the backbone by stage (layer-wise decay), the text encoder."""
    bb = model.image.backbone
    bb_named = [(n, p) for n, p in bb.named_parameters() if p.requires_grad]
    text = [p for p in model.text.encoder.parameters() if p.requires_grad]
    skip = {id(p) for _, p in bb_named} | {id(p) for p in text}
    other = [p for p in model.parameters() if p.requires_grad and id(p) not in skip]
    groups: list[dict[str, Any]] = [{"params": other, "lr": opt.lr, "name": "ssp"}]
    if opt.layer_decay == 1.0:
        groups.append({"params": [p for _, p in bb_named], "lr": opt.backbone_lr, "name": "backbone"})
    else:
        for s in range(bb.num_stages - 1, -1, -1):
            ps = [p for n, p in bb_named if bb.stage_of(n) == s]
            if ps:
                lr = opt.backbone_lr * opt.layer_decay ** (bb.num_stages - 1 - s)
                groups.append({"params": ps, "lr": lr, "name": f"backbone.stage{s}"})
    if text:
        groups.append(
            {"params": text, "lr": opt.text_lr if opt.text_lr is not None else opt.backbone_lr, "name": "text"}
        )
    return [g for g in groups if g["params"] or g["name"] in ("ssp", "backbone")]


def _train_mode(model: SSP, cfg: SSPConfig, opt: TrainOptions) -> None:
    model.train()
    if cfg.freeze_text:
        model.text.encoder.eval()
    model.image.backbone.eval()  # frozen BN statistics (ImageNet)
    if not opt.finetune_spixel:
        model.image.spixel.eval()
    if opt.freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


# ----------------------------------------------------------------------------- superpixel pretraining


def _to_tensor_batch(cfg: SSPConfig, images: list[np.ndarray]) -> torch.Tensor:
    x = torch.from_numpy(np.stack([normalize(im, cfg.mean, cfg.std) for im in images]))
    return x.contiguous(memory_format=torch.channels_last)


def pretrain_spixel(
    model: SSP,
    cfg: SSPConfig,
    steps: int,
    seed: int = 0,
    batch: int = 8,
    device: torch.device | None = None,
    progress: bool = True,
    scenes: Any = None,
    history: list[float] | None = None,
) -> float:
    """SpixelFCN-style pretraining of the superpixel net on synthetic scenes (colour + position +
    instance labels reconstructed through aggregate -> propagate). ``scenes``: a data set with ``scene(i)``
    (image + instance map: RefShapes, RefShapes v2); default RefShapes train. ``history`` collects the losses."""
    device = device or torch.device("cpu")
    net = model.image.spixel
    net.train()
    for p in net.parameters():
        p.requires_grad_(True)
    ds = scenes if scenes is not None else RefShapes("train", size=cfg.input_size)
    optim = torch.optim.Adam(net.parameters(), lr=2e-3)
    loss_v = float("nan")
    bar = tqdm(range(steps), desc="superpixel pretrain", unit="step", disable=not progress)
    for step in bar:
        scenes = [ds.scene(10**6 + seed * 10**5 + step * batch + j) for j in range(batch)]
        x = _to_tensor_batch(cfg, [s.image for s in scenes]).to(device)
        rgb4 = F.avg_pool2d(torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float() / 255, 4)
        inst = torch.from_numpy(np.stack([s.instances for s in scenes])).long()
        lab4 = F.avg_pool2d(F.one_hot(inst, max(8, int(inst.max()) + 1)).permute(0, 3, 1, 2).float(), 4)
        q = net(x)
        loss = spixel_loss(q, rgb4.to(device), cfg.cell, lab4.to(device))
        optim.zero_grad()
        loss.backward()
        optim.step()
        loss_v = float(loss.detach())
        if history is not None:
            history.append(loss_v)
        bar.set_postfix(loss=f"{loss_v:.4f}")
    net.eval()
    return loss_v


# ----------------------------------------------------------------------------- one step


class _Step(nn.Module):
    """Forward + losses of one micro-batch, as one module so DistributedDataParallel can wrap it."""

    def __init__(self, model: SSP, cfg: SSPConfig, opt: TrainOptions, rt: Runtime, train_exists: bool):
        super().__init__()
        self.model, self.cfg, self.rt = model, cfg, rt
        self.ground_only, self.train_exists = opt.ground_only, train_exists
        self.text_trainable = not cfg.freeze_text

    def forward(
        self,
        x: torch.Tensor,
        index: torch.Tensor,
        gt: torch.Tensor,
        exists: torch.Tensor,
        hid: torch.Tensor | None,
        amask: torch.Tensor,
        ids: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        m = self.model
        with self.rt.autocast():
            if self.text_trainable:  # fine-tuning: the encoder runs with gradients, no cache
                hid = m.text.encoder(ids, amask)
            img = m.image(x)
            words, sent = m.text.project(hid, amask)
            if self.ground_only:  # the stride-16 / superpixel layers only: f1..f8 are not read, not expanded
                g = m.decoder.ground(*img[:4], *(t.index_select(0, index) for t in img[4:]), words, amask, sent)
            else:
                feats = [t.index_select(0, index) for t in img]
                mask, target, coarse, rel = m.decoder.forward_all(*feats, words, amask, sent)
        if self.ground_only:
            target = g.target if self.train_exists else g.target.detach()
            return grounding_loss(target, g.coarse, g.relevance, g.q, gt, exists, self.cfg.cell)
        target = target if self.train_exists else target.detach()
        return ssp_loss(mask, target, coarse, rel, feats[-1], gt, exists, self.cfg.cell)


# ----------------------------------------------------------------------------- state


def _state_tensors(model: SSP, optim: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    names = {id(p): n for n, p in model.named_parameters()}
    tensors = {}
    for group in optim.param_groups:
        for p in group["params"]:
            st = optim.state.get(p)
            if not st:
                continue
            for k, v in st.items():
                tensors[f"{names[id(p)]}::{k}"] = (
                    v.detach().cpu().contiguous().clone() if torch.is_tensor(v) else torch.tensor(v)
                )
    return tensors


def _save_state(
    run: Path, model: SSP, cfg: SSPConfig, optim: torch.optim.Optimizer, step: int, log: dict, meta: dict[str, Any]
) -> None:
    from safetensors.torch import save

    save_checkpoint(model, cfg, run / "last.safetensors", {"step": step, **meta})
    atomic_write_bytes(run / "optim.safetensors", save(_state_tensors(model, optim)))
    atomic_write_text(run / "state.json", json.dumps({"step": step, **log}, indent=1))  # last: marks the set done


def _read_state(run: Path) -> tuple[int, dict[str, torch.Tensor], dict[str, torch.Tensor], dict] | None:
    """(step, model tensors, optimizer tensors, state.json) of a run folder, or None."""
    from safetensors.torch import load_file

    if not (run / "state.json").is_file():
        return None
    state = json.loads((run / "state.json").read_text())
    return (
        int(state["step"]),
        load_file(str(run / "last.safetensors")),
        load_file(str(run / "optim.safetensors")),
        state,
    )


def _apply_state(
    model: SSP,
    optim: torch.optim.Optimizer,
    weights: dict[str, torch.Tensor],
    tensors: dict[str, torch.Tensor],
    run: Path,
) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in weights and not k.startswith("text.encoder.")]
    if missing or any(k not in own for k in weights):
        raise SSPError(
            f"{run / 'last.safetensors'} does not fit this config (e.g. {(missing or list(weights))[0]!r}); "
            "resume with the options of that run, or pass --no-resume"
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in weights.items()}, strict=False)  # packaged text
    params = dict(model.named_parameters())
    for key, v in tensors.items():
        name, k = key.split("::")
        p = params[name]
        optim.state[p][k] = torch.empty_like(p).copy_(v) if v.shape == p.shape else v.to(p.device)


# ----------------------------------------------------------------------------- the trainer


class _Subset:
    """A fixed random subset of a data set (validation)."""

    def __init__(self, data: Any, n: int, seed: int):
        n = min(n, len(data))
        self.data = data
        self.idx = np.sort(np.random.default_rng(seed).choice(len(data), size=n, replace=False))

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> Any:
        return self.data[int(self.idx[i])]


def _augment(opt: TrainOptions, ds: Any) -> AugmentParams | None:
    on = opt.augment == "on" or (opt.augment == "auto" and not isinstance(ds, (RefShapes, RefShapes2)))
    return AugmentParams(opt.aug_scale, opt.aug_color, opt.aug_flip) if on else None


def _workers(opt: TrainOptions, rt: Runtime) -> int:
    if opt.workers is not None:
        return max(0, opt.workers)
    if rt.device.type != "cuda":
        return 0
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return min(8, max(1, (os.cpu_count() or 2) // local))


def train(cfg: SSPConfig, opt: TrainOptions) -> Path:
    """Train and return the path of ``final.safetensors`` in ``opt.out``."""
    rt = _runtime(opt)
    try:
        with flush_denormals():
            return _train(cfg, opt, rt)
    finally:
        if rt.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def optimizer_step(optim: torch.optim.Optimizer, params: list[torch.Tensor], scaler: Any = None) -> None:
    """One optimizer step after the backward passes: gradients unscaled (fp16 GradScaler), clipped to norm 1, step."""
    if scaler is not None:
        scaler.unscale_(optim)
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    if scaler is not None:
        scaler.step(optim)
        scaler.update()
    else:
        optim.step()


def _with_type_mix(ds: Any, opt: TrainOptions, size: int) -> Any:
    """The training set with the expression-type mix of ``--type-weights`` (RefShapes v1 without it: its training
    mix :data:`~.options.V1_TRAIN_TYPE_WEIGHTS`; RefShapes v2 without it: its generator's own mix); other data
    has no generated types, so a mix for it is refused rather than ignored."""
    if isinstance(ds, RefShapes):
        return RefShapes(ds.split, size=size, type_weights=opt.type_weights or V1_TRAIN_TYPE_WEIGHTS)
    if isinstance(ds, RefShapes2):
        return ds if opt.type_weights is None else RefShapes2(ds.split, size=size, type_weights=opt.type_weights)
    if opt.type_weights is not None:
        raise SSPError(
            f"--type-weights sets the expression-type mix of RefShapes data; {opt.data!r} has its own expressions: "
            "drop --type-weights"
        )
    return ds


def _train(cfg: SSPConfig, opt: TrainOptions, rt: Runtime) -> Path:
    torch.manual_seed(opt.seed)
    run = Path(opt.out)
    ds = _with_type_mix(open_data(opt.data, cfg.input_size), opt, cfg.input_size)  # cheap checks first
    val_spec = opt.val if opt.val is not None else default_val_spec(opt.data)
    val = None if val_spec.lower() == "none" else open_data(val_spec, cfg.input_size)
    train_exists = has_no_target(ds)
    if rt.main:
        run.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run / "options.json", json.dumps(asdict(opt), indent=1))
    model = build_model(cfg)
    loaded = load_pretrained_parts(model, cfg)
    if rt.main:
        for part, rep in loaded.items():
            extra = f", {len(rep.adapted)} resized" if rep.adapted else ""
            print(f"{part}: {rep.loaded} tensors from {rep.path}{extra}")
    if opt.init:
        load_weights(model, read_checkpoint_info(opt.init))
    _set_trainable(model, cfg, opt, train_exists)
    model.to(rt.device)
    groups = param_groups(model, opt)
    optim = torch.optim.AdamW(groups, weight_decay=opt.weight_decay)
    base_lrs = [g["lr"] for g in optim.param_groups]
    scaler = torch.amp.GradScaler("cuda") if rt.amp == "fp16" else None
    start, state = 0, {}
    saved = _read_state(run) if (opt.resume and rt.main) else None
    saved = _broadcast(saved, rt)
    if saved is not None:
        start, weights, tensors, state = saved
        _apply_state(model, optim, weights, tensors, run)
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if rt.main:
            print(f"resumed {run} at step {start}")
    elif opt.spixel_steps and not opt.init and rt.main:  # other ranks get the weights from DDP's broadcast
        sp_file = run / "spixel.safetensors"
        if sp_file.is_file():  # pretraining done by an earlier, interrupted run
            from safetensors.torch import load_file

            model.image.spixel.load_state_dict(load_file(str(sp_file)))
        else:
            from safetensors.torch import save

            # on the training scenes when they have instance maps (RefShapes v2's textured backgrounds)
            loss = pretrain_spixel(
                model, cfg, opt.spixel_steps, opt.seed, device=rt.device, scenes=ds if hasattr(ds, "scene") else None
            )
            print(f"superpixel pretraining: final loss {loss:.4f}")
            atomic_write_bytes(
                sp_file, save({k: v.detach().cpu().contiguous() for k, v in model.image.spixel.state_dict().items()})
            )
        _set_trainable(model, cfg, opt, train_exists)
    if not train_exists and rt.main:
        print(
            f"{opt.data} has no no-target expressions: the target-exists head is not trained (the checkpoint "
            "records it; the SDK then treats every prompt as present)"
        )
    model = model.to(memory_format=torch.channels_last)  # type: ignore[assignment]
    if rt.distributed and rt.device.type == "cuda" and opt.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # type: ignore[assignment]

    # ---- data
    units = TrainUnits(ds, cfg.input_size, cfg.mean, opt.exprs_per_image, _augment(opt, ds), opt.seed)
    batches = StepBatches(
        len(units),
        opt.images_per_batch,
        opt.steps,
        start,
        opt.accum,
        rt.world,
        rt.rank,
        opt.seed,
        refshapes=isinstance(ds, (RefShapes, RefShapes2)),
    )
    units[batches.keys(start, 0)[0]]  # a bad image folder fails here as one line, not inside a DataLoader worker
    workers = _workers(opt, rt)
    loader = torch.utils.data.DataLoader(
        units,
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=partial(collate_units, mean=cfg.mean, std=cfg.std),
        pin_memory=rt.device.type == "cuda",
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(opt.seed),
    )  # the global RNG stays as the model init left it
    tok = Tokenizer(cfg.max_tokens)
    texts = _TextCache(model, tok, rt.device) if cfg.freeze_text else None

    # ---- step module, DDP, compile
    step_mod: nn.Module = _Step(model, cfg, opt, rt, train_exists)
    if rt.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        step_mod = DDP(
            step_mod,
            device_ids=[rt.device.index] if rt.device.type == "cuda" else None,
            find_unused_parameters=opt.ground_only,
        )  # ground-only leaves the upsampling decoder idle
        if rt.rank:
            torch.manual_seed(opt.seed + 1000 * rt.rank)  # own dropout masks (the weights came from rank 0)
    runner = torch.compile(step_mod) if opt.compile else step_mod
    params = [p for g in optim.param_groups for p in g["params"]]
    meta = {"exists_head": "trained" if train_exists else "untrained", "data": opt.data}
    if not train_exists:
        meta["thresholds"] = {"mask": 0.5, "exists": 0.0}

    log = TrainLog(run, opt.tensorboard) if rt.main else None
    t0 = time.time()
    bar = tqdm(range(start, opt.steps), desc="train", unit="step", initial=start, total=opt.steps, disable=not rt.main)
    last_val: dict = {}
    best = float(state.get("best_mIoU", -1.0))
    recent: list[float] = []
    it = iter(loader)
    steps_done = start
    for step in bar:
        steps_done = step + 1
        _train_mode(model, cfg, opt)
        f = _lr_factor(step, opt.steps, opt.warmup)
        for g, lr in zip(optim.param_groups, base_lrs):
            g["lr"] = lr * f
        t_step = time.time()
        optim.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        n_expr = 0
        for micro in range(opt.accum):
            b = next(it)
            x = b["image"].to(rt.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            if texts is not None:
                hid, amask = texts(b["expressions"])
                ids = None
            else:
                t = tok(b["expressions"])
                hid, ids, amask = None, t.input_ids.to(rt.device), t.attention_mask.to(rt.device)
            gt = b["mask"].to(rt.device, non_blocking=True)
            exists = b["exists"].to(rt.device)
            index = b["index"].to(rt.device)
            sync = contextlib.nullcontext()
            if rt.distributed and micro < opt.accum - 1:
                sync = step_mod.no_sync()  # type: ignore[operator]
            with sync:
                losses = runner(x, index, gt, exists, hid, amask, ids)
                loss = losses["total"] / opt.accum
                (scaler.scale(loss) if scaler is not None else loss).backward()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            n_expr += len(b["expressions"])
        optimizer_step(optim, params, scaler)
        vals = {k: v / opt.accum for k, v in sums.items()}
        if rt.distributed:  # the global-batch loss: mean over processes (equal batches)
            keys = sorted(vals)
            tv = torch.tensor([vals[k] for k in keys] + [float(n_expr)], dtype=torch.float64, device=rt.device)
            torch.distributed.all_reduce(tv)
            vals = {k: float(tv[i]) / rt.world for i, k in enumerate(keys)}
            n_expr = int(tv[-1])
        sec = time.time() - t_step
        rec: dict[str, Any] = {
            "step": step + 1,
            "epoch": round(batches.epoch_of(step + 1), 4),
            "lr": optim.param_groups[0]["lr"],
            "sec": round(sec, 3),
            "samples_per_s": round(n_expr / max(sec, 1e-9), 2),
            **vals,
        }
        bar.set_postfix(
            loss=f"{rec['total']:.3f}", rel_iou=f"{rec['rel_iou']:.3f}", **{"val_mIoU": last_val.get("mIoU", "-")}
        )
        done = step + 1 == opt.steps
        over = opt.time_budget_min is not None and (time.time() - t0) / 60 > opt.time_budget_min
        over = bool(_broadcast(over, rt)) if opt.time_budget_min is not None else False
        validate = (step + 1) % opt.val_every == 0 or done or over
        save = validate or (opt.save_every and (step + 1) % opt.save_every == 0)
        minutes = (time.time() - t0) / 60
        if rt.main:
            info: dict[str, Any] = {"minutes": minutes}
            if opt.ground_only and validate:
                # the upsampling decoder is untrained in this phase, so full-mask validation means nothing:
                # report the relevance-map IoU of the last training batches (never-seen scenes) instead
                window = recent[-opt.val_every :] + [rec["rel_iou"]]
                rec["train_rel_iou"] = round(float(np.mean(window)), 4)
                tqdm.write(
                    f"step {step + 1}: relevance IoU over the last {len(window)} batches {rec['train_rel_iou']:.4f}"
                )
                info["rel_iou"] = rec["train_rel_iou"]
            elif validate and val is not None:
                model.eval()
                summ = evaluate(
                    model,
                    cfg,
                    _Subset(val, opt.val_samples, opt.val_seed),
                    progress=False,
                    thresholds=meta.get("thresholds"),
                )
                last_val = {"mIoU": round(summ["mIoU"], 4)}
                rec["val"] = {k: summ.get(k) for k in ("mIoU", "oIoU", "gIoU", "cIoU", "N-acc", "T-acc", "by_type")}
                info["val"] = rec["val"]
                tqdm.write(
                    f"step {step + 1}: val mIoU {summ['mIoU']:.4f} gIoU {summ['gIoU']:.4f} N-acc "
                    f"{summ['N-acc']} by type {summ['by_type']}"
                )
                if opt.keep_best and summ["mIoU"] > best:
                    best = summ["mIoU"]
                    save_checkpoint(model, cfg, run / "best.safetensors", {"step": step + 1, "val": rec["val"], **meta})
                    tqdm.write(f"step {step + 1}: new best val mIoU {best:.4f} -> {run / 'best.safetensors'}")
            if save:
                info["best_mIoU"] = best
                if scaler is not None:
                    info["scaler"] = scaler.state_dict()
                _save_state(run, model, cfg, optim, step + 1, info, meta)
            recent.append(rec["rel_iou"])
            assert log is not None
            log.write(rec)
            if save:
                plot_curves(run)
        if rt.distributed and save:
            torch.distributed.barrier()
        if over:
            if rt.main:
                tqdm.write(f"time budget of {opt.time_budget_min} min reached at step {step + 1}; stopping")
            break
    final = run / "final.safetensors"
    if rt.main:
        assert log is not None
        log.close()
        save_checkpoint(model, cfg, final, {"steps": opt.steps, "steps_done": steps_done, **meta})
        plot_curves(run)
    if rt.distributed:
        torch.distributed.barrier()
    return final


# ----------------------------------------------------------------------------- torchrun entry point


def main(argv: Sequence[str] | None = None) -> int:
    """``torchrun ... -m ssp_edge.ssp.train [ssp train options]`` (the same options as ``ssp train``)."""
    from ssp_edge.sdk.errors import SSPEdgeError

    from .cli import add_train_args, run_train

    p = argparse.ArgumentParser(
        prog="ssp train",
        description="Train an SSP model (one process of a torchrun job).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_train_args(p)
    args = p.parse_args(argv)
    try:
        return run_train(args)
    except SSPEdgeError as e:
        print(f"ssp train: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
