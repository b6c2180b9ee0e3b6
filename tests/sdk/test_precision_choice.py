"""The default precision on ONNX Runtime (``precision=None`` / ``auto``): INT8 only where the manifest's accuracy
record covers the very graphs that would run and keeps the bound, the providers are CPU only and the CPU has int8
dot products; FP32 otherwise, with a reason that names what is missing. Synthetic bundles (no ONNX needed); the
end-to-end case on a real calibrated bundle is in tests/calibration/test_calibrate_cli.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import small_manifest

from ssp_edge.sdk.backends.precision_choice import (
    ACCURACY_BOUND,
    choose_precision,
    int8_dot_product,
    ort_entries,
)
from ssp_edge.sdk.bundle import Bundle, GraphEntry, TensorSpec
from ssp_edge.sdk.errors import BundleError

ZEN4 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 fma avx512f avx512bw avx512_vnni avx512_bf16\n"
ALDER_LAKE = "processor\t: 0\nflags\t\t: fpu avx2 fma avx_vnni\n"
HASWELL = "processor\t: 0\nflags\t\t: fpu sse avx avx2 fma\n"
ORIN = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimddp\n"
CORTEX_A57 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n"


@pytest.mark.parametrize(
    "cpuinfo, machine, os_name, expect",
    [
        (ZEN4, "x86_64", "linux", "AVX512-VNNI"),
        (ALDER_LAKE, "x86_64", "linux", "AVX-VNNI"),
        (HASWELL, "x86_64", "linux", None),
        (ORIN, "aarch64", "linux", "Arm dotprod"),  # Jetson Orin's Cortex-A78AE
        (CORTEX_A57, "aarch64", "linux", None),  # Jetson Nano / TX2
        ("", "arm64", "darwin", "Arm dotprod"),  # Apple silicon: no /proc/cpuinfo, every one has dotprod
        ("", "x86_64", "win32", None),  # nothing to read: no claim
    ],
)
def test_int8_dot_product_from_cpuinfo(cpuinfo, machine, os_name, expect):
    assert int8_dot_product(cpuinfo, machine, os_name) == expect


def _entry(name: str, precision: str, file: str, plan: str | None = None) -> GraphEntry:
    return GraphEntry(
        name,
        "portable",
        precision,
        file,
        [TensorSpec("x", [1, 4], "float32")],
        [TensorSpec("y", [1, 4], "float32")],
        qdq_plan=plan,
    )


def _bundle(root: Path, plans: tuple[str, ...] = ("onnxruntime",)) -> Bundle:
    """FP32 graphs of the three networks and INT8 graphs of image_encoder / mask_decoder in ``plans``."""
    b = Bundle.create(root, small_manifest())
    (root / "tokenizer.json").write_text("{}")
    b.add_file("tokenizer.json")
    for g in ("text_encoder", "image_encoder", "mask_decoder"):
        (root / f"{g}.onnx").write_bytes(f"{g} fp32".encode())
        b.add_graph(_entry(g, "fp32", f"{g}.onnx"))
    for g in ("image_encoder", "mask_decoder"):
        for plan in plans:
            f = f"{g}.int8.{plan}.onnx"
            (root / f).write_bytes(f"{g} int8 {plan}".encode())
            b.add_graph(_entry(g, "int8", f, plan))
    b.save()
    return Bundle.open(root)


def _record(b: Bundle, m32: float, m8: float, samples: int = 300) -> dict:
    """An accuracy record as `ssp calibrate` writes it, hashes taken from the manifest's files list."""
    files = b.manifest.files
    return {
        "data": "refshapes2:test",
        "samples": samples,
        "metrics": {"fp32": {"mIoU": m32, "oIoU": m32}, "int8": {"mIoU": m8, "oIoU": m8}},
        "graphs": {p: {g: files[e.file] for g, e in ort_entries(b, p).items()} for p in ("fp32", "int8")},
    }


def _with_record(b: Bundle, record: dict | None) -> Bundle:
    b.manifest.accuracy = record
    b.save()
    return Bundle.open(b.root)  # the record goes through the manifest validator


