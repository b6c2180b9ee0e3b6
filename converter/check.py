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
from ssp_edge.ssp.data.refshapes import RefShapes
from ssp_edge.sdk.preprocess import letterbox, normalize, pad_value
from ssp_edge.ssp.models.graphs import GRAPH_IO
from ssp_edge.ssp.models.ssp import IMAGE_FEATURES
from ssp_edge.ssp.models.text import Tokenizer

from .ort_ops import make_session
from .source import load_manifest_source

__all__ = ["LOGIT_ATOL", "FEATURE_RTOL", "MIN_AGREEMENT", "CheckRow", "CheckReport", "check_bundle"]

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


def check_bundle(path: str | Path, samples: int = 8, expressions: int = 3, flavours: tuple[str, ...] | None = None,
                 progress: bool = True) -> CheckReport:
    """Run every graph of ``path`` in the given flavours (default: all in the manifest) against PyTorch."""
    bundle = Bundle.open(path)
    man = bundle.manifest
    src = load_manifest_source(man)
    model = src.model
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
        with torch.no_grad():
            words, sent = (v.numpy() for v in model.text(t.input_ids, t.attention_mask))
            feats = [v.numpy() for v in model.image(torch.from_numpy(image))]
            dec = [v.numpy() for v in model.decoder(*map(torch.from_numpy, feats), torch.from_numpy(words),
                                                    t.attention_mask, torch.from_numpy(sent))]
        feeds = {"text_encoder": {"input_ids": ids, "attention_mask": am}, "image_encoder": {"image": image},
                 "mask_decoder": {**dict(zip(IMAGE_FEATURES, feats)), "words": words, "attention_mask": am,
                                  "sentence": sent}}
        refs = {"text_encoder": [words, sent], "image_encoder": feats, "mask_decoder": dec}
        for f in flavours:
            for g in GRAPHS:
                out = sessions[(g, f)].run(list(GRAPH_IO[g].outputs), feeds[g])
                acc[(g, f)].outputs(GRAPH_IO[g].outputs, out, refs[g])
                if g == "mask_decoder":
                    acc[(g, f)].masks(out[0], dec[0], thr_logit)
            # chained ONNX graphs
            w, s = sessions[("text_encoder", f)].run(None, feeds["text_encoder"])
            fe = sessions[("image_encoder", f)].run(list(IMAGE_FEATURES), feeds["image_encoder"])
            out = sessions[("mask_decoder", f)].run(
                ["mask_logits", "target_logit"],
                {**dict(zip(IMAGE_FEATURES, fe)), "words": w, "attention_mask": am, "sentence": s})
            acc[("end_to_end", f)].outputs(("mask_logits", "target_logit"), out, dec)
            acc[("end_to_end", f)].masks(out[0], dec[0], thr_logit)
    rows = [acc[(g, f)].row(g, f, g in ("mask_decoder", "end_to_end")) for f in flavours
            for g in (*GRAPHS, "end_to_end")]
    return CheckReport(str(path), samples, n_expr, rows)
