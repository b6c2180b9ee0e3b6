"""`ssp convert triton`: a bundle -> an NVIDIA Triton Inference Server model repository.

Four models, named, typed and shaped from the bundle's manifest (never from a second table):

* ``ssp_text_encoder``, ``ssp_image_encoder``, ``ssp_mask_decoder``: the TensorRT engines (``tensorrt_plan``,
  one file per GPU compute capability through ``cc_model_filenames``), the portable ONNX graphs
  (``onnxruntime_onnx``), or, for CPU-only Triton builds such as the one inside the ``nvidia-pytriton`` wheel,
  the portable graphs on ONNX Runtime inside the python backend (``python``). A graph whose inputs and outputs
  all start with the same dynamic axis gets ``max_batch_size`` from it and dynamic batching (the text encoder
  over prompts, the image encoder over frames of several cameras); the others take full shapes.
* The text encoder has the response cache on, so every prompt is encoded once for all clients.
* ``ssp_segment``: a python-backend BLS model (tokenising, letterbox and its inverse server-side): BGR frame +
  prompts in, masks / probabilities / scores out, the same I/O ``ssp serve`` exposes, so
  :class:`ssp_edge.sdk.remote.RemoteSegmenter` talks to either.

Configs are ``model_config_pb2.ModelConfig`` messages (tritonclient) written with ``google.protobuf.text_format``
and parsed back before the repository is moved into place.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssp_edge.sdk.bundle import GRAPHS, MANIFEST, Bundle, EngineEntry, GraphEntry, TensorSpec
from ssp_edge.sdk.errors import SDKError
from ssp_edge.sdk.fsio import atomic_write_bytes, umask_mode
from ssp_edge.sdk.options import add_backend_args, add_json_arg

__all__ = [
    "PLATFORMS",
    "MODEL_NAMES",
    "SEGMENT_MODEL",
    "AUTOREG_LIBRARY",
    "TritonRepository",
    "write_repository",
    "add_subcommand",
    "read_config",
    "config_text",
    "graph_config",
    "segment_config",
    "tritonserver_command",
]

PLATFORMS = ("tensorrt", "onnxruntime", "python")
MODEL_NAMES = {
    "text_encoder": "ssp_text_encoder",
    "image_encoder": "ssp_image_encoder",
    "mask_decoder": "ssp_mask_decoder",
}
SEGMENT_MODEL = "ssp_segment"
#: the plugin library variant that registers its creators when loaded (Triton, DeepStream, LD_PRELOAD)
AUTOREG_LIBRARY = "libssp_trt_plugins_autoreg.so"
CACHE_BYTES = 64 << 20  # --cache-config local,size=...: text encodings are ~10 KB per prompt

_DTYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "bfloat16": "TYPE_BF16",
    "float64": "TYPE_FP64",
    "int64": "TYPE_INT64",
    "int32": "TYPE_INT32",
    "int16": "TYPE_INT16",
    "int8": "TYPE_INT8",
    "uint8": "TYPE_UINT8",
    "uint16": "TYPE_UINT16",
    "bool": "TYPE_BOOL",
    "string": "TYPE_STRING",
}


def _pb() -> Any:
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise SDKError(
            "ssp convert triton needs tritonclient's model_config protobuf: pip install 'tritonclient[grpc]'"
        ) from None
    return model_config_pb2


def config_text(config: Any) -> str:
    """A ModelConfig as config.pbtxt text."""
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def read_config(path: str | Path) -> Any:
    """Parse a config.pbtxt into tritonclient's ``ModelConfig`` (raises on any unknown field or bad value)."""
    from google.protobuf import text_format

    return text_format.Parse(Path(path).read_text(), _pb().ModelConfig())


def _batch_axis(entry: GraphEntry) -> str | None:
    """The dynamic axis every input and output starts with, if there is one (Triton's implicit batch dim)."""
    firsts = {t.shape[0] if t.shape else None for t in (*entry.inputs, *entry.outputs)}
    if len(firsts) == 1:
        (axis,) = firsts
        if isinstance(axis, str):
            return axis
    return None


