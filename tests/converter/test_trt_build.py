"""converter.trt_build without a GPU: the builder's choices per TensorRT major and precision (the call log of a test
double whose enums carry the real bindings' member names, tests/plugins/trt_doubles.py), the printed trtexec lines
(every flag exists in that version's trtexec: derived from samples/common/sampleOptions.cpp of release/10.3 and
release/11.1 in the local mirror, or the recorded list below), all-or-nothing builds (an interrupted build leaves a
bundle that opens as it was), the timing-cache refresh, engine import (plan header as trtexec reads it), and the
TensorRT-plan INT8 graphs of the portable flavour."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import REPO, run_ssp
from onnx import TensorProto, helper, numpy_helper

from ssp_edge.sdk.bundle import Bundle, GraphEntry, Manifest, TensorSpec

_spec = importlib.util.spec_from_file_location("trt_doubles", REPO / "tests" / "plugins" / "trt_doubles.py")
doubles = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(doubles)
_spec2 = importlib.util.spec_from_file_location("trt_api", Path(__file__).with_name("trt_api.py"))
trt_api = importlib.util.module_from_spec(_spec2)
_spec2.loader.exec_module(trt_api)

MIRROR = Path("/work/.mirror/NVIDIA+TensorRT/repo")
# the flags trt_build can print, each as found in trtexec's sampleOptions.cpp (BuildOptions / ModelOptions /
# SystemOptions / InferenceOptions parse functions) of the release: derived from the mirror, recorded here for
# machines without it (test_recorded_trtexec_flags_match_the_sources re-derives them)
EMITTED = {
    "--onnx",
    "--saveEngine",
    "--memPoolSize",
    "--timingCacheFile",
    "--skipInference",
    "--minShapes",
    "--optShapes",
    "--maxShapes",
    "--stronglyTyped",
    "--fp16",
    "--noTF32",
    "--dynamicPlugins",
    "--setPluginsToSerialize",
    "--versionCompatible",
    "--int8",
}
RECORDED_TRTEXEC = {
    "10.3": EMITTED,
    "11.1": EMITTED - {"--fp16", "--int8"},  # strongly typed only: trtexec 11 has no precision flags
}
_PARSERS = (
    "BaseModelOptions",
    "ModelOptions",
    "BuildOptions",
    "SystemOptions",
    "InferenceOptions",
    "ReportingOptions",
    "AllOptions",
)  # not SafeBuilderOptions / TaskInferenceOptions (other tools)


def trtexec_flags_from_source(release: str) -> set[str] | None:
    try:
        src = subprocess.run(
            ["git", f"--git-dir={MIRROR}", "show", f"release/{release}:samples/common/sampleOptions.cpp"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    flags: set[str] = set()
    for m in re.finditer(r"^void (\w+)::parse\(Arguments& arguments\)\n\{\n(.*?)\n\}\n", src, re.S | re.M):
        if m.group(1) in _PARSERS:
            call = r'(?:getAndDel\w*|getShapes\w*)\(\s*arguments,\s*(?:\w+,\s*)?"(--\w+)"'
            flags |= set(re.findall(call, m.group(2)))
    return flags


def trtexec_flags(release: str) -> set[str]:
    return trtexec_flags_from_source(release) or RECORDED_TRTEXEC[release]


# ---------------------------------------------------------------------------------------------------- a small bundle
AXES = {"frames": [1, 1, 4], "expressions": [1, 2, 8]}
IO = {
    "text_encoder": ([("input_ids", ["expressions", 20], "int64")], [("words", ["expressions", 20, 8], "float32")]),
    "image_encoder": ([("image", ["frames", 3, 32, 32], "float32")], [("f4", ["frames", 8, 8, 8], "float32")]),
    "mask_decoder": (
        [("f4", [1, 8, 8, 8], "float32"), ("words", ["expressions", 20, 8], "float32")],
        [("mask_logits", ["expressions", 1, 32, 32], "float32")],
    ),
}


def _onnx(path: Path, qdq: bool) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    inits = [
        numpy_helper.from_array(np.array(0.1, np.float32), "s"),
        numpy_helper.from_array(np.array(0, np.int8), "z"),
    ]
    nodes = (
        [
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
        ]
        if qdq
        else [helper.make_node("Identity", ["x"], ["y"])]
    )
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits)), str(path))


def make_bundle(root: Path, fp16: bool = False, int8: str | None = "both", empty_trt_plan: bool = False) -> Bundle:
    """Graphs of both flavours; ``int8``: None, "onnxruntime" (portable ORT plan only: an older calibration),
    "both" (plus the TensorRT-plan portable graphs); ``empty_trt_plan``: the image encoder's TensorRT plan has no
    Q/DQ node."""
    b = Bundle.create(
        root,
        Manifest(
            config={},
            input_size=32,
            mean=[0.5] * 3,
            std=[0.5] * 3,
            max_tokens=20,
            thresholds={},
            source={},
            dynamic_axes=AXES,
        ),
    )
    (root / "tokenizer.json").write_text("{}")  # a bundle with a text encoder must list its tokenizer
    b.add_file("tokenizer.json")

    def add(g, fl, p, file, qdq=False, plan=None, custom=False):
        if not (root / file).exists():
            _onnx(root / file, qdq)
        ins, outs = IO[g]
        b.add_graph(
            GraphEntry(
                g,
                fl,
                p,
                file,
                [TensorSpec(*t) for t in ins],
                [TensorSpec(*t) for t in outs],
                {"ssp::SuperpixelAggregate": 1} if custom else {},
                plan,
            )
        )

    for fl in ("portable", "plugin"):
        add("text_encoder", fl, "fp32", "text_encoder.onnx")
        for g in ("image_encoder", "mask_decoder"):
            add(g, fl, "fp32", f"{g}.{fl}.onnx", custom=fl == "plugin")
            if fp16:
                add(g, fl, "fp16", f"{g}.{fl}.fp16.onnx", custom=fl == "plugin")
            if int8:
                add(
                    g,
                    fl,
                    "int8",
                    f"{g}.{fl}.int8.onnx",
                    True,
                    "tensorrt" if fl == "plugin" else "onnxruntime",
                    custom=fl == "plugin",
                )
            if int8 == "both" and fl == "portable":
                add(
                    g,
                    fl,
                    "int8",
                    f"{g}.portable.int8.trtplan.onnx",
                    not (empty_trt_plan and g == "image_encoder"),
                    "tensorrt",
                )
        if fp16:
            add("text_encoder", fl, "fp16", "text_encoder.fp16.onnx")
    b.save()
    return Bundle.open(root)


def _per_graph(log: list[tuple]) -> dict[str, dict]:
    """From the double's call log: per source file, the network flags, set / cleared builder flags."""
    out: dict[str, dict] = {}
    cur = None
    pending_flags = None
    for c in log:
        if c[0] == "create_network":
            pending_flags = c[1]
        elif c[0] == "parse":
            cur = c[1]
            out[cur] = {"network": pending_flags, "set": [], "cleared": [], "cache": []}
        elif cur and c[0] == "set_flag":
            out[cur]["set"].append(c[1].split(".")[1])
        elif cur and c[0] == "clear_flag":
            out[cur]["cleared"].append(c[1].split(".")[1])
        elif cur and c[0] == "set_timing_cache":
            out[cur]["cache"].append(c[3])
    return out


