"""Training-step benchmark on CPU or CUDA: steps/s, samples/s, peak memory and a finite-loss check for a config,
on synthetic batches (random letterboxed images, rectangle masks, random token ids), so it needs no data set,
no tokenizer and no pretrained weights (random backbones). The step is the trainer's own (:class:`_Step`, the
same trainable layers, AdamW groups, autocast and fp16 gradient scaler).

``make gpu-check`` calls :func:`gpu_check_train` (50 steps of ssp_lite and ssp_paper on CUDA with bf16);
``benchmarks/train_bench.py`` reports samples/s on CPU for both configs.
"""

from __future__ import annotations

import math
import os
import resource
import time
from typing import Any

import numpy as np
import torch

from .config import SSPConfig, get_config
from .errors import SSPError
from .options import TrainOptions
from .train import flush_denormals as _flush_denormals

__all__ = [
    "train_steps",
    "gpu_check_train",
    "MINILM_ARCH",
    "GPU_BF16_TFLOPS",
    "REFCOCO_TRAIN",
    "epoch_flops",
    "epoch_seconds_estimate",
]

#: MiniLM-L6's BertConfig, used when its package is not installed (same cost, random weights)
MINILM_ARCH = dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)


def _sig(x: float, digits: int = 4) -> float:
    """``x`` rounded to ``digits`` significant digits."""
    return float(f"{x:.{digits}g}")


def _bench_config(config: str | SSPConfig, **overrides: Any) -> tuple[SSPConfig, str]:
    cfg = config if isinstance(config, SSPConfig) else get_config(config)
    cfg = cfg.replace(pretrained=False, **overrides)  # random backbones: nothing to download or unpack
    note = ""
    if cfg.text_encoder == "minilm_l6":
        try:
            from .models.text import _minilm_dir

            _minilm_dir()
        except SSPError:
            cfg = cfg.replace(text_encoder="bert_base", text_config=MINILM_ARCH)
            note = "MiniLM package missing: a random BERT of MiniLM-L6's size stands in"
    return cfg, note


