"""The `edgebnn` command line: one entry point, sub-commands registered by each part.

Each part of the package owns its sub-commands in a `commands.py` module with a
``register(subparsers)`` function; every sub-command sets ``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

import edgebnn

# The parts that contribute sub-commands, in the order they appear in `--help`.
COMMAND_MODULES = (
    "edgebnn.daemon.commands",  # run, check-config, subscribe, keys, demo
    "edgebnn.engine.formats.commands",  # models list/fetch/info/convert/export
    "edgebnn.bench.commands",  # bench
    "edgebnn.systemd.commands",  # service install/uninstall
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every part's sub-commands."""
    parser = argparse.ArgumentParser(
        prog="edgebnn",
        description="Binarized-network inference daemon for ELL's ImageNet models.",
    )
    parser.add_argument("--version", action="version", version=f"edgebnn {edgebnn.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except edgebnn.ModelError as exc:
        print(f"edgebnn: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
