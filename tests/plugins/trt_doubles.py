"""Test doubles of the TensorRT Python module and of cuda-python's runtime, for tests that run the builder and the
backend's logic without a GPU (no tests in here). Every call is appended to ``LOG`` as a tuple, so tests check the
calls our code makes: which builder / network flags, which enqueues, captures and destroys.

The enums carry exactly the member names of the real bindings of each major (``ENUMS``, recorded from the stubs
``tests/converter/trt_api.py`` builds from NVIDIA's wheels; ``test_trt_build.py`` re-derives them from the stubs
when they can be built and fails if they drift). Hence ``hasattr(trt.BuilderFlag, "FP16")`` is False for the
TensorRT 11 double, as for the real module, and a name our code misspells raises AttributeError here too.

Nothing here is TensorRT: it only records and returns placeholders (engines are the bytes written by ``plan()``).
Load with importlib (tests/ is not a package)::

    spec = importlib.util.spec_from_file_location("trt_doubles", Path(__file__).parents[1] / "plugins/trt_doubles.py")
"""

from __future__ import annotations

import ctypes
import struct
import sys
import types
from typing import Any

ENUMS: dict[int, dict[str, list[str]]] = {
    10: {
        "BuilderFlag": [
            "BF16",
            "DEBUG",
            "DIRECT_IO",
            "DISABLE_COMPILATION_CACHE",
            "DISABLE_TIMING_CACHE",
            "ERROR_ON_TIMING_CACHE_MISS",
            "EXCLUDE_LEAN_RUNTIME",
            "FP16",
            "FP8",
            "GPU_FALLBACK",
            "INT4",
            "INT8",
            "OBEY_PRECISION_CONSTRAINTS",
            "PREFER_PRECISION_CONSTRAINTS",
            "REFIT",
            "REFIT_IDENTICAL",
            "REFIT_INDIVIDUAL",
            "REJECT_EMPTY_ALGORITHMS",
            "SAFETY_SCOPE",
            "SPARSE_WEIGHTS",
            "STRIP_PLAN",
            "TF32",
            "VERSION_COMPATIBLE",
            "WEIGHTLESS",
            "WEIGHT_STREAMING",
        ],
        "NetworkDefinitionCreationFlag": ["EXPLICIT_BATCH", "STRONGLY_TYPED"],
        "MemoryPoolType": [
            "DLA_GLOBAL_DRAM",
            "DLA_LOCAL_DRAM",
            "DLA_MANAGED_SRAM",
            "TACTIC_DRAM",
            "TACTIC_SHARED_MEMORY",
            "WORKSPACE",
        ],
        "TensorIOMode": ["INPUT", "NONE", "OUTPUT"],
    },
    11: {
        "BuilderFlag": [
            "DEBUG",
            "DIRECT_IO",
            "DISABLE_COMPILATION_CACHE",
            "DISABLE_TIMING_CACHE",
            "DISTRIBUTIVE_INDEPENDENCE",
            "EDITABLE_TIMING_CACHE",
            "ERROR_ON_TIMING_CACHE_MISS",
            "EXCLUDE_LEAN_RUNTIME",
            "GPU_FALLBACK",
            "MONITOR_MEMORY",
            "REFIT",
            "REFIT_IDENTICAL",
            "REFIT_INDIVIDUAL",
            "SAFETY_SCOPE",
            "SPARSE_WEIGHTS",
            "STRICT_NANS",
            "STRIP_PLAN",
            "TF32",
            "VERSION_COMPATIBLE",
            "WEIGHT_STREAMING",
        ],
        "NetworkDefinitionCreationFlag": ["PREFER_AOT_PYTHON_PLUGINS", "PREFER_JIT_PYTHON_PLUGINS", "STRONGLY_TYPED"],
        "MemoryPoolType": [
            "DLA_GLOBAL_DRAM",
            "DLA_LOCAL_DRAM",
            "DLA_MANAGED_SRAM",
            "TACTIC_DRAM",
            "TACTIC_SHARED_MEMORY",
            "WORKSPACE",
        ],
        "TensorIOMode": ["INPUT", "NONE", "OUTPUT"],
    },
}

