"""`ssp convert triton`: every config.pbtxt parses into tritonclient's ModelConfig, and its names, dtypes, dims and
batching match the bundle's manifest (checked against the manifest's specs here, not against the writer's code)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import assert_ok, run_ssp

pytest.importorskip("tritonclient.grpc", reason="tritonclient is in the dev extra (pip install -e '.[dev]')")
from google.protobuf import text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2 as mc  # noqa: E402

from ssp_edge.sdk.bundle import Bundle, EngineEntry  # noqa: E402

DTYPE = {"float32": mc.TYPE_FP32, "int64": mc.TYPE_INT64, "float16": mc.TYPE_FP16}
# which graphs Triton may batch, and over which axis (the decoder's image features have batch 1)
BATCH_AXIS = {"text_encoder": "expressions", "image_encoder": "frames", "mask_decoder": None}
NAMES = {"text_encoder": "ssp_text_encoder", "image_encoder": "ssp_image_encoder", "mask_decoder": "ssp_mask_decoder"}


def parse(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def check_io(cfg: mc.ModelConfig, entry, axes: dict) -> None:
    axis = BATCH_AXIS[entry.name]
    assert cfg.max_batch_size == (axes[axis][2] if axis else 0)
    for got, specs in ((cfg.input, entry.inputs), (cfg.output, entry.outputs)):
        assert [t.name for t in got] == [s.name for s in specs]
        for t, s in zip(got, specs):
            assert t.data_type == DTYPE[s.dtype], (t.name, t.data_type)
            shape = s.shape[1:] if axis else s.shape
            if axis:
                assert s.shape[0] == axis
            assert list(t.dims) == [d if isinstance(d, int) else -1 for d in shape], (t.name, list(t.dims), s.shape)
    assert cfg.HasField("dynamic_batching") == bool(axis)
    assert cfg.response_cache.enable == (entry.name == "text_encoder")


def check_segment(repo: Path, bundle: Bundle) -> None:
    cfg = parse(repo / "ssp_segment" / "config.pbtxt")
    assert cfg.backend == "python" and cfg.max_batch_size == 0
    assert [(t.name, t.data_type, list(t.dims)) for t in cfg.input] == [
        ("image", mc.TYPE_UINT8, [-1, -1, 3]),
        ("prompts", mc.TYPE_STRING, [-1]),
    ]
    assert [(t.name, t.data_type) for t in cfg.output] == [
        ("mask", mc.TYPE_UINT8),
        ("prob", mc.TYPE_FP32),
        ("score", mc.TYPE_FP32),
        ("exists", mc.TYPE_BOOL),
    ]
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    man = bundle.manifest
    assert float(params["mask_threshold"]) == man.thresholds["mask"]
    assert float(params["exists_threshold"]) == man.thresholds["exists"]
    for g, model in NAMES.items():  # the Triton model of each graph and the manifest entry it runs
        assert params[f"{g}_model"] == model
        assert any(e.name == g and e.file == params[f"{g}_graph"] for e in man.graphs)
    tok = (repo / "ssp_segment" / "1" / "tokenizer.json").read_bytes()
    assert hashlib.sha256(tok).hexdigest() == man.files[man.tokenizer]


@pytest.mark.parametrize("platform", ["onnxruntime", "python"])
def test_onnx_platforms_match_manifest(lite_bundle, tmp_path, platform):
    repo = tmp_path / "repo"
    r = assert_ok(run_ssp("convert", "triton", str(lite_bundle), "--out", str(repo), "--platform", platform, "--json"))
    info = json.loads(r.stdout)
    assert info["models"] == ["ssp_text_encoder", "ssp_image_encoder", "ssp_mask_decoder", "ssp_segment"]
    assert info["plugin_library"] is None  # the portable graphs: no native code to load
    bundle = Bundle.open(lite_bundle)
    assert sorted(p.parent.name for p in repo.glob("*/config.pbtxt")) == sorted(info["models"])
    for graph, name in NAMES.items():
        cfg = parse(repo / name / "config.pbtxt")
        assert cfg.name == name
        entry = bundle.graph(graph, "portable", "fp32")
        check_io(cfg, entry, bundle.manifest.dynamic_axes)
        onnx = (repo / name / "1" / "model.onnx").read_bytes()
        assert hashlib.sha256(onnx).hexdigest() == bundle.manifest.files[entry.file]  # the portable graph itself
        if platform == "onnxruntime":
            assert cfg.platform == "onnxruntime_onnx" and cfg.default_model_filename == "model.onnx"
        else:
            assert cfg.backend == "python" and (repo / name / "1" / "model.py").is_file()
            assert cfg.parameters["sha256"].string_value == bundle.manifest.files[entry.file]
            assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    check_segment(repo, bundle)
    readme = (repo / "README.md").read_text()
    assert "--cache-config=local" in readme and "RemoteSegmenter" in readme


def _bundle_with_engines(src: Path, dst: Path) -> Bundle:
    """A copy of the bundle (files hard-linked, manifest rewritten) with plugin fp16 engines for TensorRT 10.3 on
    two GPUs, and an fp32 portable set for one GPU; engine files are placeholders (configs only read names)."""
    shutil.copytree(src, dst, copy_function=os.link)
    (dst / "manifest.json").unlink()
    shutil.copy(src / "manifest.json", dst / "manifest.json")
    b = Bundle.open(dst)
    (dst / "libssp_trt_plugins.so").write_bytes(b"placeholder library")  # a bundle lists every file it names
    b.add_file("libssp_trt_plugins.so")
    for cc in ("8.7", "9.0"):
        for g in ("text_encoder", "image_encoder", "mask_decoder"):
            entry = b.graph(g, "plugin", "fp32")
            name = f"{g}.fp16.plugin.trt10.3.sm{cc.replace('.', '')}.engine"
            (dst / name).write_bytes(f"placeholder {name}".encode())
            prof = {"frames": [1, 1, 2]} if g == "image_encoder" else {"expressions": [1, 4, 16]}
            b.add_engine(
                EngineEntry(g, "plugin", "fp16", name, "10.3.0", cc, entry.file, "libssp_trt_plugins.so", prof)
            )
    for g in ("text_encoder", "image_encoder", "mask_decoder"):
        name = f"{g}.fp32.portable.trt10.3.sm87.engine"
        (dst / name).write_bytes(b"placeholder")
        b.add_engine(EngineEntry(g, "portable", "fp32", name, "10.3.0", "8.7", b.graph(g, "portable", "fp32").file))
    b.save()
    return Bundle.open(dst)


def test_tensorrt_platform_engines_per_compute_capability(lite_bundle, tmp_path):
    bundle = _bundle_with_engines(lite_bundle, tmp_path / "bundle")
    repo = tmp_path / "repo"
    r = assert_ok(run_ssp("convert", "triton", str(bundle.root), "--out", str(repo)))
    flag = '--backend-config=tensorrt,plugins="/path/libssp_trt_plugins_autoreg.so"'
    assert flag in r.stdout and "LD_PRELOAD" in r.stdout  # printed ...
    readme = (repo / "README.md").read_text()
    assert flag in readme and "LD_PRELOAD=/path/libssp_trt_plugins_autoreg.so" in readme  # ... and written
    assert "TensorRT 10.3" in readme
    axes = dict(bundle.manifest.dynamic_axes, frames=[1, 1, 2])  # the engine profile is smaller than the manifest
    for graph, name in NAMES.items():
        cfg = parse(repo / name / "config.pbtxt")
        assert cfg.platform == "tensorrt_plan"
        assert dict(cfg.cc_model_filenames) == {"8.7": "model_sm87.plan", "9.0": "model_sm90.plan"}
        for cc, f in cfg.cc_model_filenames.items():
            eng = f"{graph}.fp16.plugin.trt10.3.sm{cc.replace('.', '')}.engine"
            assert (repo / name / "1" / f).read_bytes() == (bundle.root / eng).read_bytes()
        check_io(cfg, bundle.graph(graph, "plugin", "fp32"), axes)
        assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    check_segment(repo, bundle)
    # portable engines: no plugin library, one compute capability
    r = assert_ok(
        run_ssp("convert", "triton", str(bundle.root), "--out", str(repo), "--force", "--flavour", "portable", "--json")
    )
    info = json.loads(r.stdout)
    assert info["plugin_library"] is None and info["precision"] == "fp32"
    assert dict(parse(repo / "ssp_mask_decoder" / "config.pbtxt").cc_model_filenames) == {"8.7": "model_sm87.plan"}
    assert "plugins=" not in (repo / "README.md").read_text()


def test_errors_are_one_line(lite_bundle, tmp_path):
    from helpers import assert_one_line_error

    assert_one_line_error(
        run_ssp("convert", "triton", str(lite_bundle), "--out", str(tmp_path / "r")),
        "no TensorRT engines",
        "--platform onnxruntime",
    )
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("keep")
    assert_one_line_error(
        run_ssp("convert", "triton", str(lite_bundle), "--out", str(tmp_path / "busy"), "--platform", "python"),
        "not empty",
        "--force",
    )
    assert (tmp_path / "busy" / "x").read_text() == "keep"
    assert_one_line_error(
        run_ssp("convert", "triton", str(tmp_path / "nope"), "--out", str(tmp_path / "r2"), "--platform", "python"),
        "not a folder",
    )
