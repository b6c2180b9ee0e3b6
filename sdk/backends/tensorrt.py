"""TensorRT backend: the bundle's engines run with the name-based tensor API (TensorRT 10 / 11; binding
indices are gone) through cuda-python.

* Engines are chosen from the manifest for the installed TensorRT (major.minor, or the same major for
  version-compatible engines) and this GPU's compute capability; a mismatch is refused with the
  rebuild command.
* Each engine has its own execution context and CUDA stream, device buffers sized for its profile's
  maximum shapes and pinned host buffers for copies.
* The image encoder's outputs stay on the device (``run(..., to_host=False)``) and are bound directly
  as the mask decoder's inputs; an event orders the two streams. No host round trip.
* Optional CUDA graph for the fixed-shape image encoder (batch 1): captured on the first frame, replayed.
* The plugin library (from the bundle, ``SSP_PLUGIN_LIB`` or the build folder) is loaded and its
  sha256 checked before plugin engines are deserialized.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..bundle import GRAPHS, Bundle, EngineEntry
from ..cuda import check, compute_capability, cudart
from ..errors import SDKError

if TYPE_CHECKING:  # typed against the TensorRT bindings by tests/converter/test_trt_api_names.py
    import tensorrt as trt

__all__ = ["tensorrt_unavailable", "select_engines", "TensorRTBackend", "DeviceTensor"]

_PREFERENCE = ("fp16", "int8", "fp32")  # default precision order when none is asked for


def _version_key(v: str) -> tuple[str, str]:
    parts = v.split(".")
    return parts[0], ".".join(parts[:2])


def select_engines(bundle: Bundle, trt_version: str, cc: str, precision: str | None) -> dict[str, EngineEntry]:
    """One engine per graph for this TensorRT and GPU (same flavour and precision for all three)."""
    major, major_minor = _version_key(trt_version)
    usable = [e for e in bundle.manifest.engines if e.compute_capability == cc and (
        _version_key(e.tensorrt_version)[1] == major_minor or
        (e.version_compatible and _version_key(e.tensorrt_version)[0] == major))]
    for p in ([precision] if precision else list(_PREFERENCE)):
        for flavour in ("plugin", "portable"):
            chosen = {e.name: e for e in usable if e.precision == p and e.flavour == flavour}
            if set(chosen) == set(GRAPHS):
                return chosen
    built = sorted({f"{e.precision} TensorRT {e.tensorrt_version} sm_{e.compute_capability.replace('.', '')}"
                    for e in bundle.manifest.engines}) or ["none"]
    p = precision or "fp16"
    raise SDKError(f"bundle {str(bundle.root)!r} has no complete set of {precision or ''} engines for TensorRT "
                   f"{trt_version} on sm_{cc.replace('.', '')} (built: {', '.join(built)}); rebuild on this "
                   f"device: ssp convert build {bundle.root} --precision {p}")


def tensorrt_unavailable(bundle: Bundle, precision: str | None) -> str | None:
    """None when the TensorRT backend can run this bundle here, else the reason (one line)."""
    try:
        import tensorrt as trt
    except Exception as e:  # ImportError, or OSError when libnvinfer is missing
        return (f"TensorRT backend unavailable here ({type(e).__name__}: {e}); use backend='onnxruntime' or install "
                "TensorRT (JetPack, or pip install tensorrt on a desktop GPU)")
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
            raise SDKError(f"TensorRT could not deserialize the {name} engine (built by another TensorRT version "
                           "or without the plugin library?); rebuild it with `ssp convert build`")
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
            nbytes = int(np.prod(self.max_shapes[n])) * self.dtypes[n].itemsize
            self.device[n] = check(self.rt.cudaMalloc(nbytes), "cudaMalloc")
            ptr = check(self.rt.cudaMallocHost(nbytes), "cudaMallocHost")
            self.host[n] = np.ctypeslib.as_array((np.ctypeslib.ctypes.c_byte * nbytes).from_address(ptr)) \
                .view(self.dtypes[n])
        self.use_graph = cuda_graph
        self._graph_exec: Any = None
        self._graph_key: tuple | None = None

    def _bind(self, feeds: dict[str, Any]) -> tuple:
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
                raise SDKError(f"{self.name}: input {n} of shape {a.shape} is larger than the engine's profile "
                               f"maximum {self.max_shapes[n]}; rebuild with a larger profile")
            self.host[n][: a.size] = a.ravel()
            check(self.rt.cudaMemcpyAsync(self.device[n], self.host[n].ctypes.data, a.nbytes,
                                          self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream), "copy in")
            self.context.set_input_shape(n, a.shape)
            self.context.set_tensor_address(n, self.device[n])
            key.append((n, self.device[n], a.shape))
        for n in self.outputs:
            self.context.set_tensor_address(n, self.device[n])
        return tuple(key)

    def _execute(self, key: tuple) -> None:
        if not self.use_graph:
            if not self.context.execute_async_v3(self.stream):
                raise SDKError(f"TensorRT failed to run the {self.name} engine")
            return
        if self._graph_exec is None or key != self._graph_key:  # (re)capture for these shapes and addresses
            self.context.execute_async_v3(self.stream)  # a first run outside capture (TensorRT's recommendation)
            mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal
            check(self.rt.cudaStreamBeginCapture(self.stream, mode), "begin CUDA graph capture")
            self.context.execute_async_v3(self.stream)
            graph = check(self.rt.cudaStreamEndCapture(self.stream), "end CUDA graph capture")
            self._graph_exec = check(self.rt.cudaGraphInstantiate(graph, 0), "instantiate CUDA graph")
            self._graph_key = key
        check(self.rt.cudaGraphLaunch(self._graph_exec, self.stream), "launch CUDA graph")

    def run(self, feeds: dict[str, Any], to_host: bool) -> list[Any]:
        key = self._bind(feeds)
        self._execute(key)
        shapes = [tuple(self.context.get_tensor_shape(n)) for n in self.outputs]
        if not to_host:
            check(self.rt.cudaEventRecord(self.done, self.stream), "cudaEventRecord")
            # wait for the event (not a copy) so the Segmenter's per-stage times stay honest
            check(self.rt.cudaEventSynchronize(self.done), "cudaEventSynchronize")
            return [DeviceTensor(self.device[n], s, self.dtypes[n], self.done) for n, s in zip(self.outputs, shapes)]
        outs = []
        for n, s in zip(self.outputs, shapes):
            size = int(np.prod(s))
            check(self.rt.cudaMemcpyAsync(self.host[n].ctypes.data, self.device[n], size * self.dtypes[n].itemsize,
                                          self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream), "copy out")
            outs.append((n, s, size))
        check(self.rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        return [self.host[n][:size].reshape(s).copy() for n, s, size in outs]

    def close(self) -> None:
        for p in self.device.values():
            self.rt.cudaFree(p)
        for a in self.host.values():
            self.rt.cudaFreeHost(a.ctypes.data)
        self.rt.cudaEventDestroy(self.done)
        self.rt.cudaStreamDestroy(self.stream)
        self.device.clear()
        self.host.clear()


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, bundle: Bundle, precision: str | None = None, plugin_lib: str | None = None,
                 cuda_graph: bool = True):
        import tensorrt as trt

        from ..plugins import bundle_library_sha256, find_plugin_library, load_plugin_library, register_with_tensorrt

        engines = select_engines(bundle, trt.__version__, compute_capability(), precision)
        bundle.verify([e.file for e in engines.values()])
        libs = {e.plugin_library for e in engines.values() if e.plugin_library}
        if libs:
            path = find_plugin_library(bundle.root, plugin_lib)
            if path is None:
                raise SDKError(f"the plugin engines need the ssp plugin library ({sorted(libs)[0]}); put it in the "
                               "bundle, set SSP_PLUGIN_LIB or pass plugin_lib=")
            # the bundle's own copy must match its recorded sha256; a user's own build is taken as given
            load_plugin_library(path, bundle_library_sha256(bundle.root, path))
            register_with_tensorrt(path)
        self.logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(self.logger, "")
        self.runtime = trt.Runtime(self.logger)
        self.precisions = {g: e.precision for g, e in engines.items()}
        self.flavour = next(iter(engines.values())).flavour
        self._runners = {g: _EngineRunner(self.runtime, bundle.read_bytes(e.file), g,
                                          cuda_graph and g == "image_encoder") for g, e in engines.items()}

    def run(self, graph: str, feeds: dict[str, Any], to_host: bool = True) -> Sequence[Any]:
        return self._runners[graph].run(feeds, to_host)

    def close(self) -> None:
        for r in self._runners.values():
            r.close()
        self._runners.clear()
