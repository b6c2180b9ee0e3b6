"""The `ssp` command: a thin dispatcher whose subcommands come from the ``ssp_edge.commands`` entry
points, so each package registers its own and a runtime-only install shows just what it has.

An entry point is a function ``register(subparsers)`` that adds one subparser and sets ``func``.
Expected errors (:class:`ssp_edge.sdk.errors.SSPEdgeError`, bad input) print as one line, exit status 2, no traceback.
"""
from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points
from typing import Sequence

from .errors import SSPEdgeError

__all__ = ["ENTRY_POINT_GROUP", "build_parser", "main"]

ENTRY_POINT_GROUP = "ssp_edge.commands"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssp", description="SSP Edge: train, evaluate, convert and run SSP referring segmentation models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            ep.load()(sub)
        except ImportError as e:  # the package providing it is not installed in this environment
            p = sub.add_parser(ep.name, help=f"(unavailable: {e.name or e})")
            p.set_defaults(func=None, unavailable=f"'ssp {ep.name}' is not available in this install ({e}); "
                                                   "install the matching extra, e.g. pip install 'ssp-edge[model]'")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    if getattr(args, "func", None) is None:
        print(f"ssp: error: {getattr(args, 'unavailable', 'unknown command')}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("ssp: interrupted", file=sys.stderr)
        return 130
    except SSPEdgeError as e:  # expected errors are one line; anything else is a bug and keeps its traceback
        print(f"ssp {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