def _tensor(pb: Any, msg: Any, spec: TensorSpec, batched: bool) -> None:
    if spec.dtype not in _DTYPES:
        raise SDKError(f"tensor {spec.name!r} has dtype {spec.dtype!r}, which Triton has no type for")
    msg.name = spec.name
    msg.data_type = getattr(pb, _DTYPES[spec.dtype])
    msg.dims.extend([d if isinstance(d, int) else -1 for d in (spec.shape[1:] if batched else spec.shape)])


def graph_config(
    entry: GraphEntry,
    axes: dict[str, list[int]],
    platform: str,
    *,
    instances: int = 1,
    cc_files: dict[str, str] | None = None,
    model_file: str = "model.onnx",
    sha256: str = "",
    threads: int = 0,
    queue_delay_us: int = 2000,
) -> Any:
    """The ModelConfig of one graph: names, dtypes, dims from the manifest entry, batching from its dynamic axes
    (``axes``: axis -> [min, opt, max], the engine profile's for TensorRT)."""
    pb = _pb()
    name = MODEL_NAMES[entry.name]
    cfg = pb.ModelConfig(name=name)
    axis = _batch_axis(entry)
    batched = axis is not None and axis in axes and axes[axis][2] > 1
    cfg.max_batch_size = int(axes[axis][2]) if batched else 0  # type: ignore[index]
    for spec in entry.inputs:
        _tensor(pb, cfg.input.add(), spec, batched)
    for spec in entry.outputs:
        _tensor(pb, cfg.output.add(), spec, batched)
    kind = {
        "tensorrt": pb.ModelInstanceGroup.KIND_GPU,
        "onnxruntime": pb.ModelInstanceGroup.KIND_AUTO,
        "python": pb.ModelInstanceGroup.KIND_CPU,
    }[platform]
    cfg.instance_group.add(count=max(1, instances), kind=kind)
    if batched:
        cfg.dynamic_batching.max_queue_delay_microseconds = queue_delay_us
        cfg.dynamic_batching.preferred_batch_size.append(cfg.max_batch_size)
    if entry.name == "text_encoder":
        cfg.response_cache.enable = True  # each prompt encoded once for every client
    if platform == "tensorrt":
        cfg.platform = "tensorrt_plan"
        for cc, fname in sorted((cc_files or {}).items()):
            cfg.cc_model_filenames[cc] = fname
    elif platform == "onnxruntime":
        cfg.platform = "onnxruntime_onnx"
        cfg.default_model_filename = model_file
    else:
        cfg.backend = "python"
        for k, v in (("graph", entry.name), ("model_file", model_file), ("sha256", sha256), ("threads", str(threads))):
            cfg.parameters[k].string_value = v
    return cfg


def segment_config(manifest: Any, instances: int = 2, graphs: dict[str, str] | None = None) -> Any:
    """The ModelConfig of the python-backend BLS model ``ssp_segment``: frame + prompts in, masks out. ``graphs``:
    graph -> the manifest file of the graph its model runs (the tensor specs the BLS model's Segmenter feeds);
    thresholds: the bundle's, editable here (the Segmenter's defaults when the bundle has none)."""
    pb = _pb()
    cfg = pb.ModelConfig(name=SEGMENT_MODEL, backend="python", max_batch_size=0)
    cfg.input.add(name="image", data_type=pb.TYPE_UINT8, dims=[-1, -1, 3])
    cfg.input.add(name="prompts", data_type=pb.TYPE_STRING, dims=[-1])
    cfg.output.add(name="mask", data_type=pb.TYPE_UINT8, dims=[-1, -1, -1])
    cfg.output.add(name="prob", data_type=pb.TYPE_FP32, dims=[-1, -1, -1])
    cfg.output.add(name="score", data_type=pb.TYPE_FP32, dims=[-1])
    cfg.output.add(name="exists", data_type=pb.TYPE_BOOL, dims=[-1])
    cfg.instance_group.add(count=max(1, instances), kind=pb.ModelInstanceGroup.KIND_CPU)
    params = {f"{g}_model": m for g, m in MODEL_NAMES.items()}  # graph -> the Triton model that runs it
    params.update({f"{g}_graph": f for g, f in (graphs or {}).items()})
    params.update({f"{k}_threshold": str(v) for k, v in manifest.thresholds.items() if k in ("mask", "exists")})
    for k, v in params.items():
        cfg.parameters[k].string_value = v
    return cfg