LOG: list[tuple] = []


class _Member:
    def __init__(self, enum: str, name: str, value: int):
        self.enum, self.name, self.value = enum, name, value

    def __int__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"{self.enum}.{self.name}"


def _enum(name: str, members: list[str]) -> type:
    return type(name, (), {m: _Member(name, m, i) for i, m in enumerate(members)})


def plan(version: str, body: bytes = b"engine") -> bytes:
    """Bytes with a TensorRT plan header (tag 'ftrt', serialization 0, version at 24..27) as trtexec reads it."""
    v = [int(x) for x in version.split(".")] + [0] * 4
    return struct.pack("<II16x4B", 0x74727466, 0, *v[:4]) + body


class Options:
    """What the doubles do: build failures, interruptions, cache mismatch, capture failure, engine I/O."""

    def __init__(self) -> None:
        self.fail_build_of: set[str] = set()  # ONNX file names whose build returns None
        self.interrupt_build_of: set[str] = set()  # ... raises KeyboardInterrupt
        self.foreign_cache = b"FOREIGN"  # timing caches starting with this are rejected (another GPU)
        self.capture_fails = False  # execute_async_v3 returns False while the stream captures
        self.io: list[tuple[str, str, tuple[int, ...]]] = [("image", "INPUT", (1, 3, 4, 4)), ("out", "OUTPUT", (1, 2))]


OPTIONS = Options()


# ---------------------------------------------------------------------------------------------------------- builder
class _Cache:
    def __init__(self, data: bytes):
        self.data = data

    def serialize(self) -> bytes:
        return b"CACHE:" + self.data.removeprefix(b"CACHE:") + b"+"


class _Config:
    def __init__(self) -> None:
        self.cache: _Cache | None = None
        self._plugins: list[str] = []

    def set_memory_pool_limit(self, pool: Any, size: int) -> None:
        LOG.append(("set_memory_pool_limit", repr(pool), size))

    def set_flag(self, flag: Any) -> None:
        LOG.append(("set_flag", repr(flag)))

    def clear_flag(self, flag: Any) -> None:
        LOG.append(("clear_flag", repr(flag)))

    def create_timing_cache(self, data: bytes) -> _Cache:
        LOG.append(("create_timing_cache", bytes(data)))
        return _Cache(bytes(data))

    def set_timing_cache(self, cache: _Cache, ignore_mismatch: bool) -> bool:
        ok = ignore_mismatch or not cache.data.startswith(OPTIONS.foreign_cache)
        LOG.append(("set_timing_cache", cache.data, ignore_mismatch, ok))
        if ok:
            self.cache = cache
        return ok

    def get_timing_cache(self) -> _Cache | None:
        return self.cache

    @property
    def plugins_to_serialize(self) -> list[str]:
        return self._plugins

    @plugins_to_serialize.setter
    def plugins_to_serialize(self, value: list[str]) -> None:
        LOG.append(("plugins_to_serialize", list(value)))
        self._plugins = list(value)

    def add_optimization_profile(self, profile: Any) -> int:
        LOG.append(("add_optimization_profile", dict(profile.shapes)))
        return 0


class _Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
        self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))


class _Network:
    def __init__(self, flags: int):
        self.flags = flags
        self.source = ""


class _Error:
    def __init__(self, text: str):
        self.text = text

    def desc(self) -> str:
        return self.text


class _Parser:
    def __init__(self, network: _Network, logger: Any):
        self.network = network
        self.num_errors = 0

    def parse(self, data: bytes, path: str | None = None) -> bool:
        LOG.append(("parse", str(path).rsplit("/", 1)[-1], len(data)))
        self.network.source = str(path).rsplit("/", 1)[-1]
        return True

    def get_error(self, i: int) -> _Error:
        return _Error("none")


