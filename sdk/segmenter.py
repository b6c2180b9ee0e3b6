"""``Segmenter``: frames + English prompts -> masks, on any backend. The SDK's main entry point.

    seg = Segmenter.open("build/bundle")                 # ONNX Runtime CPU unless TensorRT is usable
    seg.set_prompts(["the red circle", "the square left of the triangle"])
    for r in seg.segment(frame_bgr):                     # one Result per prompt
        print(r.prompt, r.exists, r.score, r.mask.sum())

Per frame: letterbox (OpenCV) -> image encoder once -> mask decoder once for all prompts (batch =
prompts; the decoder broadcasts the frame's features inside the graph) -> probabilities mapped back to
the frame with the exact inverse of the letterbox. Prompt encodings are cached (LRU), so the text
encoder runs only for new prompts.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .backends.base import Backend, open_backend
from .bundle import Bundle
from .errors import SDKError
from .preprocess import letterbox, normalize, pad_value, unletterbox
from .tokenizer import Tokenizer

__all__ = ["Result", "Segmenter", "STAGES", "to_bgr8"]

STAGES = ("preprocess", "text_encoder", "image_encoder", "mask_decoder", "postprocess")
IMAGE_FEATURES = ("f1", "f2", "f4", "f8", "f16", "spix", "q")


@dataclass
class Result:
    """One prompt on one frame."""

    prompt: str
    mask: np.ndarray  # (H, W) uint8 {0, 1} at frame size; all zero when the target is judged absent
    prob: np.ndarray  # (H, W) float32 foreground probability at frame size
    score: float  # probability that the prompt names something in the frame
    exists: bool  # score >= the exists threshold
    times_ms: dict[str, float] = field(default_factory=dict)  # per stage, shared by the frame's prompts

    @property
    def area(self) -> int:
        return int(self.mask.sum())


def to_bgr8(frame: np.ndarray) -> np.ndarray:
    """Accept what cameras and files deliver: BGR / BGRA / grayscale, 8- or 16-bit -> (H, W, 3) uint8 BGR.

    Anything else (None, empty, float images whose scale is ambiguous, other layouts) is a clear error.
    """
    if frame is None:
        raise SDKError("frame is None (the camera or file read failed?); pass an (H, W, 3) uint8 BGR image")
    if not isinstance(frame, np.ndarray):
        raise SDKError(f"frame must be a numpy array (H, W, 3) uint8 BGR, got {type(frame).__name__}")
    if frame.size == 0 or frame.ndim not in (2, 3) or min(frame.shape[:2]) == 0:
        raise SDKError(f"frame is empty or not an image (shape {frame.shape}); pass an (H, W, 3) uint8 BGR image")
    if frame.dtype == np.uint16:  # 16-bit cameras / PNGs: keep the high byte
        frame = (frame >> 8).astype(np.uint8)
    elif frame.dtype != np.uint8:
        raise SDKError(f"frame dtype {frame.dtype} is not supported: pass uint8 (or uint16) BGR; for float images "
                       "in [0, 1] use (img * 255).astype(np.uint8)")
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.shape[2] != 3:
        raise SDKError(f"frame has {frame.shape[2]} channels; pass BGR (3), BGRA (4) or grayscale (1)")
    return frame


@dataclass
class _Encoded:
    input_ids: np.ndarray  # (L,)
    attention_mask: np.ndarray  # (L,)
    words: np.ndarray  # (L, C)
    sentence: np.ndarray  # (C,)


class Segmenter:
    """Referring segmentation over a bundle. Not thread-safe: use one per thread / camera."""

    def __init__(self, bundle: Bundle, backend: Backend, mask_threshold: float | None = None,
                 exists_threshold: float | None = None, cache_size: int = 256):
        self.bundle = bundle
        self.backend = backend
        man = bundle.manifest
        self.input_size = man.input_size
        self.mean, self.std = tuple(man.mean), tuple(man.std)
        self.mask_threshold = float(man.thresholds.get("mask", 0.5) if mask_threshold is None else mask_threshold)
        self.exists_threshold = float(man.thresholds.get("exists", 0.5) if exists_threshold is None
                                      else exists_threshold)
        for name, v in (("mask_threshold", self.mask_threshold), ("exists_threshold", self.exists_threshold)):
            if not 0.0 <= v <= 1.0:
                raise SDKError(f"{name} must be a probability in [0, 1], got {v}")
        self.tokenizer = Tokenizer(bundle.read_bytes(man.tokenizer), man.max_tokens)
        self.max_prompts = int(man.dynamic_axes.get("expressions", [1, 1, 64])[2])
        self._cache: OrderedDict[str, _Encoded] = OrderedDict()
        self.cache_size = cache_size
        self.cache_hits = 0
        self.cache_misses = 0
        self._prompts: list[str] = []

    @classmethod
    def open(cls, bundle: str | Path | Bundle, backend: str = "auto", precision: str | None = None,
             mask_threshold: float | None = None, exists_threshold: float | None = None,
             providers: Sequence[str] | None = None, threads: int = 0, plugin_lib: str | None = None,
             cache_size: int = 256) -> "Segmenter":
        """Open a bundle folder (verified against its manifest's sha256) on a backend."""
        b = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
        be = open_backend(b, backend, precision, providers, threads, plugin_lib)
        return cls(b, be, mask_threshold, exists_threshold, cache_size)

    # ---- prompts
    @property
    def prompts(self) -> list[str]:
        return list(self._prompts)

    def set_prompts(self, prompts: Sequence[str]) -> None:
        """Prompts used by :meth:`segment` from now on; new ones are encoded now (cached)."""
        if isinstance(prompts, str):
            prompts = [prompts]
        clean = [p.strip() for p in prompts]
        if not clean or any(not p for p in clean):
            raise SDKError("set_prompts needs at least one non-empty prompt, e.g. ['the red circle']")
        if len(clean) > self.max_prompts:
            raise SDKError(f"{len(clean)} prompts is more than this bundle's limit of {self.max_prompts} per frame; "
                           "re-export with `ssp convert export --max-prompts N`")
        self._encode(clean)
        self._prompts = clean

    def _encode(self, prompts: Sequence[str]) -> float:
        """Fill the cache for ``prompts``; returns the text-encoder time in ms (0 when all cached)."""
        new = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        for p in prompts:
            if p in self._cache:
                self._cache.move_to_end(p)
        self.cache_hits += len(prompts) - len(new)
        self.cache_misses += len(new)
        if not new:
            return 0.0
        t0 = time.perf_counter()
        tok = self.tokenizer(new)
        words, sent = self.backend.run("text_encoder", {"input_ids": tok.input_ids,
                                                        "attention_mask": tok.attention_mask})
        for i, p in enumerate(new):
            self._cache[p] = _Encoded(tok.input_ids[i], tok.attention_mask[i], np.asarray(words[i]),
                                      np.asarray(sent[i]))
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return (time.perf_counter() - t0) * 1e3

    def clear_cache(self) -> None:
        self._cache.clear()

    # ---- frames
    def preprocess(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, object]:
        """BGR frame -> normalized (1,3,S,S) float32 input and its letterbox (see :func:`to_bgr8`)."""
        rgb = cv2.cvtColor(to_bgr8(frame_bgr), cv2.COLOR_BGR2RGB)
        lb_im, lb = letterbox(rgb, self.input_size, pad_value(self.mean))
        return normalize(lb_im, self.mean, self.std)[None], lb

    def segment(self, frame_bgr: np.ndarray, prompts: Sequence[str] | None = None) -> list[Result]:
        """Masks for every prompt (``prompts`` or those of :meth:`set_prompts`) on one BGR frame."""
        if prompts is not None:
            self.set_prompts(prompts)
        if not self._prompts:
            raise SDKError("no prompts: call set_prompts(['the red circle']) or pass prompts=[...]")
        times: dict[str, float] = {}
        t0 = time.perf_counter()
        image, lb = self.preprocess(frame_bgr)
        times["preprocess"] = (time.perf_counter() - t0) * 1e3
        times["text_encoder"] = self._encode(self._prompts)
        t0 = time.perf_counter()
        feats = self.backend.run("image_encoder", {"image": image}, to_host=False)  # GPU backends keep these
        times["image_encoder"] = (time.perf_counter() - t0) * 1e3
        enc = [self._cache[p] for p in self._prompts]
        t0 = time.perf_counter()
        logits, target = self.backend.run("mask_decoder", {
            **dict(zip(IMAGE_FEATURES, feats)),
            "words": np.stack([e.words for e in enc]), "attention_mask": np.stack([e.attention_mask for e in enc]),
            "sentence": np.stack([e.sentence for e in enc])})
        times["mask_decoder"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        logits = np.asarray(logits, np.float32)
        scores = 1.0 / (1.0 + np.exp(-np.asarray(target, np.float32)))
        results = []
        for i, p in enumerate(self._prompts):
            prob = unletterbox(1.0 / (1.0 + np.exp(-logits[i, 0])), lb)  # type: ignore[arg-type]
            # issue 18: exists threshold 0 = the checkpoint's exists head was never trained (no no-target
            # expressions in its data; export writes thresholds.exists = 0): every prompt counts as present
            exists = self.exists_threshold <= 0.0 or bool(scores[i] >= self.exists_threshold)
            mask = (prob > self.mask_threshold).astype(np.uint8) if exists else np.zeros(prob.shape, np.uint8)
            results.append(Result(p, mask, prob.astype(np.float32, copy=False), float(scores[i]), exists))
        times["postprocess"] = (time.perf_counter() - t0) * 1e3
        for r in results:
            r.times_ms = times
        return results

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "Segmenter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
