"""Command-line options shared by `ssp run`, `ssp bench`, `ssp eval`, `ssp calibrate` and `ssp convert`, defined
once (as Polygraphy's argument groups), so the same flag has the same name, meaning and help everywhere.

    p = sub.add_parser("run")
    add_backend_args(p)                 # --backend --precision --threads --providers
    add_native_code_args(p)             # --plugins --trust-bundle-plugins --allow-engine-host-code
    add_bundle_trust_args(p)            # --verify-key
    add_json_arg(p)                     # --json
    seg = Segmenter.open(args.bundle, **backend_kwargs(args))
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from .backends.base import BACKENDS, PRECISIONS
from .backends.precision_choice import ACCURACY_BOUND

__all__ = [
    "add_backend_args",
    "add_native_code_args",
    "add_bundle_trust_args",
    "add_json_arg",
    "backend_kwargs",
    "parse_providers",
]

# Each help says its default in words; "%(default).0s" prints nothing but keeps ArgumentDefaultsHelpFormatter from
# appending "(default: None)" after it.
_QUIET_DEFAULT = "%(default).0s"
_HELP = {
    "backend": "runtime: auto (default: TensorRT when it imports, a GPU is present and the bundle has a matching "
    "engine, else ONNX Runtime), tensorrt, onnxruntime, openvino (pip install 'ssp-edge[openvino]')",
    "precision": "graph / engine precision: fp32, fp16 or int8 (fp16 / int8 need `ssp calibrate`), or bf16 (OpenVINO's "
    "CPU inference precision on the fp32 graphs; --backend openvino only); default: the best engines "
    "TensorRT has; on ONNX Runtime's CPU provider int8 where `ssp calibrate` measured it within "
    f"{ACCURACY_BOUND} mIoU of fp32 and the CPU has VNNI / dotprod, else fp32 (`ssp run` prints which and why); "
    "fp32 on OpenVINO",
    "threads": "CPU threads of ONNX Runtime / OpenVINO / PyTorch intra-op parallelism (default 0: one per physical "
    "core, the fastest measured)",
    "providers": "ONNX Runtime execution providers, comma-separated in order of preference, e.g. "
    "CUDAExecutionProvider,CPUExecutionProvider (default: CPUExecutionProvider)",
    "plugins": "TensorRT plugin library (libssp_trt_plugins.so) to load for plugin engines (default: $SSP_PLUGIN_LIB)",
    "trust_bundle_plugins": "load the plugin library the bundle ships (listed in its manifest and hash-checked); "
    "native code from a bundle runs only with this flag",
    "allow_engine_host_code": "let TensorRT run host code embedded in version-compatible engines (off: such engines "
    "are refused)",
    "verify_key": "Ed25519 public key (PEM file) the bundle's manifest signature must verify against "
    "(default: $SSP_BUNDLE_PUBKEY; none: no signature check)",
    "json": "print the result as one JSON object",
}
_HELP = {k: v + _QUIET_DEFAULT for k, v in _HELP.items()}


def parse_providers(text: str) -> list[str]:
    """``"A,B"`` -> ``["A", "B"]`` (blank parts dropped)."""
    out = [p.strip() for p in text.split(",") if p.strip()]
    if not out:
        raise argparse.ArgumentTypeError("give at least one provider, e.g. CPUExecutionProvider")
    return out


def add_backend_args(
    p: argparse.ArgumentParser,
    *,
    backends: Sequence[str] = BACKENDS,
    default: str | None = "auto",
    precisions: Sequence[str] = PRECISIONS,
    precision_default: str | None = None,
    which: Sequence[str] = ("backend", "precision", "threads", "providers"),
    backend_help: str | None = None,
    precision_help: str | None = None,
) -> argparse._ArgumentGroup:
    """--backend, --precision, --threads, --providers (or the subset ``which``) in a "backend" group."""
    g = p.add_argument_group("backend")
    if "backend" in which:
        g.add_argument(
            "--backend",
            choices=tuple(backends),
            default=default,
            help=(backend_help + _QUIET_DEFAULT) if backend_help else _HELP["backend"],
        )
    if "precision" in which:
        g.add_argument(
            "--precision",
            choices=tuple(precisions),
            default=precision_default,
            help=(precision_help + _QUIET_DEFAULT) if precision_help else _HELP["precision"],
        )
    if "threads" in which:
        g.add_argument("--threads", type=int, default=0, metavar="N", help=_HELP["threads"])
    if "providers" in which:
        g.add_argument("--providers", type=parse_providers, default=None, metavar="LIST", help=_HELP["providers"])
    return g


def add_native_code_args(
    p: argparse.ArgumentParser, *, which: Sequence[str] = ("plugins", "trust_bundle_plugins", "allow_engine_host_code")
) -> argparse._ArgumentGroup:
    """--plugins, --trust-bundle-plugins, --allow-engine-host-code: native code is loaded only by these choices."""
    g = p.add_argument_group("native code (TensorRT)")
    if "plugins" in which:
        g.add_argument("--plugins", default=None, metavar="LIB", help=_HELP["plugins"])
    if "trust_bundle_plugins" in which:
        g.add_argument("--trust-bundle-plugins", action="store_true", help=_HELP["trust_bundle_plugins"])
    if "allow_engine_host_code" in which:
        g.add_argument("--allow-engine-host-code", action="store_true", help=_HELP["allow_engine_host_code"])
    return g


def add_bundle_trust_args(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """--verify-key: check the bundle's signature."""
    g = p.add_argument_group("bundle trust")
    g.add_argument("--verify-key", default=None, metavar="PEM", help=_HELP["verify_key"])
    return g


def add_json_arg(p: argparse.ArgumentParser) -> None:
    """--json (each command documents what its JSON object holds in its description)."""
    p.add_argument("--json", action="store_true", help=_HELP["json"])


def backend_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``Segmenter.open`` / ``open_backend`` that the parsed shared options set."""
    out: dict[str, Any] = {}
    for name, key in (
        ("backend", "backend"),
        ("precision", "precision"),
        ("threads", "threads"),
        ("providers", "providers"),
        ("plugins", "plugin_lib"),
        ("trust_bundle_plugins", "trust_bundle_plugins"),
        ("allow_engine_host_code", "allow_engine_host_code"),
        ("verify_key", "verify_key"),
    ):
        if hasattr(args, name):
            out[key] = getattr(args, name)
    return out