def _batch(cfg: SSPConfig, rng: np.random.Generator, images: int, exprs: int, device: torch.device) -> dict:
    s = cfg.input_size
    x = torch.from_numpy(rng.standard_normal((images, 3, s, s), dtype=np.float32))
    n = images * exprs
    gt = np.zeros((n, 1, s, s), np.float32)
    exists = (rng.random(n) > 0.15).astype(np.float32)
    for i in range(n):
        if exists[i]:
            x0, y0 = rng.integers(0, s // 2, 2)
            gt[i, 0, y0 : y0 + s // 3, x0 : x0 + s // 3] = 1
    ids = torch.from_numpy(rng.integers(1000, 5000, (n, cfg.max_tokens)))
    lens = rng.integers(3, cfg.max_tokens, n)
    am = torch.from_numpy((np.arange(cfg.max_tokens)[None] < lens[:, None]).astype(np.int64))
    return {
        "image": x.to(device).contiguous(memory_format=torch.channels_last),
        "mask": torch.from_numpy(gt).to(device),
        "exists": torch.from_numpy(exists).to(device),
        "ids": ids.to(device),
        "amask": am.to(device),
        "index": torch.arange(images, device=device).repeat_interleave(exprs),
    }


@_flush_denormals()  # as the trainer (and reset after)
def train_steps(
    config: str | SSPConfig = "ssp_lite",
    steps: int = 50,
    device: str = "cpu",
    amp: str = "bf16",
    images_per_batch: int = 4,
    exprs_per_image: int = 4,
    warmup: int = 2,
    compile: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """Run ``warmup + steps`` training steps; return steps/s, samples/s (expressions), images/s, peak memory
    (CUDA: max allocated; CPU: peak RSS of the process) and whether every loss was finite."""
    from .models.ssp import build_model
    from .train import Runtime, _set_trainable, _Step, _train_mode, optimizer_step, param_groups, resolve_device

    dev = resolve_device(device)
    if amp == "fp16" and dev.type != "cuda":
        raise SSPError("amp fp16 needs CUDA; use bf16 or off on CPU")
    cfg, note = _bench_config(config, **overrides)
    opt = TrainOptions(amp=amp, images_per_batch=images_per_batch, exprs_per_image=exprs_per_image)
    torch.manual_seed(0)
    t_build = time.perf_counter()
    model = build_model(cfg)
    _set_trainable(model, cfg, opt)
    model.to(dev)
    model = model.to(memory_format=torch.channels_last)  # type: ignore[assignment]
    optim = torch.optim.AdamW(param_groups(model, opt), weight_decay=opt.weight_decay)
    rt = Runtime(dev, amp)
    step_mod = _Step(model, cfg, opt, rt, train_exists=True)
    runner = torch.compile(step_mod) if compile else step_mod
    scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
    params = [p for g in optim.param_groups for p in g["params"]]
    build_s = time.perf_counter() - t_build
    rng = np.random.default_rng(0)
    batches = [_batch(cfg, rng, images_per_batch, exprs_per_image, dev) for _ in range(2)]
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    losses: list[float] = []
    t0 = c0 = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0, c0 = time.perf_counter(), time.process_time()
        b = batches[i % 2]
        _train_mode(model, cfg, opt)
        hid = None
        if cfg.freeze_text:
            with torch.no_grad():
                hid = model.text.encoder(b["ids"], b["amask"])
        optim.zero_grad(set_to_none=True)
        out = runner(b["image"], b["index"], b["mask"], b["exists"], hid, b["amask"], b["ids"])
        (scaler.scale(out["total"]) if scaler is not None else out["total"]).backward()
        optimizer_step(optim, params, scaler)
        losses.append(float(out["total"].detach()))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    sec = (time.perf_counter() - t0) / max(1, steps)
    cpu_sec = (time.process_time() - c0) / max(1, steps)
    threads = torch.get_num_threads()
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) / 2**20
        kind, name = "cuda_max_allocated", torch.cuda.get_device_name(dev)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        kind, name = "cpu_max_rss", f"CPU x{torch.get_num_threads()} threads"
    return {
        "config": cfg.name,
        "device": str(dev),
        "device_name": name,
        "amp": amp,
        "compile": compile,
        "input_size": cfg.input_size,
        "steps": steps,
        "warmup_steps": warmup,
        "images_per_batch": images_per_batch,
        "exprs_per_image": exprs_per_image,
        "sec_per_step": _sig(sec),
        "steps_per_s": _sig(1 / sec),
        "samples_per_s": _sig(images_per_batch * exprs_per_image / sec),
        "images_per_s": _sig(images_per_batch / sec),
        "peak_memory_mb": round(peak, 1),
        "memory_kind": kind,
        # CPU: the process's CPU seconds per step, and samples/s if it had its `threads` cores to itself (a
        # shared, loaded machine inflates the wall-clock numbers; compare with load_average)
        "cpu_sec_per_step": _sig(cpu_sec),
        "threads": threads,
        "samples_per_s_unshared_estimate": _sig(images_per_batch * exprs_per_image / max(cpu_sec / threads, 1e-9))
        if dev.type == "cpu"
        else None,
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "loss_finite": all(math.isfinite(v) for v in losses),
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in params),
        "build_seconds": round(build_s, 1),
        "torch": torch.__version__,
        **({"note": note} if note else {}),
    }


def gpu_check_train(steps: int = 50, amp: str = "bf16", device: str = "cuda") -> dict[str, Any]:
    """The training part of ``make gpu-check``: ``steps`` steps of ssp_lite (8 images x 4 expressions, 320 px)
    and ssp_paper (4 x 4, 480 px, random Swin-B / BERT-base) on CUDA; one dict per config."""
    out = {
        "ssp_lite": train_steps("ssp_lite", steps, device, amp, images_per_batch=8, exprs_per_image=4),
        "ssp_paper": train_steps("ssp_paper", steps, device, amp, images_per_batch=4, exprs_per_image=4),
    }
    out["ok"] = all(v["loss_finite"] for v in out.values() if isinstance(v, dict))
    return out


# ----------------------------------------------------------------------------- epoch-time estimate (guide)

#: published dense BF16 tensor-core throughput (TFLOP/s, no sparsity) of common training GPUs
GPU_BF16_TFLOPS = {"A100 SXM": 312.0, "H100 SXM": 989.0}
#: RefCOCO-family training splits: (refs, expressions)
REFCOCO_TRAIN = {"refcoco (unc)": (42404, 120624), "refcoco+ (unc)": (42278, 120191), "refcocog (umd)": (42226, 80512)}


def epoch_flops(graph_flops: dict[str, int], refs: int, expressions: int, text_trainable: bool = False) -> float:
    """Training FLOPs of one epoch (every ref once, one image encoding each; ``expressions`` decoder passes):
    forward + backward ~ 3x forward for the image encoder and the decoder; the frozen text encoder runs its
    forward once per expression (3x when it is fine-tuned). ``graph_flops`` per frame / expression, as
    :func:`ssp.flops.model_cost` reports them (``text_encoder``, ``image_encoder``, ``mask_decoder``)."""
    text = graph_flops["text_encoder"] * expressions * (3 if text_trainable else 1)
    return 3.0 * graph_flops["image_encoder"] * refs + 3.0 * graph_flops["mask_decoder"] * expressions + text


def epoch_seconds_estimate(
    graph_flops: dict[str, int],
    refs: int,
    expressions: int,
    gpus: int,
    tflops: float,
    mfu: float = 0.25,
    text_trainable: bool = False,
) -> float:
    """An ESTIMATE of seconds per epoch on ``gpus`` GPUs of ``tflops`` peak at utilisation ``mfu`` (compute
    only: data loading, validation and communication are not counted)."""
    return epoch_flops(graph_flops, refs, expressions, text_trainable) / (gpus * tflops * 1e12 * mfu)


def main(argv: list[str] | None = None) -> int:
    """``python -m ssp_edge.ssp.train_bench [--config C] [--steps N] [--device D] [--gpu-check]``: one JSON line."""
    import argparse
    import json
    import sys

    p = argparse.ArgumentParser(
        prog="python -m ssp_edge.ssp.train_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", default="ssp_lite")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", default="bf16", choices=("bf16", "fp16", "off"))
    p.add_argument("--images-per-batch", type=int, default=4)
    p.add_argument("--exprs-per-image", type=int, default=4)
    p.add_argument("--gpu-check", action="store_true", help="both configs with the gpu-check batch sizes")
    a = p.parse_args(argv)
    try:
        res = (
            gpu_check_train(a.steps, a.amp, a.device)
            if a.gpu_check
            else train_steps(
                a.config,
                a.steps,
                a.device,
                a.amp,
                images_per_batch=a.images_per_batch,
                exprs_per_image=a.exprs_per_image,
            )
        )
    except SSPError as e:
        print(f"train bench: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
