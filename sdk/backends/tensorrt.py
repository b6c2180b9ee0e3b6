"""TensorRT backend: the bundle's engines run with the name-based tensor API (TensorRT 10 / 11; binding
indices are gone) through cuda-python.

* Engines are chosen from the manifest by TensorRT's own compatibility rules (:func:`engine_usable`): an ordinary
  engine runs only on the exact TensorRT version that built it; a version-compatible one on a TensorRT of the same
  major that is not older than its builder; both only on the GPU architecture they were built for. A mismatch is
  refused with the rule and the rebuild command.
* Native code is loaded only by the caller's choice (ARCHITECTURE.md §6): the plugin library from ``plugin_lib=`` /
  ``$SSP_PLUGIN_LIB``, or the bundle's listed, hash-checked copy with ``trust_bundle_plugins=True``
  (:mod:`ssp_edge.sdk.plugins`); version-compatible engines embed TensorRT's lean runtime (host code run when they
  are deserialized), so ``runtime.engine_host_code_allowed`` is set only with ``allow_engine_host_code=True``
  (as trtexec and Polygraphy set it for ``--versionCompatible``: samples/common/sampleEngines.cpp,
  tools/Polygraphy/polygraphy/backend/trt/loader.py).
* Each engine has its own execution context and CUDA stream, device buffers sized for its profile's
  maximum shapes and pinned host buffers for copies.
* The image encoder's outputs stay on the device (``run(..., to_host=False)``) and are bound directly
  as the mask decoder's inputs; an event orders the two streams. No host round trip.
* Optional CUDA graph for the fixed-shape image encoder, as trtexec does it (samples/common/sampleInference.cpp,
  ``createEnqueueFunction``): a checked enqueue and a stream synchronise before capture after any change of shapes
  or addresses, capture in thread-local mode, fall back to plain enqueue for good on any capture error (logged once),
  graphs destroyed on recapture and close (samples/common/sampleDevice.h, ``TrtCudaGraph``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..bundle import GRAPHS, Bundle, EngineEntry, GraphEntry
from ..cuda import check, compute_capability, cudart
from ..errors import SDKError
from ..io_spec import check_feeds

if TYPE_CHECKING:  # typed against the TensorRT bindings by tests/converter/test_trt_api_names.py
    import tensorrt as trt

__all__ = ["tensorrt_unavailable", "select_engines", "engine_usable", "TensorRTBackend", "DeviceTensor"]

_PREFERENCE = ("fp16", "int8", "fp32")  # default precision order when none is asked for
_LOG = logging.getLogger("ssp_edge.sdk.tensorrt")


def _version(v: str) -> tuple[int, ...]:
    out = []
    for part in str(v).split("."):
        if not part.isdigit():
            break
        out.append(int(part))
    return tuple(out)


def engine_usable(built: str, runtime: str, version_compatible: bool) -> str | None:
    """None when an engine built by TensorRT ``built`` deserializes on TensorRT ``runtime``, else the rule it breaks.

    TensorRT's rules (developer guide, "Version Compatibility"): a plan is tied to the exact TensorRT version that
    built it, unless built with ``BuilderFlag.VERSION_COMPATIBLE``: then it runs on later TensorRT versions of the
    same major, never on an older one. Versions are compared on the parts both strings give (a manifest that records
    "10.3.0" matches "10.3.0.26"), and at least major.minor.patch must be known for an exact match.
    """
    b, r = _version(built), _version(runtime)
    n = min(len(b), len(r))
    if n < 2:
        return f"TensorRT version {built!r} / {runtime!r} cannot be compared"
    if version_compatible:
        if b[0] != r[0]:
            return (
                f"built by TensorRT {built} (version-compatible): such engines run only on TensorRT {b[0]}.x, "
                f"not {runtime}"
            )
        if b[:n] > r[:n]:
            return (
                f"built by TensorRT {built} (version-compatible): such engines run on the same or a later "
                f"TensorRT {b[0]}.x, not on the older {runtime}"
            )
        return None
    if n < 3 or b[:n] != r[:n]:
        return (
            f"built by TensorRT {built}: an engine that is not version-compatible runs only on the exact "
            f"TensorRT version that built it, not {runtime}"
        )
    return None


def select_engines(
    bundle: Bundle, trt_version: str, cc: str, precision: str | None, *, plugins: bool = True, host_code: bool = True
) -> dict[str, EngineEntry]:
    """One engine per graph for this TensorRT and GPU (same flavour and precision for all three).

    ``plugins``: plugin-flavour engines may be used (a plugin library was chosen); ``host_code``: version-compatible
    engines may be used (``allow_engine_host_code``). Preference: the requested precision (else fp16, int8, fp32),
    the plugin flavour, then per graph an exact-version engine over a version-compatible one.
    """
    why: dict[str, str] = {}
    usable: list[EngineEntry] = []
    for e in bundle.manifest.engines:
        if e.compute_capability != cc:
            why[e.file] = (
                f"built for sm_{e.compute_capability.replace('.', '')}: engines run only on the GPU "
                f"architecture they were built for"
            )
        elif (reason := engine_usable(e.tensorrt_version, trt_version, e.version_compatible)) is not None:
            why[e.file] = reason
        else:
            usable.append(e)
    held_back: set[str] = set()
    for p in [precision] if precision else list(_PREFERENCE):
        for flavour in ("plugin", "portable"):
            chosen: dict[str, EngineEntry] = {}
            for g in GRAPHS:
                cands = [e for e in usable if e.name == g and e.precision == p and e.flavour == flavour]
                if flavour == "plugin" and not plugins and cands:
                    held_back.add("plugins")
                    cands = []
                if not host_code and any(e.version_compatible for e in cands):
                    held_back.add("host_code")
                    cands = [e for e in cands if not e.version_compatible]
                if cands:
                    chosen[g] = sorted(cands, key=lambda e: e.version_compatible)[0]
            if set(chosen) == set(GRAPHS):
                return chosen
    built = sorted(
        {
            f"{e.precision}/{e.flavour} TensorRT {e.tensorrt_version} "
            f"sm_{e.compute_capability.replace('.', '')}{' version-compatible' if e.version_compatible else ''}"
            for e in bundle.manifest.engines
        }
    ) or ["none"]
    rules = sorted(set(why.values()))
    hints = []
    if "plugins" in held_back:
        hints.append(
            "the plugin-flavour engines need the plugin library: pass plugin_lib= (--plugins) or set "
            "SSP_PLUGIN_LIB, or trust_bundle_plugins=True (--trust-bundle-plugins) to load the bundle's "
            "listed copy"
        )
    if "host_code" in held_back:
        hints.append(
            "version-compatible engines embed TensorRT's lean runtime, host code that runs when they are "
            "deserialized: pass allow_engine_host_code=True (--allow-engine-host-code) if you trust this "
            "bundle, or rebuild without --version-compatible"
        )
    p = precision or "fp16"
    raise SDKError(
        f"bundle {str(bundle.root)!r} has no complete set of {precision + ' ' if precision else ''}engines "
        f"usable with TensorRT {trt_version} on sm_{cc.replace('.', '')} (built: {', '.join(built)})"
        + (f"; {'; '.join(rules)}" if rules else "")
        + (f"; {'; '.join(hints)}" if hints else "")
        + f"; or rebuild on this device: ssp convert build {bundle.root} --precision {p}"
    )


def tensorrt_unavailable(bundle: Bundle, precision: str | None) -> str | None:
    """None when the TensorRT backend can run this bundle here, else the reason (one line)."""
    try:
        import tensorrt as trt
    except Exception as e:  # ImportError, or OSError when libnvinfer is missing
        return (
            f"TensorRT backend unavailable here ({type(e).__name__}: {e}); use backend='onnxruntime' or install "
            "TensorRT (JetPack, or pip install tensorrt on a desktop GPU)"
        )
    try:
        select_engines(bundle, trt.__version__, compute_capability(), precision)
    except SDKError as e:
        return str(e)
    return None


@dataclass
class DeviceTensor:
    """An output left on the GPU: bound by address as another engine's input."""

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype
    event: Any  # cudaEvent recorded on the producing stream after the write


