"""`ssp calibrate`: INT8 (explicit Q/DQ) and FP16 graphs for a bundle, with an accuracy / error / latency
report.

Steps (each with a progress bar where it takes time):

1. **Statistics.** Calibration frames (:mod:`calibration.data`) are preprocessed exactly as the SDK does
   (letterbox, normalise), their expressions tokenized with the bundle's tokenizer. The FP32 text encoder
   gives words / sentence; the FP32 image encoder, run with every tensor to calibrate as an extra output,
   gives the frame's features *and* its activation statistics; the FP32 mask decoder then runs on those
   features with the frame's K expressions (batch-1 image features, as the SDK runs it) and collects its
   statistics. One streaming pass, nothing kept per sample (:mod:`calibration.stats`).
2. **Sensitivity.** Each Conv / Gemm / MatMul is quantized alone and the change of the mask probabilities
   measured end to end, and so is each group of nodes of one kind (:mod:`calibration.sensitivity`);
   unless ``--exclude`` is given, a group that hurts more than ``group_ratio`` times any other group of its
   graph (on ssp_lite: the attention products of the mask decoder) and then the ``keep_fp32`` worst nodes
   of each graph stay in float.
3. **Graphs.** INT8 Q/DQ graphs of image_encoder and mask_decoder in each flavour (:mod:`calibration.qdq`):
   the plugin flavour (TensorRT) quantizes every other node with TensorRT's placement; the portable flavour
   (ONNX Runtime CPU, also buildable by TensorRT) additionally keeps in float the nodes ONNX Runtime runs
   no faster in int8 (arithmetic intensity below ``min_intensity`` MACs per activation element: depthwise
   and few-channel full-resolution convolutions, small attention products) and those it cannot fuse.
   The text encoder stays FP32 in INT8 mode: it runs once per new prompt and is cached. FP16 graphs of all
   three (:mod:`calibration.fp16`). Every graph passes the ONNX checker; every Q/DQ graph TensorRT's
   Q/DQ rules (:func:`calibration.qdq.qdq_violations`).
4. **Measurements** on a held-out set disjoint from the calibration frames: mIoU / oIoU / Prec@X for
   FP32, FP16 and INT8 through ``sdk.Segmenter`` on ONNX Runtime CPU, per-graph output error against
   FP32 (both flavours), ONNX Runtime CPU latency FP32 vs INT8 (vs FP16).
5. **Commit.** Everything is built in a staging folder beside the bundle; only when all of it succeeded are
   the new graphs moved into the bundle under names the current manifest does not use (atomic renames, so
   no listed file is ever touched), then ``manifest.json`` is saved atomically through :mod:`sdk.bundle`,
   and only then are the replaced graphs deleted and the report moved to ``DIR/calibration/``. Killed at
   any point, the bundle opens and verifies, in its old or its new state (``SSP_TEST_KILL_AT`` names the
   points for the crash tests: ``commit:staged``, ``commit:moving``, ``commit:moved``, ``commit:saved``,
   ``commit:cleaned``). A failure leaves the bundle as it was.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np
import onnx
from tqdm import tqdm

from ssp_edge.sdk.bundle import Bundle, GraphEntry, Manifest
from ssp_edge.sdk.errors import BundleError
from ssp_edge.sdk.fsio import atomic_replace_file, atomic_write_bytes, fsync_dir, kill_point
from ssp_edge.sdk.preprocess import Letterbox
from ssp_edge.sdk.segmenter import ImageFeatures, PromptEncodings, Segmenter

from .data import EvalSet, FrameSet, open_eval, open_frames
from .errors import CalibrationError, CalibrationWarning
from .qdq import (
    QuantNode,
    find_quant_nodes,
    match_excludes,
    qdq_violations,
    quantize_model,
    range_keys,
    unfusable_nodes,
)
from .stats import METHODS, RangeCollector

__all__ = ["CalibrateOptions", "CalibrationResult", "calibrate_bundle", "REPORT_DIR", "arithmetic_intensity"]

REPORT_DIR = "calibration"
QUANT_GRAPHS = ("image_encoder", "mask_decoder")
#: placement per flavour (see calibration.qdq)
PLACEMENT = {"portable": "onnxruntime", "plugin": "tensorrt"}
#: the portable flavour's INT8 graph in TensorRT's placement (GraphEntry.qdq_plan "tensorrt"), for TensorRT builds
TRT_PLAN_FILE = "{base}.trtplan.onnx"
#: group errors below this (mask prob. MAE) are noise: such a group is never kept float for its ratio
_GROUP_FLOOR = 5e-4


@dataclass
class CalibrateOptions:
    data: str = "refshapes:val"
    method: str = "entropy"
    samples: int = 512  # calibration frames
    prompts: int = 2  # expressions per frame (the decoder's batch)
    seed: int = 0
    percentile: float = 99.99
    exclude: list[str] | None = None  # None: the sensitivity pass decides
    keep_fp32: int = 3  # per graph, when exclude is None
    group_ratio: float = 2.0  # a node group whose error is this many times every other group's stays float (0: off)
    sensitivity_samples: int = 8  # frames; 0 skips the pass
    sensitivity_candidates: int = 12  # per graph: nodes (worst local error) measured end to end
    min_intensity: float = 48.0  # portable flavour: MACs per activation element below which a node stays float
    fp16: bool = True
    int8: bool = True
    eval_data: str = "refshapes:test"
    eval_samples: int = 500  # 0 skips the accuracy evaluation
    error_samples: int = 8
    trt_plan_eval: bool = True  # also evaluate the INT8 plan of the TensorRT (plugin) graphs
    latency_runs: int = 20
    threads: int = 0  # ONNX Runtime intra-op threads for the accuracy runs (0: its default)
    progress: bool = True


@dataclass
class CalibrationResult:
    bundle: str
    report: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)  # kind -> path (report_json, report_md, report_png, ...)
    graphs: list[str] = field(default_factory=list)  # files added / replaced in the bundle


# ----------------------------------------------------------------------------- helpers

def _check_options(o: CalibrateOptions) -> None:
    if o.method not in METHODS:
        raise CalibrationError(f"--method {o.method!r}: choose one of {', '.join(METHODS)}")
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
        raise CalibrationError(f"bundle {str(bundle.root)!r} has no portable FP32 image_encoder / mask_decoder, "
                               "which calibration runs on ONNX Runtime; re-export with `ssp convert export "
                               "--flavour both`")
    if not bundle.has_graph("text_encoder", "portable", "fp32"):
        raise CalibrationError(f"bundle {str(bundle.root)!r} has no text_encoder graph; re-export it with "
                               "`ssp convert export`")
    return fl


def _bar(total: int, desc: str, unit: str, on: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, disable=not on, leave=False, dynamic_ncols=True)


def _session(path: Path | str, threads: int = 0):
    from ssp_edge.converter.ort_ops import make_session

    return make_session(path, threads)


def _load(bundle: Bundle, graph: str, flavour: str) -> onnx.ModelProto:
    return onnx.load(str(bundle.path(bundle.graph(graph, flavour, "fp32").file)))


def arithmetic_intensity(model: onnx.ModelProto, nodes: Sequence[QuantNode]) -> dict[str, float]:
    """MACs per activation element read or written (batch 1, one expression) of each node: how much
    integer arithmetic a node has to amortise its int8 conversions. Unknown shapes count as 1."""
    inf = onnx.shape_inference.infer_shapes(model)
    dims: dict[str, list[int]] = {}
    for v in list(inf.graph.value_info) + list(inf.graph.input) + list(inf.graph.output):
        dims[v.name] = [d.dim_value if d.HasField("dim_value") else 1 for d in v.type.tensor_type.shape.dim]
    for t in inf.graph.initializer:
        dims[t.name] = list(t.dims)
    by_name = {n.name: n for n in inf.graph.node}
    out = {}
    for q in nodes:
        n = by_name[q.name]
        o = float(np.prod(dims.get(n.output[0], [0])))
        ins = float(sum(np.prod(dims.get(n.input[i], [0])) for i in q.act_inputs))
        if q.op_type == "Conv":
            per_out = float(np.prod(dims[n.input[1]][1:]))
        elif q.weight_input is not None:
            w = dims[n.input[1]]
            per_out = float(w[-2] if q.weight_axis == len(w) - 1 else w[-1])  # the reduced dimension
        else:
            per_out = float(dims.get(n.input[0], [1])[-1])
        out[q.name] = o * per_out / (ins + o) if (ins + o) > 0 else 0.0
    return out


# ----------------------------------------------------------------------------- feeds

class _Feeder:
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

    def decoder_feeds(self, features: dict[str, np.ndarray], letterboxes: tuple[Letterbox, ...],
                      enc: PromptEncodings) -> dict[str, np.ndarray]:
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
    frames = open_frames(o.data, o.samples, o.prompts, o.seed)
    evalset = open_eval(o.eval_data, o.eval_samples, frames.keys) if o.eval_samples else None
    root = bundle.root.resolve()
    with _staging(root) as stage:
        timings: dict[str, float] = {}
        report: dict[str, Any] = {"bundle": str(root), "options": asdict(o), "timings_s": timings}
        feeder = _Feeder(bundle, o.threads)
        models = {g: _load(bundle, g, "portable") for g in QUANT_GRAPHS}
        nodes = {g: find_quant_nodes(models[g]) for g in QUANT_GRAPHS}
        if o.exclude is not None:
            _excludes(nodes, {}, o)  # an unknown --exclude pattern fails now, not after the statistics

        # 1. statistics
        t0 = time.time()
        ranges, keep = _collect(models, nodes, frames, feeder, o)
        timings["statistics"] = round(time.time() - t0, 1)
        if feeder.truncated:
            warnings.warn(f"{len(feeder.truncated)} calibration expression(s) are longer than {feeder.max_tokens} "
                          f"tokens and were truncated, e.g. {feeder.truncated[0][:80]!r}", CalibrationWarning,
                          stacklevel=2)
        report["calibration"] = {"data": frames.spec, "frames": len(frames), "available_frames": frames.available,
                                 "prompts_per_frame": o.prompts, "expressions": keep["expressions"],
                                 "truncated_expressions": len(feeder.truncated), "method": o.method,
                                 "seed": o.seed}

        # 2. sensitivity
        t0 = time.time()
        sens = _sensitivity(models, nodes, ranges[o.method], keep, feeder, o) if o.sensitivity_samples and o.int8 \
            else {}
        timings["sensitivity"] = round(time.time() - t0, 1)

        # 3. graphs
        t0 = time.time()
        excluded = _excludes(nodes, sens, o)
        entries: list[GraphEntry] = []
        plans: dict[str, dict] = {}
        if o.int8:
            for g in QUANT_GRAPHS:
                for fl in flavours:
                    new, plan = _write_int8(bundle, g, fl, ranges[o.method], excluded[g], stage, o)
                    entries += new  # TensorRT-plan entry first: Bundle.graph() defaults to the flavour's own plan
                    plans[f"{g}/{fl}"] = plan
        if o.fp16:
            entries += _write_fp16(bundle, flavours, stage)
        timings["graphs"] = round(time.time() - t0, 1)
        timings["calibration_total"] = round(time.time() - t_start, 1)
        report["int8_plan"] = plans
        report["kept_float"] = {g: dict(excluded[g]["reason"]) for g in QUANT_GRAPHS}
        report["sensitivity"] = {g: [s.to_dict() for s in v] for g, v in (sens.get("nodes") or {}).items()}
        report["group_sensitivity"] = (sens.get("groups") or {})
        report["ranges"] = {"method": o.method, "amax": ranges[o.method]}

        # 4. measurements on a staging bundle (the original files linked, the new ones beside them)
        staged = _staged_bundle(bundle, stage, entries)
        report.update(_measure(bundle, staged, entries, flavours, evalset, feeder, o, timings))
        timings["total"] = round(time.time() - t_start, 1)

        # 5. commit
        from .report import write_report

        rep_files = write_report(stage / REPORT_DIR, report)
        return _commit(bundle, stage, entries, rep_files, report)


@contextlib.contextmanager
def _staging(root: Path) -> Iterator[Path]:
    """A temporary folder beside the bundle (same filesystem: renames are atomic), removed afterwards."""
    parent = root.parent
    try:
        d = Path(tempfile.mkdtemp(prefix=f".{root.name}.calibrate-", dir=parent))
    except OSError:
        d = Path(tempfile.mkdtemp(prefix=f".{root.name}.calibrate-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _collect(models: dict[str, onnx.ModelProto], nodes: dict[str, list[QuantNode]], frames: FrameSet,
             feeder: _Feeder, o: CalibrateOptions) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """One pass over the frames: range keys -> amax ({method: {key: amax}}); the first frames' feeds kept."""
    rk = {g: range_keys(models[g], nodes[g]) for g in QUANT_GRAPHS}
    enc = RangeCollector(models["image_encoder"], rk["image_encoder"])
    dec = RangeCollector(models["mask_decoder"], rk["mask_decoder"])
    keep: dict[str, Any] = {"frames": [], "expressions": 0}
    bar = _bar(len(frames), f"calibrate ({o.method} statistics)", "frame", o.progress)
    try:
        for i, fr in enumerate(frames):
            feeds, lbs = feeder.image(fr.image)
            prompts = feeder.prompts(fr.expressions)
            dec.run(feeder.decoder_feeds(enc.run(feeds), lbs, prompts))
            keep["expressions"] += len(fr.expressions)
            if i < o.sensitivity_samples:
                keep["frames"].append((feeds, lbs, prompts))
            bar.update(1)
    finally:
        bar.close()
    out: dict[str, dict[str, float]] = {}
    for method in (o.method,):
        r: dict[str, float] = {}
        for g, col in (("image_encoder", enc), ("mask_decoder", dec)):
            am = col.amax(method, o.percentile)
            for tensor, keys in rk[g].items():
                for k in keys:
                    r[k] = float(am[tensor])
        out[method] = r
    return out, keep


