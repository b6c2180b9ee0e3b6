"""The `ssp` command: a thin dispatcher whose subcommands come from the ``ssp_edge.commands`` entry
points, so each package registers its own and a runtime-only install shows just what it has.

An entry point is a function ``register(subparsers)`` that adds one subparser and sets ``func``. It first calls
:func:`require_modules` for the optional packages it needs; when one is missing, the command is listed as
unavailable with the extra that installs it. Any other error while registering (an ImportError in the command's own
code included) is a bug and keeps its traceback. Expected errors (:class:`ssp_edge.sdk.errors.SSPEdgeError`, bad
input) print as one line, exit status 2, no traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from .errors import SSPEdgeError

__all__ = ["ENTRY_POINT_GROUP", "MissingDependency", "require_modules", "build_parser", "main"]

ENTRY_POINT_GROUP = "ssp_edge.commands"


class MissingDependency(SSPEdgeError):
    """An optional package a command needs is not installed; names the extra that installs it."""

    def __init__(self, module: str, extra: str):
        self.module, self.extra = module, extra
        super().__init__(f"needs {module}: pip install 'ssp-edge[{extra}]'")


def require_modules(*names: str, extra: str = "model") -> None:
    """Raise :class:`MissingDependency` for the first of ``names`` that is not installed (checked with
    ``importlib.util.find_spec``, nothing is imported), so the dispatcher lists the command as unavailable."""
    for n in names:
        if importlib.util.find_spec(n) is None:
            raise MissingDependency(n, extra)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssp", description="SSP Edge: train, evaluate, convert and run SSP referring segmentation models."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            ep.load()(sub)
        except MissingDependency as e:  # an optional dependency is not installed; anything else is a bug
            p = sub.add_parser(ep.name, help=f"(unavailable: needs {e.module})")
            p.set_defaults(func=None, unavailable=f"'ssp {ep.name}' is not available in this install ({e})")
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
