"""The arguments of ``plantwire edge browse``, apart from the browsing itself so that
``plantwire --help`` does not load the OPC UA library."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["PASSWORD_ENV", "add_browse_arguments", "run_browse"]

PASSWORD_ENV = "PLANTWIRE_OPCUA_PASSWORD"  # noqa: S105 - the variable's name, not a password


def add_browse_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``plantwire edge browse``."""
    parser.add_argument("endpoint", help="the server, opc.tcp://HOST:PORT[/PATH]")
    parser.add_argument("--root", help="NodeId to start from (default: the Objects folder)")
    parser.add_argument("--depth", type=int, default=6, help="levels to walk down (default 6)")
    parser.add_argument(
        "--security", choices=["None", "Sign", "SignAndEncrypt"], default="None",
        help="message security, with Basic256Sha256 (default None)",
    )  # fmt: skip
    parser.add_argument("--cert", type=Path, help="client certificate (DER or PEM)")
    parser.add_argument("--key", type=Path, help="client private key")
    parser.add_argument(
        "--server-cert", type=Path, action="append", default=[],
        help="trusted server certificate (file or folder; may be repeated)",
    )  # fmt: skip
    parser.add_argument("--user", help=f"user name; the password is read from ${PASSWORD_ENV}")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")


def run_browse(args: argparse.Namespace) -> int:
    from edge.browse import main_browse

    return main_browse(args)
