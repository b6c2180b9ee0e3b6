"""Issue 19's experiments as commands: the RUS-vs-bilinear decoder ablation, the v2 training recipe, the
superpixel-pretraining check and training-step times.

``python -m ssp_edge.ssp.ablation decoders --out runs/ablation`` trains the RUS decoder and the bilinear decoder
with the same recipe and budget (:data:`RECIPES`): one grounding phase, shared (it never runs the upsampling
decoder, so both arms start the decoder phases from the same weights, decoder freshly initialised with the same
seed), then the decoder phases for each arm with identical options and seeds. Each arm's final checkpoint gets
thresholds tuned on validation data, then mIoU, Prec@0.9 and the boundary F-score (bF@2px) on the test sets;
the table goes to ``OUT/ablation.json`` / ``OUT/ablation.md`` and, with ``--readme``, into
``ssp/checkpoints/README.md`` between ``<!-- ablation:begin -->`` and ``<!-- ablation:end -->``.

``recipe`` prints (or ``--run``s) the recipe's ``ssp train`` commands; ``spixel`` pretrains superpixel nets and
reports the SpixelFCN loss, boundary recall and achievable segmentation accuracy; ``steptime`` measures training
steps of two configs at several sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import SSPConfig, get_config
from .errors import SSPError
from .train import flush_denormals as _flush_denormals

__all__ = [
    "ARMS",
    "Phase",
    "RECIPES",
    "recipe_commands",
    "run_decoder_ablation",
    "spixel_check",
    "step_times",
    "ablation_table",
    "main",
]


# ----------------------------------------------------------------------------- the recipe


@dataclass(frozen=True)
class Phase:
    """One ``ssp train`` run of a recipe: its name, config overrides (``--set``) and options (``--flag value``)."""

    name: str
    sets: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    decoder: bool = True  # False: the grounding phase (--ground-only), shared by both ablation arms


_COMMON = {"images_per_batch": 4, "data": "refshapes2:train", "val": "refshapes2:val"}

#: recipes by name. ``v2`` is designed for 90 minutes on the 2-core CPU (step times measured with
#: ``steptime``; see ssp/checkpoints/README.md): grounding at 256 px (v2's grounding step is ~2x cheaper than v1's,
#: so more steps fit), then the whole model at 256 and at 320 px. The first two phases end on their step counts
#: (about 31 and 17 minutes), so the 320 px phase gets 1500 steps under a 26-minute cap, and a last 320 px phase
#: (950 steps on a fresh schedule at two thirds of its learning rates, about 15 minutes) uses the rest of the 90
#: minutes. ``smoke`` is the same shape in minutes.
RECIPES: dict[str, list[Phase]] = {
    "v2": [
        Phase(
            "ground",
            {"input_size": 256},
            {
                **_COMMON,
                "ground_only": True,
                "steps": 3600,
                "exprs_per_image": 12,
                "lr": 1e-3,
                "backbone_lr": 1.5e-4,
                "time_budget": 38,
                "val_every": 200,
                "spixel_steps": 400,
            },
            decoder=False,
        ),
        Phase(
            "full256",
            {"input_size": 256},
            {
                **_COMMON,
                "steps": 1500,
                "exprs_per_image": 4,
                "lr": 6e-4,
                "backbone_lr": 8e-5,
                "warmup": 40,
                "time_budget": 24,
                "val_every": 750,
                "val_samples": 150,
                "seed": 1,
            },
        ),
        Phase(
            "full320",
            {},
            {
                **_COMMON,
                "steps": 1500,
                "exprs_per_image": 4,
                "lr": 3e-4,
                "backbone_lr": 4e-5,
                "warmup": 20,
                "time_budget": 26,
                "val_every": 500,
                "val_samples": 150,
                "seed": 2,
            },
        ),
        Phase(
            "tune320",
            {},
            {
                **_COMMON,
                "steps": 950,
                "exprs_per_image": 4,
                "lr": 2e-4,
                "backbone_lr": 3e-5,
                "warmup": 20,
                "time_budget": 18,
                "val_every": 475,
                "val_samples": 150,
                "seed": 3,
            },
        ),
    ],
    "smoke": [
        Phase(
            "ground",
            {"input_size": 256},
            {
                **_COMMON,
                "ground_only": True,
                "steps": 120,
                "exprs_per_image": 12,
                "lr": 1e-3,
                "backbone_lr": 1.5e-4,
                "warmup": 20,
                "time_budget": 4,
                "val_every": 40,
                "spixel_steps": 60,
            },
            decoder=False,
        ),
        Phase(
            "full256",
            {"input_size": 256},
            {
                **_COMMON,
                "steps": 100,
                "exprs_per_image": 4,
                "lr": 6e-4,
                "backbone_lr": 8e-5,
                "warmup": 10,
                "time_budget": 3,
                "val_every": 50,
                "val_samples": 40,
                "seed": 1,
            },
        ),
    ],
}


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _argv(phase: Phase, config: str, out: Path, init: Path | None, decoder: str | None) -> list[str]:
    """The ``ssp train`` arguments of one phase."""
    args = ["--config", config, "--out", str(out)]
    sets = dict(phase.sets)
    if decoder is not None:
        sets["decoder"] = decoder
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    if init is not None:
        args += ["--init", str(init)]
    for k, v in phase.options.items():
        if isinstance(v, bool):
            args += [_flag(k)] if v else []
        elif isinstance(v, dict):  # e.g. --type-weights JSON
            args += [_flag(k), json.dumps(v)]
        else:
            args += [_flag(k), str(v)]
    return args


def recipe_commands(
    recipe: str = "v2", config: str = "ssp_lite", out: str | Path = "runs/v2", decoder: str | None = None
) -> list[list[str]]:
    """The recipe as ``ssp train`` argument lists, each phase initialised from the previous one's final weights."""
    phases = _recipe(recipe)
    out = Path(out)
    cmds, init = [], None
    for ph in phases:
        cmds.append(_argv(ph, config, out / ph.name, init, decoder))
        init = out / ph.name / "final.safetensors"
    return cmds