class _Builder:
    def __init__(self, logger: Any):
        LOG.append(("Builder",))

    def create_network(self, flags: int = 0) -> _Network:
        LOG.append(("create_network", flags))
        return _Network(flags)

    def create_builder_config(self) -> _Config:
        return _Config()

    def create_optimization_profile(self) -> _Profile:
        return _Profile()

    def build_serialized_network(self, network: _Network, config: _Config) -> bytes | None:
        LOG.append(("build_serialized_network", network.source))
        if network.source in OPTIONS.interrupt_build_of:
            raise KeyboardInterrupt
        if network.source in OPTIONS.fail_build_of:
            return None
        if config.cache is not None:
            config.cache = _Cache(config.cache.data + network.source.encode())
        return plan(sys.modules["tensorrt"].__version__, network.source.encode())


# ---------------------------------------------------------------------------------------------------------- runtime
class _Context:
    def __init__(self, engine: _Engine):
        self.engine = engine
        self.shapes = {n: s for n, _, s in engine.io}

    def set_input_shape(self, name: str, shape: Any) -> bool:
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self.shapes[name]

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        return True

    def execute_async_v3(self, stream: Any) -> bool:
        capturing = CUDART.capturing
        ok = not (capturing and OPTIONS.capture_fails)
        LOG.append(("execute_async_v3", "capturing" if capturing else "plain", ok))
        if capturing and not ok:
            CUDART.invalidated = True
        return ok


class _Engine:
    def __init__(self, data: bytes):
        self.data = data
        self.io = list(OPTIONS.io)
        self.num_io_tensors = len(self.io)

    def get_tensor_name(self, i: int) -> str:
        return self.io[i][0]

    def get_tensor_mode(self, name: str) -> Any:
        mode = next(m for n, m, _ in self.io if n == name)
        return getattr(sys.modules["tensorrt"].TensorIOMode, mode)

    def get_tensor_dtype(self, name: str) -> str:
        return "float32"

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return next(s for n, _, s in self.io if n == name)

    def get_tensor_profile_shape(self, name: str, profile: int) -> tuple:
        s = self.get_tensor_shape(name)
        return s, s, s

    def create_execution_context(self) -> _Context:
        return _Context(self)


class _Runtime:
    def __init__(self, logger: Any):
        self._host_code = False

    @property
    def engine_host_code_allowed(self) -> bool:
        return self._host_code

    @engine_host_code_allowed.setter
    def engine_host_code_allowed(self, value: bool) -> None:
        LOG.append(("engine_host_code_allowed", value))
        self._host_code = value

    def deserialize_cuda_engine(self, data: bytes) -> _Engine:
        LOG.append(("deserialize_cuda_engine", bytes(data)))
        return _Engine(bytes(data))


class _Registry:
    def __init__(self) -> None:
        self.libraries: list[str] = []

    def get_creator(self, name: str, version: str, namespace: str) -> Any:
        return object() if self.libraries else None

    def load_library(self, path: str) -> Any:
        LOG.append(("load_library", path))
        self.libraries.append(path)
        return object()


class _Logger:
    VERBOSE, INFO, WARNING, ERROR = 4, 3, 2, 1

    def __init__(self, severity: int = 2):
        self.severity = severity


def tensorrt_module(major: int = 10, version: str | None = None) -> types.ModuleType:
    """A fresh ``tensorrt`` double for TensorRT ``major``."""
    m = types.ModuleType("tensorrt")
    m.__version__ = version or {10: "10.3.0.26", 11: "11.1.0.7"}[major]  # type: ignore[attr-defined]
    for name, members in ENUMS[major].items():
        setattr(m, name, _enum(name, members))
    m.Logger = _Logger  # type: ignore[attr-defined]
    m.Builder = _Builder  # type: ignore[attr-defined]
    m.OnnxParser = _Parser  # type: ignore[attr-defined]
    m.Runtime = _Runtime  # type: ignore[attr-defined]
    registry = _Registry()
    m.get_plugin_registry = lambda: registry  # type: ignore[attr-defined]
    m.init_libnvinfer_plugins = lambda logger, ns: LOG.append(("init_libnvinfer_plugins",))  # type: ignore
    import numpy as np

    m.nptype = lambda t: np.float32  # type: ignore[attr-defined]
    return m


# ---------------------------------------------------------------------------------------------------------- cudart
class _Kind:
    cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost = 1, 2


