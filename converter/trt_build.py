"""ONNX -> TensorRT engines with the TensorRT Python API, for TensorRT 10 (JetPack 6) and 11.

Version differences are handled by feature detection, never by version strings. Precision rules (one per graph,
:func:`plan_sources`; ARCHITECTURE.md §5):

* **Pre-typed graphs are built strongly typed**, on TensorRT 10 too, with no precision flags: the mixed-precision
  FP16 graphs and the Q/DQ INT8 graphs that ``ssp calibrate`` writes say every tensor's type themselves
  (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``; trtexec refuses ``--fp16`` / ``--int8`` with
  ``--stronglyTyped``: samples/common/sampleOptions.cpp, ``BuildOptions::parse``). TensorRT 11 is strongly typed
  only (no ``BuilderFlag.FP16`` / ``INT8``). So the INT8 flag is never set: without Q/DQ nodes TensorRT 10 would
  only calibrate (and fail: "no scaling factors detected") or, in trtexec, invent ranges (sampleEngines.cpp).
* **INT8** builds from the flavour's TensorRT-plan Q/DQ graphs (every Conv / Gemm / MatMul but the kept ones); the
  portable flavour's ONNX Runtime plan is never used for TensorRT.
* **FP16** builds from the FP16 graphs; where the bundle has none, TensorRT 10 takes the FP32 graph with the FP16
  builder flag (weakly typed), TensorRT 11 cannot.
* **The text encoder** is built from its own graph of the requested precision when the bundle has one (its FP16
  graph), else from its FP32 graph, never with a reduced-precision builder flag (its LayerNorms are sensitive and
  it runs once per new prompt).
* **FP32 sources** are strict FP32: TF32 is cleared (trtexec ``--noTF32``).

Plugin graphs need the ``ssp`` plugin library (``--plugins`` / ``$SSP_PLUGIN_LIB``): it is loaded into the registry
and, for version-compatible engines, serialized into them (``plugins_to_serialize``). A content-named copy is kept in
the bundle, with its ``sspPluginsBuildInfo()`` (TensorRT headers, CUDA toolkit) in each engine entry.

Builds never touch what the manifest lists until they are done: every engine, the timing cache and the plugin
copy are written under new names, then the manifest is replaced atomically, then the files it no longer lists are
deleted; interrupted at any point, the bundle opens as it was (or as built). The timing cache is TensorRT's per
GPU and version: one the builder rejects (another GPU) is replaced by a new one, never written back.
Engines built by hand with the printed trtexec lines are registered with :func:`import_engine`
(``ssp convert build BUNDLE --import ENGINE``).
"""

from __future__ import annotations

import re
import secrets
import shlex
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssp_edge.sdk.bundle import GRAPHS, Bundle, EngineEntry, GraphEntry, atomic_write_bytes
from ssp_edge.sdk.errors import SDKError

__all__ = [
    "PRECISIONS",
    "BuildError",
    "TensorRTMissing",
    "BuiltEngine",
    "GraphPlan",
    "import_tensorrt",
    "compute_capability",
    "engine_name",
    "plan_sources",
    "trtexec_command",
    "build_engines",
    "planned_commands",
    "strongly_typed_only",
    "plan_version",
    "import_engine",
    "has_qdq",
]

if TYPE_CHECKING:  # the API-name check (tests/converter/test_trt_api_names.py) types these against the bindings
    import tensorrt as trt

PRECISIONS = ("fp32", "fp16", "int8")
FLAVOURS = ("plugin", "portable")
#: timing caches in the bundle: one per GPU architecture and TensorRT major.minor, under a new name per build
_CACHE_RE = re.compile(r"^timing(\.sm(?P<cc>\d+)\.trt(?P<trt>\d+\.\d+)\.\w+)?\.cache$")
#: the cache trtexec lines write (never listed: trtexec rewrites it in place)
TRTEXEC_CACHE = "trtexec-timing.cache"


