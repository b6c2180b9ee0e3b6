"""The default gets the speed: the one ONNX Runtime session factory sets the fastest measured options unless told
otherwise (intra-op spinning within a run, stopped at its end; one thread per physical core; ORT_ENABLE_ALL), every
option is a parameter, the Segmenter's three sessions all get them, and `ssp run` prints what runs."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from helpers import assert_ok, run_ssp

from ssp_edge.sdk.backends.onnxruntime import create_session, physical_cores, session_options
from ssp_edge.sdk.errors import SDKError


def _add_model() -> bytes:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    g = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "add", [x], [y])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_physical_cores_counts_cores_not_hyperthreads():
    n = physical_cores()
    cpus = len(os.sched_getaffinity(0))
    assert 1 <= n <= cpus
    siblings = set()
    for c in os.sched_getaffinity(0):  # the same count from sysfs, independently of the function
        top = f"/sys/devices/system/cpu/cpu{c}/topology"
        if os.path.exists(f"{top}/core_id"):
            siblings.add((open(f"{top}/physical_package_id").read(), open(f"{top}/core_id").read()))
    if siblings:
        assert n == len(siblings)


def test_session_defaults_are_the_measured_fastest():
    import onnxruntime as ort

    sess = create_session(_add_model())
    so = sess.get_session_options()
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert so.get_session_config_entry("session.force_spinning_stop") == "1"
    assert so.intra_op_num_threads == physical_cores()
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert so.enable_cpu_mem_arena
    np.testing.assert_array_equal(sess.run(None, {"x": np.array([1, 2], np.float32)})[0], [2, 4])


def test_every_session_option_is_a_parameter(tmp_path):
    import onnxruntime as ort

    sess = create_session(
        _add_model(),
        threads=1,
        spinning=True,
        graph_optimization="basic",
        mem_arena=False,
        config_entries={"session.inter_op.allow_spinning": "0"},
        profile_prefix=str(tmp_path / "prof"),
    )
    so = sess.get_session_options()
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert so.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert so.intra_op_num_threads == 1 and not so.enable_cpu_mem_arena
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess.run(None, {"x": np.zeros(2, np.float32)})
    assert os.path.isfile(sess.end_profiling())
    with pytest.raises(SDKError, match="graph_optimization must be one of"):
        session_options(graph_optimization="max")
    with pytest.raises(SDKError, match="spinning must be one of run, always, off"):
        session_options(spinning="sometimes")
    # the three spinning modes and the bools (True: ONNX Runtime's own default, spinning on after the run too)
    for mode, spin, stop in (("run", "1", "1"), ("always", "1", None), (True, "1", None), ("off", "0", None)):
        entries = session_options(spinning=mode)["config_entries"]
        assert entries["session.intra_op.allow_spinning"] == spin and entries.get("session.force_spinning_stop") == stop
    assert session_options(spinning=False)["config_entries"] == {"session.intra_op.allow_spinning": "0"}
    for old_switch, spin in ((np.bool_(True), "1"), (np.bool_(False), "0"), (1, "1"), (0, "0")):
        assert session_options(spinning=old_switch)["config_entries"]["session.intra_op.allow_spinning"] == spin
    for bad in (None, 2, 0.5, ["run"], {"run": 1}):
        with pytest.raises(SDKError, match="spinning must be one of"):
            session_options(spinning=bad)
    with pytest.raises(SDKError, match="threads must be"):
        session_options(threads=-1)


@pytest.mark.slow
def test_segmenter_sessions_get_the_defaults_and_ssp_run_prints_them(lite_bundle, tmp_path):
    from ssp_edge.sdk.segmenter import Segmenter
    from ssp_edge.ssp.data.refshapes import render_video

    seg = Segmenter.open(lite_bundle)
    assert seg.backend.name == "onnxruntime"
    for sess in seg.backend._sessions.values():
        so = sess.get_session_options()
        assert so.get_session_config_entry("session.intra_op.allow_spinning") == "1"
        assert so.get_session_config_entry("session.force_spinning_stop") == "1"
        assert so.intra_op_num_threads == physical_cores()
    seg.close()
    # callers: threads that run graphs at once (camera workers) share the cores; explicit threads win
    for callers, threads, want in ((2, 0, max(1, physical_cores() // 2)), (2, 3, 3), (physical_cores() * 4, 0, 1)):
        seg = Segmenter.open(lite_bundle, callers=callers, threads=threads)
        assert seg.runs_concurrently
        assert {s.get_session_options().intra_op_num_threads for s in seg.backend._sessions.values()} == {want}
        seg.close()
    for bad in (0, -1, True, 1.5):
        with pytest.raises(SDKError, match="callers must be"):
            Segmenter.open(lite_bundle, callers=bad)
    video = tmp_path / "v.mp4"
    render_video(str(video), frames=3)
    r = assert_ok(
        run_ssp(
            "run",
            "--bundle",
            str(lite_bundle),
            "--source",
            str(video),
            "--prompt",
            "the red circle",
            "--backend",
            "onnxruntime",
            "--json",
            "--no-stdin",
        )
    )
    cfg = json.loads(r.stdout.strip().splitlines()[-1])["config"]
    assert cfg["backend"] == "onnxruntime" and cfg["precision"] == "fp32" and cfg["threads"] == physical_cores()
    assert cfg["options"]["session.intra_op.allow_spinning"] == "1"
    assert cfg["options"]["session.force_spinning_stop"] == "1"
    assert cfg["options"]["graph_optimization"] == "all"
    r = assert_ok(
        run_ssp(
            "run",
            "--bundle",
            str(lite_bundle),
            "--source",
            str(video),
            "--prompt",
            "the red circle",
            "--backend",
            "onnxruntime",
            "--threads",
            "1",
            "--no-stdin",
        )
    )
    assert "backend: onnxruntime fp32, 1 threads" in r.stderr
    assert "onnxruntime fp32, 1 threads" in r.stdout and "session.force_spinning_stop=1" in r.stdout