def _sensitivity(models, nodes, ranges, keep, feeder: _Feeder, o: CalibrateOptions) -> dict[str, Any]:
    """Per graph: the end-to-end mask error of each node group (all its nodes quantized at once), the
    local error of every node, and the end-to-end error of the ``sensitivity_candidates`` nodes with the
    largest local error, one at a time (see calibration.sensitivity)."""
    from .sensitivity import NodeSensitivity, SwitchRunner, local_errors, mask_prob_mae, node_groups, rank

    frames = keep["frames"]
    if not frames:
        return {}
    enc_fp32 = _ort(models["image_encoder"])
    dec_fp32 = _ort(models["mask_decoder"])
    feat_names = [x.name for x in enc_fp32.get_outputs()]
    dec_out = [x.name for x in dec_fp32.get_outputs()]
    batch = {n: np.concatenate([f[n] for f, _, _ in frames]) for n in frames[0][0]}  # the image encoder's feeds

    def per_frame(feats: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """The decoder feeds of each frame from a batch of image-encoder outputs (in ``feat_names`` order)."""
        return [feeder.decoder_feeds({n: v[k:k + 1] for n, v in zip(feat_names, feats)}, lbs, prompts)
                for k, (_, lbs, prompts) in enumerate(frames)]

    dec_feeds = per_frame(enc_fp32.run(feat_names, batch))
    ref_logits = [dec_fp32.run(dec_out, f)[0] for f in dec_feeds]

    def score(g: str, runner, on: Sequence[int]) -> float:
        if g == "image_encoder":
            errs = [mask_prob_mae(dec_fp32.run(dec_out, f)[0], ref_logits[k])
                    for k, f in enumerate(per_frame(runner.run(batch, on)))]
        else:
            errs = [mask_prob_mae(runner.run(f, on)[0], ref_logits[k]) for k, f in enumerate(dec_feeds)]
        return float(np.mean(errs))

    m = max(o.sensitivity_candidates, o.keep_fp32)
    cands = {g: min(m, len(nodes[g])) for g in QUANT_GRAPHS}
    groups = {g: node_groups(nodes[g]) for g in QUANT_GRAPHS}
    bar = _bar(sum(len(v) + 1 for v in groups.values()) + 2 + sum(cands.values()), "sensitivity", "step",
               o.progress)
    res: dict[str, list[NodeSensitivity]] = {}
    gres: dict[str, list[dict]] = {}
    try:
        for g in QUANT_GRAPHS:  # groups, and everything at once, through one switchable model of all nodes
            runner = SwitchRunner(models[g], nodes[g], ranges)
            rows = []
            for name, idx in groups[g].items():
                rows.append({"group": name, "nodes": len(idx), "mask_prob_mae": score(g, runner, idx),
                             "keys": [nodes[g][j].key for j in idx]})
                bar.update(1)
            gres[g] = sorted(rows, key=lambda r: -r["mask_prob_mae"])
            gres[g].append({"group": "all", "nodes": len(nodes[g]), "keys": [],
                            "mask_prob_mae": score(g, runner, range(len(nodes[g])))})
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
    return {"nodes": {g: rank(v) for g, v in res.items()}, "groups": gres}


def _ort(model: onnx.ModelProto):
    from ssp_edge.sdk.backends.onnxruntime import create_session

    return create_session(model.SerializeToString())


def _excludes(nodes: dict[str, list[QuantNode]], sens: dict[str, list], o: CalibrateOptions) -> dict[str, dict]:
    """Per graph: {"keys": excluded weight/node keys, "reason": {key: why}}."""
    out: dict[str, dict] = {g: {"keys": set(), "reason": {}} for g in QUANT_GRAPHS}
    if o.exclude is not None:
        unused = set(o.exclude)
        for g in QUANT_GRAPHS:
            hit, miss = match_excludes(nodes[g], o.exclude)
            unused &= set(miss)
            for q in nodes[g]:
                if q.name in hit:
                    out[g]["keys"].add(q.key)
                    out[g]["reason"][q.key] = "--exclude"
        if unused:
            example = ", ".join(q.name for q in nodes["mask_decoder"][:2])
            raise CalibrationError(f"--exclude {sorted(unused)[0]!r} matches no Conv/Gemm/MatMul node of "
                                   f"image_encoder or mask_decoder; give a node name (e.g. {example}), a weight "
                                   "name (e.g. 'backbone.blocks.0.*'), an op type (Conv, Gemm, MatMul) or "
                                   "'depthwise'")
        return out
    for g in QUANT_GRAPHS:
        rows = [r for r in (sens.get("groups") or {}).get(g, []) if r["keys"]]
        for row in rows:
            others = [r["mask_prob_mae"] for r in rows if r is not row]
            worst_other = max(others) if others else None
            if (o.group_ratio > 0 and worst_other is not None and row["mask_prob_mae"] >= _GROUP_FLOOR
                    and row["mask_prob_mae"] > o.group_ratio * worst_other):
                for k in row["keys"]:
                    out[g]["keys"].add(k)
                    out[g]["reason"][k] = (f"group {row['group']!r} (mask prob. MAE {row['mask_prob_mae']:.2e}, "
                                           f"{row['mask_prob_mae'] / worst_other:.1f}x the next group)")
        ranked = [s for s in (sens.get("nodes") or {}).get(g, []) if s.key not in out[g]["keys"] and s.score]
        for s in ranked[: o.keep_fp32]:
            out[g]["keys"].add(s.key)
            out[g]["reason"][s.key] = f"sensitivity (mask prob. MAE {s.score:.2e})"
    return out


def _graph_entry(graph: str, flavour: str, precision: str, file: str, m: onnx.ModelProto,
                 qdq_plan: str | None = None) -> GraphEntry:
    from ssp_edge.converter.export import custom_op_counts, tensor_specs

    return GraphEntry(graph, flavour, precision, file, tensor_specs(m.graph.input), tensor_specs(m.graph.output),
                      custom_op_counts(m), qdq_plan)


def _check(m: onnx.ModelProto, what: str) -> None:
    from ssp_edge.converter.schemas import register_schemas

    register_schemas()
    try:
        onnx.checker.check_model(m, full_check=True)
    except Exception as e:  # an internal error, not bad input: keep the traceback
        raise RuntimeError(f"{what} fails the ONNX checker: {e}") from e


def _save(m: onnx.ModelProto, path: Path) -> None:
    atomic_write_bytes(path, m.SerializeToString())


def _write_int8(bundle: Bundle, graph: str, flavour: str, ranges: dict[str, float], excl: dict, stage: Path,
                o: CalibrateOptions) -> tuple[list[GraphEntry], dict]:
    from ssp_edge.converter.export import graph_file

    m = _load(bundle, graph, flavour)
    nodes = find_quant_nodes(m)
    skip: dict[str, str] = {q.name: excl["reason"][q.key] for q in nodes if q.key in excl["keys"]}
    if flavour == "portable":
        inten = arithmetic_intensity(m, nodes)
        for q in nodes:
            if q.name not in skip and inten[q.name] < o.min_intensity:
                skip[q.name] = f"ONNX Runtime speed (intensity {inten[q.name]:.0f} < {o.min_intensity:g})"
        for name in unfusable_nodes(m, nodes):
            skip.setdefault(name, "ONNX Runtime cannot fuse it (output fans out)")
    out: list[GraphEntry] = []
    if flavour == "portable":
        # the plugin flavour's plan (every node but the kept ones, TensorRT placement) on the portable graph: what
        # TensorRT builds from without the plugin library (`ssp convert build --precision int8`), also evaluated on
        # plain ONNX Runtime
        trt = quantize_model(m, ranges, [n.name for n in nodes if n.key in excl["keys"]], "tensorrt")
        _check(trt, f"{graph} (portable, int8, TensorRT plan)")
        bad = qdq_violations(trt)
        if bad:
            raise RuntimeError(f"{graph} (portable, int8, TensorRT plan) breaks TensorRT's Q/DQ rules: {bad[:3]}")
        trt_file = TRT_PLAN_FILE.format(base=graph_file(graph, flavour, "int8")[: -len(".onnx")])
        _save(trt, stage / trt_file)
        out.append(_graph_entry(graph, flavour, "int8", trt_file, trt, "tensorrt"))
    q = quantize_model(m, ranges, skip, PLACEMENT[flavour])
    _check(q, f"{graph} ({flavour}, int8)")
    bad = qdq_violations(q)
    if bad:
        raise RuntimeError(f"{graph} ({flavour}, int8) breaks TensorRT's Q/DQ rules: {bad[:3]}")
    file = graph_file(graph, flavour, "int8")
    _save(q, stage / file)
    quantized = [n.name for n in nodes if n.name not in skip]
    plan = {"placement": PLACEMENT[flavour], "quantized": len(quantized), "float": len(skip),
            "nodes": len(nodes), "kept_float": skip,
            "qdq_nodes": sum(1 for n in q.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear"))}
    if out:
        plan["tensorrt_plan_file"] = out[0].file
    return out + [_graph_entry(graph, flavour, "int8", file, q, PLACEMENT[flavour])], plan


def _write_fp16(bundle: Bundle, flavours: Sequence[str], stage: Path) -> list[GraphEntry]:
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


def _staged_bundle(bundle: Bundle, stage: Path, entries: list[GraphEntry]) -> Bundle:
    """A Bundle object rooted at ``stage``: the original files hard-linked in (inside the staging folder, as a
    bundle's files must be; nothing writes into them), the new graphs added."""
    for rel in bundle.manifest.files:
        dst = stage / rel
        if dst.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        src = bundle.path(rel)
        try:
            os.link(src, dst)
        except OSError:  # another filesystem, or no hard links
            shutil.copyfile(src, dst)
    man = Manifest.from_dict(json.loads(bundle.manifest.to_json()))
    staged = Bundle(stage, man)
    for e in entries:
        staged.add_graph(e)
    return staged


def _measure(bundle: Bundle, staged: Bundle, entries: list[GraphEntry], flavours: Sequence[str],
             evalset: EvalSet | None, feeder: _Feeder, o: CalibrateOptions, timings: dict) -> dict[str, Any]:
    from .evaluate import accuracy, latency, output_errors

    out: dict[str, Any] = {}
    precisions = ["fp32"] + (["fp16"] if o.fp16 else []) + (["int8"] if o.int8 else [])
    # accuracy
    t0 = time.time()
    if evalset is not None:
        acc = {}
        for p in precisions:
            bar = _bar(len(evalset), f"evaluate {p} ({evalset.spec})", "sample", o.progress)
            try:
                acc[p] = accuracy(staged, p, evalset, o.threads, lambda: bar.update(1))
            finally:
                bar.close()
        trt_plan = {e.name: e for e in entries if e.flavour == "portable" and e.qdq_plan == "tensorrt"}
        if o.int8 and o.trt_plan_eval and set(trt_plan) == set(QUANT_GRAPHS):
            bar = _bar(len(evalset), f"evaluate int8, TensorRT plan ({evalset.spec})", "sample", o.progress)
            try:
                acc["int8_tensorrt_plan"] = accuracy(staged, "int8", evalset, o.threads, lambda: bar.update(1),
                                                     _plan_backend(staged, trt_plan, o.threads))
            finally:
                bar.close()
        out["accuracy"] = {"data": evalset.spec, "samples": len(evalset), "skipped_overlap": evalset.skipped,
                           **acc}
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
            label = "int8 (TensorRT plan)" if e.flavour == "portable" and e.qdq_plan == "tensorrt" else e.precision
            errors += [r.to_dict() for r in output_errors(e.name, e.flavour, label, ref, new, feeds[e.name])]
            bar.update(1)
    finally:
        bar.close()
    out["output_error"] = {"frames": len(err_frames), "rows": errors}
    timings["output_error"] = round(time.time() - t0, 1)

    # latency (portable graphs, the SDK's ONNX Runtime backend)
    t0 = time.time()
    rgb, exprs = err_frames[0]
    lat = {}
    for threads in sorted({o.threads, 1}):
        bar = _bar(o.latency_runs + 3, f"latency ({threads or 'default'} threads)", "round", o.progress)
        try:
            lat[str(threads)] = latency(staged, precisions, rgb, exprs[:1], o.latency_runs, threads,
                                        tick=lambda: bar.update(1)).to_dict()
        finally:
            bar.close()
    out["latency"] = lat
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
    return OnnxRuntimeBackend.from_graphs(graphs, staged.manifest.dynamic_axes, threads=threads,
                                          precisions={g: "int8 (TensorRT plan)" for g in QUANT_GRAPHS})


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


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fresh_name(bundle: Bundle, file: str, digest: str) -> str:
    """Where a new graph goes: its usual name unless the current manifest lists that name with other bytes, then
    the name with a digest suffix. Never a name the manifest lists for different content."""
    files = bundle.manifest.files
    if files.get(file, digest) == digest:
        return file
    stem, dot, ext = file.rpartition(".")
    alt = f"{stem}.{digest[:16]}.{ext}" if dot else f"{file}.{digest[:16]}"
    if files.get(alt, digest) != digest:  # pragma: no cover - a 64-bit digest prefix collision
        raise CalibrationError(f"bundle {str(bundle.root)!r} already lists {alt!r} with other content")
    return alt


def _commit(bundle: Bundle, stage: Path, entries: list[GraphEntry], rep_files: dict[str, Path],
            report: dict[str, Any]) -> CalibrationResult:
    """New graphs in under unused names, then the manifest (atomic), then the replaced graphs out, then the report.

    Until the manifest is saved the old manifest and all its files are untouched; from then on every file the new
    manifest lists is in place. So an interrupt at any point leaves a bundle that opens and verifies."""
    root = bundle.root
    staged = {e.file for e in entries}
    final = {f: _fresh_name(bundle, f, _file_sha256(stage / f)) for f in sorted(staged)}
    kill_point("commit:staged")
    for i, (f, name) in enumerate(final.items()):
        atomic_replace_file(stage / f, bundle.target(name), 0o644)
        if i == 0:
            kill_point("commit:moving")
    kill_point("commit:moved")
    replaced = set()
    for e in entries:
        old = [g.file for g in bundle.manifest.graphs if (g.name, g.flavour, g.precision) == (e.name, e.flavour,
                                                                                              e.precision)]
        replaced.update(old)
        bundle.add_graph(dataclasses.replace(e, file=final[e.file]))
    used = {g.file for g in bundle.manifest.graphs} | {e.file for e in bundle.manifest.engines}
    stale = sorted(f for f in replaced if f not in used)
    for f in stale:
        bundle.manifest.files.pop(f, None)
    bundle.save()
    kill_point("commit:saved")
    for f in stale:
        with contextlib.suppress(OSError, BundleError):
            bundle.target(f)  # inside the bundle (the old manifest was validated; checked again all the same)
            (root / f).unlink(missing_ok=True)
    fsync_dir(root)
    kill_point("commit:cleaned")
    (root / REPORT_DIR).mkdir(exist_ok=True)
    files: dict[str, str] = {}
    for kind, p in rep_files.items():
        dst = root / REPORT_DIR / p.name
        _move(p, dst)
        files[kind] = str(dst)
    return CalibrationResult(str(root), report, files, list(final.values()))


def _move(src: Path, dst: Path) -> None:
    atomic_replace_file(src, dst, 0o644)