class BuildError(SDKError):
    """An engine cannot be built here (no TensorRT, unsupported precision, parser or builder failure)."""


class TensorRTMissing(BuildError):
    """TensorRT does not import here (the CLI then prints the trtexec lines to run on the target)."""


@dataclass
class BuiltEngine:
    graph: str
    file: str
    seconds: float
    trtexec: str
    notes: list[str] = field(default_factory=list)


@dataclass
class GraphPlan:
    """How one graph is built: its ONNX source and the builder's choices (see the module docstring)."""

    graph: str
    entry: GraphEntry
    strongly_typed: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED / trtexec --stronglyTyped
    fp16_flag: bool = False  # BuilderFlag.FP16 / --fp16 (TensorRT 10, FP32 source, FP16 asked for)
    strict_fp32: bool = False  # clear BuilderFlag.TF32 / --noTF32
    notes: list[str] = field(default_factory=list)


def import_tensorrt() -> Any:
    """``import tensorrt`` or a one-line error that says where TensorRT comes from."""
    try:
        import tensorrt as trt
    except Exception as e:  # ImportError, or OSError when libnvinfer is missing
        raise TensorRTMissing(
            f"TensorRT is not usable here ({type(e).__name__}: {e}); build engines on the target: "
            "JetPack ships TensorRT, desktops `pip install tensorrt`; the trtexec commands printed "
            "above do the same"
        ) from None
    return trt


def strongly_typed_only() -> bool:
    """TensorRT 11 removed the FP16/INT8 builder flags: precision lives in the ONNX graph."""
    import_tensorrt()
    import tensorrt as trt

    return not hasattr(trt.BuilderFlag, "FP16")


def compute_capability(device: int = 0) -> str:
    """``"8.7"`` for the CUDA device, or a BuildError naming what is missing."""
    from ssp_edge.sdk.cuda import compute_capability as _cc

    try:
        return _cc(device)
    except SDKError as e:
        raise BuildError(f"{e}; engines must be built on the GPU that runs them") from None


def engine_name(graph: str, flavour: str, precision: str, trt_version: str, cc: str, build_id: str = "") -> str:
    """``<graph>.<flavour>.<precision>.trt<major.minor>.sm<cc>[.<build id>].engine``."""
    major_minor = ".".join(trt_version.split(".")[:2])
    suffix = f".{build_id}" if build_id else ""
    return f"{graph}.{flavour}.{precision}.trt{major_minor}.sm{cc.replace('.', '')}{suffix}.engine"


def has_qdq(bundle: Bundle, entry: GraphEntry) -> bool:
    """Whether the graph file holds QuantizeLinear / DequantizeLinear nodes (read from its hash-checked bytes)."""
    import onnx

    m = onnx.load_model_from_string(bundle.read_bytes(entry.file))
    ops = {n.op_type for n in m.graph.node}
    for f in m.functions:
        ops |= {n.op_type for n in f.node}
    return bool(ops & {"QuantizeLinear", "DequantizeLinear"})


def _int8_entry(bundle: Bundle, graph: str, flavour: str) -> GraphEntry | None:
    """The graph's INT8 graph in the TensorRT Q/DQ plan for this flavour, or None."""
    cands = [g for g in bundle.manifest.graphs if (g.name, g.flavour, g.precision) == (graph, flavour, "int8")]
    for g in cands:
        if g.qdq_plan == "tensorrt" or (g.qdq_plan is None and flavour == "plugin"):  # older plugin graphs: TensorRT's
            return g
    return None


