"""Stage adapter for serving and many cameras: prompt encodings, batched image encoding and per-frame decoding
on a :class:`~ssp_edge.sdk.segmenter.Segmenter`, with tensors matched BY NAME from the manifest.

This is the one module of the serving code (``sdk/serve.py``, ``sdk/multi.py``, ``sdk/triton_models.py``,
``benchmarks/serve_bench.py``) that touches the Segmenter's internals (``backend``, ``tokenizer``,
``preprocess``, thresholds). When the Segmenter gains its public stages (``encode_prompts`` / ``encode_image`` /
``decode``) and backends return dicts keyed by output name, only this module changes: each function below says
which public stage replaces it. The pure helpers (:func:`decoder_feeds`, :func:`postprocess`) stay.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .bundle import GraphEntry, Manifest
from .errors import SDKError
from .preprocess import Letterbox, letterbox, normalize, pad_value, unletterbox
from .segmenter import Result, Segmenter, to_bgr8

__all__ = ["PromptCache", "FrameBatch", "graph_entry", "run_named", "decoder_feeds", "postprocess", "preprocess_frame",
           "check_prompts", "encode_frames", "decode_frames", "segment_frames", "max_frames"]


def graph_entry(manifest: Manifest, graph: str) -> GraphEntry:
    """The portable fp32 entry of ``graph`` (every flavour / precision has the same tensor names)."""
    for flavour in ("portable", "plugin"):
        for g in manifest.graphs:
            if g.name == graph and g.flavour == flavour and g.precision == "fp32":
                return g
    for g in manifest.graphs:
        if g.name == graph:
            return g
    raise SDKError(f"the bundle's manifest has no {graph} graph; re-export it with `ssp convert export`")


def run_named(seg: Segmenter, graph: str, feeds: Mapping[str, Any], to_host: bool = True) -> dict[str, Any]:
    """``backend.run`` keyed by the manifest's output names.

    Merge note: the pipeline branch's backends already return this dict; then this is ``seg.backend.run``."""
    outs = seg.backend.run(graph, dict(feeds), to_host)  # type: ignore[arg-type]
    if isinstance(outs, Mapping):
        return dict(outs)
    names = [t.name for t in graph_entry(seg.bundle.manifest, graph).outputs]
    return dict(zip(names, outs))


def max_frames(manifest: Manifest) -> int:
    """The largest image-encoder batch the bundle's graphs / engines take."""
    return int(manifest.dynamic_axes.get("frames", [1, 1, 1])[2])


def check_prompts(prompts: Sequence[str], max_prompts: int) -> list[str]:
    """Strip and validate prompts as ``Segmenter.set_prompts`` does (one-line SDKError otherwise)."""
    if isinstance(prompts, str):
        prompts = [prompts]
    clean = [str(p).strip() for p in prompts]
    if not clean or any(not p for p in clean):
        raise SDKError("prompts: need at least one non-empty prompt, e.g. ['the red circle']")
    if len(clean) > max_prompts:
        raise SDKError(f"{len(clean)} prompts is more than this bundle's limit of {max_prompts} per frame; "
                       "re-export with `ssp convert export --max-prompts N`")
    return clean


class PromptCache:
    """Thread-safe LRU of text-encoder outputs per prompt, shared by every camera / server thread, so each prompt
    is encoded once. Values: {tensor name: array without the prompt axis} (``input_ids``, ``attention_mask`` and
    every text-encoder output).

    Merge note: replaces ``Segmenter.encode_prompts`` for callers that share one cache across threads."""

    def __init__(self, seg: Segmenter, size: int = 256):
        self.seg = seg
        self.size = size
        self.hits = 0
        self.misses = 0
        self.encoder_runs = 0
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()

    def encode(self, prompts: Sequence[str]) -> list[dict[str, np.ndarray]]:
        with self._lock:  # one text-encoder run for all new prompts; others wait instead of encoding twice
            new = [p for p in dict.fromkeys(prompts) if p not in self._cache]
            self.hits += len(prompts) - len(new)
            self.misses += len(new)
            if new:
                tok = self.seg.tokenizer(new)
                outs = run_named(self.seg, "text_encoder", {"input_ids": tok.input_ids,
                                                            "attention_mask": tok.attention_mask})
                self.encoder_runs += 1
                for i, p in enumerate(new):
                    enc = {"input_ids": tok.input_ids[i], "attention_mask": tok.attention_mask[i]}
                    enc.update({k: np.asarray(v[i]) for k, v in outs.items()})
                    self._cache[p] = enc
            out = []
            for p in prompts:
                self._cache.move_to_end(p)
                out.append(self._cache[p])
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
            return out


def decoder_feeds(decoder: GraphEntry, features: Mapping[str, Any], encodings: Sequence[Mapping[str, np.ndarray]],
                  frame_index: Sequence[int] | None = None) -> dict[str, Any]:
    """Mask-decoder feeds by name (CONTRACTS.md "How the runtime feeds the graphs"): image-encoder outputs as they
    are, per-prompt tensors stacked over the prompts, ``frame_index`` (int64 (K,)) when the decoder declares it."""
    feeds: dict[str, Any] = {}
    for spec in decoder.inputs:
        n = spec.name
        if n == "frame_index":
            k = len(encodings)
            feeds[n] = np.asarray(frame_index if frame_index is not None else [0] * k, np.int64).reshape(k)
        elif n in features:
            feeds[n] = features[n]
        elif encodings and n in encodings[0]:
            feeds[n] = np.stack([e[n] for e in encodings])
        else:
            raise SDKError(f"mask_decoder input {n!r} is neither an image-encoder output nor a prompt tensor; "
                           "re-export the bundle with `ssp convert export`")
    return feeds


