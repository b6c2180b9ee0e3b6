"""Export a checkpoint to a bundle: the three deployment graphs (text_encoder, image_encoder,
mask_decoder) in the plugin flavour (``ssp::`` custom nodes) and/or the portable flavour (standard ONNX
ops), each simplified with onnxsim and validated by the ONNX checker with full shape inference.

Dynamic axes: ``frames`` (image_encoder batch, and the mask decoder's per-frame feature inputs) and
``expressions`` (text_encoder batch, the mask decoder's text inputs and ``frame_index``). The image encoder
graph also computes the decoder's prompt-independent part (skip projections, gates), once per frame; the mask
decoder takes these for F frames plus each expression's frame index, so K prompts (of one or several
frames) share one image encoding (``ssp_edge.ssp.models.graphs``).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import torch
from tqdm import tqdm

from ssp_edge import ssp
from ssp_edge.sdk.bundle import Bundle, GraphEntry, Manifest, TensorSpec
from ssp_edge.sdk.fsio import atomic_copy_file, atomic_write_bytes
from ssp_edge.ssp.config import SSPConfig
from ssp_edge.ssp.errors import SSPError
from ssp_edge.ssp.models.graphs import graph_io, graph_modules
from ssp_edge.ssp.models.ssp import SSP
from ssp_edge.ssp.models.text import tokenizer_path

from .schemas import DOMAIN, register_schemas
from .torch_ops import TRANSLATIONS, plugin_ops

__all__ = ["OPSET", "FLAVOURS", "ExportResult", "export_bundle", "expected_custom_ops", "graph_file", "text_vocab_size"]

OPSET = 18
FLAVOURS = ("plugin", "portable")
_DEFAULT_AXES = {"frames": [1, 1, 4], "expressions": [1, 4, 16]}


@dataclass
class ExportResult:
    bundle: Path
    seconds: dict[str, float] = field(default_factory=dict)  # "graph/flavour" -> export seconds


def expected_custom_ops(cfg: SSPConfig, graph: str, flavour: str) -> dict[str, int]:
    """The ``ssp::`` nodes a graph must contain: none in the portable flavour or the text encoder."""
    if flavour == "portable" or graph == "text_encoder":
        return {}
    if graph == "image_encoder":
        return {f"{DOMAIN}::SuperpixelAggregate": 1}
    ops = {f"{DOMAIN}::SuperpixelPropagate": 1}
    if cfg.decoder == "rus":
        ops[f"{DOMAIN}::ReplicationUpsample"] = len(cfg.decoder_channels)
    return ops


def graph_file(graph: str, flavour: str, precision: str = "fp32") -> str:
    """File name in the bundle; the text encoder has no custom ops, so both flavours share one file."""
    base = graph if graph == "text_encoder" else f"{graph}.{flavour}"
    return f"{base}.onnx" if precision == "fp32" else f"{base}.{precision}.onnx"


def _example_inputs(model: SSP, cfg: SSPConfig, graph: str) -> tuple[torch.Tensor, ...]:
    """Real-shaped example inputs for tracing: 2 frames and 3 expressions (distinct sizes, none 1, so the
    exporter keeps both axes dynamic and independent), each expression reading frame ``frame_index``."""
    g = torch.Generator().manual_seed(0)
    s, L = cfg.input_size, cfg.max_tokens
    frames, k = 2, 3
    ids = torch.randint(1000, 2000, (k, L), generator=g)
    mask = torch.ones(k, L, dtype=torch.int64)
    mask[:, L // 2 :] = 0
    if graph == "text_encoder":
        return ids, mask
    image = torch.randn(frames, 3, s, s, generator=g)
    if graph == "image_encoder":
        return (image,)
    modules = graph_modules(model)
    with torch.no_grad():
        feats = modules["image_encoder"](image)
        words, sent = model.text(ids, mask)
    named = {
        **dict(zip(graph_io(cfg)["image_encoder"].outputs, feats)),
        "words": words,
        "attention_mask": mask,
        "sentence": sent,
        "frame_index": torch.tensor([1, 0, 1]),
    }
    return tuple(named[n] for n in graph_io(cfg)[graph].inputs)


_DIM_MAX = {"frames": 64, "expressions": 256}


def _dynamic_shapes(cfg: SSPConfig, graph: str, module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> Any:
    """Axis 0 of every input named in the graph's ``dynamic`` table; positional for ``forward(*inputs)``."""
    io = graph_io(cfg)[graph]
    dims = {a: torch.export.Dim(a, min=1, max=_DIM_MAX[a]) for a in set(io.dynamic.values())}
    spec = [({0: dims[io.dynamic[k]]} if k in io.dynamic else None) for k in io.inputs]
    params = list(inspect.signature(module.forward).parameters.values())
    if params and params[0].kind is inspect.Parameter.VAR_POSITIONAL:
        return (tuple(spec),)
    return dict(zip([p.name for p in params], spec))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The dynamo exporter prints progress lines and warnings per graph; keep them out of the user's way."""
    buf = io.StringIO()
    loggers = [
        logging.getLogger(n)
        for n in ("torch.onnx", "torch._export", "torch.export", "torch._dynamo", "onnxscript", "onnx_ir")
    ]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(buf):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def _export_graph(model: SSP, cfg: SSPConfig, graph: str, flavour: str, path: Path, simplify: bool) -> onnx.ModelProto:
    module = graph_modules(model)[graph]
    ins, outs = graph_io(cfg)[graph].inputs, graph_io(cfg)[graph].outputs
    args = _example_inputs(model, cfg, graph)
    scope = plugin_ops() if flavour == "plugin" else contextlib.nullcontext()
    with scope, _quiet(), torch.no_grad():
        prog = torch.onnx.export(
            module,
            args,
            dynamo=True,
            opset_version=OPSET,
            input_names=list(ins),
            output_names=list(outs),
            dynamic_shapes=_dynamic_shapes(cfg, graph, module, args),
            custom_translation_table=TRANSLATIONS if flavour == "plugin" else None,
            external_data=False,
            optimize=True,
        )
    m = prog.model_proto
    if simplify:
        m = _simplify(m, graph)
    _name_axes(m, graph_io(cfg)[graph].dynamic)
    _strip_metadata(m)
    m.producer_name, m.producer_version = "ssp-edge", ssp.__version__
    register_schemas()
    onnx.checker.check_model(m, full_check=True)
    atomic_write_bytes(path, m.SerializeToString())
    return m