def _recipe(name: str) -> list[Phase]:
    if name not in RECIPES:
        raise SSPError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}")
    return RECIPES[name]


def _train(argv: Sequence[str]) -> Path:
    """One ``ssp train`` run in this process (the trainer's own argument parsing and validation)."""
    from .cli import add_train_args, run_train

    p = argparse.ArgumentParser(prog="ssp train")
    add_train_args(p)
    args = p.parse_args(list(argv))
    rc = run_train(args)
    if rc:
        raise SSPError(f"ssp train {' '.join(map(shlex.quote, argv))} failed (exit {rc})")
    return Path(args.out) / "final.safetensors"


# ----------------------------------------------------------------------------- the decoder ablation

#: the two decoders the ablation compares (``SSPConfig.decoder`` values)
ARMS = ("rus", "bilinear")


def _swap_decoder(src: Path, dst: Path, decoder: str, seed: int) -> Path:
    """``src``'s weights with a freshly initialised ``decoder`` upsampling decoder (seeded): the grounding phase
    never trains the upsampling decoder, so both arms continue from the same grounding weights."""
    from .checkpoint import load_weights, read_checkpoint_info, save_checkpoint
    from .models.ssp import build_model

    info = read_checkpoint_info(src)
    cfg = info.config.replace(decoder=decoder)
    torch.manual_seed(seed)
    fresh = build_model(cfg.replace(pretrained=False))
    dec_state = {k: v.clone() for k, v in fresh.decoder.decoder.state_dict().items()}
    donor = build_model(info.config)
    load_weights(donor, info)
    model = build_model(cfg)
    own = model.state_dict()
    state = {k: v for k, v in donor.state_dict().items() if not k.startswith("decoder.decoder.")}
    state.update({f"decoder.decoder.{k}": v for k, v in dec_state.items()})
    assert set(state) == set(own), sorted(set(state) ^ set(own))[:5]
    model.load_state_dict(state)
    extra = {
        k: v
        for k, v in info.metadata.items()
        if k not in ("format", "config", "text_encoder_package", "excluded_prefix")
    }
    return save_checkpoint(model, cfg, dst, {**extra, "swapped_decoder": decoder})


