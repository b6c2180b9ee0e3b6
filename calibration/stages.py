"""The typed values passed between the stages of ``ssp calibrate`` (:mod:`calibration.pipeline`):

``frames -> Statistics -> Sensitivity -> QuantPlan -> (graphs) -> Measurement -> report``

Each stage takes the previous stages' values and returns its own; nothing travels in untyped dicts, and each
value writes its own part of ``report.json`` (:meth:`to_report`), so the report keys are defined next to the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ssp_edge.sdk.preprocess import Letterbox
from ssp_edge.sdk.segmenter import PromptEncodings

from .ort_int8 import OrtPlan
from .sensitivity import NodeSensitivity
from .stats import TensorRange

__all__ = [
    "KeptFrame",
    "Statistics",
    "GroupSensitivity",
    "Sensitivity",
    "GraphPlan",
    "QuantPlan",
    "Measurement",
    "QUANT_GRAPHS",
]

QUANT_GRAPHS = ("image_encoder", "mask_decoder")


@dataclass
class KeptFrame:
    """One calibration frame's feeds, kept for the sensitivity pass: the image encoder's feeds, the letterbox and
    the FP32 text encodings of its expressions."""

    image: dict[str, np.ndarray]
    letterboxes: tuple[Letterbox, ...]
    prompts: PromptEncodings


@dataclass
class Statistics:
    """Stage 1: activation ranges of every tensor either INT8 plan needs, from one streaming pass over the frames."""

    method: str
    percentile: float
    data: str
    frames: int
    available_frames: int
    prompts_per_frame: int
    expressions: int
    seed: int
    #: graph -> tensor -> range (the method's |x| threshold and the signed extremes)
    tensors: dict[str, dict[str, TensorRange]]
    #: graph -> tensor -> the TensorRT plan's range keys it provides (``KEY:inI`` / ``KEY:out``)
    range_keys: dict[str, dict[str, list[str]]]
    truncated: list[str] = field(default_factory=list)  # expressions longer than the tokenizer's max tokens
    kept: list[KeptFrame] = field(default_factory=list)  # the first frames' feeds, for the sensitivity pass
    #: the ONNX Runtime (U8S8) plan's ranges come from this method (minmax: its uint8 zero point needs no clipping)
    ort_method: str = "minmax"
    ort_tensors: dict[str, dict[str, TensorRange]] = field(default_factory=dict)

    def amax(self) -> dict[str, float]:
        """TensorRT plan: range key -> the method's absolute maximum (both graphs; keys are unique across them)."""
        out: dict[str, float] = {}
        for g, rk in self.range_keys.items():
            for tensor, keys in rk.items():
                for k in keys:
                    out[k] = float(self.tensors[g][tensor].amax)
        return out

    def asymmetric(self, graph: str) -> dict[str, tuple[float, float]]:
        """ONNX Runtime plan: tensor -> ``[lo, hi]`` of graph ``graph``."""
        src = self.ort_tensors.get(graph) or self.tensors[graph]
        return {t: r.asymmetric for t, r in src.items()}

    def to_report(self) -> dict[str, Any]:
        """``report["calibration"]`` and ``report["ranges"]``."""
        return {
            "calibration": {
                "data": self.data,
                "frames": self.frames,
                "available_frames": self.available_frames,
                "prompts_per_frame": self.prompts_per_frame,
                "expressions": self.expressions,
                "truncated_expressions": len(self.truncated),
                "method": self.method,
                "seed": self.seed,
                "ort_method": self.ort_method,
            },
            "ranges": {
                "method": self.method,
                "amax": self.amax(),
                "onnxruntime": {
                    "method": self.ort_method,
                    "tensors": {g: {t: list(v) for t, v in self.asymmetric(g).items()} for g in self.tensors},
                },
            },
        }


@dataclass
class GroupSensitivity:
    """End-to-end mask error with every node of one kind in int8 at once (``group == "all"``: every node)."""

    graph: str
    group: str
    nodes: int
    keys: list[str]
    mask_prob_mae: float

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "nodes": self.nodes, "mask_prob_mae": self.mask_prob_mae, "keys": self.keys}


