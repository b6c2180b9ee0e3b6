"""ONNX Runtime per-op profiles and interleaved timing of raw sessions, for finding where a graph's time goes.

:func:`profile_graph` runs a graph with ONNX Runtime's profiler (``SessionOptions.enable_profiling``) and
turns its JSON trace into time per op type and per node (:class:`OpProfile`); :func:`interleaved` times
several variants in rounds (each round runs every variant once on the same inputs; medians over rounds), so
a noisy neighbour on a shared machine lands on every variant alike. ``ssp bench --layers`` can print
:meth:`OpProfile.table` and plot :meth:`OpProfile.by_type`.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OpProfile", "OpRow", "frame_feeds", "interleaved", "parse_profile", "profile_graph", "session_options"]


@dataclass
class OpRow:
    """Kernel time of one op type or one node, per run (ms), with its share of the graph's kernel time."""

    name: str
    op_type: str
    ms: float
    share: float
    count: int  # nodes of this op type (by_type) or 1 (by_node)


@dataclass
class OpProfile:
    """Kernel times from an ONNX Runtime profile, averaged over the profiled runs."""

    runs: int
    node_ms: dict[str, float] = field(default_factory=dict)  # node name -> ms per run
    node_type: dict[str, str] = field(default_factory=dict)  # node name -> op type
    provider: dict[str, str] = field(default_factory=dict)  # node name -> execution provider
    shape: dict[str, str] = field(default_factory=dict)  # node name -> its first output's shape, e.g. "2x8x320x320"

    @property
    def total_ms(self) -> float:
        return float(sum(self.node_ms.values()))

    def by_type(self) -> list[OpRow]:
        """Op types by total kernel time, largest first."""
        ms: dict[str, float] = {}
        n: dict[str, int] = {}
        for node, t in self.node_ms.items():
            op = self.node_type[node]
            ms[op] = ms.get(op, 0.0) + t
            n[op] = n.get(op, 0) + 1
        tot = self.total_ms or 1.0
        return sorted((OpRow(op, op, t, t / tot, n[op]) for op, t in ms.items()), key=lambda r: -r.ms)

    def by_node(self) -> list[OpRow]:
        """Nodes by kernel time, largest first."""
        tot = self.total_ms or 1.0
        return sorted(
            (OpRow(k, self.node_type[k], t, t / tot, 1) for k, t in self.node_ms.items()), key=lambda r: -r.ms
        )

    def table(self, top: int = 12, nodes: int = 0) -> str:
        """Markdown table of the top op types (and optionally the top nodes)."""
        lines = [
            f"kernel time {self.total_ms:.2f} ms per run ({self.runs} runs)",
            "",
            "| op type | nodes | ms | % |",
            "|---|---:|---:|---:|",
        ]
        lines += [f"| {r.op_type} | {r.count} | {r.ms:.2f} | {100 * r.share:.1f} |" for r in self.by_type()[:top]]
        if nodes:
            lines += ["", "| node | op type | output | ms | % |", "|---|---|---|---:|---:|"]
            lines += [
                f"| {r.name} | {r.op_type} | {self.shape.get(r.name, '')} | {r.ms:.3f} | {100 * r.share:.1f} |"
                for r in self.by_node()[:nodes]
            ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "total_ms": self.total_ms,
            "by_type": [vars(r) for r in self.by_type()],
            "by_node": [{**vars(r), "shape": self.shape.get(r.name, "")} for r in self.by_node()],
        }


def parse_profile(path: str | Path, skip_runs: int = 0) -> OpProfile:
    """ONNX Runtime profiler JSON -> per-node kernel ms per run, leaving out the first ``skip_runs`` runs."""
    events = json.loads(Path(path).read_text())
    spans = sorted(
        (int(e["ts"]), int(e["ts"]) + int(e["dur"]))
        for e in events
        if e.get("cat") == "Session" and e.get("name") == "model_run"
    )[skip_runs:]
    prof = OpProfile(max(1, len(spans)))
    for ev in events:
        if ev.get("cat") != "Node" or not str(ev.get("name", "")).endswith("_kernel_time"):
            continue
        ts = int(ev.get("ts", 0))
        if spans and not any(a <= ts <= b for a, b in spans):
            continue
        args = ev.get("args", {})
        node = ev["name"][: -len("_kernel_time")]
        prof.node_ms[node] = prof.node_ms.get(node, 0.0) + float(ev.get("dur", 0)) / 1e3 / prof.runs
        prof.node_type[node] = str(args.get("op_name", "?"))
        prof.provider[node] = str(args.get("provider", ""))
        outs = args.get("output_type_shape") or []
        if outs and isinstance(outs[0], dict):
            dims = next(iter(outs[0].values()), [])
            prof.shape[node] = "x".join(str(d) for d in dims)
    return prof


def session_options(
    threads: int = 0,
    spinning: str | bool | None = "run",
    level: str = "all",
    nchwc: bool = True,
    arena: bool = True,
) -> dict[str, Any]:
    """Keyword arguments of the SDK's one session factory (:func:`ssp_edge.sdk.backends.onnxruntime.create_session`)
    for one variant: ``spinning`` a mode of :data:`~ssp_edge.sdk.backends.onnxruntime.SPINNING_MODES` (None: ONNX
    Runtime's own default, ``always``), ``level`` disable | basic | extended | all, ``nchwc`` False turns ONNX
    Runtime's NCHWc layout transformer off."""
    entries = {} if nchwc or level != "all" else {"optimization.disable_specified_optimizers": "NchwcTransformer"}
    return {
        "threads": threads,
        "spinning": "always" if spinning is None else spinning,
        "graph_optimization": level,
        "mem_arena": arena,
        "config_entries": entries,
    }


