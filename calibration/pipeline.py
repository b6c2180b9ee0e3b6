"""`ssp calibrate`: INT8 (explicit Q/DQ) and FP16 graphs for a bundle, with an accuracy / error / latency
report, in typed stages (:mod:`calibration.stages`):

1. **Statistics** (:func:`collect_statistics` -> :class:`~calibration.stages.Statistics`). Calibration frames
   (:mod:`calibration.data`) are preprocessed exactly as the SDK does (letterbox, normalise), their expressions
   tokenized with the bundle's tokenizer. The FP32 text encoder gives words / sentence; the FP32 image encoder, run
   with every tensor either INT8 plan needs as an extra output, gives the frame's features *and* its activation
   statistics; the FP32 mask decoder then runs on those features with the frame's K expressions (batch-1 image
   features, as the SDK runs it) and collects its statistics. One streaming pass, nothing kept per sample
   (:mod:`calibration.stats`) but the first frames' feeds for the sensitivity pass.
2. **Sensitivity** (:func:`measure_sensitivity` -> :class:`~calibration.stages.Sensitivity`). Each Conv / Gemm /
   MatMul is fake-quantized alone (TensorRT's symmetric int8) and the change of the mask probabilities measured end
   to end, and so is each group of nodes of one kind (:mod:`calibration.sensitivity`).
3. **Plan** (:func:`plan_int8` -> :class:`~calibration.stages.QuantPlan`). Unless ``--exclude`` is given, a group
   that hurts more than ``group_ratio`` times any other group of its graph (on ssp_lite: the attention products of
   the mask decoder) and then the ``keep_fp32`` worst nodes of each graph stay in float, in every INT8 graph:
   * the **TensorRT plan** (``qdq_plan: "tensorrt"``; :mod:`calibration.qdq`): symmetric int8 Q/DQ on every other
     Conv / Gemm / MatMul, for both flavours (the plugin flavour's ``*.plugin.int8.onnx``, the portable flavour's
     ``*.portable.int8.trtplan.onnx``), what ``ssp convert build --precision int8`` builds;
   * the **ONNX Runtime plan** (``qdq_plan: "onnxruntime"``; :mod:`calibration.ort_int8`): the portable graph in
     ONNX Runtime's U8S8 format with the int8 region its CPU kernels speed up, what the SDK's ``precision="int8"``
     runs on ONNX Runtime (``*.portable.int8.onnx``).
   The graphs are then written (:func:`write_int8`, FP16: :func:`write_fp16`, :mod:`calibration.fp16`); every one
   passes the ONNX checker, the TensorRT plan TensorRT's Q/DQ rules (:func:`calibration.qdq.qdq_violations`), the
   ONNX Runtime plan the U8S8 checks (:func:`calibration.ort_int8.u8s8_violations`). The text encoder stays FP32 in
   INT8 mode: it runs once per new prompt and is cached.
4. **Measurement** (:func:`measure` -> :class:`~calibration.stages.Measurement`) on a held-out set disjoint from
   the calibration frames: mIoU / oIoU / Prec@X for FP32, FP16 and INT8 through ``sdk.Segmenter`` on ONNX Runtime
   CPU (and the TensorRT plan through the same pipeline), per-graph output error against FP32, ONNX Runtime CPU
   latency FP32 vs INT8 (vs FP16) with ``--prompts`` expressions, interleaved.
5. **Commit** (:mod:`calibration.commit`): built in a staging folder beside the bundle, moved in under unused names,
   manifest saved atomically, replaced graphs deleted; killed at any point, the bundle opens and verifies.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
from tqdm import tqdm

from ssp_edge.sdk.bundle import Bundle, GraphEntry
from ssp_edge.sdk.preprocess import Letterbox
from ssp_edge.sdk.segmenter import ImageFeatures, PromptEncodings, Segmenter

from .commit import REPORT_DIR, CalibrationResult, commit, staged_bundle, staging
from .data import EvalSet, FrameSet, default_specs, open_eval, open_frames
from .errors import CalibrationError, CalibrationWarning
from .ort_int8 import ORT_PLAN, plan_nodes, quantize_ort, range_tensors, u8s8_violations
from .qdq import QuantNode, find_quant_nodes, match_excludes, qdq_violations, quantize_model, range_keys
from .stages import (
    QUANT_GRAPHS,
    GraphPlan,
    GroupSensitivity,
    KeptFrame,
    Measurement,
    QuantPlan,
    Sensitivity,
    Statistics,
)
from .stats import METHODS, RangeCollector

__all__ = [
    "CalibrateOptions",
    "CalibrationResult",
    "calibrate_bundle",
    "REPORT_DIR",
    "collect_statistics",
    "measure_sensitivity",
    "plan_int8",
    "write_int8",
    "write_fp16",
    "measure",
]

#: the TensorRT plan of each flavour's graphs (the plugin flavour has no other INT8 graph)
TRT_PLAN = "tensorrt"
#: the portable flavour's INT8 graph in TensorRT's plan (GraphEntry.qdq_plan "tensorrt"), for TensorRT builds
TRT_PLAN_FILE = "{base}.trtplan.onnx"
#: a group is kept float for its ratio only if it changes the mask probabilities by at least this much (mean
#: absolute change): on ssp_lite the mask decoder's attention products measure 3.9e-2 (kept float), the image
#: encoder's convolutions 1.0e-3 (2.3x its depthwise group, but int8 there left mIoU unchanged on 300 samples;
#: keeping them float made the INT8 image encoder as slow as FP32)
_GROUP_FLOOR = 5e-3


@dataclass
class CalibrateOptions:
    data: str | None = None  # None: the val split of the bundle's training-data family (data.default_specs)
    method: str = "entropy"  # TensorRT plan ranges
    samples: int = 512  # calibration frames
    prompts: int = 2  # expressions per frame (the decoder's batch)
    seed: int = 0
    percentile: float = 99.99
    exclude: list[str] | None = None  # None: the sensitivity pass decides
    keep_fp32: int = 3  # per graph, when exclude is None
    group_ratio: float = 2.0  # a node group whose error is this many times every other group's stays float (0: off)
    sensitivity_samples: int = 8  # frames; 0 skips the pass
    sensitivity_candidates: int = 12  # per graph: nodes (worst local error) measured end to end
    min_intensity: float = 48.0  # ONNX Runtime plan: an int8 node between float nodes needs this many MACs / element
    fp16: bool = True
    int8: bool = True
    eval_data: str | None = None  # None: that family's test split
    eval_samples: int = 500  # 0 skips the accuracy evaluation
    error_samples: int = 8
    trt_plan_eval: bool = True  # also evaluate the INT8 plan of the TensorRT (plugin) graphs
    latency_runs: int = 20
    threads: int = 0  # ONNX Runtime intra-op threads for the accuracy runs (0: its default)
    progress: bool = True
    ort_method: str = "minmax"  # ONNX Runtime (U8S8) plan ranges


# ----------------------------------------------------------------------------- helpers


def _check_options(o: CalibrateOptions) -> None:
    for name in ("method", "ort_method"):
        if getattr(o, name) not in METHODS:
            raise CalibrationError(
                f"--{name.replace('_', '-')} {getattr(o, name)!r}: choose one of {', '.join(METHODS)}"
            )
    if not 0 < o.percentile <= 100:
        raise CalibrationError(f"--percentile must be in (0, 100], got {o.percentile}")
    for name in ("keep_fp32", "sensitivity_samples", "sensitivity_candidates", "eval_samples", "error_samples"):
        if getattr(o, name) < 0:
            raise CalibrationError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(o, name)}")
    if o.latency_runs < 1:
        raise CalibrationError(f"--latency-runs must be at least 1, got {o.latency_runs}")
    if o.min_intensity < 0:
        raise CalibrationError(f"--min-intensity must be 0 or more, got {o.min_intensity}")
    if not (o.fp16 or o.int8):
        raise CalibrationError("nothing to do: both --no-int8 and --no-fp16 were given")
    if importlib.util.find_spec("matplotlib") is None:  # report.png needs it: fail before the long run
        raise CalibrationError("ssp calibrate draws its report with matplotlib: pip install 'ssp-edge[calibrate]'")


def _flavours(bundle: Bundle) -> list[str]:
    fl = [f for f in ("portable", "plugin") if all(bundle.has_graph(g, f, "fp32") for g in QUANT_GRAPHS)]
    if "portable" not in fl:
        raise CalibrationError(
            f"bundle {str(bundle.root)!r} has no portable FP32 image_encoder / mask_decoder, "
            "which calibration runs on ONNX Runtime; re-export with `ssp convert export "
            "--flavour both`"
        )
    if not bundle.has_graph("text_encoder", "portable", "fp32"):
        raise CalibrationError(
            f"bundle {str(bundle.root)!r} has no text_encoder graph; re-export it with `ssp convert export`"
        )
    return fl


def _bar(total: int, desc: str, unit: str, on: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, disable=not on, leave=False, dynamic_ncols=True)


def _session(model: Path | str | onnx.ModelProto, threads: int = 0):
    """An ONNX Runtime CPU session for a graph of either flavour (plugin graphs: the converter's ``ssp::`` ops)."""
    from ssp_edge.converter.ort_ops import make_session

    return make_session(model.SerializeToString() if isinstance(model, onnx.ModelProto) else model, threads)


def _load(bundle: Bundle, graph: str, flavour: str) -> onnx.ModelProto:
    return onnx.load_model_from_string(bundle.read_bytes(bundle.graph(graph, flavour, "fp32").file))


class Feeder:
    """The SDK's own stages on ONNX Runtime FP32 (letterbox, tokenizer, text and image encoders): calibration feeds
    every graph exactly as the runtime does, by the manifest's tensor names."""

    def __init__(self, bundle: Bundle, threads: int = 0):
        self.seg = Segmenter.open(bundle, backend="onnxruntime", precision="fp32", threads=threads)
        self.max_tokens = bundle.manifest.max_tokens
        self.truncated: list[str] = []

    def image(self, rgb: np.ndarray) -> tuple[dict[str, np.ndarray], tuple[Letterbox, ...]]:
        """The image encoder's feeds for an RGB frame, and its letterbox."""
        return self.seg.image_feeds(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def prompts(self, expressions: Sequence[str]) -> PromptEncodings:
        """The FP32 text encoder's encodings (truncated expressions are counted, not warned one by one)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            enc = self.seg.encode_prompts(list(expressions))
        self.truncated += [e for e, c in zip(enc.prompts, enc.truncated) if c]
        return enc

    def decoder_feeds(
        self, features: dict[str, np.ndarray], letterboxes: tuple[Letterbox, ...], enc: PromptEncodings
    ) -> dict[str, np.ndarray]:
        """The mask decoder's feeds for one frame's image-encoder outputs and its prompts."""
        return self.seg.decoder_feeds(ImageFeatures(features, letterboxes), enc)


# ----------------------------------------------------------------------------- main entry


def calibrate_bundle(path: str | os.PathLike[str], opts: CalibrateOptions | None = None) -> CalibrationResult:
    """Run calibration on the bundle at ``path`` (see the module docstring); raises CalibrationError /
    BundleError / SSPError (one-line, user-facing) for bad input, leaving the bundle unchanged."""
    o = opts or CalibrateOptions()
    _check_options(o)
    t_start = time.time()
    bundle = Bundle.open(path)
    flavours = _flavours(bundle)
    cal_spec, eval_spec = default_specs(bundle.manifest.source)
    o = dataclasses.replace(o, data=o.data or cal_spec, eval_data=o.eval_data or eval_spec)
    frames = open_frames(o.data, o.samples, o.prompts, o.seed)
    evalset = open_eval(o.eval_data, o.eval_samples, frames.keys) if o.eval_samples else None
    root = bundle.root.resolve()
    with staging(root) as stage:
        timings: dict[str, float] = {}
        feeder = Feeder(bundle, o.threads)
        models = {g: _load(bundle, g, "portable") for g in QUANT_GRAPHS}
        nodes = {g: find_quant_nodes(models[g]) for g in QUANT_GRAPHS}
        if o.exclude is not None:
            excluded_nodes(nodes, Sensitivity(), o)  # an unknown --exclude pattern fails now, not after the statistics

        t0 = time.time()
        stats = collect_statistics(models, nodes, frames, feeder, o)
        timings["statistics"] = round(time.time() - t0, 1)
        if stats.truncated:
            warnings.warn(
                f"{len(stats.truncated)} calibration expression(s) are longer than {feeder.max_tokens} "
                f"tokens and were truncated, e.g. {stats.truncated[0][:80]!r}",
                CalibrationWarning,
                stacklevel=2,
            )

        t0 = time.time()
        sens = (
            measure_sensitivity(models, nodes, stats, feeder, o) if o.sensitivity_samples and o.int8 else Sensitivity()
        )
        timings["sensitivity"] = round(time.time() - t0, 1)

        t0 = time.time()
        plan = plan_int8(bundle, flavours, nodes, sens, stats, o)
        entries = write_int8(bundle, plan, stats, stage) if o.int8 else []
        if o.fp16:
            entries += write_fp16(bundle, flavours, stage)
        timings["graphs"] = round(time.time() - t0, 1)
        timings["calibration_total"] = round(time.time() - t_start, 1)

        staged = staged_bundle(bundle, stage, entries)  # the original files linked, the new ones beside them
        result = measure(staged, entries, evalset, feeder, o, timings)
        timings["total"] = round(time.time() - t_start, 1)

        from .report import write_report

        report: dict[str, Any] = {"bundle": str(root), "options": asdict(o), "timings_s": timings}
        for part in (stats.to_report(), plan.to_report(), sens.to_report(), result.to_report()):
            report.update(part)
        rep_files = write_report(stage / REPORT_DIR, report)
        from .evaluate import accuracy_record

        return commit(bundle, stage, entries, rep_files, report, accuracy_record(staged, result.accuracy))


# ----------------------------------------------------------------------------- 1. statistics


def collect_statistics(
    models: dict[str, onnx.ModelProto],
    nodes: dict[str, list[QuantNode]],
    frames: FrameSet,
    feeder: Feeder,
    o: CalibrateOptions,
) -> Statistics:
    """One pass over the frames: ranges of the TensorRT plan's range-key tensors and of every tensor the ONNX Runtime
    plan can quantize (its plan before any node is kept float: a superset); the first frames' feeds kept."""
    rk = {g: range_keys(models[g], nodes[g]) for g in QUANT_GRAPHS}
    want = {
        g: list(dict.fromkeys([*rk[g], *range_tensors(models[g], plan_nodes(models[g], {}, o.min_intensity))]))
        for g in QUANT_GRAPHS
    }
    enc = RangeCollector(models["image_encoder"], want["image_encoder"], o.threads)
    dec = RangeCollector(models["mask_decoder"], want["mask_decoder"], o.threads)
    kept: list[KeptFrame] = []
    expressions = 0
    bar = _bar(len(frames), f"calibrate ({o.method} statistics)", "frame", o.progress)
    try:
        for i, fr in enumerate(frames):
            feeds, lbs = feeder.image(fr.image)
            prompts = feeder.prompts(fr.expressions)
            dec.run(feeder.decoder_feeds(enc.run(feeds), lbs, prompts))
            expressions += len(fr.expressions)
            if i < o.sensitivity_samples:
                kept.append(KeptFrame(feeds, lbs, prompts))
            bar.update(1)
    finally:
        bar.close()
    cols = {"image_encoder": enc, "mask_decoder": dec}
    return Statistics(
        method=o.method,
        percentile=o.percentile,
        data=frames.spec,
        frames=len(frames),
        available_frames=frames.available,
        prompts_per_frame=o.prompts,
        expressions=expressions,
        seed=o.seed,
        tensors={g: c.ranges(o.method, o.percentile) for g, c in cols.items()},
        range_keys=rk,
        truncated=list(feeder.truncated),
        kept=kept,
        ort_method=o.ort_method,
        ort_tensors={g: c.ranges(o.ort_method, o.percentile) for g, c in cols.items()},
    )


# ----------------------------------------------------------------------------- 2. sensitivity


def measure_sensitivity(
    models: dict[str, onnx.ModelProto],
    nodes: dict[str, list[QuantNode]],
    stats: Statistics,
    feeder: Feeder,
    o: CalibrateOptions,
) -> Sensitivity:
    """Per graph: the end-to-end mask error of each node group (all its nodes quantized at once), the local error of
    every node, and the end-to-end error of the ``sensitivity_candidates`` nodes with the largest local error, one at
    a time (see :mod:`calibration.sensitivity`)."""
    from .sensitivity import NodeSensitivity, SwitchRunner, local_errors, mask_prob_mae, node_groups, rank

    frames = stats.kept
    if not frames:
        return Sensitivity()
    ranges = stats.amax()
    enc_fp32 = _session(models["image_encoder"])
    dec_fp32 = _session(models["mask_decoder"])
    feat_names = [x.name for x in enc_fp32.get_outputs()]
    dec_out = [x.name for x in dec_fp32.get_outputs()]
    batch = {n: np.concatenate([f.image[n] for f in frames]) for n in frames[0].image}  # the image encoder's feeds

    def per_frame(feats: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """The decoder feeds of each frame from a batch of image-encoder outputs (in ``feat_names`` order)."""
        return [
            feeder.decoder_feeds({n: v[k : k + 1] for n, v in zip(feat_names, feats)}, f.letterboxes, f.prompts)
            for k, f in enumerate(frames)
        ]

    dec_feeds = per_frame(enc_fp32.run(feat_names, batch))
    ref_logits = [dec_fp32.run(dec_out, f)[0] for f in dec_feeds]

    def score(g: str, runner, on: Sequence[int]) -> float:
        if g == "image_encoder":
            errs = [
                mask_prob_mae(dec_fp32.run(dec_out, f)[0], ref_logits[k])
                for k, f in enumerate(per_frame(runner.run(batch, on)))
            ]
        else:
            errs = [mask_prob_mae(runner.run(f, on)[0], ref_logits[k]) for k, f in enumerate(dec_feeds)]
        return float(np.mean(errs))

    m = max(o.sensitivity_candidates, o.keep_fp32)
    cands = {g: min(m, len(nodes[g])) for g in QUANT_GRAPHS}
    groups = {g: node_groups(nodes[g]) for g in QUANT_GRAPHS}
    bar = _bar(sum(len(v) + 1 for v in groups.values()) + 2 + sum(cands.values()), "sensitivity", "step", o.progress)
    res: dict[str, list[NodeSensitivity]] = {}
    gres: dict[str, list[GroupSensitivity]] = {}
    try:
        for g in QUANT_GRAPHS:  # groups, and everything at once, through one switchable model of all nodes
            runner = SwitchRunner(models[g], nodes[g], ranges)
            rows = []
            for name, idx in groups[g].items():
                rows.append(GroupSensitivity(g, name, len(idx), [nodes[g][j].key for j in idx], score(g, runner, idx)))
                bar.update(1)
            gres[g] = sorted(rows, key=lambda r: -r.mask_prob_mae)
            gres[g].append(GroupSensitivity(g, "all", len(nodes[g]), [], score(g, runner, range(len(nodes[g])))))
            bar.update(1)
            del runner
        for g, feeds in (("image_encoder", [batch]), ("mask_decoder", dec_feeds)):
            loc = local_errors(models[g], nodes[g], ranges, feeds)
            res[g] = [NodeSensitivity(g, q.name, q.op_type, q.key, e) for q, e in zip(nodes[g], loc)]
            bar.update(1)
        for g in QUANT_GRAPHS:
            order = sorted(range(len(nodes[g])), key=lambda j: -res[g][j].local)[: cands[g]]
            if not order:
                continue
            runner = SwitchRunner(models[g], [nodes[g][j] for j in order], ranges)
            for c, j in enumerate(order):
                res[g][j].score = score(g, runner, [c])
                bar.update(1)
    finally:
        bar.close()
    return Sensitivity({g: rank(v) for g, v in res.items()}, gres)


# ----------------------------------------------------------------------------- 3. plan and graphs


def excluded_nodes(
    nodes: dict[str, list[QuantNode]], sens: Sensitivity, o: CalibrateOptions
) -> dict[str, dict[str, str]]:
    """Per graph: node key -> why it stays float in every INT8 graph (``--exclude``, or the group rule and the
    ``keep_fp32`` most sensitive nodes)."""
    out: dict[str, dict[str, str]] = {g: {} for g in QUANT_GRAPHS}
    if o.exclude is not None:
        unused = set(o.exclude)
        for g in QUANT_GRAPHS:
            hit, miss = match_excludes(nodes[g], o.exclude)
            unused &= set(miss)
            for q in nodes[g]:
                if q.name in hit:
                    out[g][q.key] = "--exclude"
        if unused:
            example = ", ".join(q.name for q in nodes["mask_decoder"][:2])
            raise CalibrationError(
                f"--exclude {sorted(unused)[0]!r} matches no Conv/Gemm/MatMul node of "
                f"image_encoder or mask_decoder; give a node name (e.g. {example}), a weight "
                "name (e.g. 'backbone.blocks.0.*'), an op type (Conv, Gemm, MatMul) or "
                "'depthwise'"
            )
        return out
    for g in QUANT_GRAPHS:
        rows = [r for r in sens.groups.get(g, []) if r.keys]
        for row in rows:
            others = [r.mask_prob_mae for r in rows if r is not row]
            worst_other = max(others) if others else None
            if (
                o.group_ratio > 0
                and worst_other is not None
                and row.mask_prob_mae >= _GROUP_FLOOR
                and row.mask_prob_mae > o.group_ratio * worst_other
            ):
                for k in row.keys:
                    out[g][k] = (
                        f"group {row.group!r} (mask prob. MAE {row.mask_prob_mae:.2e}, "
                        f"{row.mask_prob_mae / worst_other:.1f}x the next group)"
                    )
        ranked = [s for s in sens.nodes.get(g, []) if s.key not in out[g] and s.score]
        for s in ranked[: o.keep_fp32]:
            out[g][s.key] = f"sensitivity (mask prob. MAE {s.score:.2e})"
    return out


def plan_int8(
    bundle: Bundle,
    flavours: Sequence[str],
    nodes: dict[str, list[QuantNode]],
    sens: Sensitivity,
    stats: Statistics,
    o: CalibrateOptions,
) -> QuantPlan:
    """Which nodes run in int8 in each INT8 graph: the TensorRT plan of every flavour and the portable flavour's ONNX
    Runtime plan, both without the nodes kept float for accuracy."""
    from ssp_edge.converter.export import graph_file

    excluded = excluded_nodes(nodes, sens, o)
    plan = QuantPlan(excluded)
    if not o.int8:
        return plan
    amax = stats.amax()
    for g in QUANT_GRAPHS:
        for fl in flavours:
            fl_nodes = nodes[g] if fl == "portable" else find_quant_nodes(_load(bundle, g, fl))
            keep = {q.name: excluded[g][q.key] for q in fl_nodes if q.key in excluded[g]}
            for q in fl_nodes:
                if q.name not in keep and not all((amax.get(f"{q.key}:in{i}") or 0) > 0 for i in q.act_inputs):
                    keep[q.name] = "no calibrated range (the tensor was all zero)"
            file = graph_file(g, fl, "int8")
            if fl == "portable":
                file = TRT_PLAN_FILE.format(base=file[: -len(".onnx")])
            plan.graphs.append(
                GraphPlan(g, fl, TRT_PLAN, file, len(fl_nodes), [q.name for q in fl_nodes if q.name not in keep], keep)
            )
        model = _load(bundle, g, "portable")
        ort = plan_nodes(model, {q.name: excluded[g][q.key] for q in nodes[g] if q.key in excluded[g]}, o.min_intensity)
        plan.graphs.append(
            GraphPlan(
                g,
                "portable",
                ORT_PLAN,
                graph_file(g, "portable", "int8"),
                len(nodes[g]),
                list(ort.compute),
                dict(ort.kept_float),
                ort,
            )
        )
    return plan


def _graph_entry(
    graph: str, flavour: str, precision: str, file: str, m: onnx.ModelProto, qdq_plan: str | None = None
) -> GraphEntry:
    from ssp_edge.converter.export import custom_op_counts, tensor_specs

    return GraphEntry(
        graph,
        flavour,
        precision,
        file,
        tensor_specs(m.graph.input),
        tensor_specs(m.graph.output),
        custom_op_counts(m),
        qdq_plan,
    )


def _check(m: onnx.ModelProto, what: str) -> None:
    from ssp_edge.converter.schemas import register_schemas

    register_schemas()
    try:
        onnx.checker.check_model(m, full_check=True)
    except Exception as e:  # an internal error, not bad input: keep the traceback
        raise RuntimeError(f"{what} fails the ONNX checker: {e}") from e


def _save(m: onnx.ModelProto, path: Path) -> None:
    from ssp_edge.sdk.fsio import atomic_write_bytes

    atomic_write_bytes(path, m.SerializeToString())


def write_int8(bundle: Bundle, plan: QuantPlan, stats: Statistics, stage: Path) -> list[GraphEntry]:
    """Write every graph of ``plan`` into ``stage`` (checked); their manifest entries."""
    out: list[GraphEntry] = []
    amax = stats.amax()
    for p in plan.graphs:
        m = _load(bundle, p.graph, p.flavour)
        what = f"{p.graph} ({p.flavour}, int8, {p.qdq_plan} plan)"
        if p.qdq_plan == TRT_PLAN:
            q = quantize_model(m, amax, list(p.kept_float), TRT_PLAN)
            bad = qdq_violations(q)
            rules = "TensorRT's Q/DQ rules"
        else:
            assert p.ort is not None
            q = quantize_ort(m, p.ort, stats.asymmetric(p.graph), stage)
            bad = u8s8_violations(q)
            rules = "the U8S8 format"
        _check(q, what)
        if bad:
            raise RuntimeError(f"{what} breaks {rules}: {bad[:3]}")
        p.qdq_nodes = sum(1 for n in q.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear"))
        _save(q, stage / p.file)
        out.append(_graph_entry(p.graph, p.flavour, "int8", p.file, q, p.qdq_plan))
    return out


def write_fp16(bundle: Bundle, flavours: Sequence[str], stage: Path) -> list[GraphEntry]:
    from ssp_edge.converter.export import graph_file

    from .fp16 import convert_fp16

    out = []
    done: dict[str, onnx.ModelProto] = {}
    for g in ("text_encoder", *QUANT_GRAPHS):
        for fl in flavours:
            file = graph_file(g, fl, "fp16")
            if file not in done:
                m = convert_fp16(_load(bundle, g, fl))
                _check(m, f"{g} ({fl}, fp16)")
                _save(m, stage / file)
                done[file] = m
            out.append(_graph_entry(g, fl, "fp16", file, done[file]))
    return out


# ----------------------------------------------------------------------------- 4. measurement


def measure(
    staged: Bundle,
    entries: list[GraphEntry],
    evalset: EvalSet | None,
    feeder: Feeder,
    o: CalibrateOptions,
    timings: dict[str, float],
) -> Measurement:
    """Accuracy, output error against FP32 and latency of the new graphs (in ``staged``)."""
    from .evaluate import accuracy, latency, output_errors

    out = Measurement()
    precisions = ["fp32"] + (["fp16"] if o.fp16 else []) + (["int8"] if o.int8 else [])
    t0 = time.time()
    if evalset is not None:
        acc = {}
        for p in precisions:
            bar = _bar(len(evalset), f"evaluate {p} ({evalset.spec})", "sample", o.progress)
            try:
                acc[p] = accuracy(staged, p, evalset, o.threads, lambda: bar.update(1))
            finally:
                bar.close()
        trt_plan = {e.name: e for e in entries if e.flavour == "portable" and e.qdq_plan == TRT_PLAN}
        if o.int8 and o.trt_plan_eval and set(trt_plan) == set(QUANT_GRAPHS):
            bar = _bar(len(evalset), f"evaluate int8, TensorRT plan ({evalset.spec})", "sample", o.progress)
            try:
                acc["int8_tensorrt_plan"] = accuracy(
                    staged,
                    "int8",
                    evalset,
                    o.threads,
                    lambda: bar.update(1),
                    _plan_backend(staged, trt_plan, o.threads),
                )
            finally:
                bar.close()
        out.accuracy = {"data": evalset.spec, "samples": len(evalset), "skipped_overlap": evalset.skipped, **acc}
    timings["evaluation"] = round(time.time() - t0, 1)

    # output error of every new graph against its FP32 graph, on held-out frames (or calibration ones)
    t0 = time.time()
    err_frames = _error_frames(evalset, o)
    feeds: dict[str, list[dict[str, np.ndarray]]] = {"text_encoder": [], "image_encoder": [], "mask_decoder": []}
    for rgb, exprs in err_frames:  # the FP32 graphs' feeds as the Segmenter makes them (decoder: FP32 features)
        image, lbs = feeder.image(rgb)
        feats = ImageFeatures(feeder.seg.backend.run("image_encoder", image), lbs)
        feeds["text_encoder"].append(feeder.seg.text_feeds(exprs))
        feeds["image_encoder"].append(image)
        feeds["mask_decoder"].append(feeder.seg.decoder_feeds(feats, feeder.prompts(exprs)))
    errors = []
    bar = _bar(len(entries), "output error vs FP32", "graph", o.progress)
    try:
        for e in entries:
            if e.name == "text_encoder" and e.flavour == "plugin":
                bar.update(1)
                continue  # the same file as the portable entry
            ref = _session(staged.path(staged.graph(e.name, e.flavour, "fp32").file))
            new = _session(staged.path(e.file))
            label = "int8 (TensorRT plan)" if e.flavour == "portable" and e.qdq_plan == TRT_PLAN else e.precision
            errors += [r.to_dict() for r in output_errors(e.name, e.flavour, label, ref, new, feeds[e.name])]
            bar.update(1)
    finally:
        bar.close()
    out.output_error = {"frames": len(err_frames), "rows": errors}
    timings["output_error"] = round(time.time() - t0, 1)

    # latency (portable graphs, the SDK's ONNX Runtime backend), with the decoder's batch of --prompts expressions
    t0 = time.time()
    rgb = err_frames[0][0]
    prompts = [e for _, ex in err_frames for e in ex][: max(1, o.prompts)]
    prompts += prompts[:1] * (max(1, o.prompts) - len(prompts))
    for threads in sorted({o.threads, 1}):
        bar = _bar(o.latency_runs + 3, f"latency ({threads or 'default'} threads)", "round", o.progress)
        try:
            out.latency[str(threads)] = latency(
                staged, precisions, rgb, prompts, o.latency_runs, threads, tick=lambda: bar.update(1)
            ).to_dict()
        finally:
            bar.close()
    timings["latency"] = round(time.time() - t0, 1)
    return out


def _plan_backend(staged: Bundle, plan: dict[str, GraphEntry], threads: int):
    """The SDK's ONNX Runtime backend over the TensorRT plan's portable INT8 graphs (entries with
    ``qdq_plan == "tensorrt"``, which the SDK's own INT8 choice skips) and the FP32 text encoder."""
    from ssp_edge.sdk.backends.onnxruntime import OnnxRuntimeBackend

    te = staged.graph("text_encoder", "portable", "fp32")
    graphs: dict[str, tuple[GraphEntry, Any]] = {"text_encoder": (te, staged.read_bytes(te.file))}
    for g in QUANT_GRAPHS:
        graphs[g] = (plan[g], staged.read_bytes(plan[g].file))
    return OnnxRuntimeBackend.from_graphs(
        graphs,
        staged.manifest.dynamic_axes,
        threads=threads,
        precisions={g: "int8 (TensorRT plan)" for g in QUANT_GRAPHS},
    )


def _error_frames(evalset: EvalSet | None, o: CalibrateOptions) -> list[tuple[np.ndarray, list[str]]]:
    n = max(1, o.error_samples)
    if evalset is not None and len(evalset):
        out = []
        for i in range(min(n, len(evalset))):
            s = evalset[i]
            out.append((s.image, [s.expression or "object"]))
        return out
    frames = open_frames(o.data, n, o.prompts, o.seed + 1)
    return [(f.image, f.expressions) for f in frames]
