"""Training: superpixel pretraining (SpixelFCN unsupervised loss), then SSP training with AdamW, a
cosine schedule, BCE + Dice (+ auxiliary) losses, bf16 autocast on CPU, tqdm progress, periodic
validation mIoU, and resumable state (safetensors + JSON, never pickle).

RefShapes batches put several expressions on each scene, so one image encoding serves several
decoder passes, as at deployment time.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .checkpoint import load_weights, read_checkpoint_info, save_checkpoint
from .config import SSPConfig
from .data.refshapes import RefShapes
from .data.sample import Sample
from .data.spec import open_data
from .data.transforms import normalize
from .evaluate import evaluate
from .models.losses import grounding_loss, ssp_loss
from .models.ssp import SSP, build_model
from .models.superpixel import spixel_loss
from .models.text import Tokenizer
from .options import TrainOptions

__all__ = ["TrainOptions", "train"]


def _to_tensor_batch(cfg: SSPConfig, images: list[np.ndarray]) -> torch.Tensor:
    x = torch.from_numpy(np.stack([normalize(im, cfg.mean, cfg.std) for im in images]))
    return x.contiguous(memory_format=torch.channels_last)


class _TextCache:
    """Frozen text-encoder states per expression (the encoder is not trained by default)."""

    def __init__(self, model: SSP, tok: Tokenizer, cap: int = 40000):
        self.model, self.tok, self.cap = model, tok, cap
        self.cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        new = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if new:
            if len(self.cache) + len(new) > self.cap:
                self.cache.clear()
            t = self.tok(new)
            hid = self.model.text.encoder(t.input_ids, t.attention_mask)
            for i, s in enumerate(new):
                self.cache[s] = (hid[i], t.attention_mask[i])
        hs, ms = zip(*(self.cache[s] for s in texts))
        return torch.stack(hs), torch.stack(ms)


def _set_trainable(model: SSP, cfg: SSPConfig, opt: TrainOptions) -> None:
    for p in model.text.encoder.parameters():
        p.requires_grad_(not cfg.freeze_text)
    bb = model.image.backbone
    for name, p in bb.named_parameters():
        train = False
        if name.startswith("blocks."):
            train = int(name.split(".")[1]) >= opt.backbone_trainable_from
        p.requires_grad_(train)
    for p in model.image.spixel.parameters():
        p.requires_grad_(opt.finetune_spixel)


def _train_mode(model: SSP, opt: TrainOptions) -> None:
    model.train()
    model.text.encoder.eval()
    model.image.backbone.eval()  # frozen BN statistics (ImageNet)
    if not opt.finetune_spixel:
        model.image.spixel.eval()


def pretrain_spixel(model: SSP, cfg: SSPConfig, steps: int, seed: int = 0, batch: int = 8) -> float:
    """SpixelFCN-style pretraining of the superpixel net on RefShapes scenes (colour + position +
    instance labels reconstructed through aggregate -> propagate)."""
    net = model.image.spixel
    net.train()
    for p in net.parameters():
        p.requires_grad_(True)
    ds = RefShapes("train", size=cfg.input_size)
    optim = torch.optim.Adam(net.parameters(), lr=2e-3)
    loss_v = float("nan")
    bar = tqdm(range(steps), desc="superpixel pretrain", unit="step")
    for step in bar:
        scenes = [ds.scene(10 ** 6 + seed * 10 ** 5 + step * batch + j) for j in range(batch)]
        x = _to_tensor_batch(cfg, [s.image for s in scenes])
        rgb4 = F.avg_pool2d(torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float() / 255, 4)
        inst = torch.from_numpy(np.stack([s.instances for s in scenes])).long()
        lab4 = F.avg_pool2d(F.one_hot(inst, 8).permute(0, 3, 1, 2).float(), 4)
        q = net(x)
        loss = spixel_loss(q, rgb4, cfg.cell, lab4)
        optim.zero_grad()
        loss.backward()
        optim.step()
        loss_v = float(loss.detach())
        bar.set_postfix(loss=f"{loss_v:.4f}")
    net.eval()
    return loss_v


def _batch(ds, step: int, opt: TrainOptions) -> tuple[list[np.ndarray], list[Sample], list[int]]:
    """Images, samples and, per sample, the index of its image (deterministic in ``step``)."""
    images, samples, idx = [], [], []
    base = step * opt.images_per_batch
    for j in range(opt.images_per_batch):
        if isinstance(ds, RefShapes):
            ss = ds.scene_samples(base + j, opt.exprs_per_image)
        else:
            ss = [ds[(base + j) % len(ds)]]
        if not ss:
            continue
        images.append(ss[0].image)
        samples.extend(ss)
        idx.extend([len(images) - 1] * len(ss))
    return images, samples, idx


def _save_state(run: Path, model: SSP, cfg: SSPConfig, optim: torch.optim.Optimizer, step: int, log: dict) -> None:
    from safetensors.torch import save_file

    save_checkpoint(model, cfg, run / "last.safetensors", {"step": step})
    names = {id(p): n for n, p in model.named_parameters()}
    tensors = {}
    for group in optim.param_groups:
        for p in group["params"]:
            st = optim.state.get(p)
            if not st:
                continue
            for k, v in st.items():
                tensors[f"{names[id(p)]}::{k}"] = v.detach().contiguous().clone() if torch.is_tensor(v) else torch.tensor(v)
    save_file(tensors, str(run / "optim.tmp"))
    (run / "optim.tmp").replace(run / "optim.safetensors")
    (run / "state.json").write_text(json.dumps({"step": step, **log}, indent=1))


def _load_state(run: Path, model: SSP, optim: torch.optim.Optimizer) -> int:
    from safetensors.torch import load_file

    info = read_checkpoint_info(run / "last.safetensors")
    load_weights(model, info)
    tensors = load_file(str(run / "optim.safetensors"))
    params = dict(model.named_parameters())
    for key, v in tensors.items():
        name, k = key.split("::")
        p = params[name]
        optim.state[p][k] = torch.empty_like(p).copy_(v) if v.shape == p.shape else v  # keep p's memory format
    return int(json.loads((run / "state.json").read_text())["step"])


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def train(cfg: SSPConfig, opt: TrainOptions) -> Path:
    """Train and return the path of ``final.safetensors`` in ``opt.out``."""
    torch.manual_seed(opt.seed)
    torch.set_flush_denormal(True)  # denormal gradients slow CPU backward passes by several times
    run = Path(opt.out)
    run.mkdir(parents=True, exist_ok=True)
    (run / "options.json").write_text(json.dumps(asdict(opt), indent=1))
    model = build_model(cfg)
    if opt.init:
        load_weights(model, read_checkpoint_info(opt.init))
    _set_trainable(model, cfg, opt)
    bb_params = [p for p in model.image.backbone.parameters() if p.requires_grad]
    bb_ids = {id(p) for p in bb_params}
    other = [p for p in model.parameters() if p.requires_grad and id(p) not in bb_ids]
    optim = torch.optim.AdamW([{"params": other, "lr": opt.lr}, {"params": bb_params, "lr": opt.backbone_lr}],
                              weight_decay=opt.weight_decay)
    base_lrs = [g["lr"] for g in optim.param_groups]
    start = 0
    if opt.resume and (run / "state.json").is_file():
        start = _load_state(run, model, optim)
        print(f"resumed {run} at step {start}")
    elif opt.spixel_steps and not opt.init:
        sp_file = run / "spixel.safetensors"
        if sp_file.is_file():  # pretraining done by an earlier, interrupted run
            from safetensors.torch import load_file

            model.image.spixel.load_state_dict(load_file(str(sp_file)))
        else:
            from safetensors.torch import save_file

            loss = pretrain_spixel(model, cfg, opt.spixel_steps, opt.seed)
            print(f"superpixel pretraining: final loss {loss:.4f}")
            save_file({k: v.contiguous() for k, v in model.image.spixel.state_dict().items()}, str(sp_file))
        _set_trainable(model, cfg, opt)
    model = model.to(memory_format=torch.channels_last)  # type: ignore[assignment]
    ds = open_data(opt.data, cfg.input_size)
    if isinstance(ds, RefShapes):
        ds = RefShapes(ds.split, size=cfg.input_size, type_weights=opt.type_weights)
    val = open_data(opt.val, cfg.input_size)
    tok = Tokenizer(cfg.max_tokens)
    texts = _TextCache(model, tok)
    log_f = (run / "log.jsonl").open("a")
    t0 = time.time()
    bar = tqdm(range(start, opt.steps), desc="train", unit="step", initial=start, total=opt.steps)
    last_val: dict = {}
    recent_recs: list[dict] = []
    for step in bar:
        _train_mode(model, opt)
        f = _lr_factor(step, opt.steps, opt.warmup)
        for g, lr in zip(optim.param_groups, base_lrs):
            g["lr"] = lr * f
        t_step = time.time()
        images, samples, idx = _batch(ds, step + opt.seed * 10 ** 6, opt)
        x = _to_tensor_batch(cfg, images)
        hid, amask = texts([s.expression for s in samples])
        gt = torch.from_numpy(np.stack([s.mask for s in samples])).float()[:, None]
        exists = torch.tensor([float(s.exists) for s in samples])
        index = torch.tensor(idx)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=opt.bf16):
            img = model.image(x)
            words, sent = model.text.project(hid, amask)
            if opt.ground_only:  # the stride-16 / superpixel layers only: f1..f8 are not read, not expanded
                g = model.decoder.ground(*img[:4], *(t.index_select(0, index) for t in img[4:]), words, amask, sent)
            else:
                feats = [t.index_select(0, index) for t in img]
                mask, target, coarse, rel = model.decoder.forward_all(*feats, words, amask, sent)
        if opt.ground_only:
            losses = grounding_loss(g.target, g.coarse, g.relevance, g.q, gt, exists, cfg.cell)
        else:
            losses = ssp_loss(mask, target, coarse, rel, feats[-1], gt, exists, cfg.cell)
        optim.zero_grad(set_to_none=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_([p for g in optim.param_groups for p in g["params"]], 1.0)
        optim.step()
        rec = {"step": step + 1, "lr": optim.param_groups[0]["lr"], "sec": round(time.time() - t_step, 2),
               **{k: round(float(v), 5) for k, v in losses.items()}}
        bar.set_postfix(loss=f"{rec['total']:.3f}", rel_iou=f"{rec['rel_iou']:.3f}", **{"val_mIoU": last_val.get("mIoU", "-")})
        done = step + 1 == opt.steps
        over = opt.time_budget_min is not None and (time.time() - t0) / 60 > opt.time_budget_min
        if opt.ground_only and ((step + 1) % opt.val_every == 0 or done or over):
            # the upsampling decoder is untrained in this phase, so full-mask validation means nothing:
            # report the relevance-map IoU of the last training batches (never-seen scenes) instead
            recent = [r["rel_iou"] for r in recent_recs[-opt.val_every:]] + [rec["rel_iou"]]
            rec["train_rel_iou"] = round(float(np.mean(recent)), 4)
            tqdm.write(f"step {step + 1}: relevance IoU over the last {len(recent)} batches {rec['train_rel_iou']:.4f}")
            _save_state(run, model, cfg, optim, step + 1, {"rel_iou": rec["train_rel_iou"],
                                                           "minutes": (time.time() - t0) / 60})
        elif (step + 1) % opt.val_every == 0 or done or over:
            model.eval()
            summ = evaluate(model, cfg, val, limit=opt.val_samples, progress=False)
            last_val = {"mIoU": round(summ["mIoU"], 4)}
            rec["val"] = {k: summ[k] for k in ("mIoU", "oIoU", "N-acc", "by_type")}
            tqdm.write(f"step {step + 1}: val mIoU {summ['mIoU']:.4f} N-acc {summ['N-acc']} by type {summ['by_type']}")
            _save_state(run, model, cfg, optim, step + 1, {"val": rec["val"], "minutes": (time.time() - t0) / 60})
        recent_recs.append(rec)
        log_f.write(json.dumps(rec) + "\n")
        log_f.flush()
        if over:
            tqdm.write(f"time budget of {opt.time_budget_min} min reached at step {step + 1}; stopping")
            break
    log_f.close()
    final = run / "final.safetensors"
    save_checkpoint(model, cfg, final, {"steps": opt.steps, "data": opt.data})
    return final