def test_ort_entries_prefer_the_onnxruntime_plan(tmp_path):
    b = _bundle(tmp_path, ("tensorrt", "onnxruntime"))
    e = ort_entries(b, "int8")
    assert e["text_encoder"].precision == "fp32"  # no INT8 text encoder: FP32
    assert {e[g].qdq_plan for g in ("image_encoder", "mask_decoder")} == {"onnxruntime"}


@pytest.mark.parametrize(
    "margin, expect", [(-0.002, "int8"), (0.0, "int8"), (0.8, "int8"), (1.0, "int8"), (1.2, "fp32")]
)
def test_int8_only_within_the_bound(tmp_path, margin, expect):
    """``margin`` is the INT8 loss in units of the bound (negative: INT8 scored higher)."""
    b = _bundle(tmp_path)
    m32 = 0.8
    b = _with_record(b, _record(b, m32, m32 - margin * ACCURACY_BOUND))
    c = choose_precision(b, None, ZEN4)
    assert c.precision == expect
    assert c.reason.startswith(expect + ":") and "refshapes2:test, 300 samples" in c.reason
    if expect == "fp32":
        assert "outside the" in c.reason


def test_too_few_samples_are_no_evidence(tmp_path):
    from ssp_edge.sdk.backends.precision_choice import MIN_EVAL_SAMPLES

    b = _bundle(tmp_path)
    c = choose_precision(_with_record(b, _record(b, 0.8, 0.8, MIN_EVAL_SAMPLES - 1)), None, ZEN4)
    assert c.precision == "fp32" and f"fewer than the {MIN_EVAL_SAMPLES}" in c.reason
    assert choose_precision(_with_record(b, _record(b, 0.8, 0.8, MIN_EVAL_SAMPLES)), None, ZEN4).precision == "int8"


def test_unreadable_cpu_flags_keep_fp32_and_say_so(tmp_path, monkeypatch):
    from ssp_edge.sdk.backends import precision_choice as pc

    b = _bundle(tmp_path)
    b = _with_record(b, _record(b, 0.8, 0.8))
    monkeypatch.setattr(pc.sys, "platform", "win32")
    c = choose_precision(b, None, "")
    assert c.precision == "fp32" and "does not say" in c.reason


def test_int8_needs_int8_dot_products(tmp_path):
    b = _bundle(tmp_path)
    b = _with_record(b, _record(b, 0.8, 0.8))
    assert choose_precision(b, None, ZEN4).precision == "int8"
    assert "AVX512-VNNI" in choose_precision(b, None, ZEN4).reason
    c = choose_precision(b, None, HASWELL)
    assert c.precision == "fp32" and "dot-product" in c.reason


def test_gpu_providers_keep_fp32(tmp_path):
    b = _bundle(tmp_path)
    b = _with_record(b, _record(b, 0.8, 0.8))
    assert choose_precision(b, ["CPUExecutionProvider"], ZEN4).precision == "int8"
    c = choose_precision(b, ["CUDAExecutionProvider", "CPUExecutionProvider"], ZEN4)
    assert c.precision == "fp32" and "CUDAExecutionProvider" in c.reason


def test_without_measurement_or_graphs_fp32(tmp_path):
    b = _bundle(tmp_path / "a")
    c = choose_precision(b, None, ZEN4)
    assert c.precision == "fp32" and "not measured" in c.reason
    trt_only = _bundle(tmp_path / "b", ("tensorrt",))  # TensorRT's plan alone is not what ONNX Runtime should run
    c = choose_precision(_with_record(trt_only, _record(trt_only, 0.8, 0.8)), None, ZEN4)
    assert c.precision == "fp32" and "no ONNX Runtime INT8 graph" in c.reason and "ssp calibrate" in c.reason


def test_a_record_of_other_graphs_is_not_evidence(tmp_path):
    """Replace one INT8 graph after the measurement: the record's hash no longer matches, so FP32."""
    b = _bundle(tmp_path)
    b = _with_record(b, _record(b, 0.8, 0.8))
    f = b.graph("mask_decoder", "portable", "int8").file
    (tmp_path / f).write_bytes(b"another int8 graph")
    b.add_file(f)
    b.save()
    c = choose_precision(Bundle.open(tmp_path), None, ZEN4)
    assert c.precision == "fp32" and "other int8 graphs" in c.reason


