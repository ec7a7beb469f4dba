"""``plantwire config check FILE``: validate a site file and summarize it, or list its errors."""

from __future__ import annotations

import argparse
import sys

from plantwire.errors import ConfigError

EXIT_INVALID = 2


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("config", help="work with site files")
    actions = parser.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="validate a site file and print a summary")
    check.add_argument("file", help="the site YAML file")
    check.add_argument(
        "--quiet", "-q", action="store_true", help="print nothing when the file is valid"
    )
    check.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    from plantwire.config import load_site_file
    from plantwire.config.summary import describe_site

    try:
        loaded = load_site_file(args.file)
    except ConfigError as exc:
        count = len(exc.issues)
        print(f"{args.file}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return EXIT_INVALID
    if not args.quiet:
        print(describe_site(loaded))
    return 0
