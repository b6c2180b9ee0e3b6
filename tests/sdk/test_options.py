"""Options defined once (sdk.options): the shared flags have the same name, default and help on every command that
takes them, `ssp run` has --plugins; the dispatcher lists a command unavailable only for a missing optional
dependency, and an ImportError inside a command's own code stays a bug with its traceback."""

from __future__ import annotations

import argparse

import pytest

from ssp_edge.sdk import cli
from ssp_edge.sdk.options import backend_kwargs

SHARED = (
    "--threads",
    "--providers",
    "--plugins",
    "--trust-bundle-plugins",
    "--allow-engine-host-code",
    "--verify-key",
    "--json",
)


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}


def _commands() -> dict[str, argparse.ArgumentParser]:
    top = _subparsers(cli.build_parser())
    out = {k: v for k, v in top.items() if k in ("run", "bench", "eval", "calibrate", "serve")}
    out.update({f"convert {k}": v for k, v in _subparsers(top["convert"]).items()})
    return out


def _flags(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in p._actions for s in a.option_strings}


def test_shared_flags_mean_the_same_on_every_command():
    cmds = _commands()
    assert {
        "run",
        "bench",
        "eval",
        "calibrate",
        "serve",
        "convert check",
        "convert build",
        "convert info",
        "convert triton",
    } <= set(cmds)
    ref = _flags(cmds["run"])
    for flag in SHARED:
        assert flag in ref, flag
        for name, p in cmds.items():
            a = _flags(p).get(flag)
            if a is not None:
                assert (a.help, a.default, a.choices, type(a)) == (
                    ref[flag].help,
                    ref[flag].default,
                    ref[flag].choices,
                    type(ref[flag]),
                ), (name, flag)
    for name in (
        "run",
        "bench",
        "eval",
        "serve",
    ):  # commands that open a bundle on a backend take every native-code flag
        assert {"--plugins", "--trust-bundle-plugins", "--allow-engine-host-code", "--verify-key"} <= set(
            _flags(cmds[name])
        ), name
    assert "--plugins" in _flags(cmds["convert build"]) and "--threads" in _flags(cmds["calibrate"])
    assert _flags(cmds["run"])["--backend"].choices == ("auto", "tensorrt", "onnxruntime", "openvino")
    assert _flags(cmds["eval"])["--backend"].choices == ("auto", "tensorrt", "onnxruntime", "openvino", "pytorch")


def test_parsed_flags_become_segmenter_open_arguments():
    args = cli.build_parser().parse_args(
        [
            "run",
            "--bundle",
            "b",
            "--source",
            "0",
            "--prompt",
            "x",
            "--backend",
            "onnxruntime",
            "--precision",
            "int8",
            "--threads",
            "2",
            "--providers",
            "CUDAExecutionProvider, CPUExecutionProvider",
            "--plugins",
            "lib.so",
            "--trust-bundle-plugins",
            "--verify-key",
            "pub.pem",
        ]
    )
    assert backend_kwargs(args) == {
        "backend": "onnxruntime",
        "precision": "int8",
        "threads": 2,
        "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"],
        "plugin_lib": "lib.so",
        "trust_bundle_plugins": True,
        "allow_engine_host_code": False,
        "verify_key": "pub.pem",
    }


class _EP:
    def __init__(self, name, register):
        self.name, self._register = name, register

    def load(self):
        return self._register


def test_missing_optional_dependency_lists_the_command_unavailable(monkeypatch, capsys):
    def register(sub):
        cli.require_modules("surely_not_an_installed_module_xyz", extra="model")

    monkeypatch.setattr(cli, "entry_points", lambda group: [_EP("train", register)])
    assert cli.main(["train"]) == 2
    err = capsys.readouterr().err
    assert "'ssp train' is not available in this install" in err
    assert "needs surely_not_an_installed_module_xyz: pip install 'ssp-edge[model]'" in err


def test_an_import_error_in_a_commands_own_code_is_a_bug(monkeypatch):
    def register(sub):
        from ssp_edge.sdk import no_such_module  # noqa: F401  (a typo in the command's code)

    monkeypatch.setattr(cli, "entry_points", lambda group: [_EP("run", register)])
    with pytest.raises(ImportError, match="no_such_module"):
        cli.build_parser()
