"""TensorRT backend: engine selection by TensorRT's compatibility rules (runs anywhere), the backend's logic (CUDA
graphs as trtexec does them, the host-code opt-in, name-keyed outputs) against test doubles of TensorRT and
cuda-python, and real engines where TensorRT and a GPU exist (skipped with the reason elsewhere)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from ssp_edge.sdk.bundle import Bundle, EngineEntry, Manifest
from ssp_edge.sdk.errors import SDKError

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def _bundle(tmp_path, engines):
    b = Bundle.create(
        tmp_path / "b",
        Manifest(
            config={},
            input_size=320,
            mean=[0.5] * 3,
            std=[0.5] * 3,
            max_tokens=20,
            thresholds={},
            source={},
            dynamic_axes={},
        ),
    )
    for e in engines:
        (b.root / e.file).write_bytes(e.file.encode())
        b.add_engine(e)
    return b


def _set(precision, version, cc, flavour="portable", vc=False):
    return [
        EngineEntry(
            g,
            flavour,
            precision,
            f"{g}.{flavour}.{precision}.{version}.{cc}.{vc}.engine",
            version,
            cc,
            f"{g}.onnx",
            "libssp_trt_plugins.so" if flavour == "plugin" else None,
            version_compatible=vc,
        )
        for g in ("text_encoder", "image_encoder", "mask_decoder")
    ]


def test_engines_chosen_for_this_tensorrt_and_gpu(tmp_path):
    from ssp_edge.sdk.backends.tensorrt import select_engines

    b = _bundle(tmp_path, _set("fp16", "10.3.0", "8.7") + _set("int8", "10.3.0", "8.7") + _set("fp16", "11.1.0", "8.9"))
    chosen = select_engines(b, "10.3.0.26", "8.7", None)  # default preference: fp16
    assert {e.precision for e in chosen.values()} == {"fp16"} and all(
        e.compute_capability == "8.7" for e in chosen.values()
    )
    assert {e.precision for e in select_engines(b, "10.3.0", "8.7", "int8").values()} == {"int8"}
    assert {e.tensorrt_version for e in select_engines(b, "11.1.0.5", "8.9", None).values()} == {"11.1.0"}


def test_mismatch_is_refused_with_the_rule_and_the_rebuild_command(tmp_path):
    from ssp_edge.sdk.backends.tensorrt import select_engines

    b = _bundle(tmp_path, _set("fp16", "10.3.0", "8.7"))
    with pytest.raises(
        SDKError,
        match=r"sm_87.*architecture they were built for.*ssp convert build .* "
        r"--precision fp16",
    ):
        select_engines(b, "10.3.0", "9.0", None)  # another GPU
    with pytest.raises(SDKError, match="exact TensorRT version that built it.*ssp convert build"):
        select_engines(b, "11.0.0", "8.7", None)  # another TensorRT
    with pytest.raises(SDKError, match="--precision int8"):
        select_engines(b, "10.3.0", "8.7", "int8")


# (built, runtime, version-compatible, usable): TensorRT ties an ordinary engine to the exact version that built it;
# a version-compatible one runs on the same or a later version of the same major (developer guide, "Version
# Compatibility"); versions are compared on the parts both give
ENGINE_RULES = [
    ("10.3.0.26", "10.3.0.26", False, True),
    ("10.3.0", "10.3.0.26", False, True),  # the manifest records three parts
    ("10.3.0.26", "10.3.0.30", False, False),  # another build of the same patch release
    ("10.3.0.26", "10.3.1.2", False, False),
    ("10.3.0.26", "10.4.0.1", False, False),
    ("10.3.0.26", "11.1.0.7", False, False),
    ("10.3", "10.3.0.26", False, False),  # an exact match needs major.minor.patch
    ("10.3.0.26", "10.3.0.26", True, True),
    ("10.3.0.26", "10.7.0.23", True, True),  # later minor of the same major
    ("10.3.0.26", "10.3.1.0", True, True),
    ("10.7.0.23", "10.3.0.26", True, False),  # an older runtime never
    ("11.4.0.106", "11.1.0.7", True, False),
    ("10.13.0.35", "11.1.0.7", True, False),  # another major never
    ("11.1.0.7", "10.13.0.35", True, False),
]


@pytest.mark.parametrize("built,runtime,vc,ok", ENGINE_RULES)
def test_engine_compatibility_rules(tmp_path, built, runtime, vc, ok):
    from ssp_edge.sdk.backends.tensorrt import engine_usable, select_engines

    why = engine_usable(built, runtime, vc)
    assert (why is None) == ok, why
    b = _bundle(tmp_path, _set("fp16", built, "8.7", vc=vc))
    if ok:
        assert len(select_engines(b, runtime, "8.7", None)) == 3
    else:
        rule = (
            "same or a later"
            if vc and built.split(".")[0] == runtime.split(".")[0]
            else "only on TensorRT"
            if vc
            else "exact TensorRT version"
        )
        with pytest.raises(SDKError, match=rule):
            select_engines(b, runtime, "8.7", None)


def test_exact_engines_preferred_over_version_compatible_ones(tmp_path):
    from ssp_edge.sdk.backends.tensorrt import select_engines

    b = _bundle(
        tmp_path,
        _set("fp16", "10.3.0.26", "8.7", vc=True)
        + [EngineEntry("mask_decoder", "portable", "fp16", "md.exact.engine", "10.7.0.23", "8.7", "m.onnx")],
    )
    chosen = select_engines(b, "10.7.0.23", "8.7", None)
    assert chosen["mask_decoder"].file == "md.exact.engine" and chosen["image_encoder"].version_compatible


def test_version_compatible_engines_need_the_host_code_opt_in(tmp_path):
    from ssp_edge.sdk.backends.tensorrt import select_engines

    b = _bundle(tmp_path, _set("fp16", "10.3.0", "8.7", vc=True))
    with pytest.raises(SDKError, match="allow_engine_host_code=True .*--allow-engine-host-code"):
        select_engines(b, "10.7.0", "8.7", None, host_code=False)
    assert len(select_engines(b, "10.7.0", "8.7", None, host_code=True)) == 3


def test_plugin_engines_need_a_chosen_library_else_portable(tmp_path):
    from ssp_edge.sdk.backends.tensorrt import select_engines

    plugin = _set("fp16", "10.3.0", "8.7", flavour="plugin")
    b = _bundle(tmp_path / "a", plugin + _set("fp16", "10.3.0", "8.7"))
    assert {e.flavour for e in select_engines(b, "10.3.0", "8.7", None).values()} == {"plugin"}
    assert {e.flavour for e in select_engines(b, "10.3.0", "8.7", None, plugins=False).values()} == {"portable"}
    only = _bundle(tmp_path / "b", plugin)
    with pytest.raises(SDKError, match="plugin_lib=.*SSP_PLUGIN_LIB.*trust_bundle_plugins=True"):
        select_engines(only, "10.3.0", "8.7", None, plugins=False)


# ---- the backend's logic with test doubles of TensorRT and cuda-python (tests/plugins/trt_doubles.py)


def _doubles():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "plugins" / "trt_doubles.py"
    spec = importlib.util.spec_from_file_location("trt_doubles", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def doubles(monkeypatch):
    d = _doubles()
    d.install(monkeypatch)
    return d


def _backend_bundle(tmp_path, vc=False):
    return _bundle(tmp_path, _set("fp32", "10.3.0.26", "8.7", vc=vc))


def _captures(log):
    return [
        c
        for c in log
        if c[0]
        in (
            "cudaStreamBeginCapture",
            "cudaGraphLaunch",
            "cudaGraphExecDestroy",
            "cudaGraphDestroy",
            "execute_async_v3",
            "cudaStreamSynchronize",
        )
    ]


def test_cuda_graph_as_trtexec_does_it(doubles, tmp_path):
    from ssp_edge.sdk.backends.tensorrt import TensorRTBackend

    be = TensorRTBackend(_backend_bundle(tmp_path), "fp32")
    log = doubles.LOG
    log.clear()
    out = be.run("image_encoder", {"image": np.ones((1, 3, 4, 4), np.float32)})
    assert set(out) == {"out"} and out["out"].shape == (1, 2)  # keyed by the engine's output names
    first = _captures(log)
    # checked warm-up enqueue, synchronised, then the captured enqueue (thread-local mode), then the replay
    assert [c[0] for c in first[:5]] == [
        "execute_async_v3",
        "cudaStreamSynchronize",
        "cudaStreamBeginCapture",
        "execute_async_v3",
        "cudaGraphDestroy",
    ]
    assert first[0][1] == "plain" and first[2][1] == 1 and first[3][1] == "capturing"
    assert [c[0] for c in first[5:]] == ["cudaGraphLaunch", "cudaStreamSynchronize"]
    log.clear()
    be.run("image_encoder", {"image": np.ones((1, 3, 4, 4), np.float32)})  # same shapes: replay only
    assert [c[0] for c in _captures(log)] == ["cudaGraphLaunch", "cudaStreamSynchronize"]
    log.clear()
    be.run("image_encoder", {"image": np.ones((1, 3, 2, 4), np.float32)})  # new shape: old graph destroyed, recaptured
    names = [c[0] for c in _captures(log)]
    assert names[:3] == ["cudaGraphExecDestroy", "execute_async_v3", "cudaStreamSynchronize"]
    assert "cudaStreamBeginCapture" in names and names[-2] == "cudaGraphLaunch"
    log.clear()
    be.run("mask_decoder", {"image": np.ones((1, 3, 4, 4), np.float32)})  # no CUDA graph for the other engines
    assert [c[0] for c in _captures(log)] == ["execute_async_v3", "cudaStreamSynchronize"]
    log.clear()
    be.close()
    assert [c[0] for c in log].count("cudaGraphExecDestroy") == 1


def test_cuda_graph_capture_failure_falls_back_to_plain_enqueue(doubles, tmp_path, caplog):
    from ssp_edge.sdk.backends.tensorrt import TensorRTBackend

    doubles.OPTIONS.capture_fails = True  # e.g. an op that cannot be captured: enqueue returns False in capture
    be = TensorRTBackend(_backend_bundle(tmp_path), "fp32")
    doubles.LOG.clear()
    with caplog.at_level("WARNING", logger="ssp_edge.sdk.tensorrt"):
        out = be.run("image_encoder", {"image": np.ones((1, 3, 4, 4), np.float32)})
        for _ in range(3):
            be.run("image_encoder", {"image": np.ones((1, 3, 4, 4), np.float32)})
    assert out["out"].shape == (1, 2)
    log = [
        c
        for c in doubles.LOG
        if c[0]
        in ("cudaStreamBeginCapture", "cudaGraphLaunch", "cudaGetLastError", "execute_async_v3", "cudaGraphInstantiate")
    ]
    # one capture attempt, its error cleared, the frame run by a plain enqueue, later frames plain too
    assert [c[0] for c in log].count("cudaStreamBeginCapture") == 1
    assert "cudaGraphLaunch" not in [c[0] for c in log] and "cudaGraphInstantiate" not in [c[0] for c in log]
    assert ("cudaGetLastError",) in log
    plain = [c for c in log if c[0] == "execute_async_v3" and c[1] == "plain"]
    assert len(plain) == 1 + 1 + 3  # warm-up, this frame, three more frames
    warnings = [r for r in caplog.records if "CUDA graph capture failed" in r.getMessage()]
    assert len(warnings) == 1  # logged once
    be.close()
    assert not [c for c in doubles.LOG if c[0] == "cudaGraphExecDestroy"]


def test_failed_enqueue_is_an_error(doubles, tmp_path, monkeypatch):
    from ssp_edge.sdk.backends.tensorrt import TensorRTBackend

    be = TensorRTBackend(_backend_bundle(tmp_path), "fp32", cuda_graph=False)
    monkeypatch.setattr(be._runners["mask_decoder"].context, "execute_async_v3", lambda stream: False)
    with pytest.raises(SDKError, match="failed to run the mask_decoder engine"):
        be.run("mask_decoder", {"image": np.ones((1, 3, 4, 4), np.float32)})


def test_engine_host_code_only_with_the_opt_in(doubles, tmp_path):
    from ssp_edge.sdk.backends.tensorrt import TensorRTBackend

    b = _backend_bundle(tmp_path, vc=True)
    with pytest.raises(SDKError, match="allow_engine_host_code=True"):
        TensorRTBackend(b, "fp32")
    assert not any(c[0] == "engine_host_code_allowed" for c in doubles.LOG)
    assert not any(c[0] == "deserialize_cuda_engine" for c in doubles.LOG)
    TensorRTBackend(b, "fp32", allow_engine_host_code=True).close()
    assert ("engine_host_code_allowed", True) in doubles.LOG


def test_constructor_signature_follows_the_contract():
    import inspect

    from ssp_edge.sdk.backends.tensorrt import TensorRTBackend

    sig = inspect.signature(TensorRTBackend.__init__)
    assert list(sig.parameters) == [
        "self",
        "bundle",
        "precision",
        "plugin_lib",
        "trust_bundle_plugins",
        "allow_engine_host_code",
        "cuda_graph",
    ]
    assert all(
        sig.parameters[n].kind is inspect.Parameter.KEYWORD_ONLY
        for n in ("plugin_lib", "trust_bundle_plugins", "allow_engine_host_code", "cuda_graph")
    )
    assert [sig.parameters[n].default for n in ("trust_bundle_plugins", "allow_engine_host_code", "cuda_graph")] == [
        False,
        False,
        True,
    ]


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed: the real tests below run")
def test_auto_falls_back_to_onnxruntime_and_explicit_tensorrt_says_why(lite_bundle):
    from ssp_edge.sdk.segmenter import Segmenter

    assert Segmenter.open(lite_bundle).backend.name == "onnxruntime"
    with pytest.raises(SDKError, match="TensorRT backend unavailable"):
        Segmenter.open(lite_bundle, backend="tensorrt")


@pytest.mark.skipif(not HAS_TRT, reason="tensorrt does not import here (PyPI has only its bindings; no GPU)")
def test_tensorrt_masks_match_onnxruntime(lite_bundle, tmp_path):  # pragma: no cover - needs a GPU
    import shutil

    from ssp_edge.converter.trt_build import build_engines
    from ssp_edge.sdk.segmenter import Segmenter

    b = tmp_path / "b"
    shutil.copytree(lite_bundle, b)
    build_engines(b, "fp32", "portable")
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[60:140, 100:180] = (0, 0, 255)
    ort = Segmenter.open(b, backend="onnxruntime").segment(frame, ["the red square", "the blue circle"])
    trt = Segmenter.open(b, backend="tensorrt", precision="fp32").segment(frame, ["the red square", "the blue circle"])
    for a, c in zip(ort, trt):
        inter, union = (a.mask & c.mask).sum(), (a.mask | c.mask).sum()
        assert union == 0 or inter / union >= 0.99
