"""plugins/ops.json is the one spec of the ssp:: ops: the C++ creators (names, version, namespace, fields, which are
required, defaults, accepted values), the converter's ONNX schemas and torch op schemas, and the SDK's constants
are all held against it here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from helpers import REPO

SPEC = json.loads((REPO / "plugins" / "ops.json").read_text())
CXX = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
TRIALS_INT = [-1, 0, 1, 2, 3, 4, 5, 8, 16]  # what plugin_class_test --dump-creators tries
TRIALS_FLOAT = [-1.0, 0.0, 1e-8, 0.5]


def _headers():
    return [d for d in sorted((REPO / "third_party").glob("tensorrt-*/include")) if (d / "NvInferRuntime.h").is_file()]


def test_spec_is_well_formed():
    assert SPEC["format"] == "ssp-ops/1" and SPEC["domain"] == "ssp" and SPEC["plugin_namespace"] == "ssp"
    for op in SPEC["ops"]:
        assert op["inputs"] and op["outputs"] and op["torch_name"]
        for a in op["attributes"]:
            assert a["type"] in SPEC["types"]
            assert a["default"] is None or isinstance(a["default"], (int, float))


@pytest.fixture(scope="module")
def creators(tmp_path_factory) -> list[dict]:
    if CXX is None:
        pytest.skip("no C++ compiler (g++ / $CXX)")
    heads = _headers()
    if not heads:
        pytest.skip("no TensorRT headers in third_party/ (make trt-headers): the creators cannot be compiled")
    import importlib.util

    spec = importlib.util.spec_from_file_location("plugin_classes", REPO / "tests/plugins/test_plugin_classes.py")
    pc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pc)  # the same program the class tests build
    SOURCES, cuda_include = pc.SOURCES, pc.cuda_include

    exe = tmp_path_factory.mktemp("dump") / "plugin_class_test"
    cmd = [
        CXX,
        "-std=c++17",
        "-O0",
        "-isystem",
        str(heads[-1]),
        "-isystem",
        str(cuda_include()),
        *[str(REPO / "plugins" / s) for s in SOURCES],
        "-ldl",
        "-o",
        str(exe),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = subprocess.run([str(exe), "--dump-creators"], capture_output=True, text=True, timeout=60, check=True).stdout
    return json.loads(out)


@pytest.mark.slow  # one C++ build against the TensorRT headers (~15 s)
def test_cpp_creators_follow_the_spec(creators):
    types = {k: v["tensorrt_field"] for k, v in SPEC["types"].items()}
    assert [c["name"] for c in creators] == [o["name"] for o in SPEC["ops"]]  # getCreators() order too
    for c, op in zip(creators, SPEC["ops"]):
        assert (c["version"], c["namespace"]) == (SPEC["plugin_version"], SPEC["plugin_namespace"])
        want = [(a["name"], types[a["type"]]) for a in op["attributes"]]
        assert [(f["name"], f["type"]) for f in c["fields"]] == want
        for f, a in zip(c["fields"], op["attributes"]):
            assert f["required"] == (a["default"] is None), (op["name"], a["name"])
            if a["default"] is not None:
                assert f["default"] == pytest.approx(np.float32(a["default"]), rel=1e-6)
            trials = TRIALS_INT if a["type"] == "int" else TRIALS_FLOAT
            if a.get("choices"):
                want = [t for t in trials if t in a["choices"]]
            else:
                want = [t for t in trials if a.get("min") is None or t >= a["min"]]
            assert f["accepts"] == pytest.approx(want, rel=1e-6), (op["name"], a["name"], f["accepts"])


def test_onnx_schemas_follow_the_spec():
    from onnx import defs

    from ssp_edge.converter.schemas import register_schemas

    register_schemas()
    kinds = {"int": defs.OpSchema.AttrType.INT, "float": defs.OpSchema.AttrType.FLOAT}
    for op in SPEC["ops"]:
        s = defs.get_schema(op["name"], SPEC["opset_version"], SPEC["domain"])
        assert [p.name for p in s.inputs] == op["inputs"] and [p.name for p in s.outputs] == op["outputs"]
        for a in op["attributes"]:
            attr = s.attributes[a["name"]]
            assert attr.type == kinds[a["type"]] and attr.required == (a["default"] is None)
            if a["default"] is not None:
                got = attr.default_value.f if a["type"] == "float" else attr.default_value.i
                assert got == pytest.approx(a["default"], rel=1e-6)
        for sel, want in (("plugin_namespace", SPEC["plugin_namespace"]), ("plugin_version", SPEC["plugin_version"])):
            assert s.attributes[sel].default_value.s.decode() == want


def test_torch_ops_follow_the_spec():
    import torch

    from ssp_edge.converter import torch_ops

    kinds = {"int": "int", "float": "float"}
    for op in SPEC["ops"]:
        schema = getattr(torch.ops.ssp, op["torch_name"]).default._schema
        args = [(a.name, str(a.type)) for a in schema.arguments]
        assert args == [(n.lower(), "Tensor") for n in op["inputs"]] + [
            (a["name"], kinds[a["type"]]) for a in op["attributes"]
        ]
        values = [1] * len(op["attributes"])
        assert list(torch_ops._attrs(op["torch_name"], *values)) == [a["name"] for a in op["attributes"]] + [
            "plugin_namespace",
            "plugin_version",
        ]


def test_sdk_constants_follow_the_spec():
    from ssp_edge.sdk import plugins

    assert plugins.PLUGIN_NAMES == tuple(o["name"] for o in SPEC["ops"])
    assert [(a.name, a.type, a.default) for a in plugins.OPS[0].attributes] == [
        (a["name"], a["type"], a["default"]) for a in SPEC["ops"][0]["attributes"]
    ]