def plan_sources(bundle: Bundle, flavour: str, precision: str, strongly_typed: bool) -> dict[str, GraphPlan]:
    """For each graph: the ONNX entry to build from and the builder's choices (module docstring).

    ``strongly_typed``: the TensorRT at hand is strongly typed only (11.x), so there is no FP16 flag.
    """
    if precision not in PRECISIONS:
        raise BuildError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if flavour not in FLAVOURS:
        raise BuildError(f"--flavour must be one of {', '.join(FLAVOURS)}, got {flavour!r}")
    plan: dict[str, GraphPlan] = {}
    for g in GRAPHS:
        fp32 = bundle.graph(g, flavour, "fp32")
        if precision == "fp32" or (g == "text_encoder" and not bundle.has_graph(g, flavour, precision)):
            why = [] if precision == "fp32" else [f"text encoder: no {precision} graph, built from its FP32 graph"]
            plan[g] = GraphPlan(g, fp32, strongly_typed, strict_fp32=True, notes=why)
        elif precision == "int8":
            e = _int8_entry(bundle, g, flavour)
            if e is None:
                other = bundle.has_graph(g, flavour, "int8")
                raise BuildError(
                    f"--precision int8 needs the TensorRT-plan Q/DQ graph of {g} ({flavour}) and the bundle has "
                    + (
                        "only the ONNX Runtime plan, which keeps in float what int8 does not speed up on a CPU"
                        if other
                        else "none"
                    )
                    + f"; run `ssp calibrate {bundle.root}` (this version writes both plans)"
                )
            p = GraphPlan(g, e, True)
            if not has_qdq(bundle, e):
                p.strongly_typed, p.strict_fp32 = strongly_typed, True
                p.notes.append(f"{e.file} has no Q/DQ node: its engine runs in FP32")
            plan[g] = p
        elif bundle.has_graph(g, flavour, "fp16"):
            plan[g] = GraphPlan(g, bundle.graph(g, flavour, "fp16"), True)
        elif not strongly_typed:
            plan[g] = GraphPlan(g, fp32, False, fp16_flag=True, notes=["no FP16 graph: FP32 graph with the FP16 flag"])
        else:
            raise BuildError(
                f"--precision fp16 needs a mixed-precision FP16 graph for {g} ({flavour}) and the bundle "
                "has none (TensorRT 11 has no FP16 builder flag); "
                f"run `ssp calibrate {bundle.root}` first"
            )
    return plan


def _profile_shapes(entry: GraphEntry, axes: dict[str, list[int]]) -> dict[str, tuple[tuple[int, ...], ...]]:
    """min / opt / max shapes for every input with a dynamic axis."""
    out: dict[str, tuple[tuple[int, ...], ...]] = {}
    for t in entry.inputs:
        if not any(isinstance(d, str) for d in t.shape):
            continue
        shapes = []
        for i in range(3):
            dims = []
            for d in t.shape:
                if isinstance(d, str):
                    if d not in axes:
                        raise BuildError(
                            f"{entry.file}: input {t.name} has dynamic axis {d!r} without a range in "
                            "the manifest's dynamic_axes; re-export the bundle"
                        )
                    dims.append(int(axes[d][i]))
                else:
                    dims.append(int(d))
            shapes.append(tuple(dims))
        out[t.name] = tuple(shapes)
    return out


def trtexec_command(
    bundle: Bundle, plan: GraphPlan, engine: str, plugin_lib: str | None, workspace_mb: int, version_compatible: bool
) -> str:
    """The trtexec line that builds the same engine (every flag exists in trtexec 10.3 and 11.1:
    tests/converter/test_trt_build.py checks them against their sampleOptions.cpp)."""
    shapes = _profile_shapes(plan.entry, bundle.manifest.dynamic_axes)
    args = [
        "trtexec",
        f"--onnx={bundle.path(plan.entry.file)}",
        f"--saveEngine={bundle.target(engine)}",
        f"--memPoolSize=workspace:{workspace_mb}M",
        f"--timingCacheFile={bundle.target(TRTEXEC_CACHE)}",
        "--skipInference",
    ]
    for key, idx in (("--minShapes", 0), ("--optShapes", 1), ("--maxShapes", 2)):
        if shapes:
            args.append(key + "=" + ",".join(f"{n}:{'x'.join(map(str, s[idx]))}" for n, s in shapes.items()))
    if plan.strongly_typed:
        args.append("--stronglyTyped")
    if plan.fp16_flag:
        args.append("--fp16")
    if plan.strict_fp32:
        args.append("--noTF32")
    if plugin_lib:
        args.append(f"--dynamicPlugins={plugin_lib}")
        if version_compatible:
            args.append(f"--setPluginsToSerialize={plugin_lib}")
    if version_compatible:
        args.append("--versionCompatible")
    return " ".join(shlex.quote(a) for a in args)