class _CaptureMode:
    cudaStreamCaptureModeGlobal, cudaStreamCaptureModeThreadLocal, cudaStreamCaptureModeRelaxed = 0, 1, 2


class FakeCudart:
    """cuda-python runtime calls as (error, value) tuples; memory is host memory (ctypes buffers)."""

    cudaMemcpyKind = _Kind
    cudaStreamCaptureMode = _CaptureMode
    cudaErrorStreamCaptureInvalidated = 901

    def __init__(self) -> None:
        self.capturing = False
        self.invalidated = False
        self._buffers: dict[int, Any] = {}
        self._next = 1000

    def _handle(self) -> int:
        self._next += 1
        return self._next

    def _alloc(self, n: int) -> int:
        buf = ctypes.create_string_buffer(max(1, n))
        self._buffers[ctypes.addressof(buf)] = buf
        return ctypes.addressof(buf)

    def cudaStreamCreate(self):
        return 0, self._handle()

    def cudaEventCreate(self):
        return 0, self._handle()

    def cudaMalloc(self, n):
        return 0, self._alloc(n)

    def cudaMallocHost(self, n):
        return 0, self._alloc(n)

    def cudaFree(self, p):
        return (0,)

    def cudaFreeHost(self, p):
        return (0,)

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):
        ctypes.memmove(dst, src, n)
        return (0,)

    def cudaStreamWaitEvent(self, stream, event, flags):
        return (0,)

    def cudaStreamSynchronize(self, stream):
        LOG.append(("cudaStreamSynchronize",))
        return (0,)

    def cudaEventRecord(self, event, stream):
        return (0,)

    def cudaEventSynchronize(self, event):
        return (0,)

    def cudaEventDestroy(self, event):
        return (0,)

    def cudaStreamDestroy(self, stream):
        return (0,)

    def cudaStreamBeginCapture(self, stream, mode):
        LOG.append(("cudaStreamBeginCapture", mode))
        self.capturing, self.invalidated = True, False
        return (0,)

    def cudaStreamEndCapture(self, stream):
        self.capturing = False
        if self.invalidated:  # what CUDA reports when a captured call failed
            LOG.append(("cudaStreamEndCapture", "invalidated"))
            return self.cudaErrorStreamCaptureInvalidated, None
        g = self._handle()
        LOG.append(("cudaStreamEndCapture", g))
        return 0, g

    def cudaGraphInstantiate(self, graph, flags):
        e = self._handle()
        LOG.append(("cudaGraphInstantiate", graph, e))
        return 0, e

    def cudaGraphLaunch(self, exec_, stream):
        LOG.append(("cudaGraphLaunch", exec_))
        return (0,)

    def cudaGraphDestroy(self, graph):
        LOG.append(("cudaGraphDestroy", graph))
        return (0,)

    def cudaGraphExecDestroy(self, exec_):
        LOG.append(("cudaGraphExecDestroy", exec_))
        return (0,)

    def cudaGetLastError(self):
        LOG.append(("cudaGetLastError",))
        return (0,)


CUDART = FakeCudart()


def install(monkeypatch: Any = None, major: int = 10, version: str | None = None, cc: str = "8.7") -> types.ModuleType:
    """Put the doubles in place: ``sys.modules["tensorrt"]``, the backend's cudart and compute capability, the
    builder's compute capability. With pytest's ``monkeypatch`` everything is undone after the test."""
    global CUDART, OPTIONS
    LOG.clear()
    CUDART = FakeCudart()
    OPTIONS = Options()
    trt = tensorrt_module(major, version)
    from ssp_edge.converter import trt_build
    from ssp_edge.sdk.backends import tensorrt as backend

    setter = monkeypatch.setitem if monkeypatch is not None else (lambda d, k, v: d.__setitem__(k, v))
    attr = monkeypatch.setattr if monkeypatch is not None else setattr
    setter(sys.modules, "tensorrt", trt)
    attr(backend, "cudart", lambda: CUDART)
    attr(backend, "compute_capability", lambda device=0: cc)
    attr(trt_build, "compute_capability", lambda device=0: cc)
    return trt


def options() -> Options:
    return OPTIONS


def cudart() -> FakeCudart:
    return CUDART