def _name_axes(m: onnx.ModelProto, dynamic: Mapping[str, str]) -> None:
    """Axis 0 of every dynamic input carries its axis name (``frames`` / ``expressions``), also where the exporter
    merged two equal symbols under a generated name (frame_index's ``unk__N``); renamed throughout the graph."""
    rename: dict[str, str] = {}
    for v in m.graph.input:
        if v.name in dynamic:
            d = v.type.tensor_type.shape.dim[0]
            if d.dim_param and d.dim_param != dynamic[v.name]:
                rename[d.dim_param] = dynamic[v.name]
    for v in list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info):
        for d in v.type.tensor_type.shape.dim:
            if d.dim_param in rename:
                d.dim_param = rename[d.dim_param]


def _simplify(m: onnx.ModelProto, graph: str) -> onnx.ModelProto:
    import onnxsim

    with _quiet():
        out, ok = onnxsim.simplify(m, check_n=0)
    if not ok:  # pragma: no cover - onnxsim reports failure only with check_n > 0
        raise SSPError(f"onnxsim could not simplify {graph}")
    return out


def _strip_metadata(m: onnx.ModelProto) -> None:
    """Drop the exporter's per-node/value debug metadata (stack traces, fx names): smaller, reproducible files."""
    for n in m.graph.node:
        del n.metadata_props[:]
    for v in list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info):
        del v.metadata_props[:]
    del m.metadata_props[:]


_DTYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.BOOL: "bool",
}