def _strong(trt) -> int:
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


# (major, precision, fp16 graphs in the bundle) -> per graph: (strongly typed, builder flags set, TF32 cleared)
CASES = {
    (10, "fp32", False): {
        "text_encoder": (False, [], True),
        "image_encoder": (False, [], True),
        "mask_decoder": (False, [], True),
    },
    (10, "fp16", False): {
        "text_encoder": (False, [], True),
        "image_encoder": (False, ["FP16"], False),
        "mask_decoder": (False, ["FP16"], False),
    },
    (10, "fp16", True): {
        "text_encoder": (True, [], False),
        "image_encoder": (True, [], False),
        "mask_decoder": (True, [], False),
    },
    (10, "int8", False): {
        "text_encoder": (False, [], True),
        "image_encoder": (True, [], False),
        "mask_decoder": (True, [], False),
    },
    (11, "fp32", False): {
        "text_encoder": (True, [], True),
        "image_encoder": (True, [], True),
        "mask_decoder": (True, [], True),
    },
    (11, "fp16", True): {
        "text_encoder": (True, [], False),
        "image_encoder": (True, [], False),
        "mask_decoder": (True, [], False),
    },
    (11, "int8", False): {
        "text_encoder": (True, [], True),
        "image_encoder": (True, [], False),
        "mask_decoder": (True, [], False),
    },
}
SOURCES = {"fp32": "{g}.{fl}.onnx", "fp16": "{g}.{fl}.fp16.onnx", "int8": "{g}.portable.int8.trtplan.onnx"}


