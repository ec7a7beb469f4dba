"""``plantwire analytics`` (the OEE service) and ``plantwire oee`` (a report from stored
telemetry)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import orjson

from plantwire.lifecycle import run_until_signalled

__all__ = ["register"]

EXIT_CONFIG = 2
EXIT_STORE = 3
NS = 1_000_000_000


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    service = commands.add_parser(
        "analytics", help="run the analytics service: OEE of the current shift into the store"
    )
    service.add_argument("--config", type=Path, required=True, help="the site file")
    service.add_argument("--once", action="store_true", help="compute and write once, then exit")
    service.add_argument(
        "--health-port", type=int, default=None, help="override analytics.health_port (0: off)"
    )
    service.add_argument("--log-level", default="INFO")
    service.add_argument("--log-format", choices=["text", "json"], default="text")
    service.set_defaults(handler=run_analytics)

    report = commands.add_parser("oee", help="print OEE per line and shift from stored telemetry")
    report.add_argument("--config", type=Path, required=True, help="the site file")
    report.add_argument(
        "--from",
        dest="start",
        required=True,
        help="ISO time (site time when it has no offset), 'now-8h' or '-8h'",
    )
    report.add_argument("--to", dest="end", default="now", help="as --from (default: now)")
    report.add_argument(
        "--line", action="append", default=None, help="a line id or area/line (repeatable)"
    )
    report.add_argument("--by", choices=["shift", "hour", "day"], default="shift")
    report.add_argument("--json", action="store_true", help="JSON instead of a table")
    report.set_defaults(handler=run_oee_report)


def _load(path: Path, command: str) -> object:
    from plantwire.config import load_site
    from plantwire.errors import ConfigError
    from plantwire.logs import register_secrets_from

    try:
        site = load_site(path)
    except ConfigError as exc:
        print(f"plantwire {command}: the site file is refused:\n{exc}", file=sys.stderr)
        return None
    register_secrets_from(site)
    if site.store is None:
        print(f"plantwire {command}: {path} has no store: block to read from", file=sys.stderr)
        return None
    return site


def run_analytics(args: argparse.Namespace) -> int:
    from analytics.service import AnalyticsService
    from plantwire.config.models import SiteConfig
    from plantwire.logs import setup_logging
    from plantwire.store.open import open_store

    setup_logging(args.log_level, args.log_format)
    site = _load(args.config, "analytics")
    if not isinstance(site, SiteConfig):
        return EXIT_CONFIG
    with open_store(site) as store:
        service = AnalyticsService(site, store, health_port=args.health_port)
        if args.once:
            service.run_once()
            return 0 if service.last_error is None else EXIT_STORE
        asyncio.run(run_until_signalled(service.run()))
    return 0


def run_oee_report(args: argparse.Namespace) -> int:
    from analytics.calendar import parse_moment
    from analytics.compute import compute_oee
    from analytics.output import report_json, report_table
    from plantwire.config.models import SiteConfig
    from plantwire.errors import PlantWireError
    from plantwire.store.open import open_store

    site = _load(args.config, "oee")
    if not isinstance(site, SiteConfig):
        return EXIT_CONFIG
    now = time.time_ns()
    try:
        start = parse_moment(args.start, site.site.timezone, now)
        end = parse_moment(args.end, site.site.timezone, now)
    except ValueError as exc:
        print(f"plantwire oee: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if end <= start:
        print("plantwire oee: --to must be after --from", file=sys.stderr)
        return EXIT_CONFIG
    known = {f"{a.id}/{line.id}" for a, line, _ in site.machines()} | {
        line.id for _, line, _ in site.machines()
    }
    unknown = [name for name in args.line or [] if name not in known]
    if unknown:
        print(f"plantwire oee: no line {', '.join(unknown)} in {args.config}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        with open_store(site) as store:
            reports = compute_oee(
                site, store, start_ns=start, end_ns=end, by=args.by, lines=args.line, now_ns=now
            )
    except PlantWireError as exc:
        print(f"plantwire oee: {exc}", file=sys.stderr)
        return EXIT_STORE
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(report_json(reports), option=orjson.OPT_INDENT_2))
        sys.stdout.write("\n")
    else:
        print(report_table(reports))
    return 0