def tensor_specs(values) -> list[TensorSpec]:
    """Graph inputs / outputs as manifest specs (dynamic dims by name)."""
    specs = []
    for v in values:
        tt = v.type.tensor_type
        shape: list[int | str] = [d.dim_param or d.dim_value for d in tt.shape.dim]
        specs.append(TensorSpec(v.name, shape, _DTYPES.get(tt.elem_type, str(tt.elem_type))))
    return specs


_PASS_THROUGH = ("Cast", "Identity", "Reshape", "Flatten", "Unsqueeze", "Squeeze")


def text_vocab_size(m: onnx.ModelProto, input_name: str = "input_ids") -> int | None:
    """Rows of the word-embedding table the token ids index (the first dimension of the initializer a ``Gather``
    reads with ``input_ids``, through casts / reshapes); None when the graph has no such table."""
    inits = {i.name: i for i in m.graph.initializer}
    frontier, seen = {input_name}, set()
    while frontier:
        name = frontier.pop()
        seen.add(name)
        for n in m.graph.node:
            if name not in n.input:
                continue
            if n.op_type == "Gather" and len(n.input) >= 2 and n.input[1] == name and n.input[0] in inits:
                dims = list(inits[n.input[0]].dims)
                return int(dims[0]) if dims else None
            if n.op_type in _PASS_THROUGH and n.input[0] == name:
                frontier.update(o for o in n.output if o not in seen)
    return None


def custom_op_counts(m: onnx.ModelProto) -> dict[str, int]:
    """``domain::op_type`` -> count for every node outside the standard domains."""
    counts: dict[str, int] = {}
    for n in m.graph.node:
        if n.domain not in ("", "ai.onnx"):
            key = f"{n.domain}::{n.op_type}"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def export_bundle(
    model: SSP,
    cfg: SSPConfig,
    out: str | Path,
    source: dict[str, Any],
    thresholds: dict[str, float],
    flavours: tuple[str, ...] = FLAVOURS,
    simplify: bool = True,
    dynamic_axes: dict[str, list[int]] | None = None,
    progress: bool = True,
) -> ExportResult:
    """Write every (graph, flavour) ONNX file, ``tokenizer.json`` and ``manifest.json`` into ``out``."""
    for f in flavours:
        if f not in FLAVOURS:
            raise SSPError(f"unknown flavour {f!r}; choose plugin, portable or both")
    out = Path(out)
    model = model.eval()
    manifest = Manifest(
        config=_config_dict(cfg),
        input_size=cfg.input_size,
        mean=list(cfg.mean),
        std=list(cfg.std),
        max_tokens=cfg.max_tokens,
        thresholds=dict(thresholds),
        source=source,
        dynamic_axes=dynamic_axes or dict(_DEFAULT_AXES),
        created_by=f"ssp-edge {ssp.__version__}",
    )
    bundle = Bundle.create(out, manifest)
    atomic_copy_file(tokenizer_path(), bundle.target(manifest.tokenizer), mode=0o644)
    bundle.add_file(manifest.tokenizer)
    jobs = [(g, f) for g in graph_io(cfg) for f in flavours]
    result = ExportResult(out)
    done_text: str | None = None
    for graph, flavour in tqdm(jobs, desc="export", unit="graph", disable=not progress):
        name = graph_file(graph, flavour)
        t0 = time.time()
        if graph == "text_encoder" and done_text is not None:
            m = onnx.load(str(out / done_text))
        else:
            m = _export_graph(model, cfg, graph, flavour, bundle.target(name), simplify)
            done_text = name if graph == "text_encoder" else done_text
        if graph == "text_encoder" and manifest.vocab_size is None:
            manifest.vocab_size = text_vocab_size(m)
        result.seconds[f"{graph}/{flavour}"] = round(time.time() - t0, 2)
        bundle.add_graph(
            GraphEntry(
                graph,
                flavour,
                "fp32",
                name,
                tensor_specs(m.graph.input),
                tensor_specs(m.graph.output),
                custom_op_counts(m),
            )
        )
    bundle.save()
    return result


def _config_dict(cfg: SSPConfig) -> dict[str, Any]:
    import json

    return json.loads(cfg.to_json())