@pytest.mark.parametrize("major,precision,fp16", list(CASES), ids=lambda v: str(v))
def test_builder_choices_per_major_and_precision(tmp_path, monkeypatch, major, precision, fp16):
    from ssp_edge.converter.trt_build import build_engines

    trt = doubles.install(monkeypatch, major)
    b = make_bundle(tmp_path / "b", fp16=fp16)
    built = build_engines(b.root, precision, "portable")
    seen = _per_graph(doubles.LOG)
    for g, (strong, flags, strict) in CASES[(major, precision, fp16)].items():
        src = (
            ("text_encoder.fp16.onnx" if fp16 and precision == "fp16" else "text_encoder.onnx")
            if g == "text_encoder"
            else SOURCES[precision if precision != "fp16" or fp16 else "fp32"].format(g=g, fl="portable")
        )
        assert src in seen, (g, sorted(seen))
        got = seen[src]
        assert got["network"] == (_strong(trt) if strong else 0), (g, got)
        assert got["set"] == flags and ("TF32" in got["cleared"]) == strict, (g, got)
        assert "INT8" not in got["set"]  # never: Q/DQ graphs are strongly typed, others have nothing to calibrate
    assert all(hasattr(trt.BuilderFlag, f) for f in ("TF32", "VERSION_COMPATIBLE"))
    assert hasattr(trt.BuilderFlag, "FP16") == (major == 10)
    engines = Bundle.open(b.root).manifest.engines  # verified: every new file listed with its sha256
    assert {e.name for e in engines} == {"text_encoder", "image_encoder", "mask_decoder"}
    assert {e.file for e in engines} == {x.file for x in built}


def test_tensorrt_11_cannot_take_fp16_from_the_fp32_graph(tmp_path, monkeypatch):
    from ssp_edge.converter.trt_build import BuildError, build_engines

    doubles.install(monkeypatch, 11)
    b = make_bundle(tmp_path / "b")
    with pytest.raises(BuildError, match="FP16 graph .*ssp calibrate"):
        build_engines(b.root, "fp16", "portable")


def test_version_compatible_and_plugins(tmp_path, monkeypatch):
    from ssp_edge.converter.trt_build import build_engines

    doubles.install(monkeypatch, 10)
    b = make_bundle(tmp_path / "b")
    lib = tmp_path / "libssp_trt_plugins.so"
    lib.write_bytes(b"\x7fELF stand-in")
    monkeypatch.setattr("ssp_edge.sdk.plugins.load_plugin_library", lambda p, sha=None: object())
    build_engines(b.root, "fp32", "plugin", plugin_lib=str(lib), version_compatible=True)
    seen = _per_graph(doubles.LOG)
    assert all("VERSION_COMPATIBLE" in v["set"] for v in seen.values())
    assert ("plugins_to_serialize", [str(lib.resolve())]) in doubles.LOG
    man = Bundle.open(b.root).manifest
    libs = {e.plugin_library for e in man.engines}
    (rel,) = libs - {None}
    assert re.fullmatch(r"libssp_trt_plugins\.[0-9a-f]{12}\.so", rel) and man.files[rel]
    assert {e.plugin_library for e in man.engines if e.name == "text_encoder"} == {None}
    assert all(e.version_compatible for e in man.engines)


def test_int8_builds_from_the_tensorrt_plan(tmp_path):
    from ssp_edge.converter.trt_build import BuildError, plan_sources

    b = make_bundle(tmp_path / "b")
    for strongly in (False, True):
        plan = plan_sources(b, "portable", "int8", strongly)
        assert plan["image_encoder"].entry.file == "image_encoder.portable.int8.trtplan.onnx"
        assert plan["text_encoder"].entry.precision == "fp32" and plan["text_encoder"].strict_fp32
        assert plan_sources(b, "plugin", "int8", strongly)["mask_decoder"].entry.file == "mask_decoder.plugin.int8.onnx"
    # ONNX Runtime keeps the portable default
    assert b.graph("image_encoder", "portable", "int8").file == "image_encoder.portable.int8.onnx"
    old = make_bundle(tmp_path / "old", int8="onnxruntime")  # calibrated before the TensorRT plan was written
    with pytest.raises(BuildError, match="only the ONNX Runtime plan.*ssp calibrate"):
        plan_sources(old, "portable", "int8", False)
    empty = make_bundle(tmp_path / "empty", empty_trt_plan=True)
    plan = plan_sources(empty, "portable", "int8", False)
    assert any("no Q/DQ node" in n for n in plan["image_encoder"].notes)
    assert not plan["image_encoder"].strongly_typed and plan["image_encoder"].strict_fp32