def _load_plugins(logger: "trt.ILogger", plugin_lib: str | None) -> str:
    """Load and register the plugin library the caller chose; its sspPluginsBuildInfo() (or "")."""
    import tensorrt as trt

    trt.init_libnvinfer_plugins(logger, "")
    if not plugin_lib:
        return ""
    from ssp_edge.sdk.plugins import load_plugin_library, plugin_build_info, register_with_tensorrt

    lib = load_plugin_library(plugin_lib)
    register_with_tensorrt(str(Path(plugin_lib).resolve()))
    return plugin_build_info(lib)


def _timing_cache(config: "trt.IBuilderConfig", cache_bytes: bytes, notes: list[str]) -> "trt.ITimingCache":
    """The bundle's cache when this builder accepts it, else a new one (Polygraphy's CreateConfig sets it with
    ignore_mismatch=False; a rejected cache is dropped, never written back)."""
    cache = None
    if cache_bytes:
        try:
            cache = config.create_timing_cache(cache_bytes)
        except Exception:  # a corrupt file: TensorRT raises or returns None
            cache = None
        if cache is None or not config.set_timing_cache(cache, False):
            notes.append("the bundle's timing cache is from another GPU or TensorRT version: started a new one")
            cache = None
    if cache is None:
        cache = config.create_timing_cache(b"")
        if cache is None or not config.set_timing_cache(cache, False):
            raise BuildError("TensorRT refused a new, empty timing cache")
    return cache


