"""Parity of a bundle's ONNX graphs with PyTorch on real RefShapes inputs (ONNX Runtime CPU), through the SDK's
Segmenter stages.

The reference is the PyTorch model the bundle was exported from as a Segmenter backend
(:class:`ssp_edge.ssp.torch_backend.TorchBackend`); each flavour's graphs run on the SDK's ONNX Runtime backend
(plugin graphs with the NumPy implementations of the ``ssp::`` nodes, :mod:`converter.ort_ops`). Each graph gets the
feeds the Segmenter makes from the same frame and prompts (tokenizer, letterbox; the decoder the reference's
features and prompt encodings); ``end_to_end`` chains the three ONNX graphs through a Segmenter against PyTorch's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from ssp_edge.sdk.bundle import GRAPHS, Bundle
from ssp_edge.sdk.segmenter import Segmenter
from ssp_edge.ssp.data.refshapes import RefShapes
from ssp_edge.ssp.torch_backend import TorchBackend

from .ort_ops import ort_backend

__all__ = ["LOGIT_ATOL", "FEATURE_RTOL", "MIN_AGREEMENT", "CheckRow", "CheckReport", "check_bundle", "decoder_feeds"]

LOGIT_ATOL = 1e-3  # mask_logits / target_logit
FEATURE_RTOL = 1e-3  # other outputs: max |diff| <= FEATURE_RTOL * max(1, max |reference|)
MIN_AGREEMENT = 0.999  # IoU of thresholded masks
_LOGITS = ("mask_logits", "target_logit")  # the decoder outputs held to LOGIT_ATOL


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
        return {
            "bundle": self.bundle,
            "samples": self.samples,
            "expressions": self.expressions,
            "ok": self.ok,
            "results": [asdict(r) for r in self.rows],
        }

    def table(self) -> str:
        lines = [
            f"{'graph':<14} {'flavour':<9} {'max_abs_diff':>12} {'tolerance':>10} {'mask_agreement':>14}  ok",
            "-" * 66,
        ]
        for r in self.rows:
            agr = f"{r.mask_agreement:.5f}" if r.mask_agreement is not None else "-"
            lines.append(
                f"{r.graph:<14} {r.flavour:<9} {r.max_abs_diff:>12.3g} {r.tolerance:>10.3g} {agr:>14}  "
                f"{'yes' if r.ok else 'NO'} ({r.worst_output})"
            )
        lines.append(f"{'all ok' if self.ok else 'FAILED'}: {self.samples} scenes x {self.expressions} expressions")
        return "\n".join(lines)


class _Acc:
    """Running worst tolerance ratio and mask IoU for one (graph, flavour)."""

    def __init__(self) -> None:
        self.diff, self.tol, self.ratio, self.worst = 0.0, LOGIT_ATOL, 0.0, ""
        self.inter, self.union = 0, 0

    def outputs(self, got: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray]) -> None:
        for name, b in ref.items():
            a = got[name]
            d = float(np.max(np.abs(a.astype(np.float64) - b))) if a.size else 0.0
            tol = LOGIT_ATOL if name in _LOGITS else FEATURE_RTOL * max(1.0, float(np.abs(b).max()))
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


def decoder_feeds(
    inputs: tuple[str, ...],
    image_out: dict[str, Any],
    text_out: dict[str, Any],
    attention_mask: np.ndarray,
    frame_index: np.ndarray,
) -> dict[str, Any]:
    """The mask decoder's feeds by name (CONTRACTS.md): inputs named like an image / text encoder output get
    it, ``attention_mask`` the tokenizer's, ``frame_index`` each expression's frame."""
    extra = {"attention_mask": attention_mask, "frame_index": frame_index}
    feeds = {}
    for n in inputs:
        feeds[n] = image_out[n] if n in image_out else text_out[n] if n in text_out else extra[n]
    return feeds


def check_bundle(
    path: str | Path,
    samples: int = 8,
    expressions: int = 3,
    flavours: tuple[str, ...] | None = None,
    progress: bool = True,
    threads: int = 0,
) -> CheckReport:
    """Run every graph of ``path`` in the given flavours (default: all in the manifest) against PyTorch."""
    bundle = Bundle.open(path)
    man = bundle.manifest
    flavours = flavours or tuple(sorted({g.flavour for g in man.graphs if g.precision == "fp32"}))
    ref = Segmenter(bundle, TorchBackend.from_bundle(bundle, threads))
    segs = {f: Segmenter(bundle, ort_backend(bundle, f, threads=threads)) for f in flavours}
    data = RefShapes("test", size=man.input_size)
    thr = float(man.thresholds.get("mask", 0.5))
    thr_logit = float(np.log(thr / (1 - thr)))
    acc = {(g, f): _Acc() for f in flavours for g in (*GRAPHS, "end_to_end")}
    n_expr = 0
    for i in tqdm(range(samples), desc="check", unit="scene", disable=not progress):
        group = data.scene_samples(i, expressions)
        frame = cv2.cvtColor(group[0].image, cv2.COLOR_RGB2BGR)
        prompts = [s.expression for s in group]
        n_expr += len(group)
        # the PyTorch reference through the Segmenter's stages
        enc = ref.encode_prompts(prompts)
        feats = ref.encode_image(frame)
        dec = ref.backend.run("mask_decoder", ref.decoder_feeds(feats, enc))
        text_out = [t.name for t in ref.entries["text_encoder"].outputs]
        refs = {
            "text_encoder": {k: enc.tensors[k] for k in text_out},
            "image_encoder": feats.tensors,
            "mask_decoder": dec,
        }
        for f, seg in segs.items():
            feeds = {
                "text_encoder": seg.text_feeds(prompts),
                "image_encoder": seg.image_feeds(frame)[0],
                "mask_decoder": seg.decoder_feeds(feats, enc),
            }  # the reference's features and encodings
            for g in GRAPHS:
                out = seg.backend.run(g, feeds[g])
                acc[(g, f)].outputs(out, refs[g])
                if g == "mask_decoder":
                    acc[(g, f)].masks(out["mask_logits"], dec["mask_logits"], thr_logit)
            # the three ONNX graphs chained by the Segmenter
            seg.clear_cache()
            out = seg.backend.run(
                "mask_decoder", seg.decoder_feeds(seg.encode_image(frame), seg.encode_prompts(prompts))
            )
            acc[("end_to_end", f)].outputs(out, {k: dec[k] for k in _LOGITS})
            acc[("end_to_end", f)].masks(out["mask_logits"], dec["mask_logits"], thr_logit)
    for s in (ref, *segs.values()):
        s.close()
    rows = [
        acc[(g, f)].row(g, f, g in ("mask_decoder", "end_to_end")) for f in flavours for g in (*GRAPHS, "end_to_end")
    ]
    return CheckReport(str(path), samples, n_expr, rows)
