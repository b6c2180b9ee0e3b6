"""TensorRT Python API names in our code exist in TensorRT 10 (JetPack 6) and 11: no GPU needed.

mypy checks the code against stubs generated from NVIDIA's PyPI bindings wheels (see
``trt_api.py``; the first run downloads ~1 MB per version and compiles placeholder libraries
with gcc, later runs use ``build/trt_api/``). A ``trt`` typed ``Any`` hides every mistake, so
``test_tensorrt_uses_are_checked`` also requires that each ``trt.Name`` in those modules is seen
by mypy: import the module where it is used (``import tensorrt as trt`` inside the function,
after ``import_tensorrt()`` made sure it imports) rather than passing it around as ``trt: Any``.
For names only one major has, guard them with ``hasattr(trt.BuilderFlag, "FP16")`` (mypy
narrows on it) or list the error below.
"""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("trt_api", Path(__file__).with_name("trt_api.py"))
assert _spec and _spec.loader
trt_api = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(trt_api)

ROOT = Path(__file__).resolve().parents[2]

# Our modules that use the TensorRT Python API, relative to the repository root.
TRT_MODULES = [Path("converter/trt_build.py"), Path("sdk/backends/tensorrt.py"), Path("sdk/plugins.py")]

# Errors (substrings) accepted for one major version, e.g. a name used only on the other one
# behind a runtime check mypy cannot follow.
ALLOWED_ERRORS: dict[int, list[str]] = {10: [], 11: []}

# "path:function" entries whose `trt` may stay untyped (deliberately dynamic code).
DYNAMIC_OK: set[str] = set()

MAJORS = [pytest.param(10, id="trt10"), pytest.param(11, id="trt11")]

GOOD = """\
import tensorrt as trt


def build(onnx_path: str) -> bytes:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        raise RuntimeError("; ".join(parser.get_error(i).desc() for i in range(parser.num_errors)))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    plan = builder.build_serialized_network(network, config)
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    context = engine.create_execution_context()
    context.set_tensor_address(names[0], 0)
    return bytes(plan)
"""

BAD = """\
import tensorrt as trt


def build() -> None:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    config = builder.create_builder_config()
    config.set_memroy_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    config.set_flag(trt.BuilderFlag.VERSION_COMPATIBEL)
    parser = trt.OnnxParser(builder.create_network(0))
    engine = trt.Runtime(logger).deserialize_cuda_engine(b"")
    engine.num_io_tensor
    trt.OnnxParsr
"""


@pytest.fixture(scope="module", params=MAJORS)
def major(request) -> int:
    try:
        trt_api.stubs_for(request.param)
    except RuntimeError as exc:
        pytest.skip(f"TensorRT {request.param} stubs unavailable: {exc}")
    return request.param


def _check(major: int, modules: list[Path]) -> list[str]:
    try:
        return trt_api.check_modules(major, modules)
    except RuntimeError as exc:
        pytest.skip(str(exc))


def _write(tmp_path: Path, name: str, src: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(src))
    return path


def test_check_accepts_correct_usage(major, tmp_path):
    assert _check(major, [_write(tmp_path, "good_usage.py", GOOD)]) == []


def test_check_catches_wrong_names(major, tmp_path):
    errors = "\n".join(_check(major, [_write(tmp_path, "bad_usage.py", BAD)]))
    for expected in (
        '"set_memroy_pool_limit"',  # misspelled method
        '"VERSION_COMPATIBEL"',  # misspelled enum member
        'argument "logger" in call to "OnnxParser"',  # missing constructor argument
        '"num_io_tensor"',  # misspelled property
        '"OnnxParsr"',
    ):  # misspelled class
        assert expected in errors, f"no error about {expected}; got:\n{errors}"
    assert len(errors.splitlines()) == 5, errors


def test_our_tensorrt_code_uses_existing_names(major):
    missing = [p for p in TRT_MODULES if not (ROOT / p).is_file()]
    if missing:
        pytest.skip(f"not written yet: {', '.join(map(str, missing))}")
    errors = [e for e in _check(major, TRT_MODULES) if not any(a in e for a in ALLOWED_ERRORS.get(major, []))]
    assert errors == [], f"TensorRT {major} API mismatches:\n" + "\n".join(errors)


def test_tensorrt_uses_are_checked(major):
    missing = [p for p in TRT_MODULES if not (ROOT / p).is_file()]
    if missing:
        pytest.skip(f"not written yet: {', '.join(map(str, missing))}")
    try:
        unchecked = trt_api.unchecked_uses(major, TRT_MODULES)
    except RuntimeError as exc:
        pytest.skip(str(exc))
    # entries read "path:line in function: trt.Name"
    unchecked = [
        u for u in unchecked if f"{u.split(':', 1)[0]}:{u.split(' in ', 1)[1].split(':', 1)[0]}" not in DYNAMIC_OK
    ]
    assert unchecked == [], (
        "mypy sees `trt` as Any at these uses, so their names are not checked; use a typed module there "
        "(`import tensorrt as trt` in the function instead of a `trt: Any` parameter), or list "
        "'path:function' in DYNAMIC_OK:\n" + "\n".join(unchecked)
    )
