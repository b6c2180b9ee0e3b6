"""What a calibration run measures: accuracy per precision through the SDK (``sdk.Segmenter`` on ONNX
Runtime CPU), output error of every reduced-precision graph against its FP32 graph, and ONNX Runtime CPU
latency of image_encoder + mask_decoder per precision through the Segmenter's stages (interleaved in one run,
median of N)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from ssp_edge.sdk.backends.base import Backend
from ssp_edge.sdk.bundle import Bundle
from ssp_edge.sdk.manifest_schema import PRECISIONS
from ssp_edge.ssp.metrics import THRESHOLDS, SegMeter

__all__ = ["METRIC_KEYS", "accuracy", "accuracy_record", "OutputError", "output_errors", "Latency", "latency"]

METRIC_KEYS = ("mIoU", "oIoU", *(f"prec@{t}" for t in THRESHOLDS))


def accuracy(
    bundle: Bundle,
    precision: str,
    samples: Sequence,
    threads: int = 0,
    tick: Callable[[], None] | None = None,
    backend: Backend | None = None,
) -> dict:
    """:class:`ssp.metrics.SegMeter` summary of the SDK pipeline at ``precision`` over ``samples`` (with ``graphs``:
    the precision per graph, ``files``: the file per graph):
    ``Segmenter.open(backend="onnxruntime", precision=...)`` exactly as users run it, or the same
    Segmenter over ``backend`` (e.g. graphs that are not bundle entries)."""
    from ssp_edge.sdk.segmenter import Segmenter

    meter = SegMeter()
    seg = (
        Segmenter.open(bundle, backend="onnxruntime", precision=precision, threads=threads)
        if backend is None
        else Segmenter(bundle, backend)
    )
    with seg:
        used = dict(seg.backend.precisions)
        ran = {g: e.file for g, e in getattr(seg.backend, "entries", {}).items()}
        for s in samples:
            if s.expression.strip():
                bgr = cv2.cvtColor(s.image, cv2.COLOR_RGB2BGR)
                r = seg.segment(bgr, [s.expression])[0]
                meter.update(r.mask, s.mask, s.exists, s.type)
            if tick is not None:
                tick()
    out = meter.summary()
    out["graphs"] = used
    out["files"] = ran  # graph -> the bundle file it ran (the manifest's accuracy record hashes them)
    return out


def accuracy_record(staged: Bundle, acc: dict | None) -> dict | None:
    """The manifest's accuracy record (``Manifest.accuracy``) of a measurement: per precision the metrics
    (:data:`METRIC_KEYS`) and the sha256 of the file each graph ran, so the SDK can tell whether the record is about
    the graphs a bundle has (sdk/backends/precision_choice.py); None when nothing was measured."""
    if not acc:
        return None
    metrics: dict[str, dict[str, float]] = {}
    graphs: dict[str, dict[str, str]] = {}
    for p in PRECISIONS:
        if p not in acc:
            continue
        metrics[p] = {k: float(acc[p][k]) for k in METRIC_KEYS if np.isfinite(acc[p].get(k, np.nan))}
        graphs[p] = {g: staged.manifest.files[f] for g, f in acc[p]["files"].items()}
    return {"data": str(acc["data"]), "samples": int(acc["samples"]), "metrics": metrics, "graphs": graphs}


@dataclass
class OutputError:
    graph: str
    flavour: str
    precision: str
    output: str
    max_abs: float
    mean_abs: float
    ref_max_abs: float  # max |FP32 output|, for scale

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def output_errors(
    graph: str, flavour: str, precision: str, ref_session, session, feeds: Sequence[dict]
) -> list[OutputError]:
    """Max / mean |output - FP32 output| per output over ``feeds`` (both graphs get identical inputs)."""
    names = [o.name for o in ref_session.get_outputs()]
    mx = {n: 0.0 for n in names}
    sm = {n: 0.0 for n in names}
    cnt = {n: 0 for n in names}
    ref_mx = {n: 0.0 for n in names}
    for f in feeds:
        a = ref_session.run(names, f)
        b = session.run(names, f)
        for n, x, y in zip(names, a, b):
            d = np.abs(np.asarray(y, np.float64) - np.asarray(x, np.float64))
            mx[n] = max(mx[n], float(d.max()) if d.size else 0.0)
            sm[n] += float(d.sum())
            cnt[n] += d.size
            ref_mx[n] = max(ref_mx[n], float(np.abs(x).max()) if x.size else 0.0)
    return [OutputError(graph, flavour, precision, n, mx[n], sm[n] / max(cnt[n], 1), ref_mx[n]) for n in names]


@dataclass
class Latency:
    """Median milliseconds of image_encoder + mask_decoder per precision, measured interleaved."""

    runs: int
    prompts: int
    threads: int
    ms: dict[str, dict[str, float]] = field(default_factory=dict)  # precision -> {image_encoder, mask_decoder, total}

    def ratio(self, a: str = "fp32", b: str = "int8") -> float | None:
        if a in self.ms and b in self.ms and self.ms[b]["total"] > 0:
            return self.ms[a]["total"] / self.ms[b]["total"]
        return None

    def to_dict(self) -> dict:
        return {
            "runs": self.runs,
            "prompts": self.prompts,
            "threads": self.threads,
            "ms": self.ms,
            "fp32_over_int8": self.ratio(),
        }


def latency(
    bundle: Bundle,
    precisions: Sequence[str],
    image: np.ndarray,
    prompts: Sequence[str],
    runs: int = 20,
    threads: int = 0,
    warmup: int = 3,
    tick: Callable[[], None] | None = None,
) -> Latency:
    """Time image_encoder + mask_decoder of the SDK's ONNX Runtime backend for each precision in turn through the
    Segmenter's stages (``encode_image``, ``decode`` with cached prompt encodings; their stage timers), round robin
    so load changes on a shared machine hit every precision alike; median of ``runs``."""
    from ssp_edge.sdk.segmenter import Segmenter

    segs = {p: Segmenter.open(bundle, backend="onnxruntime", precision=p, threads=threads) for p in precisions}
    try:
        frame = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        encs = {p: seg.encode_prompts(list(prompts)) for p, seg in segs.items()}
        times: dict[str, dict[str, list[float]]] = {p: {"image_encoder": [], "mask_decoder": []} for p in segs}
        for it in range(warmup + runs):
            for p, seg in segs.items():
                stages = seg.decode(seg.encode_image(frame), encs[p])[0].times_ms
                if it >= warmup:
                    for k in ("image_encoder", "mask_decoder"):
                        times[p][k].append(stages[k])
            if tick is not None:
                tick()
    finally:
        for seg in segs.values():
            seg.close()
    out = Latency(runs, len(prompts), threads)
    for p, d in times.items():
        enc, dec = np.asarray(d["image_encoder"]), np.asarray(d["mask_decoder"])
        out.ms[p] = {
            "image_encoder": round(float(np.median(enc)), 2),
            "mask_decoder": round(float(np.median(dec)), 2),
            "total": round(float(np.median(enc + dec)), 2),
        }
    return out
