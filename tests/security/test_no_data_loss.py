"""No data loss: `export --force` replaces only a bundle or an empty folder; writes are atomic with ordinary
modes; `ssp calibrate` killed (SIGKILL) at any commit point leaves a bundle that opens and verifies."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap

import pytest
from helpers import REPO, assert_one_line_error, run_ssp
from sec_helpers import make_bundle

from ssp_edge.sdk.bundle import MANIFEST, Bundle
from ssp_edge.sdk.fsio import KILL_ENV, atomic_write_bytes


def _snapshot(d):
    return {
        str(p.relative_to(d)): (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns)
        for p in sorted(d.rglob("*"))
    }


def test_export_force_refuses_a_folder_of_other_files_and_leaves_it_untouched(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "thesis.tex").write_text("years of work")
    (docs / "notes").mkdir()
    (docs / "notes" / "a.txt").write_text("a")
    before = _snapshot(docs)
    r = run_ssp("convert", "export", "--out", str(docs), "--force")
    line = assert_one_line_error(r, str(docs), "not an ssp-edge bundle", "even with --force", "nothing was changed")
    assert "'notes', 'thesis.tex'" in line
    assert _snapshot(docs) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs"]  # no temporary folder left beside it


@pytest.fixture
def check_out():
    from ssp_edge.converter.cli import _check_out

    return _check_out


def test_out_checks(tmp_path, check_out):
    from ssp_edge.ssp.errors import SSPError

    assert check_out(tmp_path / "new", False) is False
    (tmp_path / "empty").mkdir()
    assert check_out(tmp_path / "empty", False) is True
    b = make_bundle(tmp_path / "b")
    with pytest.raises(SSPError, match="already holds a bundle; pass --force"):
        check_out(b, False)
    assert check_out(b, True) is True
    (tmp_path / "file").write_text("x")
    with pytest.raises(SSPError, match="exists and is not a folder"):
        check_out(tmp_path / "file", True)
    (tmp_path / "link").symlink_to(b)
    with pytest.raises(SSPError, match="is a symbolic link"):
        check_out(tmp_path / "link", True)
    (b / MANIFEST).write_text(json.dumps({"format": "someone-else/1"}))  # a manifest, but not ours
    with pytest.raises(SSPError, match="not an ssp-edge bundle"):
        check_out(b, True)


def test_swap_replaces_a_bundle_only_after_the_new_one_is_complete(tmp_path):
    from ssp_edge.converter.cli import _swap_in

    old = make_bundle(tmp_path / "out")
    new = make_bundle(tmp_path / ".out.tmp")
    (new / "g.onnx").write_bytes(b"new graph")
    Bundle.open(new, verify=False).add_file("g.onnx")
    _swap_in(new, old)
    assert (old / "g.onnx").read_bytes() == b"new graph" and not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_exported_bundle_has_ordinary_modes(lite_bundle):
    assert stat.S_IMODE(lite_bundle.stat().st_mode) == 0o755 & ~_umask()
    for p in lite_bundle.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o644 & ~_umask(), p.name


def _umask() -> int:
    cur = os.umask(0)
    os.umask(cur)
    return cur


def test_atomic_write_respects_the_umask_and_leaves_no_temp_files(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        atomic_write_bytes(tmp_path / "run.sh", b"#!/bin/sh\n", mode=0o755)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "run.sh").stat().st_mode) == 0o750
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "run.sh"]


def test_manifest_save_killed_before_the_rename_keeps_the_old_manifest(tmp_path):
    b = make_bundle(tmp_path / "b")
    before = (b / MANIFEST).read_bytes()
    code = textwrap.dedent(f"""
        from ssp_edge.sdk.bundle import Bundle
        b = Bundle.open({str(b)!r})
        b.manifest.created_by = "half-written"
        b.save()
    """)
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, KILL_ENV: "write:manifest.json"},
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == -signal.SIGKILL
    assert (b / MANIFEST).read_bytes() == before
    Bundle.open(b)  # the leftover temporary file is ignored


def test_checkpoint_save_is_atomic(tmp_path):
    import torch

    from ssp_edge.ssp.checkpoint import save_checkpoint
    from ssp_edge.ssp.config import get_config

    cfg = get_config("ssp_lite", pretrained=False)
    path = tmp_path / "c.safetensors"
    path.write_bytes(b"old")
    save_checkpoint(torch.nn.Linear(2, 2), cfg, path)
    assert path.read_bytes()[:8] != b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 & ~_umask()


# ------------------------------------------------------------------------------------------- calibrate kill points
CALIBRATE = [
    "--data",
    "refshapes:val",
    "--samples",
    "2",
    "--prompts",
    "1",
    "--sensitivity-samples",
    "0",
    "--keep-fp32",
    "0",
    "--eval-samples",
    "0",
    "--error-samples",
    "1",
    "--latency-runs",
    "1",
    "--no-trt-plan-eval",
    "--no-fp16",
]


def _calibrate(bundle, seed: int, kill: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    if kill:
        env[KILL_ENV] = kill
    return subprocess.run(
        [sys.executable, "-m", "ssp_edge.sdk.cli", "calibrate", str(bundle), *CALIBRATE, "--seed", str(seed)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def _int8_shas(b: Bundle) -> dict[str, str]:
    return {f"{g.name}/{g.flavour}": b.manifest.files[g.file] for g in b.manifest.graphs if g.precision == "int8"}


@pytest.fixture(scope="module")
def calibrated(lite_bundle, tmp_path_factory):
    root = tmp_path_factory.mktemp("calkill")
    b = root / "base"
    shutil.copytree(lite_bundle, b, copy_function=os.link)  # calibrate never writes into existing files
    r = _calibrate(b, 0)
    assert r.returncode == 0, r.stderr[-2000:]
    return b


@pytest.mark.slow
@pytest.mark.parametrize("point", ["commit:moving", "write:manifest.json", "commit:saved"])  # one run each (~40 s):
# half the new graphs moved in (old state), the manifest's temp file written but not renamed (old), the manifest
# saved but the replaced graphs not yet deleted (new); the other points (commit:staged / moved / cleaned) sit
# between these with nothing else written
def test_calibrate_killed_at_a_commit_point_leaves_a_bundle_that_opens(calibrated, tmp_path, point):
    b = tmp_path / "b"
    shutil.copytree(calibrated, b, copy_function=os.link)
    old = _int8_shas(Bundle.open(b))
    r = _calibrate(b, 7, kill=point)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    reopened = Bundle.open(b)  # verifies every listed file
    now = _int8_shas(reopened)
    if point in ("commit:moving", "write:manifest.json"):
        assert now == old  # the old state, intact
    else:
        assert now != old and set(now) == set(old)  # the new state, complete
    for g in reopened.manifest.graphs:
        reopened.read_bytes(g.file)


@pytest.mark.slow
def test_recalibration_replaces_graphs_by_new_names_and_removes_the_old(calibrated, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(calibrated, b, copy_function=os.link)
    before = {g.file for g in Bundle.open(b).manifest.graphs if g.precision == "int8"}
    r = _calibrate(b, 3)
    assert r.returncode == 0, r.stderr[-2000:]
    after = Bundle.open(b)
    files = {g.file for g in after.manifest.graphs if g.precision == "int8"}
    assert files and not files & before  # new names
    assert not [f for f in before if (b / f).exists()]  # the replaced graphs are gone
    assert set(after.manifest.files) == {p.name for p in b.iterdir() if p.is_file() and p.name != MANIFEST}