def _evaluate_arm(ckpt: Path, tests: Sequence[str], val: str, limit: int, val_limit: int) -> dict[str, Any]:
    from .checkpoint import load_checkpoint
    from .data.spec import open_data
    from .evaluate import evaluate, tune_thresholds

    model, info = load_checkpoint(ckpt)
    cfg = info.config
    th = tune_thresholds(model, cfg, open_data(val, cfg.input_size), limit=val_limit)
    thresholds = {"mask": th["mask"], "exists": th["exists"]}
    out: dict[str, Any] = {"checkpoint": str(ckpt), "thresholds": thresholds, "val_gIoU": round(th["gIoU"], 4)}
    for spec in tests:
        summ = evaluate(model, cfg, open_data(spec, cfg.input_size), limit=limit, progress=False, thresholds=thresholds)
        out[spec] = {k: summ.get(k) for k in ("n", "mIoU", "oIoU", "gIoU", "prec@0.9", "bF@2px", "N-acc", "T-acc")}
    return out


def ablation_table(results: dict[str, Any]) -> str:
    """Markdown: one row per decoder and test set (mIoU, Prec@0.9, bF@2px, gIoU, N-acc) plus the FLOPs."""
    phases = ", ".join(p["name"] for p in results["phases"])
    lines = [
        f"Recipe `{results['recipe']}` ({results['config']}; phases {phases}), same phases, options and seeds for "
        f"both decoders; thresholds tuned on `{results['val']}` per decoder; {results['limit']} test samples per set.",
        "",
        "| decoder | test set | mIoU | Prec@0.9 | bF@2px | gIoU | N-acc | decoder GFLOPs | decoder params | steps |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm in ARMS:
        r = results["arms"].get(arm)
        if not r:
            continue
        steps = " + ".join(str(v) for v in r.get("steps_done", {}).values()) or "-"
        for spec in results["tests"]:
            m = r["eval"][spec]

            def f(k: str) -> str:
                v = m.get(k)
                return "-" if v is None else f"{v:.4f}"

            lines.append(
                f"| {arm} | `{spec}` | {f('mIoU')} | {f('prec@0.9')} | {f('bF@2px')} | {f('gIoU')} | "
                f"{f('N-acc')} | {r['decoder_gflops']:.3f} | {r['decoder_params'] / 1e3:.0f}k | {steps} |"
            )
    return "\n".join(lines)


def run_decoder_ablation(
    out: str | Path,
    recipe: str = "v2",
    config: str = "ssp_lite",
    tests: Sequence[str] = ("refshapes2:test", "refshapes:test"),
    val: str = "refshapes2:val",
    limit: int = 500,
    val_limit: int = 300,
    ground: str | None = None,
    readme: bool = False,
    phases: Sequence[str] | None = None,
    arms: Sequence[str] = ARMS,
) -> dict[str, Any]:
    """Train both decoders with one recipe (shared grounding phase) and evaluate them; returns the results.

    ``phases`` picks the decoder phases each arm runs (default: all of the recipe's), so an ablation can stop at
    an early phase to save time. ``arms`` picks the arms trained in this call; arms already in ``OUT/ablation.json``
    from the same recipe, phases and grounding checkpoint are kept, so the two arms can run in separate calls
    (e.g. one before and one after a release run that continues from the RUS arm)."""
    from ssp_edge.sdk.fsio import atomic_write_text

    from .flops import model_cost
    from .models.ssp import build_model

    all_phases = _recipe(recipe)
    decoder_phases = [p for p in all_phases if p.decoder]
    names = [p.name for p in decoder_phases]
    chosen = list(phases) if phases else names
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise SSPError(f"recipe {recipe!r} has no decoder phase {unknown[0]!r}; its decoder phases: {', '.join(names)}")
    bad_arms = [a for a in arms if a not in ARMS]
    if bad_arms or not arms:
        raise SSPError(f"arms must be some of {', '.join(ARMS)}, got {', '.join(arms) or 'none'}")
    run_phases = [p for p in decoder_phases if p.name in chosen]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    init: Path | None = Path(ground) if ground else None
    if init is None:
        for ph in (p for p in all_phases if not p.decoder):
            init = _train(_argv(ph, config, out / ph.name, init, "rus"))
    elif not init.is_file():
        raise SSPError(f"--ground {init}: no such checkpoint; give the grounding phase's final.safetensors")
    results: dict[str, Any] = {
        "recipe": recipe,
        "config": config,
        "tests": list(tests),
        "val": val,
        "limit": limit,
        "ground": str(init),
        "phases": [asdict(p) for p in all_phases if p.decoder is False or p.name in chosen],
        "shared_minutes": round((time.time() - t0) / 60, 1),
        "arms": {},
    }
    previous = _previous_results(out / "ablation.json", results)
    if previous is not None:
        results["arms"] = {k: v for k, v in previous["arms"].items() if k not in arms}
        results["shared_minutes"] = previous.get("shared_minutes", results["shared_minutes"])
    for arm in arms:
        t1 = time.time()
        arm_dir = out / arm
        prev = _swap_decoder(init, arm_dir / "init.safetensors", arm, seed=1234) if init is not None else None
        steps: dict[str, int | None] = {}
        for ph in run_phases:
            prev = _train(_argv(ph, config, arm_dir / ph.name, prev, arm))
            steps[ph.name] = _steps_done(prev)
        assert prev is not None
        cfg = get_config(config, decoder=arm, pretrained=False)
        torch.manual_seed(0)
        cost = model_cost(build_model(cfg), cfg)
        part = cost.parts["RUS_decoder" if arm == "rus" else "bilinear_decoder"]
        results["arms"][arm] = {
            "final": str(prev),
            "train_minutes": round((time.time() - t1) / 60, 1),
            "steps_done": steps,
            "decoder_gflops": part["flops"] / 1e9,
            "decoder_params": part["parameters"],
            "eval": _evaluate_arm(prev, tests, val, limit, val_limit),
        }
        atomic_write_text(out / "ablation.json", json.dumps(results, indent=1))
    table = ablation_table(results)
    atomic_write_text(out / "ablation.json", json.dumps(results, indent=1))
    atomic_write_text(out / "ablation.md", table + "\n")
    if readme:
        _write_readme_block(table)
    return results


def _steps_done(ckpt: Path) -> int | None:
    """Training steps a run's final checkpoint actually took (a time budget can stop it before ``--steps``)."""
    from .checkpoint import read_checkpoint_info

    meta = read_checkpoint_info(ckpt).metadata
    v = meta.get("steps_done", meta.get("steps"))
    return None if v is None else int(v)


def _previous_results(path: Path, now: dict[str, Any]) -> dict[str, Any] | None:
    """``path``'s results when they come from the same recipe, phases, grounding weights and tests; else None."""
    if not path.is_file():
        return None
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    keys = ("recipe", "config", "tests", "val", "limit", "ground", "phases")
    return old if all(old.get(k) == now[k] for k in keys) and isinstance(old.get("arms"), dict) else None


def _write_readme_block(table: str) -> None:
    from ssp_edge.sdk.fsio import atomic_write_text

    from .checkpoint import CHECKPOINT_DIR

    path = CHECKPOINT_DIR / "README.md"
    text = path.read_text()
    begin, end = "<!-- ablation:begin -->", "<!-- ablation:end -->"
    if begin not in text or end not in text:
        raise SSPError(f"{path} has no {begin} ... {end} block to fill")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    atomic_write_text(path, f"{head}{begin}\n{table}\n{end}{tail}")


# ----------------------------------------------------------------------------- superpixel pretraining check


def spixel_check(
    configs: dict[str, SSPConfig], steps: int = 250, eval_scenes: int = 48, data: str = "refshapes2", seed: int = 0
) -> dict[str, Any]:
    """Pretrain each config's superpixel net for ``steps`` SpixelFCN steps (the trainer's own pretraining) and
    measure the loss, boundary recall (2 px) and achievable segmentation accuracy on held-out val scenes."""
    from .data.refshapes import RefShapes
    from .data.refshapes2 import RefShapes2
    from .models.superpixel import achievable_accuracy, boundary_recall, build_superpixel_net, superpixel_labels
    from .train import _to_tensor_batch, pretrain_spixel

    out: dict[str, Any] = {"steps": steps, "eval_scenes": eval_scenes, "data": data}
    for name, cfg in configs.items():
        torch.manual_seed(seed)
        holder = _SpixelHolder(build_superpixel_net(cfg.spixel_net, cfg.spixel_width))
        cls = RefShapes2 if data == "refshapes2" else RefShapes
        hist: list[float] = []
        t0 = time.time()
        pretrain_spixel(
            holder, cfg, steps, seed, scenes=cls("train", size=cfg.input_size), progress=False, history=hist
        )
        sec = time.time() - t0
        net = holder.image.spixel.eval()
        val = cls("val", size=cfg.input_size)
        br, asa, used = [], [], []
        with torch.no_grad():
            for i in range(eval_scenes):
                sc = val.scene(i)
                q = net(_to_tensor_batch(cfg, [sc.image]))
                sp = superpixel_labels(q, cfg.cell)
                sp_full = sp.repeat_interleave(4, 1).repeat_interleave(4, 2)
                gt = torch.from_numpy(sc.instances.astype(np.int64))[None]
                br.append(boundary_recall(sp_full, gt, 2))
                asa.append(achievable_accuracy(sp_full, gt))
                used.append(int(torch.unique(sp).numel()))
        k = max(1, steps // 10)
        out[name] = {
            "cell": cfg.cell,
            "spixel_net": cfg.spixel_net,
            "superpixels": cfg.grid**2,
            "loss_first": round(float(np.mean(hist[:k])), 4),
            "loss_last": round(float(np.mean(hist[-k:])), 4),
            "boundary_recall@2px": round(float(np.mean(br)), 4),
            "ASA": round(float(np.mean(asa)), 4),
            "superpixels_used": round(float(np.mean(used)), 1),
            "seconds": round(sec, 1),
        }
        print(json.dumps({name: out[name]}), flush=True)
    return out


class _SpixelHolder(torch.nn.Module):
    """What :func:`ssp.train.pretrain_spixel` reads of a model (``model.image.spixel``), without the rest."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.image = torch.nn.Module()
        self.image.spixel = net


# ----------------------------------------------------------------------------- training-step times


@_flush_denormals()  # as the trainer (and reset after)
def step_times(
    configs: dict[str, SSPConfig],
    sizes: Sequence[int] = (256, 320),
    steps: int = 6,
    ground: tuple[int, int] = (4, 12),
    full: tuple[int, int] = (4, 4),
) -> dict[str, Any]:
    """Seconds per training step (bf16 autocast, the trainer's step and trainable layers, frozen-text states
    precomputed as the trainer's cache does) for the grounding phase (images x expressions ``ground``) and the
    full model (``full``), per config and input size; wall clock and process CPU seconds."""
    from .models.ssp import build_model
    from .options import TrainOptions
    from .train import Runtime, _set_trainable, _Step, _train_mode, param_groups

    out: dict[str, Any] = {"threads": torch.get_num_threads(), "steps": steps}
    for name, base in configs.items():
        for size in sizes:
            cfg = base.replace(input_size=size, pretrained=False)
            for phase, (imgs, exprs) in (("ground", ground), ("full", full)):
                opt = TrainOptions(ground_only=phase == "ground", images_per_batch=imgs, exprs_per_image=exprs)
                torch.manual_seed(0)
                model = build_model(cfg)
                _set_trainable(model, cfg, opt)
                model = model.to(memory_format=torch.channels_last)  # type: ignore[assignment]
                optim = torch.optim.AdamW(param_groups(model, opt), weight_decay=opt.weight_decay)
                step = _Step(model, cfg, opt, Runtime(torch.device("cpu"), "bf16"), train_exists=True)
                rng = np.random.default_rng(0)
                n = imgs * exprs
                x = torch.from_numpy(rng.standard_normal((imgs, 3, size, size), dtype=np.float32))
                x = x.contiguous(memory_format=torch.channels_last)
                gt = torch.zeros(n, 1, size, size)
                gt[:, :, size // 4 : size // 2, size // 3 : size // 2] = 1
                exists = torch.ones(n)
                ids = torch.from_numpy(rng.integers(1000, 5000, (n, cfg.max_tokens)))
                am = torch.ones(n, cfg.max_tokens, dtype=torch.long)
                with torch.no_grad():
                    hid = model.text.encoder(ids, am)
                index = torch.arange(imgs).repeat_interleave(exprs)
                wall, cpu = [], []
                for i in range(steps + 1):
                    _train_mode(model, cfg, opt)
                    t, c = time.perf_counter(), time.process_time()
                    optim.zero_grad(set_to_none=True)
                    step(x, index, gt, exists, hid, am, None)["total"].backward()
                    optim.step()
                    if i:  # the first step warms up
                        wall.append(time.perf_counter() - t)
                        cpu.append(time.process_time() - c)
                rec = {
                    "images": imgs,
                    "expressions": n,
                    "sec_per_step": round(float(np.median(wall)), 3),
                    "cpu_sec_per_step": round(float(np.median(cpu)), 3),
                    "sec_per_expression": round(float(np.median(wall)) / n, 4),
                }
                out[f"{name}@{size}/{phase}"] = rec
                print(json.dumps({f"{name}@{size}/{phase}": rec, "load": round(os.getloadavg()[0], 2)}), flush=True)
    return out


# ----------------------------------------------------------------------------- command line


def _v1() -> SSPConfig:
    return SSPConfig()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m ssp_edge.ssp.ablation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("decoders", help="train the RUS and bilinear decoders with one recipe and compare them")
    d.add_argument("--out", default="runs/ablation")
    d.add_argument("--recipe", default="v2", choices=list(RECIPES))
    d.add_argument("--config", default="ssp_lite")
    d.add_argument("--tests", nargs="+", default=["refshapes2:test", "refshapes:test"])
    d.add_argument("--val", default="refshapes2:val")
    d.add_argument("--limit", type=int, default=500, help="test samples per set")
    d.add_argument("--val-limit", type=int, default=300, help="validation samples for the thresholds")
    d.add_argument("--ground", default=None, help="reuse this grounding-phase checkpoint instead of training one")
    d.add_argument("--readme", action="store_true", help="write the table into ssp/checkpoints/README.md")
    d.add_argument("--phases", nargs="+", default=None, help="decoder phases each arm runs (default: all)")
    d.add_argument(
        "--arms", nargs="+", default=list(ARMS), choices=ARMS, help="arms to train now (others kept from OUT)"
    )
    r = sub.add_parser("recipe", help="print the recipe's ssp train commands (or run them)")
    r.add_argument("--recipe", default="v2", choices=list(RECIPES))
    r.add_argument("--config", default="ssp_lite")
    r.add_argument("--out", default="runs/v2")
    r.add_argument("--decoder", default=None, choices=("rus", "bilinear"))
    r.add_argument("--run", action="store_true")
    s = sub.add_parser("spixel", help="superpixel pretraining: loss, boundary recall, ASA (v1 net / cell 4 vs v2)")
    s.add_argument("--steps", type=int, default=250)
    s.add_argument("--scenes", type=int, default=48)
    s.add_argument("--data", default="refshapes2", choices=("refshapes", "refshapes2"))
    t = sub.add_parser("steptime", help="training-step seconds of v1 and v2 at 256 and 320 px")
    t.add_argument("--sizes", type=int, nargs="+", default=[256, 320])
    t.add_argument("--steps", type=int, default=6)
    a = p.parse_args(argv)
    try:
        if a.cmd == "decoders":
            res = run_decoder_ablation(
                a.out, a.recipe, a.config, a.tests, a.val, a.limit, a.val_limit, a.ground, a.readme, a.phases, a.arms
            )
            print(ablation_table(res))
        elif a.cmd == "recipe":
            for cmd in recipe_commands(a.recipe, a.config, a.out, a.decoder):
                print("ssp train " + " ".join(map(shlex.quote, cmd)), flush=True)
                if a.run:
                    _train(cmd)
        elif a.cmd == "spixel":
            v2 = get_config("ssp_lite", pretrained=False)
            spixel_check(
                {"v1 net, cell 4": _v1(), "v1 net, cell 8": _v1().replace(cell=8), "v2 net, cell 8": v2},
                a.steps,
                a.scenes,
                a.data,
            )
        else:
            step_times({"v1": _v1(), "v2": get_config("ssp_lite")}, a.sizes, a.steps)
    except SSPError as e:
        print(f"ablation: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
