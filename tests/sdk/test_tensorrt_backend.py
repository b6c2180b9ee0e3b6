"""TensorRT backend: engine selection from the manifest (runs anywhere), and real engines where
TensorRT and a GPU exist (skipped with the reason elsewhere)."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from ssp_edge.sdk.bundle import Bundle, EngineEntry, Manifest
from ssp_edge.sdk.errors import SDKError

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def _bundle(tmp_path, engines):
    b = Bundle.create(tmp_path / "b", Manifest(config={}, input_size=320, mean=[0.5] * 3, std=[0.5] * 3,
                                                max_tokens=20, thresholds={}, source={}, dynamic_axes={}))
    for e in engines:
        (b.root / e.file).write_bytes(e.file.encode())
        b.add_engine(e)
    return b


def _set(precision, version, cc, flavour="portable", vc=False):
    return [EngineEntry(g, flavour, precision, f"{g}.{flavour}.{precision}.{version}.{cc}.engine", version, cc,
                        f"{g}.onnx", version_compatible=vc) for g in ("text_encoder", "image_encoder", "mask_decoder")]


def test_engines_chosen_for_this_tensorrt_and_gpu(tmp_path):
    from ssp_edge.sdk.backends.tensorrt import select_engines

    b = _bundle(tmp_path, _set("fp16", "10.3.0", "8.7") + _set("int8", "10.3.0", "8.7") + _set("fp16", "11.1.0", "8.9"))
    chosen = select_engines(b, "10.3.0.26", "8.7", None)  # default preference: fp16
    assert {e.precision for e in chosen.values()} == {"fp16"} and all(e.compute_capability == "8.7"
                                                                      for e in chosen.values())
    assert {e.precision for e in select_engines(b, "10.3.0", "8.7", "int8").values()} == {"int8"}
    assert {e.tensorrt_version for e in select_engines(b, "11.1.2", "8.9", None).values()} == {"11.1.0"}


def test_mismatch_is_refused_with_the_rebuild_command(tmp_path):
    from ssp_edge.sdk.backends.tensorrt import select_engines

    b = _bundle(tmp_path, _set("fp16", "10.3.0", "8.7"))
    with pytest.raises(SDKError, match=r"sm_87.*ssp convert build .* --precision fp16"):
        select_engines(b, "10.3.0", "9.0", None)  # another GPU
    with pytest.raises(SDKError, match="ssp convert build"):
        select_engines(b, "11.0.0", "8.7", None)  # another TensorRT
    with pytest.raises(SDKError, match="--precision int8"):
        select_engines(b, "10.3.0", "8.7", "int8")


def test_version_compatible_engines_run_on_a_later_minor(tmp_path):
    from ssp_edge.sdk.backends.tensorrt import select_engines

    b = _bundle(tmp_path, _set("fp16", "10.3.0", "8.7", vc=True))
    assert len(select_engines(b, "10.7.0", "8.7", None)) == 3
    with pytest.raises(SDKError):
        select_engines(b, "11.0.0", "8.7", None)


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