class _EngineRunner:
    """One engine: context, stream, device + pinned host buffers at the profile's maximum shapes."""

    def __init__(self, runtime: "trt.Runtime", data: bytes, name: str, cuda_graph: bool):
        import tensorrt as trt

        self.rt = cudart()
        self.name = name
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise SDKError(
                f"TensorRT could not deserialize the {name} engine (built by another TensorRT version "
                "or without the plugin library?); rebuild it with `ssp convert build`"
            )
        self.engine = engine
        self.context = engine.create_execution_context()
        self.stream = check(self.rt.cudaStreamCreate(), "cudaStreamCreate")
        self.done = check(self.rt.cudaEventCreate(), "cudaEventCreate")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        for n in self.inputs:  # maximum shapes from the first optimization profile
            shape = tuple(engine.get_tensor_shape(n))
            if any(d < 0 for d in shape):
                shape = tuple(engine.get_tensor_profile_shape(n, 0)[2])
            self.context.set_input_shape(n, shape)
        self.max_shapes = {n: tuple(self.context.get_tensor_shape(n)) for n in names}
        self.device: dict[str, int] = {}
        self.host: dict[str, np.ndarray] = {}
        for n in names:
            nbytes = max(1, int(np.prod(self.max_shapes[n])) * self.dtypes[n].itemsize)
            self.device[n] = check(self.rt.cudaMalloc(nbytes), "cudaMalloc")
            ptr = check(self.rt.cudaMallocHost(nbytes), "cudaMallocHost")
            self.host[n] = np.ctypeslib.as_array((np.ctypeslib.ctypes.c_byte * nbytes).from_address(ptr)).view(
                self.dtypes[n]
            )
        self.use_graph = cuda_graph
        self._graph_exec: Any = None
        self._graph_key: tuple | None = None

    def _bind(self, feeds: Mapping[str, Any]) -> tuple:
        key = []
        for n in self.inputs:
            if n not in feeds:
                raise SDKError(f"{self.name}: missing input {n!r}")
            x = feeds[n]
            if isinstance(x, DeviceTensor):  # produced by another engine on the GPU
                check(self.rt.cudaStreamWaitEvent(self.stream, x.event, 0), "cudaStreamWaitEvent")
                self.context.set_input_shape(n, x.shape)
                self.context.set_tensor_address(n, x.ptr)
                key.append((n, x.ptr, x.shape))
                continue
            a = np.ascontiguousarray(x, dtype=self.dtypes[n])
            if a.size > self.host[n].size:
                raise SDKError(
                    f"{self.name}: input {n} of shape {a.shape} is larger than the engine's profile "
                    f"maximum {self.max_shapes[n]}; rebuild with a larger profile"
                )
            self.host[n][: a.size] = a.ravel()
            check(
                self.rt.cudaMemcpyAsync(
                    self.device[n],
                    self.host[n].ctypes.data,
                    a.nbytes,
                    self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
                    self.stream,
                ),
                "copy in",
            )
            self.context.set_input_shape(n, a.shape)
            self.context.set_tensor_address(n, self.device[n])
            key.append((n, self.device[n], a.shape))
        for n in self.outputs:
            self.context.set_tensor_address(n, self.device[n])
        return tuple(key)

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream):
            raise SDKError(f"TensorRT failed to run the {self.name} engine (see TensorRT's log above)")

    def _destroy_graph(self) -> None:
        if self._graph_exec is not None:
            self.rt.cudaGraphExecDestroy(self._graph_exec)
        self._graph_exec, self._graph_key = None, None

    def _capture(self, key: tuple) -> bool:
        """Capture one enqueue into a CUDA graph for these shapes / addresses (trtexec's createEnqueueFunction)."""
        self._destroy_graph()
        # a first run outside capture, so TensorRT's lazy initialisation is not captured, then synchronise
        self._enqueue()
        check(self.rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        check(self.rt.cudaStreamBeginCapture(self.stream, mode), "begin CUDA graph capture")
        ok = bool(self.context.execute_async_v3(self.stream))  # False when an op cannot be captured
        err, graph = self.rt.cudaStreamEndCapture(self.stream)
        why = "" if ok else "the engine has operations that CUDA graph capture does not permit"
        if int(err) != 0 and not why:
            why = f"cudaStreamEndCapture: {err}"
        exec_ = None
        if not why and graph is not None:
            err, exec_ = self.rt.cudaGraphInstantiate(graph, 0)
            if int(err) != 0:
                why, exec_ = f"cudaGraphInstantiate: {err}", None
        if graph is not None:
            self.rt.cudaGraphDestroy(graph)
        if why or exec_ is None:
            self.rt.cudaGetLastError()  # clear the capture error, as trtexec's endCaptureOnError does
            self.use_graph = False
            _LOG.warning(
                "%s: CUDA graph capture failed (%s); running without CUDA graphs from now on",
                self.name,
                why or "no graph",
            )
            return False
        self._graph_exec, self._graph_key = exec_, key
        return True

    def _execute(self, key: tuple) -> None:
        if self.use_graph and (self._graph_exec is not None and key == self._graph_key or self._capture(key)):
            check(self.rt.cudaGraphLaunch(self._graph_exec, self.stream), "launch CUDA graph")
            return
        self._enqueue()

    def run(self, feeds: Mapping[str, Any], to_host: bool) -> dict[str, Any]:
        key = self._bind(feeds)
        self._execute(key)
        shapes = {n: tuple(self.context.get_tensor_shape(n)) for n in self.outputs}
        if not to_host:
            check(self.rt.cudaEventRecord(self.done, self.stream), "cudaEventRecord")
            # wait for the event (not a copy) so the Segmenter's per-stage times stay honest
            check(self.rt.cudaEventSynchronize(self.done), "cudaEventSynchronize")
            return {n: DeviceTensor(self.device[n], s, self.dtypes[n], self.done) for n, s in shapes.items()}
        sizes = {}
        for n, s in shapes.items():
            size = int(np.prod(s))
            check(
                self.rt.cudaMemcpyAsync(
                    self.host[n].ctypes.data,
                    self.device[n],
                    size * self.dtypes[n].itemsize,
                    self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                    self.stream,
                ),
                "copy out",
            )
            sizes[n] = size
        check(self.rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        return {n: self.host[n][: sizes[n]].reshape(s).copy() for n, s in shapes.items()}

    def close(self) -> None:
        self._destroy_graph()
        for p in self.device.values():
            self.rt.cudaFree(p)
        for a in self.host.values():
            self.rt.cudaFreeHost(a.ctypes.data)
        self.rt.cudaEventDestroy(self.done)
        self.rt.cudaStreamDestroy(self.stream)
        self.device.clear()
        self.host.clear()


class TensorRTBackend:
    """The bundle's TensorRT engines for this TensorRT and GPU; ``run(graph, feeds)`` by tensor names."""

    name = "tensorrt"

    def __init__(
        self,
        bundle: Bundle,
        precision: str | None = None,
        *,
        plugin_lib: str | None = None,
        trust_bundle_plugins: bool = False,
        allow_engine_host_code: bool = False,
        cuda_graph: bool = True,
    ):
        import tensorrt as trt

        from ..plugins import choose_plugin_library, load_chosen, register_with_tensorrt

        named = sorted({e.plugin_library for e in bundle.manifest.engines if e.plugin_library})
        choice = choose_plugin_library(bundle, plugin_lib, trust_bundle_plugins, named[0] if named else None)
        engines = select_engines(
            bundle,
            trt.__version__,
            compute_capability(),
            precision,
            plugins=choice is not None,
            host_code=allow_engine_host_code,
        )
        needs = sorted({e.plugin_library for e in engines.values() if e.plugin_library})
        self._runners: dict[str, _EngineRunner] = {}
        data = {g: bundle.read_bytes(e.file) for g, e in engines.items()}  # hash-checked before anything runs
        if needs:
            if choice is None:  # select_engines only picks plugin engines when a library was chosen
                raise SDKError("internal: plugin engines chosen without a plugin library")
            if choice.origin == "bundle":  # trusted bundle: the library the chosen engines name
                choice = choose_plugin_library(bundle, None, True, needs[0])
                assert choice is not None
            _, path = load_chosen(choice, bundle)
            register_with_tensorrt(path)
        self.logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(self.logger, "")
        self.runtime = trt.Runtime(self.logger)
        if any(e.version_compatible for e in engines.values()):  # only reachable with allow_engine_host_code
            self.runtime.engine_host_code_allowed = True
        self.precisions = {g: e.precision for g, e in engines.items()}
        self.flavour = next(iter(engines.values())).flavour
        # the ONNX graph each engine was built from names and types its tensors (feeds are checked against it)
        by_file = {g.file: g for g in bundle.manifest.graphs}
        self.entries: dict[str, GraphEntry] = {g: by_file[e.source] for g, e in engines.items() if e.source in by_file}
        self.dynamic_axes = {k: list(v) for k, v in bundle.manifest.dynamic_axes.items()}
        try:
            for g in engines:
                self._runners[g] = _EngineRunner(self.runtime, data[g], g, cuda_graph and g == "image_encoder")
        except BaseException:
            self.close()
            raise

    def run(self, graph: str, feeds: Mapping[str, Any], to_host: bool = True) -> dict[str, Any]:
        """Outputs keyed by the engine's tensor names (the manifest's); ``to_host=False`` leaves them on the GPU as
        :class:`DeviceTensor` values that another ``run`` accepts as feeds."""
        if graph not in self._runners:
            raise SDKError(f"no {graph!r} engine (graphs: {', '.join(self._runners)})")
        if graph in self.entries:
            check_feeds(self.entries[graph], feeds, self.dynamic_axes)
        return self._runners[graph].run(feeds, to_host)

    def close(self) -> None:
        for r in self._runners.values():
            r.close()
        self._runners.clear()
