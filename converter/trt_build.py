"""ONNX -> TensorRT engines with the TensorRT Python API, for TensorRT 10 (JetPack 6) and 11.

Version differences are handled by feature detection, never by version strings:

* TensorRT 11 is strongly typed only (no ``BuilderFlag.FP16`` / ``INT8``): FP16 comes from a
  mixed-precision ONNX and INT8 from the Q/DQ ONNX that ``ssp calibrate`` writes; the network is built
  with ``STRONGLY_TYPED``. TensorRT 10 builds those same graphs; for FP16 it may also take the FP32
  graph with the FP16 builder flag when no FP16 graph exists.
* Plugin graphs need the ``ssp`` plugin library: it is loaded into the plugin registry and, where the
  builder config supports it, serialized into the engine (``plugins_to_serialize``).

Engines are named ``<graph>.<flavour>.<precision>.trt<version>.sm<cc>.engine``; a timing cache is kept
in the bundle; the manifest lists every engine; the equivalent ``trtexec`` command is returned.
"""
from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssp_edge.sdk.bundle import GRAPHS, Bundle, EngineEntry, GraphEntry
from ssp_edge.sdk.errors import SDKError

__all__ = ["PRECISIONS", "BuildError", "BuiltEngine", "import_tensorrt", "compute_capability", "engine_name",
           "plan_sources", "trtexec_command", "build_engines", "planned_commands", "strongly_typed_only"]

if TYPE_CHECKING:  # the API-name check (tests/converter/test_trt_api_names.py) types these against the bindings
    import tensorrt as trt

PRECISIONS = ("fp32", "fp16", "int8")
TIMING_CACHE = "timing.cache"


class BuildError(SDKError):
    """An engine cannot be built here (no TensorRT, unsupported precision, parser or builder failure)."""


@dataclass
class BuiltEngine:
    graph: str
    file: str
    seconds: float
    trtexec: str
    notes: list[str] = field(default_factory=list)


def import_tensorrt() -> Any:
    """``import tensorrt`` or a one-line error that says where TensorRT comes from."""
    try:
        import tensorrt as trt
    except Exception as e:  # ImportError, or OSError when libnvinfer is missing
        raise BuildError(f"TensorRT is not usable here ({type(e).__name__}: {e}); build engines on the target: "
                         "JetPack ships TensorRT, desktops `pip install tensorrt`; the trtexec commands printed above do "
                         "the same") from None
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


def engine_name(graph: str, flavour: str, precision: str, trt_version: str, cc: str) -> str:
    major_minor = ".".join(trt_version.split(".")[:2])
    return f"{graph}.{flavour}.{precision}.trt{major_minor}.sm{cc.replace('.', '')}.engine"


def plan_sources(bundle: Bundle, flavour: str, precision: str, strongly_typed: bool) -> dict[str, tuple[GraphEntry, bool]]:
    """For each graph: the ONNX entry to build from and whether the builder's FP16 flag is needed.

    INT8 needs the Q/DQ graphs (``ssp calibrate``); FP16 uses the mixed-precision graphs, or on
    TensorRT 10 the FP32 graph with the FP16 flag. The text encoder stays FP32 unless a reduced graph
    exists (it runs once per new prompt, and its LayerNorms are precision-sensitive).
    """
    plan: dict[str, tuple[GraphEntry, bool]] = {}
    for g in GRAPHS:
        if precision == "fp32" or bundle.has_graph(g, flavour, precision):
            plan[g] = (bundle.graph(g, flavour, precision if precision != "fp32" else "fp32"), False)
        elif g == "text_encoder":
            plan[g] = (bundle.graph(g, flavour, "fp32"), precision == "fp16" and not strongly_typed)
        elif precision == "fp16" and not strongly_typed:
            plan[g] = (bundle.graph(g, flavour, "fp32"), True)
        else:
            need = "a mixed-precision FP16 graph" if precision == "fp16" else "Q/DQ INT8 graphs"
            raise BuildError(f"--precision {precision} needs {need} for {g} ({flavour}) and the bundle has none"
                             f"{' (TensorRT 11 has no FP16 builder flag)' if precision == 'fp16' else ''}; "
                             f"run `ssp calibrate {bundle.root}` first")
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
                        raise BuildError(f"{entry.file}: input {t.name} has dynamic axis {d!r} without a range in "
                                         "the manifest's dynamic_axes; re-export the bundle")
                    dims.append(int(axes[d][i]))
                else:
                    dims.append(int(d))
            shapes.append(tuple(dims))
        out[t.name] = tuple(shapes)
    return out


