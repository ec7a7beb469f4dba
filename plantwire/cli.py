"""The ``plantwire`` command: one subcommand per part.

Subcommands register through the ``plantwire.commands`` entry point group (see pyproject.toml),
each with a ``register(subparsers)`` function; this keeps ``plantwire`` free of imports from
``edge``, ``gateway``, ``analytics`` and ``simulators``, which may be installed on different
machines.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, entry_points, version

from plantwire.extras import missing_library_message

__all__ = ["build_parser", "main"]


def _version() -> str:
    try:
        return version("plantwire")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plantwire",
        description=(
            "PlantWire: factory telemetry from PLCs to InfluxDB, with OEE and anomaly detection."
        ),
    )
    parser.add_argument("--version", action="version", version=f"plantwire {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for entry in sorted(entry_points(group="plantwire.commands"), key=lambda e: e.name):
        entry.load()(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args))
    except ModuleNotFoundError as exc:
        # A part installed without its extra (an edge device asked to train a model).
        message = missing_library_message(args.command, exc)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 5  # docs/install.md
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into `head` and friends: stop quietly, as Unix tools do.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stays open until exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