def test_a_record_of_other_fp32_graphs_is_not_evidence(tmp_path):
    b = _bundle(tmp_path)
    b = _with_record(b, _record(b, 0.8, 0.8))
    (tmp_path / "image_encoder.onnx").write_bytes(b"a retrained fp32 graph")
    b.add_file("image_encoder.onnx")
    b.save()
    c = choose_precision(Bundle.open(tmp_path), None, ZEN4)
    assert c.precision == "fp32" and "other fp32 graphs" in c.reason


@pytest.mark.parametrize("cpu, want", [(ZEN4, "int8"), (HASWELL, "fp32")])
def test_backend_auto_resolves_and_says_why(tmp_path, monkeypatch, cpu, want):
    """open_backend(precision=None) -> OnnxRuntimeBackend("auto") opens the precision chosen for this CPU (its
    /proc/cpuinfo faked; sessions faked too: the graphs are not ONNX)."""
    from ssp_edge.sdk.backends import onnxruntime as ortb
    from ssp_edge.sdk.backends import precision_choice as pc
    from ssp_edge.sdk.backends.base import describe_backend, format_config, open_backend

    monkeypatch.setattr(ortb, "create_session", lambda *a, **k: object())
    monkeypatch.setattr(pc, "_read_cpuinfo", lambda: cpu)
    b = _bundle(tmp_path)
    b = _with_record(b, _record(b, 0.8, 0.799))
    be = open_backend(b, "onnxruntime")
    assert be.choice.precision == want and be.choice.reason.startswith(want + ":")
    assert be.precisions["image_encoder"] == be.precisions["mask_decoder"] == want
    assert be.precisions["text_encoder"] == "fp32"
    line = format_config(describe_backend(be))
    assert line.endswith("default precision " + be.choice.reason)
    explicit = open_backend(b, "onnxruntime", "fp32")
    assert explicit.choice is None and "default precision" not in format_config(describe_backend(explicit))


def test_unmeasured_manifest_has_no_accuracy_field(tmp_path):
    """Left out when None, so a bundle without a measurement opens in releases that predate the field."""
    import json

    b = _bundle(tmp_path)
    assert b.manifest.accuracy is None
    assert "accuracy" not in json.loads((tmp_path / "manifest.json").read_text())


@pytest.mark.parametrize(
    "record, match",
    [
        ("good", r"'accuracy' must be a JSON object"),
        ({"data": "x", "samples": 1, "metrics": {}}, r"'accuracy' lacks graphs"),
        ({"data": "x", "samples": 1, "metrics": {"int4": {}}, "graphs": {}}, r"'accuracy.metrics.<key>' must be one"),
        ({"data": "x", "samples": 1, "metrics": {"int8": {"mIoU": 1.5}}, "graphs": {}}, r"'accuracy.metrics.int8.mIoU"),
        ({"data": "x", "samples": -1, "metrics": {}, "graphs": {}}, r"'accuracy.samples' must be an integer"),
        (
            {"data": "x", "samples": 1, "metrics": {}, "graphs": {"int8": {"image_encoder": "abc"}}},
            r"'accuracy.graphs.int8.image_encoder' must be a lowercase hex sha256",
        ),
    ],
)
def test_malformed_accuracy_record_names_the_field(tmp_path, record, match):
    import json

    b = _bundle(tmp_path)
    data = json.loads((tmp_path / "manifest.json").read_text())
    data["accuracy"] = record
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match=match):
        Bundle.open(tmp_path)
    del b


def test_plugin_flavour_auto_is_fp32_and_says_why(tmp_path, monkeypatch):
    from ssp_edge.sdk.backends import onnxruntime as ortb

    monkeypatch.setattr(ortb, "create_session", lambda *a, **k: object())
    b = _bundle(tmp_path)
    for g in ("text_encoder", "image_encoder", "mask_decoder"):
        e = _entry(g, "fp32", f"{g}.onnx")
        b.add_graph(GraphEntry(e.name, "plugin", e.precision, e.file, e.inputs, e.outputs))
    b.save()
    b = _with_record(Bundle.open(tmp_path), _record(b, 0.8, 0.8))
    be = ortb.OnnxRuntimeBackend(b, "auto", flavour="plugin")
    assert be.choice.precision == "fp32" and "TensorRT's plan" in be.choice.reason
    assert set(be.precisions.values()) == {"fp32"}
