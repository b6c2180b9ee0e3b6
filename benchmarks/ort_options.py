"""ONNX Runtime session options compared on raw sessions of a bundle: one frame = image encoder + mask decoder
(text encodings cached), every variant holding its own sessions of all three graphs in one process as the SDK
does, timed in interleaved rounds (:func:`benchmarks.ort_profile.interleaved`).

A variant is a dict of :func:`benchmarks.ort_profile.session_options` arguments plus ``iobinding`` (outputs
bound to preallocated buffers and the image features handed to the decoder as OrtValues, no NumPy copies).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .ort_profile import frame_feeds, session_options

__all__ = ["DEFAULT_VARIANTS", "OptionsResult", "compare_options", "frame_runner"]

#: name -> options; "ort_default" is ONNX Runtime's own default (spinning always on), "sdk_default" the SDK's (spinning
#: within a run, stopped at its end), "no_spin" the SDK's default before it (workers sleep between ops)
DEFAULT_VARIANTS: dict[str, dict[str, Any]] = {
    "ort_default": {"spinning": None},
    "sdk_default": {"spinning": "run"},
    "no_spin": {"spinning": "off"},
    "1thread": {"threads": 1},
    "extended": {"level": "extended"},
    "no_nchwc": {"nchwc": False},
    "no_arena": {"arena": False},
    "iobinding": {"iobinding": True},
}


@dataclass
class OptionsResult:
    prompts: int
    rounds: int
    ms: dict[str, float] = field(default_factory=dict)  # variant -> median wall ms per frame
    min_ms: dict[str, float] = field(default_factory=dict)

    def table(self, ref: str = "ort_default") -> str:
        lines = [f"| variant ({self.prompts} prompts) | median ms | min ms | vs {ref} |", "|---|---:|---:|---:|"]
        for k, v in self.ms.items():
            lines.append(f"| {k} | {v:.1f} | {self.min_ms[k]:.1f} | {v / self.ms.get(ref, v):.2f} |")
        return "\n".join(lines)


def frame_runner(
    bundle_dir: str | Path,
    feeds: Mapping[str, Mapping[str, np.ndarray]],
    flavour: str = "portable",
    threads: int = 0,
    iobinding: bool = False,
    **opts: Any,
) -> Callable[[], Any]:
    """A callable running one frame (image encoder, then the mask decoder fed by name) on fresh sessions."""
    import onnxruntime as ort

    from ssp_edge.sdk.backends.onnxruntime import create_session
    from ssp_edge.sdk.bundle import Bundle

    b = Bundle.open(bundle_dir)
    mk = {
        g: create_session(b.read_bytes(b.graph(g, flavour).file), **session_options(threads, **opts))
        for g in ("text_encoder", "image_encoder", "mask_decoder")
    }
    ie, md = mk["image_encoder"], mk["mask_decoder"]
    ie_out = [o.name for o in ie.get_outputs()]
    dec_in = feeds["mask_decoder"]
    if not iobinding:

        def run() -> Any:
            feats = dict(zip(ie_out, ie.run(None, dict(feeds["image_encoder"]))))
            return md.run(None, {**dec_in, **{k: v for k, v in feats.items() if k in dec_in}})

        return run
    cpu = "cpu"
    img = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(feeds["image_encoder"]["image"]), cpu)
    b_ie, b_md = ie.io_binding(), md.io_binding()
    b_ie.bind_ortvalue_input("image", img)
    ref = dict(zip(ie_out, ie.run(None, dict(feeds["image_encoder"]))))
    outs = {n: ort.OrtValue.ortvalue_from_numpy(np.empty_like(ref[n]), cpu) for n in ie_out}
    for n, v in outs.items():
        b_ie.bind_ortvalue_output(n, v)
    for n, v in dec_in.items():
        b_md.bind_ortvalue_input(
            n, outs[n] if n in outs else ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v), cpu)
        )
    dref = md.run(None, {**dec_in, **{k: v for k, v in ref.items() if k in dec_in}})
    for o, r in zip(md.get_outputs(), dref):
        b_md.bind_ortvalue_output(o.name, ort.OrtValue.ortvalue_from_numpy(np.empty_like(r), cpu))

    def run_bound() -> Any:
        ie.run_with_iobinding(b_ie)
        md.run_with_iobinding(b_md)
        return b_md.get_outputs()

    return run_bound


def compare_options(
    bundle_dir: str | Path,
    prompts: list[str],
    variants: Mapping[str, dict[str, Any]] | None = None,
    rounds: int = 20,
    flavour: str = "portable",
    settle_s: float = 0.02,
) -> OptionsResult:
    """Median / min wall ms per frame of each variant in interleaved rounds, in a new random order every round
    (a variant's spinning threads or a neighbour's burst then favour no position). ``settle_s`` pauses between
    variants so a variant's spinning threads do not eat into the next one's time."""
    variants = dict(variants or DEFAULT_VARIANTS)
    feeds = frame_feeds(bundle_dir, prompts, flavour)
    runners = {k: frame_runner(bundle_dir, feeds, flavour, **v) for k, v in variants.items()}
    times: dict[str, list[float]] = {k: [] for k in runners}
    rng = random.Random(0)
    for r in range(rounds + 2):
        order = list(runners.items())
        rng.shuffle(order)
        for k, fn in order:
            time.sleep(settle_s)
            t0 = time.perf_counter()
            fn()
            if r >= 2:
                times[k].append((time.perf_counter() - t0) * 1e3)
    res = OptionsResult(len(prompts), rounds)
    for k, v in times.items():
        res.ms[k], res.min_ms[k] = float(np.median(v)), float(np.min(v))
    return res