# ---------------------------------------------------------------------------------------------------- trtexec lines
def test_recorded_trtexec_flags_match_the_sources():
    for release, recorded in RECORDED_TRTEXEC.items():
        derived = trtexec_flags_from_source(release)
        if derived is None:
            pytest.skip(f"no TensorRT mirror at {MIRROR} to re-derive trtexec's flags")
        assert EMITTED & derived == recorded, (release, sorted(EMITTED & derived ^ recorded))


@pytest.mark.parametrize("strongly,release", [(False, "10.3"), (True, "11.1")])
@pytest.mark.parametrize(
    "precision,fp16,flavour",
    [
        ("fp32", False, "portable"),
        ("fp16", False, "portable"),
        ("fp16", True, "plugin"),
        ("int8", False, "portable"),
        ("int8", False, "plugin"),
    ],
)
def test_printed_trtexec_lines(tmp_path, strongly, release, precision, fp16, flavour):
    from ssp_edge.converter.trt_build import BuildError, planned_commands

    b = make_bundle(tmp_path / "b", fp16=fp16, empty_trt_plan=True)
    lib = "/opt/libssp_trt_plugins.so" if flavour == "plugin" else None
    try:
        cmds = planned_commands(b.root, precision, flavour, lib, 512, version_compatible=True, strongly_typed=strongly)
    except BuildError as e:
        assert strongly and precision == "fp16" and not fp16, e
        return
    known = trtexec_flags(release)
    assert len(cmds) == 3 and all(c.startswith("trtexec ") and c.count(" && ") == 1 for c in cmds)
    trtexec = [shlex.split(c.split(" && ")[0]) for c in cmds]  # trtexec ... && ssp convert build ... --import ...
    imports = [shlex.split(c.split(" && ")[1]) for c in cmds]
    for args in trtexec:
        flags = {a.split("=", 1)[0] for a in args[1:]}
        assert flags <= known, f"not trtexec {release} flags: {sorted(flags - known)}"
        assert "--int8" not in flags  # no graph gets it (module docstring of trt_build)
        onnx_file = next(a.split("=", 1)[1] for a in args if a.startswith("--onnx="))
        if "--stronglyTyped" in flags:
            assert "--fp16" not in flags  # trtexec refuses precision flags with --stronglyTyped
        if onnx_file.endswith("text_encoder.onnx"):
            assert "--fp16" not in flags and "--noTF32" in flags
        if "trtplan" in onnx_file and "image_encoder" in onnx_file:  # the graph without Q/DQ nodes
            assert "--stronglyTyped" in flags or not strongly and "--noTF32" in flags
        assert f"--timingCacheFile={b.root.resolve()}/trtexec-timing.cache" in args  # never a listed file
        assert "--dynamicPlugins=/opt/libssp_trt_plugins.so" in args if lib else True
        assert "--versionCompatible" in flags and ("--setPluginsToSerialize" in flags) == bool(lib)
    for args, tr in zip(imports, trtexec):
        save = next(a.split("=", 1)[1] for a in tr if a.startswith("--saveEngine="))
        assert args[:4] == ["ssp", "convert", "build", str(b.root)] and args[args.index("--import") + 1] == save
        assert args[args.index("--precision") + 1] == precision and "--version-compatible" in args


# ---------------------------------------------------------------------------------------------------- all or nothing
def _snapshot(root: Path) -> tuple[str, dict[str, bytes]]:
    return (root / "manifest.json").read_text(), {p.name: p.read_bytes() for p in sorted(root.iterdir())}