@dataclass
class Sensitivity:
    """Stage 2: per graph, nodes ranked worst first (local error of all, end-to-end error of the candidates) and
    node groups (worst first, then ``all``). Empty when the pass is skipped."""

    nodes: dict[str, list[NodeSensitivity]] = field(default_factory=dict)
    groups: dict[str, list[GroupSensitivity]] = field(default_factory=dict)

    def to_report(self) -> dict[str, Any]:
        """``report["sensitivity"]`` and ``report["group_sensitivity"]``."""
        return {
            "sensitivity": {g: [s.to_dict() for s in v] for g, v in self.nodes.items()},
            "group_sensitivity": {g: [r.to_dict() for r in v] for g, v in self.groups.items()},
        }


@dataclass
class GraphPlan:
    """One INT8 graph to write: which Conv / Gemm / MatMul nodes run in int8 and why the others stay float."""

    graph: str
    flavour: str
    qdq_plan: str  # "tensorrt" | "onnxruntime" (GraphEntry.qdq_plan)
    file: str
    nodes: int  # Conv / Gemm / MatMul nodes of the graph
    quantized: list[str]
    kept_float: dict[str, str]  # node -> reason
    ort: OrtPlan | None = None  # the U8S8 plan (passthrough nodes too), for qdq_plan "onnxruntime"
    qdq_nodes: int = 0  # set when the graph is written

    @property
    def format(self) -> str:
        return (
            "U8S8: uint8 asymmetric activations, int8 per-channel weights (ONNX Runtime CPU)"
            if self.qdq_plan == "onnxruntime"
            else "symmetric int8, zero point 0, per-channel weights (TensorRT's rules)"
        )

    def to_dict(self) -> dict[str, Any]:
        d = {
            "placement": self.qdq_plan,
            "qdq_plan": self.qdq_plan,
            "format": self.format,
            "file": self.file,
            "quantized": len(self.quantized),
            "float": len(self.kept_float),
            "nodes": self.nodes,
            "kept_float": dict(self.kept_float),
            "qdq_nodes": self.qdq_nodes,
        }
        if self.ort is not None:
            d["passthrough"] = len(self.ort.quantize) - len(self.ort.compute)
        return d


@dataclass
class QuantPlan:
    """Stage 3: nodes kept float for accuracy (``--exclude`` or the sensitivity pass) and every INT8 graph's plan."""

    excluded: dict[str, dict[str, str]]  # graph -> node key -> reason
    graphs: list[GraphPlan] = field(default_factory=list)

    def find(self, graph: str, flavour: str, qdq_plan: str) -> GraphPlan | None:
        for p in self.graphs:
            if (p.graph, p.flavour, p.qdq_plan) == (graph, flavour, qdq_plan):
                return p
        return None

    def to_report(self) -> dict[str, Any]:
        """``report["int8_plan"]`` (``graph/flavour``: the graph the SDK / TensorRT use for that flavour;
        ``graph/portable/tensorrt``: the portable graph in TensorRT's plan) and ``report["kept_float"]``."""
        plans: dict[str, dict[str, Any]] = {}
        for p in self.graphs:
            own = (p.flavour == "portable") == (p.qdq_plan == "onnxruntime")
            plans[f"{p.graph}/{p.flavour}" + ("" if own else f"/{p.qdq_plan}")] = p.to_dict()
        for p in self.graphs:
            other = self.find(p.graph, p.flavour, "tensorrt")
            if p.flavour == "portable" and p.qdq_plan == "onnxruntime" and other is not None:
                plans[f"{p.graph}/{p.flavour}"]["tensorrt_plan_file"] = other.file
        return {"int8_plan": plans, "kept_float": {g: dict(v) for g, v in self.excluded.items()}}


@dataclass
class Measurement:
    """Stage 4: accuracy per precision (held-out set), output error of every new graph against FP32, latency."""

    accuracy: dict[str, Any] | None = None
    output_error: dict[str, Any] = field(default_factory=lambda: {"frames": 0, "rows": []})
    latency: dict[str, Any] = field(default_factory=dict)

    def to_report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"output_error": self.output_error, "latency": self.latency}
        if self.accuracy is not None:
            out["accuracy"] = self.accuracy
        return out
