"""``plantwire grafana export DIR`` and ``plantwire grafana push --url URL``: the boards as files,
or straight into a Grafana."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["register"]

EXIT_USAGE = 2
EXIT_FAILED = 3


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("grafana", help="export or upload the Grafana boards")
    actions = parser.add_subparsers(dest="grafana_command", required=True, metavar="ACTION")
    export = actions.add_parser("export", help="write the boards as dashboard JSON files")
    export.add_argument("folder", type=Path, help="where to write them (created if missing)")
    export.set_defaults(handler=run_export)
    push = actions.add_parser("push", help="upload the boards through Grafana's HTTP API")
    push.add_argument("--url", required=True, help="Grafana's address, e.g. http://grafana:3000")
    push.add_argument(
        "--token",
        default=os.environ.get("GRAFANA_TOKEN"),
        help="a service account token (default: $GRAFANA_TOKEN)",
    )
    push.add_argument("--user", default=None, help="basic auth user, instead of a token")
    push.add_argument(
        "--password",
        default=None,
        help="basic auth password (default: $GRAFANA_PASSWORD; better there than in the shell "
        "history)",
    )
    push.add_argument(
        "--folder-uid", default=None, help="the folder to save into (default General)"
    )
    push.set_defaults(handler=run_push)


def run_export(args: argparse.Namespace) -> int:
    from grafana_boards import boards
    from grafana_boards.export import export_boards

    try:
        written = export_boards(boards(), args.folder)
    except OSError as exc:
        print(f"cannot write the boards to {args.folder}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for path in written:
        print(path)
    return 0


def run_push(args: argparse.Namespace) -> int:
    from grafana_boards import boards
    from grafana_boards.push import GrafanaAuth, PushError, push_board

    password = args.password or os.environ.get("GRAFANA_PASSWORD")
    if args.user is not None and password is None:
        print("--user needs a password: --password or GRAFANA_PASSWORD", file=sys.stderr)
        return EXIT_USAGE
    # A user given on the command line is the operator's choice over a token in the environment.
    auth = (
        GrafanaAuth(user=args.user, password=password)
        if args.user is not None
        else GrafanaAuth(token=args.token)
    )
    for board in boards():
        try:
            result = push_board(args.url, board, auth, folder_uid=args.folder_uid)
        except PushError as exc:
            print(f"push failed: {exc}", file=sys.stderr)
            return EXIT_FAILED
        print(f"{result.uid} saved (version {result.version}) {result.url}")
    return 0