@pytest.mark.parametrize("how", ["interrupt", "failure"])
def test_an_interrupted_build_leaves_the_bundle_as_it_was(tmp_path, monkeypatch, how):
    from ssp_edge.converter.trt_build import BuildError, build_engines

    doubles.install(monkeypatch, 10)
    b = make_bundle(tmp_path / "b")
    build_engines(b.root, "fp32", "portable")  # a first, complete set
    before = _snapshot(b.root)
    for target in ("image_encoder.portable.onnx", "mask_decoder.portable.onnx"):
        opts = doubles.options()
        (opts.interrupt_build_of if how == "interrupt" else opts.fail_build_of).clear()
        (opts.interrupt_build_of if how == "interrupt" else opts.fail_build_of).add(target)
        with pytest.raises(KeyboardInterrupt if how == "interrupt" else BuildError):
            build_engines(b.root, "fp32", "portable")
        assert _snapshot(b.root) == before  # manifest and files untouched, new files removed
        Bundle.open(b.root)  # opens and verifies


def test_a_rebuild_replaces_the_old_set(tmp_path, monkeypatch):
    from ssp_edge.converter.trt_build import build_engines

    doubles.install(monkeypatch, 10)
    b = make_bundle(tmp_path / "b")
    first = {x.file for x in build_engines(b.root, "fp32", "portable")}
    second = {x.file for x in build_engines(b.root, "fp32", "portable")}
    assert not first & second  # new names
    man = Bundle.open(b.root).manifest
    assert {e.file for e in man.engines} == second
    assert not any((b.root / f).exists() for f in first)  # old engines deleted after the manifest was saved
    caches = [f for f in man.files if f.startswith("timing.")]
    assert len(caches) == 1 and re.fullmatch(r"timing\.sm87\.trt10\.3\.\w+\.cache", caches[0])
    assert sorted(p.name for p in b.root.glob("timing.*")) == caches


def test_a_rejected_timing_cache_is_replaced_not_written_back(tmp_path, monkeypatch):
    from ssp_edge.converter.trt_build import build_engines

    doubles.install(monkeypatch, 10)
    b = make_bundle(tmp_path / "b")
    (b.root / "timing.cache").write_bytes(b"FOREIGN cache from another GPU")  # an older bundle's cache
    b.add_file("timing.cache")
    b.save()
    built = build_engines(b.root, "fp32", "portable")
    seen = _per_graph(doubles.LOG)
    assert seen["text_encoder.onnx"]["cache"] == [False, True]  # rejected, then a new empty one accepted
    assert ("create_timing_cache", b"") in doubles.LOG
    assert any("another GPU" in n for n in built[0].notes)
    man = Bundle.open(b.root).manifest
    (cache,) = [f for f in man.files if f.startswith("timing.")]
    assert b"FOREIGN" not in (b.root / cache).read_bytes() and not (b.root / "timing.cache").exists()
    assert all(v["cache"] == [True] for k, v in seen.items() if k != "text_encoder.onnx")  # later graphs: its own


# ---------------------------------------------------------------------------------------------------- import
def test_plan_version_reads_the_header_as_trtexec_does():
    from ssp_edge.converter.trt_build import BuildError, plan_version

    assert plan_version(doubles.plan("10.3.0.26")) == "10.3.0.26"
    assert plan_version(doubles.plan("11.1.0.7", b"x" * 100)) == "11.1.0.7"
    with pytest.raises(BuildError, match="plan tag"):
        plan_version(b"\x00" * 64)
    with pytest.raises(BuildError, match="28-byte header"):
        plan_version(b"ftrt")
    with pytest.raises(BuildError, match="serialization version 3"):
        plan_version(b"ftrt" + (3).to_bytes(4, "little") + bytes(40))


def test_import_an_engine_built_with_trtexec(tmp_path, monkeypatch):
    from ssp_edge.converter.trt_build import BuildError, import_engine

    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)  # no TensorRT here: header checks only
    b = make_bundle(tmp_path / "b")
    eng = tmp_path / "mask_decoder.trtexec.engine"
    eng.write_bytes(doubles.plan("10.3.0.26"))
    with pytest.raises(BuildError, match="must be one of"):
        import_engine(b.root, eng, "decoder", "fp16", "portable", cc="8.7")
    with pytest.raises(BuildError, match="no such file"):
        import_engine(b.root, tmp_path / "nope.engine", "mask_decoder", "fp16", "portable", cc="8.7")
    with pytest.raises(BuildError, match="plugin library"):
        import_engine(b.root, eng, "mask_decoder", "fp16", "plugin", cc="8.7")
    (tmp_path / "junk.engine").write_bytes(b"x" * 64)
    with pytest.raises(BuildError, match="not a TensorRT engine"):
        import_engine(b.root, tmp_path / "junk.engine", "mask_decoder", "fp16", "portable", cc="8.7")
    e = import_engine(b.root, eng, "mask_decoder", "fp16", "portable", cc="8.7")
    assert (e.tensorrt_version, e.compute_capability, e.source) == ("10.3.0.26", "8.7", "mask_decoder.portable.onnx")
    man = Bundle.open(b.root).manifest
    assert e.file in man.files and (b.root / e.file).read_bytes() == eng.read_bytes()
    assert e.profiles == {"expressions": [1, 2, 8]}