def _put(path: Path, data: bytes | str) -> None:
    """Write one repository file (crash-safe), creating its model / version folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data.encode() if isinstance(data, str) else data)


_PY_GRAPH = '''"""ONNX Runtime in Triton's python backend, standing in for the {graph} engine (ssp convert triton)."""
from ssp_edge.sdk.triton_models import GraphModel as TritonPythonModel  # noqa: F401
'''
_PY_SEGMENT = '''"""ssp_segment: tokens, letterbox, the graphs by BLS, the letterbox's inverse (ssp convert triton)."""
from ssp_edge.sdk.triton_models import SegmentModel as TritonPythonModel  # noqa: F401
'''


@dataclass
class TritonRepository:
    """What ``write_repository`` wrote."""

    root: Path
    platform: str
    models: list[str]
    precision: str
    flavour: str
    plugin_library: str | None  # the library file tritonserver must load (plugin engines), else None
    command: list[str]  # how to start tritonserver on it
    engines: dict[str, dict[str, str]] = field(default_factory=dict)  # graph -> {compute capability: file}
    tensorrt_version: str | None = None


def _engine_sets(
    bundle: Bundle, precision: str | None, flavour: str | None, trt_version: str | None
) -> tuple[str, str, str, dict[str, list[EngineEntry]]]:
    """Engines per graph for one (TensorRT major.minor, precision, flavour), every compute capability built."""
    engines = bundle.manifest.engines
    if not engines:
        raise SDKError(
            f"bundle {str(bundle.root)!r} has no TensorRT engines; build them on each GPU with "
            f"`ssp convert build {bundle.root}` first, or use --platform onnxruntime (or python)"
        )
    versions = sorted(
        {".".join(e.tensorrt_version.split(".")[:2]) for e in engines},
        key=lambda v: tuple(int(x) for x in v.split(".") if x.isdigit()),
    )
    if trt_version is not None:
        want = ".".join(trt_version.split(".")[:2])
        if want not in versions:
            raise SDKError(f"bundle has no engines for TensorRT {trt_version} (has: {', '.join(versions)})")
        versions = [want]
    for v in reversed(versions):  # newest TensorRT first
        for p in [precision] if precision else ["fp16", "int8", "fp32"]:
            for fl in [flavour] if flavour else ["plugin", "portable"]:
                sets = {
                    g: [
                        e
                        for e in engines
                        if e.name == g
                        and e.precision == p
                        and e.flavour == fl
                        and ".".join(e.tensorrt_version.split(".")[:2]) == v
                    ]
                    for g in GRAPHS
                }
                if all(sets.values()):
                    return v, p, fl, sets
    have = ", ".join(sorted({f"{e.name}/{e.precision}/{e.flavour}/TensorRT {e.tensorrt_version}" for e in engines}))
    raise SDKError(
        f"bundle has no complete set of engines (all three graphs) for precision {precision or 'any'}, "
        f"flavour {flavour or 'any'} (has: {have}); build them with `ssp convert build`"
    )


def _source_entry(bundle: Bundle, e: EngineEntry) -> GraphEntry:
    for g in bundle.manifest.graphs:
        if g.file == e.source:
            return g
    return bundle.graph(e.name, e.flavour, e.precision)


def _profile_axes(bundle: Bundle, entries: Sequence[EngineEntry]) -> dict[str, list[int]]:
    """The dynamic axes an engine accepts: its profile (smallest max over the compute capabilities), else the
    manifest's."""
    axes = {k: list(v) for k, v in bundle.manifest.dynamic_axes.items()}
    for e in entries:
        for k, v in e.profiles.items():
            axes[k] = [v[0], v[1], min(axes[k][2], v[2])] if k in axes else list(v)
    return axes


def tritonserver_command(repo: Path, plugin_library: str | None, platform: str) -> list[str]:
    """The tritonserver command line for the repository (response cache on; the plugin library when needed)."""
    cmd = ["tritonserver", f"--model-repository={repo}", f"--cache-config=local,size={CACHE_BYTES}"]
    if plugin_library:
        cmd.append(f'--backend-config=tensorrt,plugins="{plugin_library}"')
    return cmd


def _readme(r: TritonRepository, bundle: Bundle) -> str:
    man = bundle.manifest
    lines = [
        f"# Triton model repository for {man.source.get('checkpoint', 'an SSP bundle')}",
        "",
        f"Written by `ssp convert triton` from `{bundle.root}` ({r.platform}, {r.precision}, {r.flavour} graphs).",
        "",
        "| model | what |",
        "|---|---|",
        f"| `{MODEL_NAMES['text_encoder']}` | prompt tokens -> words, sentence (response cache: each prompt "
        "encoded once for every client) |",
        f"| `{MODEL_NAMES['image_encoder']}` | letterboxed, normalised frames -> image features (dynamic "
        "batching over cameras) |",
        f"| `{MODEL_NAMES['mask_decoder']}` | image features + prompt encodings -> mask logits, target logit |",
        f"| `{SEGMENT_MODEL}` | python BLS: BGR frame `image` (H, W, 3) uint8 + `prompts` (K) strings -> `mask` "
        "(K, H, W) uint8, `prob` (K, H, W) fp32, `score` (K) fp32, `exists` (K) bool |",
        "",
        "## Start the server",
        "",
        "```bash",
        " \\\n    ".join(r.command),
        "```",
        "",
    ]
    if r.plugin_library:
        lines += [
            "The engines contain `ssp::` plugin layers. Triton's TensorRT backend loads plugin libraries with a "
            "plain `dlopen` and never calls `getCreators`, so load the variant that registers its creators "
            f"when loaded, `{AUTOREG_LIBRARY}` (built by `make plugins` next to `libssp_trt_plugins.so`; "
            "copy it onto the server), with either:",
            "",
            f'* `--backend-config=tensorrt,plugins="/path/{AUTOREG_LIBRARY}"` (as above; several: `"a.so;b.so"`), or',
            f"* `LD_PRELOAD=/path/{AUTOREG_LIBRARY} tritonserver ...` (also DeepStream: `custom-lib-path`, "
            f"and `trtexec --plugins=/path/{AUTOREG_LIBRARY}`).",
            "",
            "Loading native code is the operator's choice: nothing in this repository loads it by itself.",
            "",
        ]
    if r.platform == "tensorrt":
        lines += [
            f"Engines were built with TensorRT {r.tensorrt_version}: use a Triton release whose TensorRT has "
            "the same major.minor. Per compute capability (`cc_model_filenames`):",
            "",
        ]
        for g, files in r.engines.items():
            lines.append(f"* `{MODEL_NAMES[g]}`: " + ", ".join(f"sm {cc} -> `{f}`" for cc, f in sorted(files.items())))
        lines += [
            "",
            "A GPU whose compute capability is not listed has no engine: build one on it with "
            f"`ssp convert build {bundle.root}` and re-run `ssp convert triton`.",
            "",
        ]
    lines += [
        "## Python environment of the server",
        "",
        f"`{SEGMENT_MODEL}`"
        + (" and the three graph models (ONNX Runtime inside the python backend)" if r.platform == "python" else "")
        + " import `ssp_edge`: install it into the Python the python backend runs "
        "(`pip install 'ssp-edge[runtime]'` in the Triton container, or `PYTHONPATH` pointing at a "
        "site-packages that has it). If the python backend stub cannot find `libpython3.X.so`, add the "
        "interpreter's lib folder to `LD_LIBRARY_PATH`.",
        "",
        "## Clients",
        "",
        "```python",
        "from ssp_edge.sdk.remote import RemoteSegmenter",
        "",
        'seg = RemoteSegmenter("grpc://127.0.0.1:8001")   # or http://127.0.0.1:8000',
        'seg.set_prompts(["the red circle"])',
        "for r in seg.segment(frame_bgr):",
        "    print(r.prompt, r.exists, r.score, r.mask.shape)",
        "```",
        "",
        "## Files and sha256",
        "",
        "| file | sha256 |",
        "|---|---|",
    ]
    for p in sorted(r.root.rglob("*")):
        if p.is_file() and p.name != "README.md":
            lines.append(f"| `{p.relative_to(r.root)}` | `{hashlib.sha256(p.read_bytes()).hexdigest()}` |")
    return "\n".join(lines) + "\n"


def write_repository(
    bundle: str | Path | Bundle,
    out: str | Path,
    platform: str = "tensorrt",
    precision: str | None = None,
    flavour: str | None = None,
    tensorrt_version: str | None = None,
    instances: int = 1,
    segment_instances: int = 2,
    threads: int = 0,
    force: bool = False,
) -> TritonRepository:
    """Write the model repository ``out`` from a (verified) bundle; every config is parsed back before ``out`` is
    replaced, so a failed run leaves ``out`` as it was."""
    if platform not in PLATFORMS:
        raise SDKError(f"--platform must be one of {', '.join(PLATFORMS)}, got {platform!r}")
    b = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise SDKError(f"--out {str(out)!r} exists and is not empty; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        repo = _write(b, tmp, platform, precision, flavour, tensorrt_version, instances, segment_instances, threads)
        for cfg in tmp.glob("*/config.pbtxt"):
            read_config(cfg)  # must parse into ModelConfig
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        for d in (tmp, *(p for p in tmp.rglob("*") if p.is_dir())):
            d.chmod(umask_mode(0o755))  # mkdtemp makes 0700: the server may run as another user
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    repo.root = out
    repo.command = tritonserver_command(out.resolve(), repo.plugin_library and f"/path/{AUTOREG_LIBRARY}", platform)
    _put(out / "README.md", _readme(repo, b))
    return repo


def _write(
    b: Bundle,
    root: Path,
    platform: str,
    precision: str | None,
    flavour: str | None,
    trt_version: str | None,
    instances: int,
    segment_instances: int,
    threads: int,
) -> TritonRepository:
    man = b.manifest
    engines_by_graph: dict[str, dict[str, str]] = {}
    graph_files: dict[str, str] = {}  # graph -> the manifest file its model was written from
    plugin = None
    if platform == "tensorrt":
        v, prec, fl, sets = _engine_sets(b, precision, flavour, trt_version)
        for g in GRAPHS:
            entries = sets[g]
            spec = _source_entry(b, entries[0])
            graph_files[g] = spec.file
            files: dict[str, str] = {}
            for e in entries:
                fname = f"model_sm{e.compute_capability.replace('.', '')}.plan"
                if e.compute_capability in files:
                    raise SDKError(
                        f"bundle has two {g} engines for sm {e.compute_capability} (TensorRT {v}, {prec}, "
                        f"{fl}); keep one"
                    )
                _put(root / MODEL_NAMES[g] / "1" / fname, b.read_bytes(e.file))
                files[e.compute_capability] = fname
                plugin = plugin or (AUTOREG_LIBRARY if (fl == "plugin" or e.plugin_library) else None)
            engines_by_graph[g] = files
            cfg = graph_config(
                spec,
                _profile_axes(b, entries),
                platform,
                instances=1 if g == "text_encoder" else instances,
                cc_files=files,
            )
            _put(root / MODEL_NAMES[g] / "config.pbtxt", config_text(cfg))
    else:
        v, fl = None, "portable"  # ONNX Runtime has no ssp:: ops: the portable graphs
        prec = precision or "fp32"
        if prec != "fp32" and not any(b.has_graph(g, "portable", prec) for g in GRAPHS):
            b.graph("image_encoder", "portable", prec)  # raises, naming what exists and the fix
        for g in GRAPHS:
            entry = b.graph(g, "portable", prec if b.has_graph(g, "portable", prec) else "fp32")
            data = b.read_bytes(entry.file)
            graph_files[g] = entry.file
            _put(root / MODEL_NAMES[g] / "1" / "model.onnx", data)
            if platform == "python":
                _put(root / MODEL_NAMES[g] / "1" / "model.py", _PY_GRAPH.format(graph=g))
            cfg = graph_config(
                entry,
                man.dynamic_axes,
                platform,
                instances=1 if g == "text_encoder" else instances,
                sha256=hashlib.sha256(data).hexdigest(),
                threads=threads,
            )
            _put(root / MODEL_NAMES[g] / "config.pbtxt", config_text(cfg))
    seg_dir = root / SEGMENT_MODEL
    _put(seg_dir / "1" / "model.py", _PY_SEGMENT)
    _put(seg_dir / "1" / MANIFEST, (json.dumps(json.loads(b.manifest.to_json()), indent=1) + "\n").encode())
    _put(seg_dir / "1" / "tokenizer.json", b.read_bytes(man.tokenizer))
    _put(seg_dir / "config.pbtxt", config_text(segment_config(man, segment_instances, graph_files)))
    models = [*MODEL_NAMES.values(), SEGMENT_MODEL]
    return TritonRepository(root, platform, models, prec, fl, plugin, [], engines_by_graph, v)


def add_subcommand(s: Any, fmt: Any) -> None:
    """``ssp convert triton`` (registered by converter/cli.py)."""
    t = s.add_parser(
        "triton",
        formatter_class=fmt,
        help="write a Triton Inference Server model repository",
        description="Write a Triton model repository from a bundle: ssp_text_encoder (response cache), "
        "ssp_image_encoder, ssp_mask_decoder and the python BLS model ssp_segment; prints "
        "the tritonserver command (with the plugin library flags when the engines need it).",
    )
    t.add_argument("bundle")
    t.add_argument("--out", required=True, help="repository folder to create")
    t.add_argument(
        "--platform",
        choices=PLATFORMS,
        default="tensorrt",
        help="tensorrt: the bundle's engines per compute capability; onnxruntime: the portable ONNX "
        "graphs on Triton's ONNX Runtime backend; python: the portable graphs on ONNX Runtime inside "
        "the python backend (CPU-only Triton builds, e.g. the nvidia-pytriton wheel)",
    )
    add_backend_args(
        t,
        which=("precision", "threads"),  # --threads: the python platform's ONNX Runtime, per model
        precision_help="graphs / engines to serve: fp32, fp16 or int8 (default: the best engines the "
        "bundle has (tensorrt) / fp32 (ONNX))",
    )
    t.add_argument(
        "--flavour",
        choices=("plugin", "portable"),
        default=None,
        help="tensorrt engines to use (default: plugin when a complete set exists)",
    )
    t.add_argument("--tensorrt-version", default=None, help="engines of this TensorRT (default: the newest built)")
    t.add_argument("--instances", type=int, default=1, help="instances of the image encoder and mask decoder")
    t.add_argument("--segment-instances", type=int, default=2, help="instances of the ssp_segment BLS model")
    t.add_argument("--force", action="store_true", help="replace an existing repository in OUT")
    add_json_arg(t)
    t.set_defaults(func=_triton_cli)


def _triton_cli(args: Any) -> int:
    import sys

    if args.instances < 1 or args.segment_instances < 1 or args.threads < 0:
        raise SDKError("--instances and --segment-instances must be at least 1, --threads at least 0")
    r = write_repository(
        args.bundle,
        args.out,
        args.platform,
        args.precision,
        args.flavour,
        args.tensorrt_version,
        args.instances,
        args.segment_instances,
        args.threads,
        args.force,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "repository": str(r.root),
                    "platform": r.platform,
                    "precision": r.precision,
                    "flavour": r.flavour,
                    "models": r.models,
                    "plugin_library": r.plugin_library,
                    "tensorrt_version": r.tensorrt_version,
                    "engines": r.engines,
                    "command": r.command,
                }
            )
        )
        return 0
    print(f"wrote {r.root} ({r.platform}, {r.precision}, {r.flavour}): {', '.join(r.models)}")
    if r.plugin_library:
        print(
            f"the engines need the ssp plugins: load {r.plugin_library} (built by `make plugins`) with "
            f'--backend-config=tensorrt,plugins="/path/{r.plugin_library}" or LD_PRELOAD=/path/{r.plugin_library}'
        )
    print("start it with:\n  " + " \\\n    ".join(r.command))
    print(f"(more in {r.root / 'README.md'})", file=sys.stderr)
    return 0