def _build_one(
    logger: "trt.ILogger",
    bundle: Bundle,
    plan: GraphPlan,
    plugin_path: str | None,
    workspace_mb: int,
    version_compatible: bool,
    cache_bytes: bytes,
    notes: list[str],
) -> tuple[bytes, bytes]:
    import tensorrt as trt

    builder = trt.Builder(logger)
    flags = 0
    if plan.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(bundle.read_bytes(plan.entry.file), str(bundle.path(plan.entry.file))):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        missing = plan.entry.custom_ops and not plugin_path
        hint = " (is the ssp plugin library loaded? pass --plugins)" if missing else ""
        raise BuildError(f"TensorRT could not parse {plan.entry.file}: {errors}{hint}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if plan.fp16_flag:  # only planned where the flag exists (TensorRT 10)
        if not hasattr(trt.BuilderFlag, "FP16"):
            raise BuildError("this TensorRT has no FP16 builder flag; build from an FP16 graph (`ssp calibrate`)")
        config.set_flag(trt.BuilderFlag.FP16)
    if plan.strict_fp32:
        config.clear_flag(trt.BuilderFlag.TF32)
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        if plugin_path:
            config.plugins_to_serialize = [plugin_path]
    _timing_cache(config, cache_bytes, notes)
    shapes = _profile_shapes(plan.entry, bundle.manifest.dynamic_axes)
    if shapes:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in shapes.items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError(
            f"TensorRT failed to build {plan.entry.file}; TensorRT's log above says why (--verbose for more)"
        )
    cache = config.get_timing_cache()
    return bytes(memoryview(serialized)), bytes(memoryview(cache.serialize())) if cache is not None else cache_bytes


def _current_cache(bundle: Bundle, cc: str, trt_version: str) -> str | None:
    """The listed timing cache for this GPU and TensorRT major.minor (or an older unnamed one)."""
    mm = ".".join(trt_version.split(".")[:2])
    best = None
    for rel in bundle.manifest.files:
        m = _CACHE_RE.match(rel)
        if m and (m.group("cc") is None or (m.group("cc") == cc.replace(".", "") and m.group("trt") == mm)):
            best = rel if best is None or m.group("cc") else best
    return best


def _copy_plugin(bundle: Bundle, plugin_lib: str, written: list[Path]) -> str:
    """A content-named copy of the plugin library in the bundle (written atomically if new); its name."""
    import hashlib

    data = Path(plugin_lib).read_bytes()
    rel = f"libssp_trt_plugins.{hashlib.sha256(data).hexdigest()[:12]}.so"
    target = bundle.target(rel)
    if not (target.is_file() and target.read_bytes() == data):
        atomic_write_bytes(target, data, 0o755)
        written.append(target)
    return rel


def _commit(bundle: Bundle, new: list[EngineEntry], files: list[str], drop: set[str]) -> None:
    """Replace engine entries of the same (graph, flavour, precision, TensorRT version, GPU), list ``files``, drop
    ``drop`` from the list, save the manifest atomically, then delete the files nobody lists any more."""
    man = bundle.manifest
    keys = {(e.name, e.flavour, e.precision, e.tensorrt_version, e.compute_capability) for e in new}
    old = [e for e in man.engines if (e.name, e.flavour, e.precision, e.tensorrt_version, e.compute_capability) in keys]
    man.engines = [e for e in man.engines if e not in old]
    for e in new:
        bundle.add_engine(e)
    for rel in files:
        bundle.add_file(rel)
    gone = {e.file for e in old} | drop
    libs = {e.plugin_library for e in old if e.plugin_library}
    for rel in sorted(gone | libs):
        in_use = any(rel in (e.file, e.plugin_library) for e in man.engines) or rel in files
        if not in_use:
            man.files.pop(rel, None)
    bundle.save()
    for rel in sorted(gone | libs):
        if rel not in man.files:
            try:
                bundle.target(rel).unlink()
            except (OSError, SDKError):
                pass


def build_engines(
    path: str | Path,
    precision: str,
    flavour: str | None = None,
    plugin_lib: str | None = None,
    workspace_mb: int = 1024,
    version_compatible: bool = False,
    verbose: bool = False,
) -> list[BuiltEngine]:
    """Build one engine per graph into the bundle and record them in the manifest (all or nothing)."""
    if precision not in PRECISIONS:
        raise BuildError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    bundle = Bundle.open(path)
    flavour = flavour or ("plugin" if plugin_lib else "portable")
    if flavour == "plugin" and not plugin_lib:
        raise BuildError(
            "plugin-flavour graphs need the ssp plugin library: pass --plugins "
            "build/plugins/libssp_trt_plugins.so or set SSP_PLUGIN_LIB"
        )
    if plugin_lib and not Path(plugin_lib).is_file():
        raise BuildError(
            f"plugin library {plugin_lib!r} not found; build it with `make plugins` (or `cmake -S plugins "
            "-B build/plugins && cmake --build build/plugins`) or point --plugins / SSP_PLUGIN_LIB at it"
        )
    import_tensorrt()
    import tensorrt as trt

    strongly = strongly_typed_only()
    plan = plan_sources(bundle, flavour, precision, strongly)
    cc = compute_capability()
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    plugin_path = str(Path(plugin_lib).resolve()) if plugin_lib else None
    build_info = _load_plugins(logger, plugin_path)
    old_cache = _current_cache(bundle, cc, trt.__version__)
    cache_bytes = bundle.read_bytes(old_cache) if old_cache else b""
    build_id = secrets.token_hex(4)
    written: list[Path] = []
    try:
        lib_rel = _copy_plugin(bundle, plugin_path, written) if plugin_path else None
        built, entries = [], []
        for graph, p in plan.items():
            name = engine_name(graph, flavour, precision, trt.__version__, cc, build_id)
            t0 = time.time()
            notes = list(p.notes)
            engine, cache_bytes = _build_one(
                logger, bundle, p, plugin_path, workspace_mb, version_compatible, cache_bytes, notes
            )
            atomic_write_bytes(bundle.target(name), engine)
            written.append(bundle.target(name))
            axes = {k: v for k, v in bundle.manifest.dynamic_axes.items() if any(k in t.shape for t in p.entry.inputs)}
            entries.append(
                EngineEntry(
                    graph,
                    flavour,
                    precision,
                    name,
                    trt.__version__,
                    cc,
                    p.entry.file,
                    lib_rel if p.entry.custom_ops else None,
                    axes,
                    version_compatible,
                    build_info or None,
                )
            )
            cmd = trtexec_command(
                bundle,
                p,
                engine_name(graph, flavour, precision, trt.__version__, cc, "trtexec"),
                plugin_path,
                workspace_mb,
                version_compatible,
            )
            built.append(BuiltEngine(graph, name, round(time.time() - t0, 1), cmd, notes))
        mm = ".".join(trt.__version__.split(".")[:2])
        cache_rel = f"timing.sm{cc.replace('.', '')}.trt{mm}.{build_id}.cache"
        atomic_write_bytes(bundle.target(cache_rel), cache_bytes)
        written.append(bundle.target(cache_rel))
        _commit(bundle, entries, [cache_rel] + ([lib_rel] if lib_rel else []), {old_cache} if old_cache else set())
    except BaseException:  # failure or interrupt: the manifest still lists only the old files; drop the new ones
        for f in written:
            f.unlink(missing_ok=True)
        raise
    return built


def planned_commands(
    path: str | Path,
    precision: str,
    flavour: str | None = None,
    plugin_lib: str | None = None,
    workspace_mb: int = 1024,
    version_compatible: bool = False,
    strongly_typed: bool = False,
) -> list[str]:
    """Per graph, the trtexec line for a build and, after ``&&``, the `ssp convert build --import` that registers
    the engine it writes (printed when TensorRT is not installed here)."""
    bundle = Bundle.open(path, verify=False)
    flavour = flavour or ("plugin" if plugin_lib else "portable")
    plan = plan_sources(bundle, flavour, precision, strongly_typed)
    cmds = []
    for graph, p in plan.items():
        name = f"{graph}.{flavour}.{precision}.trtexec.engine"  # registered under its real name by --import
        imp = [
            "ssp",
            "convert",
            "build",
            str(bundle.root),
            "--import",
            str(bundle.target(name)),
            "--graph",
            graph,
            "--flavour",
            flavour,
            "--precision",
            precision,
        ]
        if version_compatible:
            imp.append("--version-compatible")
        if plugin_lib:
            imp += ["--plugins", str(plugin_lib)]
        cmds.append(
            trtexec_command(bundle, p, name, plugin_lib, workspace_mb, version_compatible)
            + " && "
            + " ".join(shlex.quote(a) for a in imp)
        )
    return cmds


# TensorRT plan files start with the tag 'ftrt' and a serialization version; for version 0 bytes 24..27 hold the
# TensorRT version that built the plan. This is what `trtexec --getPlanVersionOnly` reads without deserializing
# (samples/common/sampleEngines.cpp, printPlanVersion, in release/10.3 and release/11.1).
_PLAN_TAG = 0x74727466


def plan_version(data: bytes) -> str:
    """ "10.3.0.26" from a TensorRT plan's header, or a BuildError saying why it is not a plan this can read."""
    if len(data) < 28:
        raise BuildError(f"not a TensorRT engine ({len(data)} bytes, a plan has a 28-byte header)")
    tag, serialization = struct.unpack_from("<II", data, 0)
    if tag != _PLAN_TAG:
        raise BuildError("not a TensorRT engine (its header lacks the plan tag 'ftrt' that trtexec checks)")
    if serialization != 0:
        raise BuildError(f"TensorRT plan serialization version {serialization} is not known (trtexec reads 0)")
    return ".".join(str(b) for b in data[24:28])


def import_engine(
    path: str | Path,
    engine_file: str | Path,
    graph: str,
    precision: str,
    flavour: str,
    version_compatible: bool = False,
    plugin_lib: str | None = None,
    cc: str | None = None,
) -> EngineEntry:
    """Register an engine built with the printed trtexec line: checks the file, the graph / precision / flavour,
    the TensorRT version in its header and, where TensorRT imports here, its I/O names against the source graph;
    then copies it in under a new name and saves the manifest atomically."""
    bundle = Bundle.open(path)
    if graph not in GRAPHS:
        raise BuildError(f"--graph must be one of {', '.join(GRAPHS)}, got {graph!r}")
    f = Path(engine_file)
    if not f.is_file():
        raise BuildError(
            f"--import {str(f)!r}: no such file; build it with the trtexec line `ssp convert build "
            f"{bundle.root} --precision {precision}` prints"
        )
    data = f.read_bytes()
    version = plan_version(data)
    source = plan_sources(bundle, flavour, precision, int(version.split(".")[0]) >= 11)[graph].entry
    if flavour == "plugin" and source.custom_ops and not plugin_lib:
        raise BuildError("a plugin-flavour engine needs the plugin library it was built with: pass --plugins LIB")
    if cc is None:
        cc = compute_capability()
    if not re.fullmatch(r"\d+\.\d+", cc):
        raise BuildError(f"--compute-capability must look like 8.7, got {cc!r}")
    io = _engine_io(data, version, version_compatible, plugin_lib)
    if io is not None:
        want = sorted(t.name for t in source.inputs + source.outputs)
        if sorted(io) != want:
            raise BuildError(
                f"{f.name}: its I/O tensors {sorted(io)} are not those of {source.file} {want}; it was "
                "built from another graph"
            )
    written: list[Path] = []
    build_id = secrets.token_hex(4)
    name = engine_name(graph, flavour, precision, version, cc, build_id)
    try:
        build_info = ""
        lib_rel = None
        if plugin_lib:
            from ssp_edge.sdk.plugins import load_plugin_library, plugin_build_info

            build_info = plugin_build_info(load_plugin_library(plugin_lib))
            lib_rel = _copy_plugin(bundle, plugin_lib, written)
        atomic_write_bytes(bundle.target(name), data)
        written.append(bundle.target(name))
        axes = {k: v for k, v in bundle.manifest.dynamic_axes.items() if any(k in t.shape for t in source.inputs)}
        entry = EngineEntry(
            graph,
            flavour,
            precision,
            name,
            version,
            cc,
            source.file,
            lib_rel if source.custom_ops else None,
            axes,
            version_compatible,
            build_info or None,
        )
        _commit(bundle, [entry], [lib_rel] if lib_rel else [], set())
    except BaseException:
        for w in written:
            w.unlink(missing_ok=True)
        raise
    return entry


def _engine_io(data: bytes, version: str, version_compatible: bool, plugin_lib: str | None) -> list[str] | None:
    """The engine's I/O tensor names where TensorRT and a GPU are here (None otherwise: the plan format beyond its
    header is not documented, so nothing more can be read without TensorRT)."""
    try:
        import tensorrt as trt
    except Exception:
        return None
    from ssp_edge.sdk.backends.tensorrt import engine_usable

    why = engine_usable(version, trt.__version__, version_compatible)
    if why is not None:
        raise BuildError(f"the engine cannot run on this TensorRT {trt.__version__}: {why}")
    logger = trt.Logger(trt.Logger.WARNING)
    _load_plugins(logger, str(Path(plugin_lib).resolve()) if plugin_lib else None)
    runtime = trt.Runtime(logger)
    if version_compatible:
        runtime.engine_host_code_allowed = True  # the operator imports an engine they built themselves
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        raise BuildError("TensorRT could not deserialize the engine (see its log above)")
    return [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