def test_import_checks_io_and_version_where_tensorrt_runs(tmp_path, monkeypatch):
    from ssp_edge.converter.trt_build import BuildError, import_engine

    doubles.install(monkeypatch, 10, version="10.3.0.26")
    b = make_bundle(tmp_path / "b")
    eng = tmp_path / "e.engine"
    eng.write_bytes(doubles.plan("10.3.0.26"))
    doubles.options().io = [("image", "INPUT", (1, 3, 32, 32)), ("f4", "OUTPUT", (1, 8, 8, 8))]
    with pytest.raises(BuildError, match="built from another graph"):
        import_engine(b.root, eng, "mask_decoder", "fp32", "portable")
    assert import_engine(b.root, eng, "image_encoder", "fp32", "portable").compute_capability == "8.7"
    eng.write_bytes(doubles.plan("10.4.0.1"))
    with pytest.raises(BuildError, match="exact TensorRT version"):
        import_engine(b.root, eng, "image_encoder", "fp32", "portable")


def test_import_from_the_command_line(tmp_path):
    b = make_bundle(tmp_path / "b")
    eng = tmp_path / "t.engine"
    eng.write_bytes(doubles.plan("11.1.0.7"))
    r = run_ssp(
        "convert",
        "build",
        str(b.root),
        "--import",
        str(eng),
        "--graph",
        "text_encoder",
        "--precision",
        "fp32",
        "--compute-capability",
        "9.0",
    )
    assert r.returncode == 0, r.stderr
    assert "TensorRT 11.1.0.7, sm_90" in r.stdout
    man = json.loads((b.root / "manifest.json").read_text())
    assert [(e["name"], e["tensorrt_version"]) for e in man["engines"]] == [("text_encoder", "11.1.0.7")]


def test_info_says_which_plan_each_int8_graph_carries(tmp_path):
    from ssp_edge.converter.info import _plan, format_info

    b = make_bundle(tmp_path / "b")
    graphs = [
        {
            "name": g.name,
            "flavour": g.flavour,
            "precision": g.precision,
            "file": g.file,
            "mbytes": 0.0,
            "custom_ops": g.custom_ops,
            "qdq_plan": _plan(g),
        }
        for g in b.manifest.graphs
    ]
    cost = {"parameters": 1, "flops": 1, "graphs": {}, "parts": {}}
    text = format_info(
        {
            "bundle": "b",
            "config": "c",
            "input_size": 32,
            "max_tokens": 20,
            "source": {},
            "graphs": graphs,
            "engines": [],
            "cost": cost,
        }
    )
    rows = [ln for ln in text.splitlines() if " int8 " in ln]
    assert len(rows) == 6
    assert sum("Q/DQ plan: TensorRT" in r for r in rows) == 4 and sum("ONNX Runtime CPU" in r for r in rows) == 2
    assert _plan(GraphEntry("image_encoder", "plugin", "int8", "x", [], [])) == "tensorrt"  # older bundles
    assert _plan(GraphEntry("image_encoder", "portable", "int8", "x", [], [])) == "onnxruntime"


def test_double_enums_are_the_bindings_enums():
    """The doubles' enum members are the real bindings' (stubs from NVIDIA's wheels, tests/converter/trt_api.py)."""
    for major, enums in doubles.ENUMS.items():
        try:
            stubs = trt_api.stubs_for(major)
        except RuntimeError as e:
            pytest.skip(f"TensorRT {major} stubs unavailable: {e}")
        text = "\n".join(p.read_text() for p in stubs.rglob("*.pyi"))
        for cls, members in enums.items():
            m = re.search(rf"^class {cls}\b.*?(?=^class )", text, re.S | re.M)
            assert m, (major, cls)
            assert sorted(set(re.findall(r"^    ([A-Z][A-Z0-9_]+): typing\.ClassVar", m.group(0), re.M))) == members
