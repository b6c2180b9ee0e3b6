"""`ssp convert export | check | build | info` end to end on the shipped checkpoint (one export per
session), plus the TensorRT build planning that needs no GPU."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import onnx
import pytest
from helpers import assert_ok, assert_one_line_error, run_ssp

from ssp_edge.converter.schemas import register_schemas
from ssp_edge.sdk.bundle import Bundle, sha256_file


def expected_plugin_nodes(config: dict) -> dict[str, dict[str, int]]:
    """ssp_lite by construction: one aggregation of features in the image encoder (v2 with token coordinates: a
    second one, of the pixel coordinates into superpixel centroids); one propagation and four RUS steps (strides
    16 -> 8 -> 4 -> 2 -> 1) in the mask decoder."""
    return {
        "text_encoder": {},
        "image_encoder": {"ssp::SuperpixelAggregate": 2 if config.get("token_coords") else 1},
        "mask_decoder": {"ssp::SuperpixelPropagate": 1, "ssp::ReplicationUpsample": 4},
    }


HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def _node_counts(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in onnx.load(str(path)).graph.node:
        if n.domain not in ("", "ai.onnx"):
            counts[f"{n.domain}::{n.op_type}"] = counts.get(f"{n.domain}::{n.op_type}", 0) + 1
    return counts


@pytest.mark.slow
def test_plugin_graphs_have_exactly_the_ssp_nodes_and_portable_none(lite_bundle):
    b = Bundle.open(lite_bundle)
    expected = expected_plugin_nodes(b.manifest.config)
    seen = set()
    for g in b.manifest.graphs:
        want = expected[g.name] if g.flavour == "plugin" else {}
        assert _node_counts(b.path(g.file)) == want, (g.name, g.flavour)
        assert g.custom_ops == want
        seen.add((g.name, g.flavour))
    assert seen == {(n, f) for n in expected for f in ("plugin", "portable")}


@pytest.mark.slow
def test_graphs_pass_checker_with_dynamic_batch(lite_bundle):
    register_schemas()
    b = Bundle.open(lite_bundle)
    for g in b.manifest.graphs:
        m = onnx.load(str(b.path(g.file)))
        onnx.checker.check_model(m, full_check=True)
        assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
        dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in m.graph.input}
        if g.name == "image_encoder":
            assert dims["image"] == ["frames", 3, 320, 320]
        elif g.name == "mask_decoder":
            assert dims["f16"][0] == "frames" and dims["frame_index"] == ["expressions"]
            assert dims["words"][0] == "expressions" and dims["sentence"][0] == "expressions"
        else:
            assert dims["input_ids"] == ["expressions", 20]


@pytest.mark.slow
def test_manifest_describes_the_bundle(lite_bundle):
    man = Bundle.open(lite_bundle).manifest
    assert man.input_size == 320 and man.max_tokens == 20 and man.config["name"] == "ssp_lite"
    assert man.source["checkpoint"] == "ssp_lite_refshapes" and len(man.source["sha256"]) == 64
    # the training data (calibration defaults to its family's splits), from the checkpoint's own metadata
    from ssp_edge.ssp.checkpoint import read_checkpoint_info

    assert man.source.get("data") == read_checkpoint_info("ssp_lite_refshapes").metadata.get("data")
    assert 0 < man.thresholds["mask"] < 1
    for rel, digest in man.files.items():
        assert sha256_file(lite_bundle / rel) == digest
    assert "tokenizer.json" in man.files and man.dynamic_axes["expressions"] == [1, 4, 16]


@pytest.mark.slow
def test_check_passes_for_every_graph_and_flavour(lite_bundle):
    r = run_ssp("convert", "check", str(lite_bundle), "--samples", "3", "--json")
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    assert rep["ok"] is True
    rows = {(x["graph"], x["flavour"]): x for x in rep["results"]}
    assert set(rows) == {
        (g, f) for g in ("text_encoder", "image_encoder", "mask_decoder", "end_to_end") for f in ("plugin", "portable")
    }
    for key in (("mask_decoder", "plugin"), ("mask_decoder", "portable")):
        assert rows[key]["max_abs_diff"] <= 1e-3 and rows[key]["mask_agreement"] >= 0.999


@pytest.mark.slow
def test_tampered_bundle_is_refused(lite_bundle, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(lite_bundle, bad)
    p = bad / "mask_decoder.portable.onnx"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    assert_one_line_error(run_ssp("convert", "check", str(bad)), "mask_decoder.portable.onnx", "sha256")


@pytest.mark.slow
def test_info_reports_params_and_flops_per_graph_and_module(lite_bundle):
    r = run_ssp("convert", "info", str(lite_bundle), "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    cost = json.loads(r.stdout)["cost"]
    assert set(cost["graphs"]) == {"text_encoder", "image_encoder", "mask_decoder"}
    for part in ("PWT", "SWT", "EPT", "RUS_decoder", "superpixel_net", "backbone", "text_encoder"):
        assert cost["parts"][part]["flops"] > 0 and cost["parts"][part]["parameters"] > 0
    assert sum(v["flops"] for v in cost["parts"].values()) == cost["flops"]
    assert sum(v["parameters"] for v in cost["parts"].values()) == cost["parameters"]
    assert sum(v["parameters"] for v in cost["graphs"].values()) == cost["parameters"]


def test_export_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("user data")
    # not a bundle: refused, and --force is not offered (it replaces only bundles and empty folders)
    line = assert_one_line_error(run_ssp("convert", "export", "--out", str(tmp_path)), "not an ssp-edge bundle")
    assert "--force" not in line
    assert (tmp_path / "keep.txt").read_text() == "user data"


def test_export_refuses_a_checkpoint_of_another_config(tmp_path):
    assert_one_line_error(
        run_ssp(
            "convert",
            "export",
            "--checkpoint",
            "ssp_lite_refshapes",
            "--config",
            "ssp_paper",
            "--out",
            str(tmp_path / "b"),
        ),
        "ssp_lite",
        "ssp_paper",
    )
    assert not (tmp_path / "b").exists()


def test_check_of_a_missing_bundle_is_one_line(tmp_path):
    assert_one_line_error(run_ssp("convert", "check", str(tmp_path)), "manifest.json", "ssp convert export")


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed: the real build tests run instead")
@pytest.mark.slow
def test_build_without_tensorrt_prints_trtexec_and_one_line_error(lite_bundle):
    r = run_ssp("convert", "build", str(lite_bundle), "--precision", "fp16")
    line = assert_one_line_error(r, "TensorRT is not usable here")
    assert "trtexec --onnx=" in r.stderr and "--fp16" in r.stderr and "--maxShapes=image:4x3x320x320" in r.stderr
    assert "ssp calibrate" in r.stderr  # TensorRT 11 needs the FP16 graph
    assert line


@pytest.mark.slow
def test_build_plan_by_tensorrt_generation(lite_bundle):
    from ssp_edge.converter.trt_build import BuildError, plan_sources

    b = Bundle.open(lite_bundle)
    plan = plan_sources(b, "portable", "fp16", strongly_typed=False)  # TensorRT 10: FP32 graph + FP16 flag
    assert plan["image_encoder"].fp16_flag and plan["image_encoder"].entry.precision == "fp32"
    assert not plan["text_encoder"].fp16_flag and plan["text_encoder"].strict_fp32  # the text encoder rule
    assert not any(p.fp16_flag for p in plan_sources(b, "plugin", "fp32", strongly_typed=True).values())
    with pytest.raises(BuildError, match="ssp calibrate"):
        plan_sources(b, "portable", "fp16", strongly_typed=True)  # TensorRT 11: needs the mixed-precision graph
    with pytest.raises(BuildError, match="Q/DQ"):
        plan_sources(b, "portable", "int8", strongly_typed=False)


@pytest.mark.skipif(not HAS_TRT, reason="tensorrt does not import here (PyPI has only its bindings; no GPU)")
def test_build_fp32_engines_for_real(lite_bundle):  # pragma: no cover - needs a GPU with TensorRT
    from ssp_edge.converter.trt_build import build_engines

    built = build_engines(lite_bundle, "fp32", "portable")
    assert {b.graph for b in built} == {"text_encoder", "image_encoder", "mask_decoder"}
    Bundle.open(lite_bundle).verify()


def test_build_with_a_missing_plugin_library_is_one_line(tmp_path):
    from ssp_edge.sdk.bundle import Manifest

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
    b.save()
    assert_one_line_error(
        run_ssp("convert", "build", str(b.root), "--plugins", str(tmp_path / "libnope.so")), "libnope.so", "cmake"
    )


@pytest.mark.slow
def test_ssp_paper_random_init_exports_and_checks(tmp_path):
    """ssp_paper (Swin-B + BERT-base, 480x480, random init, batch 1): plugin flavour export + parity."""
    out = tmp_path / "paper"
    assert_ok(
        run_ssp("convert", "export", "--config", "ssp_paper", "--flavour", "plugin", "--out", str(out), timeout=1200)
    )
    b = Bundle.open(out)
    assert b.graph("mask_decoder", "plugin").custom_ops == expected_plugin_nodes(b.manifest.config)["mask_decoder"]
    r = assert_ok(run_ssp("convert", "check", str(out), "--samples", "1", "--json", timeout=900))
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    assert rep["ok"] and all(x["max_abs_diff"] <= x["tolerance"] for x in rep["results"] if x["graph"] != "end_to_end")
