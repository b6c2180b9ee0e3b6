"""Parity of a bundle's ONNX graphs with PyTorch on real RefShapes inputs (ONNX Runtime CPU).

Portable graphs run on plain ONNX Runtime; plugin graphs run with the NumPy implementations of the
``ssp::`` nodes (:mod:`converter.ort_ops`). Each graph gets the same inputs as its PyTorch part;
``end_to_end`` chains the three ONNX graphs (text -> image -> decoder) against the full PyTorch model.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ssp_edge.sdk.bundle import GRAPHS, Bundle
from ssp_edge.sdk.preprocess import letterbox, normalize, pad_value
from ssp_edge.ssp.data.refshapes import RefShapes
from ssp_edge.ssp.models.graphs import graph_io, graph_modules, run_graph
from ssp_edge.ssp.models.text import Tokenizer

from .ort_ops import make_session
from .source import load_manifest_source

__all__ = ["LOGIT_ATOL", "FEATURE_RTOL", "MIN_AGREEMENT", "CheckRow", "CheckReport", "check_bundle", "decoder_feeds"]

LOGIT_ATOL = 1e-3  # mask_logits / target_logit
FEATURE_RTOL = 1e-3  # other outputs: max |diff| <= FEATURE_RTOL * max(1, max |reference|)
MIN_AGREEMENT = 0.999  # IoU of thresholded masks


@dataclass
class CheckRow:
    graph: str
    flavour: str
    max_abs_diff: float
    tolerance: float
    worst_output: str
    mask_agreement: float | None  # mask_decoder and end_to_end only
    ok: bool


@dataclass
class CheckReport:
    bundle: str
    samples: int
    expressions: int
    rows: list[CheckRow]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": self.bundle, "samples": self.samples, "expressions": self.expressions, "ok": self.ok,
                "results": [asdict(r) for r in self.rows]}

    def table(self) -> str:
        lines = [f"{'graph':<14} {'flavour':<9} {'max_abs_diff':>12} {'tolerance':>10} {'mask_agreement':>14}  ok",
                 "-" * 66]
        for r in self.rows:
            agr = f"{r.mask_agreement:.5f}" if r.mask_agreement is not None else "-"
            lines.append(f"{r.graph:<14} {r.flavour:<9} {r.max_abs_diff:>12.3g} {r.tolerance:>10.3g} {agr:>14}  "
                         f"{'yes' if r.ok else 'NO'} ({r.worst_output})")
        lines.append(f"{'all ok' if self.ok else 'FAILED'}: {self.samples} scenes x {self.expressions} expressions")
        return "\n".join(lines)


class _Acc:
    """Running worst tolerance ratio and mask IoU for one (graph, flavour)."""

    def __init__(self) -> None:
        self.diff, self.tol, self.ratio, self.worst = 0.0, LOGIT_ATOL, 0.0, ""
        self.inter, self.union = 0, 0

    def outputs(self, names, got, ref) -> None:
        for name, a, b in zip(names, got, ref):
            d = float(np.max(np.abs(a.astype(np.float64) - b))) if a.size else 0.0
            tol = LOGIT_ATOL if name in ("mask_logits", "target_logit") else FEATURE_RTOL * max(1.0, float(np.abs(b).max()))
            if d / tol >= self.ratio:
                self.diff, self.tol, self.ratio, self.worst = d, tol, d / tol, name

    def masks(self, got_logits: np.ndarray, ref_logits: np.ndarray, thr_logit: float) -> None:
        a, b = got_logits > thr_logit, ref_logits > thr_logit
        self.inter += int((a & b).sum())
        self.union += int((a | b).sum())

    def row(self, graph: str, flavour: str, with_masks: bool) -> CheckRow:
        agr = (self.inter / self.union if self.union else 1.0) if with_masks else None
        ok = self.ratio <= 1.0 and (agr is None or agr >= MIN_AGREEMENT)
        if graph == "end_to_end":  # chained graphs: only the thresholded masks must agree
            ok = agr is not None and agr >= MIN_AGREEMENT
        return CheckRow(graph, flavour, self.diff, self.tol, self.worst, agr, ok)


def decoder_feeds(inputs: tuple[str, ...], image_out: dict[str, Any], text_out: dict[str, Any],
                  attention_mask: np.ndarray, frame_index: np.ndarray) -> dict[str, Any]:
    """The mask decoder's feeds by name (CONTRACTS.md): inputs named like an image / text encoder output get
    it, ``attention_mask`` the tokenizer's, ``frame_index`` each expression's frame."""
    extra = {"attention_mask": attention_mask, "frame_index": frame_index}
    feeds = {}
    for n in inputs:
        feeds[n] = image_out[n] if n in image_out else text_out[n] if n in text_out else extra[n]
    return feeds


def _run(modules: dict[str, torch.nn.Module], graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = run_graph(modules[graph], graph, {k: torch.from_numpy(v) for k, v in feeds.items()})
    return {k: v.numpy() for k, v in out.items()}


def check_bundle(path: str | Path, samples: int = 8, expressions: int = 3, flavours: tuple[str, ...] | None = None,
                 progress: bool = True) -> CheckReport:
    """Run every graph of ``path`` in the given flavours (default: all in the manifest) against PyTorch."""
    bundle = Bundle.open(path)
    man = bundle.manifest
    src = load_manifest_source(man)
    modules = graph_modules(src.model)
    flavours = flavours or tuple(sorted({g.flavour for g in man.graphs if g.precision == "fp32"}))
    sessions = {(g, f): make_session(bundle.path(bundle.graph(g, f).file)) for f in flavours for g in GRAPHS}
    tok = Tokenizer(man.max_tokens, bundle.path(man.tokenizer))
    data = RefShapes("test", size=man.input_size)
    thr = float(man.thresholds.get("mask", 0.5))
    thr_logit = float(np.log(thr / (1 - thr)))
    acc = {(g, f): _Acc() for f in flavours for g in (*GRAPHS, "end_to_end")}
    pad = pad_value(man.mean)
    n_expr = 0
    for i in tqdm(range(samples), desc="check", unit="scene", disable=not progress):
        group = data.scene_samples(i, expressions)
        lb_im, _ = letterbox(group[0].image, man.input_size, pad)  # type: ignore[arg-type]
        image = normalize(lb_im, man.mean, man.std)[None]
        t = tok([s.expression for s in group])
        ids, am = t.input_ids.numpy(), t.attention_mask.numpy()
        n_expr += len(group)
        gio = graph_io(src.cfg)
        feeds = {"text_encoder": {"input_ids": ids, "attention_mask": am}, "image_encoder": {"image": image}}
        with torch.no_grad():
            text_out = _run(modules, "text_encoder", feeds["text_encoder"])
            image_out = _run(modules, "image_encoder", feeds["image_encoder"])
            feeds["mask_decoder"] = decoder_feeds(gio["mask_decoder"].inputs, image_out, text_out, am,
                                                  np.zeros(len(group), np.int64))
            dec_out = _run(modules, "mask_decoder", feeds["mask_decoder"])
        refs = {"text_encoder": text_out, "image_encoder": image_out, "mask_decoder": dec_out}
        dec = [dec_out["mask_logits"], dec_out["target_logit"]]
        for f in flavours:
            for g in GRAPHS:
                names = list(gio[g].outputs)
                out = sessions[(g, f)].run(names, feeds[g])
                acc[(g, f)].outputs(names, out, [refs[g][n] for n in names])
                if g == "mask_decoder":
                    acc[(g, f)].masks(out[0], dec[0], thr_logit)
            # chained ONNX graphs, fed by name as the runtime feeds them
            te = dict(zip(gio["text_encoder"].outputs, sessions[("text_encoder", f)].run(
                list(gio["text_encoder"].outputs), feeds["text_encoder"])))
            ie = dict(zip(gio["image_encoder"].outputs, sessions[("image_encoder", f)].run(
                list(gio["image_encoder"].outputs), feeds["image_encoder"])))
            out = sessions[("mask_decoder", f)].run(
                ["mask_logits", "target_logit"],
                decoder_feeds(gio["mask_decoder"].inputs, ie, te, am, np.zeros(len(group), np.int64)))
            acc[("end_to_end", f)].outputs(("mask_logits", "target_logit"), out, dec)
            acc[("end_to_end", f)].masks(out[0], dec[0], thr_logit)
    rows = [acc[(g, f)].row(g, f, g in ("mask_decoder", "end_to_end")) for f in flavours
            for g in (*GRAPHS, "end_to_end")]
    return CheckReport(str(path), samples, n_expr, rows)