def profile_graph(
    model: str | Path | bytes,
    feeds: Mapping[str, np.ndarray],
    runs: int = 10,
    warmup: int = 3,
    threads: int = 0,
    spinning: str | bool | None = "run",
    options: Mapping[str, Any] | None = None,
    providers: Any = None,
    custom_op_libraries: Any = (),
) -> OpProfile:
    """Profile ``runs`` runs of one ONNX graph on ``feeds`` (the ``warmup`` runs before them are left out), in a
    session made by the SDK's session factory with ``options`` (default: :func:`session_options` of ``threads`` /
    ``spinning``)."""
    from ssp_edge.sdk.backends.onnxruntime import create_session

    opts = dict(options or session_options(threads, spinning))
    with tempfile.TemporaryDirectory() as tmp:
        sess = create_session(
            model if isinstance(model, bytes) else str(model),
            providers=providers,
            custom_op_libraries=custom_op_libraries,
            profile_prefix=os.path.join(tmp, "ort"),
            **opts,
        )
        for _ in range(warmup + runs):
            sess.run(None, dict(feeds))
        return parse_profile(sess.end_profiling(), skip_runs=warmup)


def interleaved(
    variants: Mapping[str, Callable[[], Any]],
    rounds: int = 20,
    warmup: int = 3,
    stat: str = "median",
    clock: str = "wall",
) -> dict[str, float]:
    """ms per call of each variant, timed in interleaved rounds (every variant once per round, same inputs):
    the median over rounds, or with ``stat="min"`` the fastest round (the least disturbed by neighbours).
    ``clock="cpu"`` times the process's CPU seconds (all threads) instead of wall time: on a machine shared
    with other jobs it counts the work done, not the time spent waiting for a core (use with intra-op
    spinning off, else spinning threads count too)."""
    now = time.perf_counter if clock == "wall" else time.process_time
    times: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(warmup + rounds):
        for name, fn in variants.items():
            t0 = now()
            fn()
            if r >= warmup:
                times[name].append((now() - t0) * 1e3)
    agg = {"median": np.median, "min": np.min}[stat]
    return {k: float(agg(v)) for k, v in times.items()}


def frame_feeds(
    bundle_dir: str | Path, prompts: list[str], flavour: str = "portable", frames: int = 1, threads: int = 0
) -> dict[str, dict[str, np.ndarray]]:
    """Real feeds of every graph of a bundle (RefShapes frames, ``prompts`` on frame ``i % frames``), matched by
    name as the runtime feeds them (CONTRACTS.md): decoder inputs named like image / text encoder outputs get
    them, ``attention_mask`` the tokenizer's, ``frame_index`` each prompt's frame."""
    from ssp_edge.sdk.backends.onnxruntime import create_session
    from ssp_edge.sdk.bundle import Bundle
    from ssp_edge.sdk.preprocess import letterbox, normalize, pad_value
    from ssp_edge.sdk.tokenizer import Tokenizer
    from ssp_edge.ssp.data.refshapes import RefShapes

    b = Bundle.open(bundle_dir)
    man = b.manifest
    sess = {
        g: create_session(b.read_bytes(b.graph(g, flavour).file), **session_options(threads))
        for g in ("text_encoder", "image_encoder", "mask_decoder")
    }
    data = RefShapes("test", size=man.input_size)
    ims = [
        normalize(
            letterbox(data.scene_samples(i, 1)[0].image, man.input_size, pad_value(man.mean))[0], man.mean, man.std
        )
        for i in range(frames)
    ]
    tok = Tokenizer(b.read_bytes(man.tokenizer), man.max_tokens)(prompts)
    text_in = {
        "input_ids": np.asarray(tok.input_ids, np.int64),
        "attention_mask": np.asarray(tok.attention_mask, np.int64),
    }
    image_in = {"image": np.stack(ims).astype(np.float32)}
    names = {g: [o.name for o in s.get_outputs()] for g, s in sess.items()}
    text_out = dict(zip(names["text_encoder"], sess["text_encoder"].run(None, text_in)))
    image_out = dict(zip(names["image_encoder"], sess["image_encoder"].run(None, image_in)))
    dec: dict[str, np.ndarray] = {}
    for i in sess["mask_decoder"].get_inputs():
        if i.name in image_out:
            dec[i.name] = image_out[i.name]
        elif i.name in text_out:
            dec[i.name] = text_out[i.name]
        elif i.name == "attention_mask":
            dec[i.name] = text_in["attention_mask"]
        elif i.name == "frame_index":
            dec[i.name] = (np.arange(len(prompts)) % frames).astype(np.int64)
        else:
            raise KeyError(f"mask_decoder input {i.name!r} is neither an encoder output nor a known runtime input")
    return {"text_encoder": text_in, "image_encoder": image_in, "mask_decoder": dec}
