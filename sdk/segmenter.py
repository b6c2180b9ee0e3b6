"""``Segmenter``: frames + English prompts -> masks, on any backend. The SDK's main entry point.

    seg = Segmenter.open("build/bundle")                 # ONNX Runtime CPU unless TensorRT is usable
    seg.set_prompts(["the red circle", "the square left of the triangle"])
    for r in seg.segment(frame_bgr):                     # one Result per prompt
        print(r.prompt, r.exists, r.score, r.mask.sum())

The stages are public (as nanoowl's ``OwlPredictor``), and ``segment`` composes them:

    enc = seg.encode_prompts(["the red circle"])        # PromptEncodings (text encoder; LRU-cached per prompt)
    feats = seg.encode_image(frame_bgr)                  # ImageFeatures (letterbox + image encoder, once per frame;
                                                         # a list of frames is one image-encoder batch)
    results = seg.decode(feats, enc)                     # list[Result]: all prompts of a frame in one decoder batch

Per frame: letterbox (OpenCV) -> image encoder once -> mask decoder once for all prompts (batch = prompts; the
decoder broadcasts the frame's features inside the graph) -> probabilities mapped back to the frame with the exact
inverse of the letterbox. Graphs are fed by the tensor names in the manifest (CONTRACTS.md, "How the runtime feeds
the graphs"): a decoder input named like an image-encoder output gets that output, one named like a text-encoder
output or a tokenizer tensor gets it stacked per prompt, and ``frame_index`` (when the decoder declares it) the frame
of each prompt, so the prompts of several frames share one decoder batch.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .backends.base import Backend, graph_entries, open_backend
from .bundle import Bundle, GraphEntry, Manifest
from .errors import SDKError
from .io_spec import spec_dtype
from .preprocess import Letterbox, letterbox, normalize, pad_value, unletterbox
from .tokenizer import Tokenizer, Tokens

__all__ = [
    "Result",
    "PromptEncodings",
    "ImageFeatures",
    "Segmenter",
    "STAGES",
    "DEFAULT_MAX_FRAME_PIXELS",
    "to_bgr8",
    "open_bundle",
    "clean_prompts",
]

STAGES = ("preprocess", "text_encoder", "image_encoder", "mask_decoder", "postprocess")
#: frames larger than this many pixels are refused unless ``max_frame_pixels`` says otherwise (50 MP)
DEFAULT_MAX_FRAME_PIXELS = 50_000_000
# tensor names of the feeding contract (CONTRACTS.md): the decoder outputs read, the tokenizer's tensors, the
# image input and the optional frame index
_MASK_LOGITS, _TARGET_LOGIT = "mask_logits", "target_logit"
_IMAGE, _FRAME_INDEX = "image", "frame_index"
_TOKENS = ("input_ids", "attention_mask")


@dataclass
class Result:
    """One prompt on one frame."""

    prompt: str
    mask: np.ndarray  # (H, W) uint8 {0, 1} at frame size (or mask_size); all zero when the target is judged absent
    prob: np.ndarray  # (H, W) float32 foreground probability at the mask's size
    score: float  # probability that the prompt names something in the frame
    exists: bool  # score >= the exists threshold
    times_ms: dict[str, float] = field(default_factory=dict)  # per stage, shared by the call's results
    frame: int = 0  # index of the frame in the encode_image batch

    @property
    def area(self) -> int:
        return int(self.mask.sum())


@dataclass(frozen=True)
class PromptEncodings:
    """The text side of a decoder batch: K prompts and, stacked (K, ...) by tensor name, every tensor the decoder
    may take from them (the text encoder's outputs and the tokenizer's ``input_ids`` / ``attention_mask``)."""

    prompts: tuple[str, ...]
    tensors: dict[str, np.ndarray]
    text_encoder_ms: float = 0.0  # time the text encoder ran in the call that made these (0: all cached)
    truncated: tuple[bool, ...] = ()  # per prompt: longer than the bundle's max tokens (cut)

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, indices: Sequence[int]) -> PromptEncodings:
        """The encodings of some of the prompts (e.g. one per frame after one text-encoder batch for all)."""
        idx = list(indices)
        trunc = tuple(self.truncated[i] for i in idx) if self.truncated else ()
        return PromptEncodings(
            tuple(self.prompts[i] for i in idx), {k: v[idx] for k, v in self.tensors.items()}, 0.0, trunc
        )


@dataclass
class ImageFeatures:
    """What the image encoder made of F frames: its outputs by name (host arrays; on TensorRT possibly device
    handles, valid until the same Segmenter's next ``encode_image``) and each frame's letterbox."""

    tensors: dict[str, Any]
    letterboxes: tuple[Letterbox, ...]
    times_ms: dict[str, float] = field(default_factory=dict)  # preprocess, image_encoder
    generation: int | None = None  # which encode_image call of ``owner`` made them (device features are checked)
    owner: int | None = None

    @property
    def frames(self) -> int:
        return len(self.letterboxes)

    @property
    def on_device(self) -> bool:
        return any(not isinstance(v, np.ndarray) for v in self.tensors.values())


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
        raise SDKError(
            f"frame dtype {frame.dtype} is not supported: pass uint8 (or uint16) BGR; for float images "
            "in [0, 1] use (img * 255).astype(np.uint8)"
        )
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.shape[2] != 3:
        raise SDKError(f"frame has {frame.shape[2]} channels; pass BGR (3), BGRA (4) or grayscale (1)")
    return frame


def open_bundle(root: str | Path | Bundle, verify_key: Any = None) -> Bundle:
    """``Bundle.open(root)``, checking its signature against ``verify_key`` (an Ed25519 public key) when given."""
    if isinstance(root, Bundle):
        if verify_key is not None:
            raise SDKError(
                "verify_key applies when a bundle folder is opened; pass the folder, or open the Bundle "
                "with Bundle.open(root, verify_key=...)"
            )
        return root
    return Bundle.open(root, verify_key=verify_key)


def clean_prompts(prompts: Any, max_prompts: int | None = None) -> tuple[str, ...]:
    """Validate prompts as every Segmenter does: a str or a sequence of non-empty str (stripped), at most
    ``max_prompts`` (the bundle's limit per frame; None: a client that does not know it) -> one-line SDKError."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if isinstance(prompts, (bytes, bytearray)) or not isinstance(prompts, Iterable):
        raise SDKError(f"prompts must be a list of strings, got {type(prompts).__name__}; e.g. ['the red circle']")
    items = list(prompts)
    for i, p in enumerate(items):
        if not isinstance(p, str):
            raise SDKError(f"prompt {i} is {type(p).__name__} ({p!r:.40}), not str; pass text, e.g. ['the red circle']")
    clean = tuple(p.strip() for p in items)
    if not clean:
        raise SDKError("no prompts: pass at least one non-empty prompt, e.g. ['the red circle']")
    blank = [i for i, p in enumerate(clean) if not p]
    if blank:
        raise SDKError(f"prompt {blank[0]} is blank; pass non-empty prompts, e.g. ['the red circle']")
    if max_prompts is not None and len(clean) > max_prompts:
        raise SDKError(
            f"{len(clean)} prompts is more than this bundle's limit of {max_prompts} per frame; "
            "re-export with `ssp convert export --max-prompts N`"
        )
    return clean


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


def _whole(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass
class _Cached:
    tensors: dict[str, np.ndarray]  # one prompt's rows, by tensor name
    truncated: bool


class Segmenter:
    """Referring segmentation over a bundle.

    Thread-safe: one Segmenter may be shared by threads. The prompt cache and every backend call are guarded by a
    lock, and prompts passed to :meth:`segment` / :meth:`encode_prompts` are used for that call only (no shared
    state changes), so each thread's results carry its own prompts. :meth:`set_prompts` sets the default prompts
    of :meth:`segment` for every thread. Calls are serialised per Segmenter; for parallel inference open one per
    thread or camera.

    Options: ``cache_size`` prompt encodings are kept (LRU; a whole number >= 1, raised to the bundle's
    prompts-per-frame limit when smaller, so one frame's prompts always fit); frames above ``max_frame_pixels``
    (default 50 MP; None: no limit) are refused; ``mask_size`` (None: frame size) caps the longer side of the
    returned masks and probability maps, which then keep the frame's aspect at a smaller size (for huge frames).
    """

    def __init__(
        self,
        bundle: Bundle | Manifest,
        backend: Backend,
        *,
        tokenizer: Tokenizer | None = None,
        mask_threshold: float | None = None,
        exists_threshold: float | None = None,
        cache_size: int = 256,
        max_frame_pixels: int | None = DEFAULT_MAX_FRAME_PIXELS,
        mask_size: int | None = None,
    ):
        """``bundle``: an opened bundle, or a manifest (then ``tokenizer`` is required), run on ``backend``."""
        self.bundle = bundle if isinstance(bundle, Bundle) else None
        man = bundle.manifest if isinstance(bundle, Bundle) else bundle
        self.manifest = man
        self.backend = backend
        self.input_size = man.input_size
        self.mean, self.std = tuple(man.mean), tuple(man.std)
        self.mask_threshold = float(man.thresholds.get("mask", 0.5) if mask_threshold is None else mask_threshold)
        self.exists_threshold = float(
            man.thresholds.get("exists", 0.5) if exists_threshold is None else exists_threshold
        )
        for name, v in (("mask_threshold", self.mask_threshold), ("exists_threshold", self.exists_threshold)):
            if not 0.0 <= v <= 1.0:
                raise SDKError(f"{name} must be a probability in [0, 1], got {v}")
        self.max_prompts = int(man.dynamic_axes.get("expressions", [1, 1, 64])[-1])
        self.max_frames = int(man.dynamic_axes.get("frames", [1, 1, 1])[-1])
        self.cache_size = self._check_options(cache_size, max_frame_pixels, mask_size, self.max_prompts)
        self.max_frame_pixels = max_frame_pixels
        self.mask_size = mask_size
        if tokenizer is None:
            if self.bundle is None:
                raise SDKError("Segmenter over a manifest needs tokenizer=Tokenizer(...)")
            tokenizer = Tokenizer(self.bundle.read_bytes(man.tokenizer), man.max_tokens, vocab_size=man.vocab_size)
        self.tokenizer = tokenizer
        self._bind(graph_entries(backend, man))
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self.cache_hits = 0
        self.cache_misses = 0
        self._prompts: tuple[str, ...] = ()
        self._lock = threading.RLock()
        self._generation = 0

    @staticmethod
    def _check_options(cache_size: Any, max_frame_pixels: Any, mask_size: Any, max_prompts: int) -> int:
        """Validate the Segmenter's own options; returns the effective cache size."""
        if not _whole(cache_size) or cache_size < 1:
            raise SDKError(f"cache_size must be a whole number >= 1 (prompt encodings kept), got {cache_size!r}")
        if max_frame_pixels is not None and (not _whole(max_frame_pixels) or max_frame_pixels < 1):
            raise SDKError(f"max_frame_pixels must be a whole number >= 1 or None (no limit), got {max_frame_pixels!r}")
        if mask_size is not None and (not _whole(mask_size) or mask_size < 1):
            raise SDKError(
                f"mask_size must be a whole number >= 1 (the longer side of returned masks) or None "
                f"(frame size), got {mask_size!r}"
            )
        return max(int(cache_size), max_prompts)

    def _bind(self, entries: dict[str, GraphEntry]) -> None:
        """Match the decoder's inputs to what feeds them, by name (refused at open when something cannot be fed)."""
        self.entries = entries
        text, image, dec = entries["text_encoder"], entries["image_encoder"], entries["mask_decoder"]
        bad = [t.name for t in text.inputs if t.name not in _TOKENS]
        if bad:
            raise SDKError(
                f"text_encoder input {bad[0]!r} is not a tokenizer tensor ({', '.join(_TOKENS)}); this "
                "SDK cannot feed it (re-export the bundle with this ssp-edge version)"
            )
        if [t.name for t in image.inputs] != [_IMAGE]:
            raise SDKError(
                f"image_encoder takes {[t.name for t in image.inputs]}, expected one input {_IMAGE!r}; "
                "re-export the bundle with this ssp-edge version"
            )
        self._image_spec = image.inputs[0]
        image_out = {t.name for t in image.outputs}
        text_out = {t.name for t in text.outputs} | set(_TOKENS)
        self._dec_image: list[str] = []
        self._dec_text: list[str] = []
        for t in dec.inputs:
            if t.name in image_out:
                self._dec_image.append(t.name)
            elif t.name in text_out:
                self._dec_text.append(t.name)
            elif t.name != _FRAME_INDEX:
                raise SDKError(
                    f"mask_decoder input {t.name!r} is neither an image_encoder output, a text_encoder "
                    "output, a tokenizer tensor nor frame_index; this SDK cannot feed it (re-export the "
                    "bundle with this ssp-edge version)"
                )
        self._frame_index = any(t.name == _FRAME_INDEX for t in dec.inputs)
        outs = {t.name for t in dec.outputs}
        if not {_MASK_LOGITS, _TARGET_LOGIT} <= outs:
            raise SDKError(
                f"mask_decoder outputs {sorted(outs)} lack {_MASK_LOGITS!r} / {_TARGET_LOGIT!r}; re-export the bundle"
            )
        self._dtypes = {t.name: spec_dtype(t) for g in entries.values() for t in g.inputs}

    @classmethod
    def open(
        cls,
        bundle: str | Path | Bundle,
        backend: str = "auto",
        precision: str | None = None,
        *,
        providers: Sequence[str] | None = None,
        threads: int = 0,
        plugin_lib: str | None = None,
        trust_bundle_plugins: bool = False,
        allow_engine_host_code: bool = False,
        callers: int = 1,
        verify_key: Any = None,
        mask_threshold: float | None = None,
        exists_threshold: float | None = None,
        cache_size: int = 256,
        max_frame_pixels: int | None = DEFAULT_MAX_FRAME_PIXELS,
        mask_size: int | None = None,
    ) -> Segmenter:
        """Open a bundle folder (verified against its manifest's sha256; against ``verify_key``, an Ed25519 public
        key, when given) on a backend (see :func:`ssp_edge.sdk.backends.open_backend`; ``precision`` None: the
        fastest that keeps the accuracy bound, on ONNX Runtime INT8 where ``ssp calibrate`` measured it so and the CPU
        has VNNI / dotprod, see :mod:`.backends.precision_choice`; ``callers``: threads that will call it at once,
        e.g. camera workers, so ONNX Runtime sizes its sessions' thread pools for them)."""
        cls._check_options(cache_size, max_frame_pixels, mask_size, 1)  # cheap checks before loading anything
        b = open_bundle(bundle, verify_key)
        be = open_backend(
            b,
            backend,
            precision,
            providers=providers,
            threads=threads,
            plugin_lib=plugin_lib,
            trust_bundle_plugins=trust_bundle_plugins,
            allow_engine_host_code=allow_engine_host_code,
            callers=callers,
        )
        try:
            return cls(
                b,
                be,
                mask_threshold=mask_threshold,
                exists_threshold=exists_threshold,
                cache_size=cache_size,
                max_frame_pixels=max_frame_pixels,
                mask_size=mask_size,
            )
        except BaseException:
            be.close()
            raise

    @property
    def decodes_frames_together(self) -> bool:
        """Whether one :meth:`decode` batch takes the prompts of several frames (the decoder declares ``frame_index``;
        at most :attr:`max_prompts` (frame, prompt) pairs), else each frame is its own decoder batch."""
        return self._frame_index

    # ---- prompts
    @property
    def prompts(self) -> list[str]:
        """The default prompts of :meth:`segment` (see :meth:`set_prompts`)."""
        return list(self._prompts)

    def _clean_prompts(self, prompts: Any) -> tuple[str, ...]:
        """Validate prompts: a str or a sequence of non-empty str, at most the bundle's limit per frame."""
        return clean_prompts(prompts, self.max_prompts)

    def set_prompts(self, prompts: Sequence[str]) -> None:
        """Default prompts of :meth:`segment` from now on (for every thread); new ones are encoded now (cached)."""
        clean = self._clean_prompts(prompts)
        with self._lock:
            self._encode(clean)
            self._prompts = clean

    def text_feeds(self, prompts: Sequence[str]) -> dict[str, np.ndarray]:
        """The text encoder's feeds by name for ``prompts`` (the tokenizer's tensors; no truncation warning)."""
        return self._text_feeds(self.tokenizer(list(self._clean_prompts(prompts)), warn=False))

    def _text_feeds(self, tok: Tokens) -> dict[str, np.ndarray]:
        have = {"input_ids": tok.input_ids, "attention_mask": tok.attention_mask}
        return {t.name: self._conform(t.name, have[t.name]) for t in self.entries["text_encoder"].inputs}

    def encode_prompts(self, prompts: Sequence[str]) -> PromptEncodings:
        """Encode prompts (text encoder only for those not cached; one batch) -> :class:`PromptEncodings`."""
        clean = self._clean_prompts(prompts)
        with self._lock:
            return self._encode(clean)

    def _encode(self, prompts: tuple[str, ...]) -> PromptEncodings:
        """Fill the cache for ``prompts`` (caller holds the lock) and stack their tensors."""
        rows: dict[str, _Cached] = {}
        for p in dict.fromkeys(prompts):
            if p in self._cache:
                self._cache.move_to_end(p)
                rows[p] = self._cache[p]
        new = [p for p in dict.fromkeys(prompts) if p not in rows]
        self.cache_hits += len(prompts) - len(new)
        self.cache_misses += len(new)
        ms = 0.0
        if new:
            t0 = time.perf_counter()
            tok = self.tokenizer(new)  # warns once per new prompt that is truncated
            out = self.backend.run("text_encoder", self._text_feeds(tok))
            have = {
                **{k: np.asarray(v) for k, v in out.items()},
                "input_ids": tok.input_ids,
                "attention_mask": tok.attention_mask,
            }
            for i, p in enumerate(new):
                rows[p] = self._cache[p] = _Cached({k: v[i] for k, v in have.items()}, tok.truncated[i])
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            ms = _ms(t0)
        first = rows[prompts[0]].tensors
        tensors = {k: np.stack([rows[p].tensors[k] for p in prompts]) for k in first}
        return PromptEncodings(prompts, tensors, ms, tuple(rows[p].truncated for p in prompts))

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    # ---- frames
    def image_feeds(
        self, frames: np.ndarray | Sequence[np.ndarray]
    ) -> tuple[dict[str, np.ndarray], tuple[Letterbox, ...]]:
        """The image encoder's feeds by name for one BGR frame or a list (one batch), and each frame's letterbox.

        Frames: see :func:`to_bgr8`; at most the bundle's frames per call and ``max_frame_pixels`` each."""
        batch = self._frame_list(frames)
        images, lbs = [], []
        for i, f in enumerate(batch):
            self._check_pixels(f, i if len(batch) > 1 else None)
            rgb = cv2.cvtColor(to_bgr8(f), cv2.COLOR_BGR2RGB)
            lb_im, lb = letterbox(rgb, self.input_size, pad_value(self.mean))
            images.append(normalize(lb_im, self.mean, self.std))
            lbs.append(lb)
        return {_IMAGE: self._conform(_IMAGE, np.stack(images))}, tuple(lbs)

    def _frame_list(self, frames: Any) -> list[np.ndarray]:
        batch = list(frames) if isinstance(frames, (list, tuple)) else [frames]
        if not batch:
            raise SDKError("encode_image got an empty list of frames; pass one BGR frame or a list of them")
        if len(batch) > self.max_frames:
            raise SDKError(
                f"{len(batch)} frames in one call is more than this bundle's image encoder takes "
                f"({self.max_frames}); pass fewer, or re-export with `ssp convert export --max-frames N`"
            )
        return batch

    def _check_pixels(self, frame: Any, index: int | None) -> None:
        if self.max_frame_pixels is None or not isinstance(frame, np.ndarray) or frame.ndim < 2:
            return
        h, w = frame.shape[:2]
        if h * w > self.max_frame_pixels:
            which = "frame" if index is None else f"frame {index}"
            raise SDKError(
                f"{which} is {w}x{h} = {h * w:,} pixels, more than max_frame_pixels = "
                f"{self.max_frame_pixels:,}; downscale it, or open the Segmenter with a larger "
                "max_frame_pixels (and mask_size= for smaller masks)"
            )

    def encode_image(self, frames: np.ndarray | Sequence[np.ndarray]) -> ImageFeatures:
        """Letterbox and encode one BGR frame, or a list of frames (several cameras) in one image-encoder batch."""
        t0 = time.perf_counter()
        feeds, lbs = self.image_feeds(frames)
        pre = _ms(t0)
        with self._runs():
            return self._run_image(feeds, lbs, pre)

    @property
    def runs_concurrently(self) -> bool:
        """Whether threads may run this Segmenter's graphs at once (its backend's ``concurrent_runs``: ONNX
        Runtime). Prompt state and the encoding cache are locked either way; otherwise the graphs run one at a
        time (TensorRT contexts and device buffers, OpenVINO infer requests)."""
        return bool(getattr(self.backend, "concurrent_runs", False))

    def _runs(self) -> contextlib.AbstractContextManager[Any]:
        """The lock graph runs take: none on a backend that takes concurrent runs, else the Segmenter's lock."""
        return contextlib.nullcontext() if self.runs_concurrently else self._lock

    def _run_image(self, feeds: dict[str, np.ndarray], lbs: tuple[Letterbox, ...], pre_ms: float) -> ImageFeatures:
        # features may stay on the device unless the decoder needs them one frame at a time (host slices)
        keep = len(lbs) == 1 or self._frame_index
        t0 = time.perf_counter()
        out = self.backend.run("image_encoder", feeds, to_host=not keep)
        ms = _ms(t0)
        with self._lock:
            self._generation += 1
            generation = self._generation
        return ImageFeatures(dict(out), lbs, {"preprocess": pre_ms, "image_encoder": ms}, generation, id(self))

    # ---- decoder
    def _per_frame(
        self, features: ImageFeatures, encodings: PromptEncodings | Sequence[PromptEncodings]
    ) -> list[PromptEncodings]:
        if isinstance(encodings, PromptEncodings):
            return [encodings] * features.frames
        encs = list(encodings)
        if len(encs) != features.frames or not all(isinstance(e, PromptEncodings) for e in encs):
            raise SDKError(
                f"decode needs one PromptEncodings for all frames or one per frame ({features.frames}), "
                f"got {len(encs)} item(s)"
            )
        return encs

    def _batches(self, features: ImageFeatures, encs: list[PromptEncodings]) -> list[tuple[list[int], dict]]:
        """[(frames, decoder feeds)]: one batch for all frames when the decoder declares frame_index (or there is
        one frame), else one batch per frame with that frame's features (host slices)."""
        n = features.frames
        missing = [k for k in self._dec_image if k not in features.tensors]
        if missing:
            raise SDKError(f"image features lack {missing} that the mask decoder takes (made by another bundle?)")
        groups = [list(range(n))] if (n == 1 or self._frame_index) else [[f] for f in range(n)]
        out = []
        for g in groups:
            k = sum(len(encs[f]) for f in g)
            if k > self.max_prompts:
                raise SDKError(
                    f"{k} prompts over {len(g)} frames in one decoder batch is more than this bundle's "
                    f"limit of {self.max_prompts}; decode fewer frames at a time"
                )
            feeds: dict[str, Any] = {}
            for name in self._dec_image:
                v = features.tensors[name]
                feeds[name] = v if len(g) == n else self._conform(name, np.asarray(v)[g[0] : g[0] + 1])
            for name in self._dec_text:
                feeds[name] = self._conform(name, np.concatenate([encs[f].tensors[name] for f in g]))
            if self._frame_index:
                feeds[_FRAME_INDEX] = np.repeat(np.arange(len(g), dtype=np.int64), [len(encs[f]) for f in g])
            out.append((g, feeds))
        return out

    def _conform(self, name: str, value: Any) -> Any:
        """A host array in the dtype the graph declares for ``name`` (device handles pass unchanged)."""
        want = self._dtypes.get(name)
        if want is None or not isinstance(value, np.ndarray) or value.dtype == want:
            return value
        return value.astype(want)

    def decoder_feeds(
        self, features: ImageFeatures, encodings: PromptEncodings | Sequence[PromptEncodings]
    ) -> dict[str, Any]:
        """The mask decoder's feeds by name for ``encodings`` on ``features`` (what :meth:`decode` runs), when
        they form one decoder batch: one frame, or a decoder that declares ``frame_index``."""
        batches = self._batches(features, self._per_frame(features, encodings))
        if len(batches) != 1:
            raise SDKError(
                f"this mask decoder takes one frame per batch (it has no {_FRAME_INDEX!r} input); pass "
                f"the features of one frame, not {features.frames}"
            )
        return batches[0][1]

    def decode(self, features: ImageFeatures, encodings: PromptEncodings | Sequence[PromptEncodings]) -> list[Result]:
        """Masks for ``encodings`` (the same for every frame, or one per frame) on ``features``; all prompts of a
        frame in one decoder batch. Results are frame-major (``Result.frame``), prompts in their given order."""
        encs = self._per_frame(features, encodings)
        with self._runs():
            batches, outs, ms = self._run_decoder(features, encs)
        text_ms = sum({id(e): e.text_encoder_ms for e in encs}.values())
        return self._results(features, encs, batches, outs, text_ms, ms)

    def _run_decoder(
        self, features: ImageFeatures, encs: list[PromptEncodings]
    ) -> tuple[list[tuple[list[int], dict]], list[dict[str, Any]], float]:
        """Run the decoder batches (caller holds :meth:`_runs`): (batches, their outputs, decoder ms)."""
        if features.on_device and (features.owner != id(self) or features.generation != self._generation):
            raise SDKError(
                "these image features were left on the device and a later encode_image call has reused "
                "its buffers; decode a frame's features before encoding the next (or use segment())"
            )
        batches = self._batches(features, encs)
        t0 = time.perf_counter()
        outs = [self.backend.run("mask_decoder", feeds) for _, feeds in batches]
        return batches, outs, _ms(t0)

    def _results(
        self,
        features: ImageFeatures,
        encs: list[PromptEncodings],
        batches: list[tuple[list[int], dict]],
        outs: list[dict[str, Any]],
        text_ms: float,
        decoder_ms: float,
    ) -> list[Result]:
        """Decoder logits -> probabilities and masks at frame size (or mask_size), thresholded."""
        t0 = time.perf_counter()
        results = []
        for (frames, _), out in zip(batches, outs):
            logits = np.asarray(out[_MASK_LOGITS], np.float32)
            scores = _sigmoid(np.asarray(out[_TARGET_LOGIT], np.float32).reshape(-1))
            i = 0
            for f in frames:
                lb = features.letterboxes[f]
                size = self._mask_hw(lb)
                for p in encs[f].prompts:
                    prob = unletterbox(_sigmoid(logits[i, 0]), lb, out_size=size).astype(np.float32, copy=False)
                    # exists threshold 0: the checkpoint's exists head was never trained (its data had no
                    # no-target expressions; export writes thresholds.exists = 0), so every prompt counts as present
                    exists = self.exists_threshold <= 0.0 or bool(scores[i] >= self.exists_threshold)
                    mask = (prob > self.mask_threshold).astype(np.uint8) if exists else np.zeros(prob.shape, np.uint8)
                    results.append(Result(p, mask, prob, float(scores[i]), exists, frame=f))
                    i += 1
        times = {
            "preprocess": features.times_ms.get("preprocess", 0.0),
            "text_encoder": text_ms,
            "image_encoder": features.times_ms.get("image_encoder", 0.0),
            "mask_decoder": decoder_ms,
            "postprocess": _ms(t0),
        }
        for r in results:
            r.times_ms = times
        return results

    def _mask_hw(self, lb: Letterbox) -> tuple[int, int] | None:
        """(width, height) of returned masks: the frame's, or scaled so the longer side is ``mask_size``."""
        side = max(lb.src_width, lb.src_height)
        if self.mask_size is None or side <= self.mask_size:
            return None
        s = self.mask_size / side
        return max(1, round(lb.src_width * s)), max(1, round(lb.src_height * s))

    # ---- composed
    def segment(self, frame_bgr: np.ndarray, prompts: Sequence[str] | None = None) -> list[Result]:
        """Masks for every prompt on one BGR frame: ``prompts`` for this call only, else those of
        :meth:`set_prompts`. encode_prompts + encode_image + decode; the graphs under one lock unless the backend
        takes concurrent runs (:attr:`runs_concurrently`)."""
        clean = self._clean_prompts(prompts) if prompts is not None else self._prompts
        if not clean:
            raise SDKError("no prompts: call set_prompts(['the red circle']) or pass prompts=[...]")
        t0 = time.perf_counter()
        feeds, lbs = self.image_feeds(frame_bgr)
        pre = _ms(t0)
        with self._lock:
            enc = self._encode(clean)
        with self._runs():  # the image features of this call stay this call's: no other encode in between
            feats = self._run_image(feeds, lbs, pre)
            batches, outs, ms = self._run_decoder(feats, [enc])
        return self._results(feats, [enc], batches, outs, enc.text_encoder_ms, ms)

    def close(self) -> None:
        with self._lock:
            self.backend.close()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
