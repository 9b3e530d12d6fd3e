"""The ``edgecl`` command line: serve, backbone build, store, demo, bench."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from service.commands import COMMANDS


def version() -> str:
    """The installed package's version, or the source tree's when it is not installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("edgecl")
    except PackageNotFoundError:
        import edgecl

        return str(getattr(edgecl, "__version__", "unknown"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgecl", description="Streaming edge continual-learning daemon."
    )
    parser.add_argument("--version", action="version", version=f"edgecl {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except (ValueError, FileNotFoundError) as exc:
        # Bad input from the user: one sentence, non-zero exit, no traceback.
        print(f"edgecl: error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