def trtexec_command(bundle: Bundle, entry: GraphEntry, engine: str, fp16_flag: bool, int8_flag: bool,
                    strongly_typed: bool, plugin_lib: str | None, workspace_mb: int, version_compatible: bool) -> str:
    """The trtexec command line that builds the same engine (for users who prefer the CLI)."""
    shapes = _profile_shapes(entry, bundle.manifest.dynamic_axes)
    args = ["trtexec", f"--onnx={bundle.path(entry.file)}", f"--saveEngine={bundle.target(engine)}",
            f"--memPoolSize=workspace:{workspace_mb}M", f"--timingCacheFile={bundle.target(TIMING_CACHE)}"]
    for key, idx in (("--minShapes", 0), ("--optShapes", 1), ("--maxShapes", 2)):
        if shapes:
            args.append(key + "=" + ",".join(f"{n}:{'x'.join(map(str, s[idx]))}" for n, s in shapes.items()))
    if strongly_typed:
        args.append("--stronglyTyped")
    if fp16_flag:
        args.append("--fp16")
    if int8_flag:
        args.append("--int8")
    if plugin_lib:
        args.append(f"--dynamicPlugins={plugin_lib}")
        if version_compatible:
            args.append(f"--setPluginsToSerialize={plugin_lib}")
    if version_compatible:
        args.append("--versionCompatible")
    return " ".join(shlex.quote(a) for a in args)


def _load_plugins(logger: "trt.ILogger", plugin_lib: str | None) -> None:
    import tensorrt as trt

    trt.init_libnvinfer_plugins(logger, "")
    if plugin_lib:
        from ssp_edge.sdk.plugins import load_plugin_library, register_with_tensorrt

        load_plugin_library(plugin_lib)
        register_with_tensorrt(plugin_lib)


def _build_one(logger: "trt.ILogger", bundle: Bundle, entry: GraphEntry, fp16_flag: bool, int8_flag: bool,
               strongly_typed: bool, plugin_lib: str | None, workspace_mb: int, version_compatible: bool,
               cache_bytes: bytes) -> tuple[bytes, bytes]:
    import tensorrt as trt

    builder = trt.Builder(logger)
    flags = 0
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(bundle.path(entry.file))):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        hint = " (is the ssp plugin library loaded? pass --plugins)" if entry.custom_ops and not plugin_lib else ""
        raise BuildError(f"TensorRT could not parse {entry.file}: {errors}{hint}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    # TensorRT 10 only (11 is strongly typed and has no such flags; plan_sources never asks for them there)
    if fp16_flag and hasattr(trt.BuilderFlag, "FP16"):
        config.set_flag(trt.BuilderFlag.FP16)
    if int8_flag and hasattr(trt.BuilderFlag, "INT8"):
        config.set_flag(trt.BuilderFlag.INT8)
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        if plugin_lib and hasattr(config, "plugins_to_serialize"):
            config.plugins_to_serialize = [str(plugin_lib)]
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, False)
    shapes = _profile_shapes(entry, bundle.manifest.dynamic_axes)
    if shapes:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in shapes.items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BuildError(f"TensorRT failed to build {entry.file} (see the log above); try a larger --workspace")
    return bytes(memoryview(plan)), bytes(memoryview(cache.serialize()))