def preprocess_frame(frame: np.ndarray, input_size: int, mean: Sequence[float],
                     std: Sequence[float]) -> tuple[np.ndarray, Letterbox]:
    """BGR frame -> normalised (1, 3, S, S) float32 and its letterbox: ``Segmenter.preprocess`` without a Segmenter
    (the Triton BLS model runs this server-side)."""
    import cv2

    rgb = cv2.cvtColor(to_bgr8(frame), cv2.COLOR_BGR2RGB)
    lb_im, lb = letterbox(rgb, input_size, pad_value(tuple(mean)))
    return normalize(lb_im, tuple(mean), tuple(std))[None], lb


def postprocess(mask_logits: np.ndarray, target_logit: np.ndarray, prompts: Sequence[str], lb: Letterbox,
                mask_threshold: float, exists_threshold: float) -> list[Result]:
    """Decoder outputs of one frame -> Results at frame size (sigmoid, the letterbox's inverse, thresholds), the
    same arithmetic as ``Segmenter.segment``.

    Merge note: the pipeline branch's ``Segmenter.decode`` does this; keep this one for the Triton BLS model."""
    logits = np.asarray(mask_logits, np.float32)
    scores = 1.0 / (1.0 + np.exp(-np.asarray(target_logit, np.float32).reshape(-1)))
    results = []
    for i, p in enumerate(prompts):
        prob = unletterbox(1.0 / (1.0 + np.exp(-logits[i, 0])), lb)
        exists = bool(scores[i] >= exists_threshold)
        mask = (prob > mask_threshold).astype(np.uint8) if exists else np.zeros(prob.shape, np.uint8)
        results.append(Result(p, mask, prob.astype(np.float32, copy=False), float(scores[i]), exists))
    return results


@dataclass
class FrameBatch:
    """Image-encoder outputs for F frames (every tensor has the frame axis first) and each frame's letterbox."""

    features: dict[str, Any]
    letterboxes: list[Letterbox]

    def frame(self, i: int) -> dict[str, Any]:
        return {k: v[i:i + 1] for k, v in self.features.items()}


def encode_frames(seg: Segmenter, frames: Sequence[np.ndarray]) -> FrameBatch:
    """Letterbox F BGR frames and run the image encoder on them in batches of the bundle's largest frame batch.

    Merge note: becomes ``seg.encode_image(frames)``."""
    if not frames:
        raise SDKError("encode_frames needs at least one frame")
    pre = [seg.preprocess(f) for f in frames]
    images = np.concatenate([p[0] for p in pre])
    step = max_frames(seg.bundle.manifest)
    parts = [run_named(seg, "image_encoder", {"image": images[i:i + step]}) for i in range(0, len(images), step)]
    feats = parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return FrameBatch(feats, [p[1] for p in pre])


def decode_frames(seg: Segmenter, batch: FrameBatch, encodings: Sequence[Sequence[Mapping[str, np.ndarray]]],
                  prompts: Sequence[Sequence[str]]) -> list[list[Result]]:
    """Results per frame for that frame's prompts: one decoder batch over all (frame, prompt) pairs when the
    decoder declares ``frame_index``, else one decoder run per frame (features of batch 1).

    Merge note: becomes ``seg.decode(features, encodings)``."""
    decoder = graph_entry(seg.bundle.manifest, "mask_decoder")
    mt, et = seg.mask_threshold, seg.exists_threshold
    if any(t.name == "frame_index" for t in decoder.inputs) and len(batch.letterboxes) > 1:
        flat = [e for enc in encodings for e in enc]
        index = [i for i, enc in enumerate(encodings) for _ in enc]
        if len(flat) > seg.max_prompts:  # the decoder's prompt axis bounds the pairs of one run
            return [r for i in range(len(batch.letterboxes))
                    for r in decode_frames(seg, FrameBatch(batch.frame(i), [batch.letterboxes[i]]),
                                           [encodings[i]], [prompts[i]])]
        out = run_named(seg, "mask_decoder", decoder_feeds(decoder, batch.features, flat, index))
        results, start = [], 0
        for i, ps in enumerate(prompts):
            sl = slice(start, start + len(ps))
            results.append(postprocess(out["mask_logits"][sl], out["target_logit"][sl], ps, batch.letterboxes[i],
                                       mt, et))
            start += len(ps)
        return results
    results = []
    for i, ps in enumerate(prompts):
        out = run_named(seg, "mask_decoder", decoder_feeds(decoder, batch.frame(i), encodings[i]))
        results.append(postprocess(out["mask_logits"], out["target_logit"], ps, batch.letterboxes[i], mt, et))
    return results


def segment_frames(seg: Segmenter, cache: PromptCache, frames: Sequence[np.ndarray],
                   prompts: Sequence[Sequence[str]]) -> list[list[Result]]:
    """F frames, each with its prompts: prompt encodings from the shared cache, one image-encoder batch, decoding
    as :func:`decode_frames` (per-stage times on every Result)."""
    import time

    t0 = time.perf_counter()
    encodings = [cache.encode(ps) for ps in prompts]
    t1 = time.perf_counter()
    batch = encode_frames(seg, frames)
    t2 = time.perf_counter()
    results = decode_frames(seg, batch, encodings, prompts)
    t3 = time.perf_counter()
    times = {"text_encoder": (t1 - t0) * 1e3, "image_encoder": (t2 - t1) * 1e3, "mask_decoder": (t3 - t2) * 1e3}
    for rs in results:
        for r in rs:
            r.times_ms = times
    return results
