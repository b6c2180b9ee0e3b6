"""``ssp bench --layers``: per-op-type and per-node tables (JSON + Markdown) and a PNG from ONNX Runtime's profiler
(OpenVINO's PERF_COUNT when installed); the TensorRT path through an IProfiler on the backend's execution contexts,
checked with the TensorRT test doubles (tests/plugins/trt_doubles.py), and trtexec's exported profile parsed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_ok, run_ssp

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None


def _consistent(p: dict) -> None:
    """One graph's profile: node times add up to the total, op types group exactly those nodes, shares sum to 1."""
    nodes, types = p["by_node"], p["by_type"]
    assert p["total_ms"] > 0 and nodes and types
    assert len({n["name"] for n in nodes}) == len(nodes)
    assert sum(n["ms"] for n in nodes) == pytest.approx(p["total_ms"], rel=1e-6)
    assert sum(t["ms"] for t in types) == pytest.approx(p["total_ms"], rel=1e-6)
    assert sum(t["count"] for t in types) == len(nodes)
    assert sum(t["share"] for t in types) == pytest.approx(1.0, rel=1e-6)
    assert [t["ms"] for t in types] == sorted((t["ms"] for t in types), reverse=True)


@pytest.mark.slow
def test_bench_layers_on_onnxruntime(lite_bundle, tmp_path):
    r = assert_ok(
        run_ssp(
            "bench",
            str(lite_bundle),
            "--quick",
            "--layers",
            "--only",
            "onnxruntime fp32",
            "--json",
            "--out-dir",
            str(tmp_path),
        )
    )
    res = json.loads(r.stdout.strip().splitlines()[-1])
    data = json.loads((tmp_path / "layers.json").read_text())
    prof = data["onnxruntime fp32"]
    assert set(prof) == {"image_encoder", "mask_decoder (1 prompt)", "mask_decoder (8 prompts)"}
    for p in prof.values():
        _consistent(p)
        assert all(n["shape"] for n in p["by_node"][:5])  # output shapes from the profiler
    conv = {t["op_type"]: t for t in prof["image_encoder"]["by_type"]}
    assert "Conv" in conv  # the backbone's convolutions
    # 8 prompts batch the decoder: its kernel time grows with the batch, and the op types stay those of the graph
    assert prof["mask_decoder (8 prompts)"]["total_ms"] > prof["mask_decoder (1 prompt)"]["total_ms"]
    md = (tmp_path / "layers.md").read_text()
    assert "## onnxruntime fp32: image_encoder" in md and "| op type | nodes | ms | % |" in md and "| node |" in md
    assert (tmp_path / "bench_layers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lay = res["layers"]
    assert "not profiled" in lay["notes"]["tensorrt"]  # no TensorRT here: said, not faked
    assert "Per-op profile (--layers)" in (tmp_path / "bench.md").read_text()
    assert [x["backend"] for x in res["rows"]] == ["onnxruntime"]  # --only


@pytest.mark.skipif(not HAS_OPENVINO, reason="OpenVINO is not installed (pip install 'ssp-edge[openvino]')")
def test_openvino_perf_counters(lite_bundle):
    import cv2

    from ssp_edge.benchmarks.layers import graph_feeds, openvino_layers
    from ssp_edge.sdk.segmenter import Segmenter

    seg = Segmenter.open(lite_bundle, backend="onnxruntime")
    frame = cv2.cvtColor(np.full((240, 320, 3), 90, np.uint8), cv2.COLOR_RGB2BGR)
    feeds = graph_feeds(seg, frame, ["the red circle", "the blue square"], (2,))
    prof = openvino_layers(seg.bundle, "fp32", feeds, runs=2, warmup=1)
    assert set(prof) == {"image_encoder", "mask_decoder (2 prompts)"}
    for p in prof.values():
        _consistent(p.to_dict())


# ---- TensorRT: IProfiler on the backend's execution contexts, with the test doubles


def _doubles():
    path = Path(__file__).parents[1] / "plugins" / "trt_doubles.py"
    spec = importlib.util.spec_from_file_location("trt_doubles", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


LAYER_MS = {"conv1 + relu": 0.25, "matmul_qk": 0.5, "softmax": 0.125}


def test_tensorrt_layers_through_iprofiler(monkeypatch, tmp_path):
    """The doubles' execution context reports LAYER_MS to the profiler set on it (as TensorRT calls
    IProfiler.report_layer_time after each enqueue); per-layer times per run, types from the engine inspector, CUDA
    graphs off while profiling and back on afterwards."""
    d = _doubles()
    trt = d.install(monkeypatch)

    class IProfiler:  # the real bindings' base class: subclasses call its __init__
        def __init__(self):
            pass

    class LayerInformationFormat:
        ONELINE, JSON = "ONELINE", "JSON"

    class Inspector:
        def get_engine_information(self, fmt):
            assert fmt == "JSON"
            return json.dumps(
                {
                    "Layers": [
                        {"Name": "conv1 + relu", "LayerType": "CaskConvolution"},
                        {"Name": "matmul_qk", "LayerType": "CaskGemmMatrixMultiply"},
                        "softmax",
                    ]
                }
            )

    monkeypatch.setattr(trt, "IProfiler", IProfiler, raising=False)
    monkeypatch.setattr(trt, "LayerInformationFormat", LayerInformationFormat, raising=False)
    monkeypatch.setattr(d._Engine, "create_engine_inspector", lambda self: Inspector(), raising=False)
    plain = d._Context.execute_async_v3

    def execute(self, stream):
        ok = plain(self, stream)
        prof = getattr(self, "profiler", None)
        if prof is not None and not d.CUDART.capturing:
            for name, ms in LAYER_MS.items():
                prof.report_layer_time(name, ms)
        return ok

    monkeypatch.setattr(d._Context, "execute_async_v3", execute)
    monkeypatch.setattr(d._Context, "profiler", None, raising=False)

    from ssp_edge.benchmarks.layers import tensorrt_layers
    from ssp_edge.sdk.backends.tensorrt import TensorRTBackend
    from ssp_edge.sdk.bundle import Bundle, EngineEntry, Manifest

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
    for g in ("text_encoder", "image_encoder", "mask_decoder"):
        e = EngineEntry(g, "portable", "fp32", f"{g}.engine", "10.3.0.26", "8.7", f"{g}.onnx", None)
        (b.root / e.file).write_bytes(e.file.encode())
        b.add_engine(e)
    be = TensorRTBackend(b, "fp32")
    feeds = {"image_encoder": ("image_encoder", {"image": np.ones((1, 3, 4, 4), np.float32)})}
    d.LOG.clear()
    prof = tensorrt_layers(be, feeds, runs=4, warmup=2)["image_encoder"]
    assert prof.runs == 4 and prof.node_ms == pytest.approx(LAYER_MS)  # per run: the warm-up runs left out
    assert prof.node_type == {"conv1 + relu": "CaskConvolution", "matmul_qk": "CaskGemmMatrixMultiply", "softmax": "?"}
    assert not [c for c in d.LOG if c[0] in ("cudaStreamBeginCapture", "cudaGraphLaunch")]  # no CUDA graph
    runner = be._runners["image_encoder"]
    assert runner.use_graph and runner.context.profiler is None  # restored
    be.close()


def test_trtexec_profile_and_layer_info_are_parsed(tmp_path):
    """trtexec --exportProfile writes [{"count": N}, {"name", "timeMs", "averageMs", "medianMs", "percentage"}, ...];
    --exportLayerInfo with --profilingVerbosity=detailed writes {"Layers": [{"Name", "LayerType", ...}]}."""
    from ssp_edge.benchmarks.layers import parse_trtexec

    (tmp_path / "p.json").write_text(
        json.dumps(
            [
                {"count": 100},
                {"name": "conv1 + relu", "timeMs": 25.0, "averageMs": 0.25, "medianMs": 0.24, "percentage": 28.6},
                {"name": "matmul_qk", "timeMs": 50.0, "averageMs": 0.5, "medianMs": 0.5, "percentage": 57.1},
                {"name": "softmax", "timeMs": 12.5, "averageMs": 0.125, "medianMs": 0.12, "percentage": 14.3},
            ]
        )
    )
    (tmp_path / "l.json").write_text(
        json.dumps(
            {
                "Layers": [
                    {"Name": "conv1 + relu", "LayerType": "CaskConvolution"},
                    {"Name": "matmul_qk", "LayerType": "Gemm"},
                    {"Name": "softmax", "LayerType": "Softmax"},
                ],
                "Bindings": ["image", "out"],
            }
        )
    )
    p = parse_trtexec(tmp_path / "p.json", tmp_path / "l.json")
    assert p.runs == 100 and p.total_ms == pytest.approx(0.875)
    assert [(r.op_type, round(r.share, 3)) for r in p.by_type()] == [
        ("Gemm", 0.571),
        ("CaskConvolution", 0.286),
        ("Softmax", 0.143),
    ]
    assert parse_trtexec(tmp_path / "p.json").node_type["softmax"] == "?"  # without layer info: names only