def build_engines(path: str | Path, precision: str, flavour: str | None = None, plugin_lib: str | None = None,
                  workspace_mb: int = 1024, version_compatible: bool = False, verbose: bool = False) -> list[BuiltEngine]:
    """Build one engine per graph into the bundle and record them in the manifest."""
    if precision not in PRECISIONS:
        raise BuildError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    bundle = Bundle.open(path)
    flavour = flavour or ("plugin" if plugin_lib else "portable")
    if flavour == "plugin" and not plugin_lib:
        raise BuildError("plugin-flavour graphs need the ssp plugin library: pass --plugins "
                         "build/plugins/libssp_trt_plugins.so or set SSP_PLUGIN_LIB")
    if plugin_lib and not Path(plugin_lib).is_file():
        raise BuildError(f"plugin library {plugin_lib!r} not found; build it with `cmake -S plugins -B build/plugins "
                         "&& cmake --build build/plugins` or point --plugins / SSP_PLUGIN_LIB at it")
    import_tensorrt()
    import tensorrt as trt

    strongly = strongly_typed_only()
    plan = plan_sources(bundle, flavour, precision, strongly)
    # Q/DQ graphs are explicit INT8; TensorRT 10 without strong typing still needs the INT8 flag for them
    int8_flag = precision == "int8" and not strongly
    cc = compute_capability()
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    _load_plugins(logger, plugin_lib)
    cache_path = bundle.target(TIMING_CACHE)
    cache_bytes = cache_path.read_bytes() if cache_path.is_file() else b""
    lib_rel = None
    if plugin_lib:  # keep the library the engines need next to them, hashed in the manifest
        lib_rel = Path(plugin_lib).name
        if bundle.target(lib_rel).resolve() != Path(plugin_lib).resolve():
            bundle.target(lib_rel).write_bytes(Path(plugin_lib).read_bytes())
        bundle.add_file(lib_rel)
    built = []
    from ssp_edge.sdk.bundle import atomic_write_bytes

    for graph, (entry, fp16_flag) in plan.items():
        name = engine_name(graph, flavour, precision, trt.__version__, cc)
        t0 = time.time()
        engine, cache_bytes = _build_one(logger, bundle, entry, fp16_flag, int8_flag, strongly, plugin_lib,
                                         workspace_mb, version_compatible, cache_bytes)
        atomic_write_bytes(bundle.target(name), engine)
        atomic_write_bytes(cache_path, cache_bytes)
        axes = {k: v for k, v in bundle.manifest.dynamic_axes.items()
                if any(k in t.shape for t in entry.inputs)}
        bundle.add_engine(EngineEntry(graph, flavour, precision, name, trt.__version__, cc, entry.file,
                                      lib_rel if entry.custom_ops else None, axes, version_compatible))
        cmd = trtexec_command(bundle, entry, name, fp16_flag, int8_flag, strongly, plugin_lib, workspace_mb,
                              version_compatible)
        built.append(BuiltEngine(graph, name, round(time.time() - t0, 1), cmd))
    bundle.add_file(TIMING_CACHE)
    bundle.save()
    return built


def planned_commands(path: str | Path, precision: str, flavour: str | None = None, plugin_lib: str | None = None,
                     workspace_mb: int = 1024, version_compatible: bool = False, strongly_typed: bool = False) -> list[str]:
    """The trtexec commands for a build, without TensorRT (printed when it is not installed here)."""
    bundle = Bundle.open(path, verify=False)
    flavour = flavour or ("plugin" if plugin_lib else "portable")
    plan = plan_sources(bundle, flavour, precision, strongly_typed)
    cmds = []
    for graph, (entry, fp16_flag) in plan.items():
        name = engine_name(graph, flavour, precision, "<trt>", "<cc>")
        cmds.append(trtexec_command(bundle, entry, name, fp16_flag, precision == "int8" and not strongly_typed,
                                    strongly_typed, plugin_lib, workspace_mb, version_compatible))
    return cmds
