"""``plantwire gateway``: MQTT telemetry of a site into its store (InfluxDB, or SQLite)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from plantwire.lifecycle import run_until_signalled

EXIT_CONFIG = 2
EXIT_UNAUTHORIZED = 3


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("gateway", help="run the gateway: MQTT telemetry into InfluxDB")
    parser.add_argument("--config", type=Path, required=True, help="the site file")
    parser.add_argument("--id", default=None, help="this gateway's id (default: the host name)")
    parser.add_argument("--spool", type=Path, default=None, help="override gateway.spool_path")
    parser.add_argument(
        "--health-port", type=int, default=None, help="override gateway.health_port (0: off)"
    )
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    parser.set_defaults(handler=run_gateway)


def run_gateway(args: argparse.Namespace) -> int:
    from plantwire.config import load_site
    from plantwire.errors import ConfigError
    from plantwire.logs import register_secrets_from, setup_logging

    setup_logging(args.log_level, args.log_format)
    try:
        site = load_site(args.config)
    except ConfigError as exc:
        print(f"plantwire gateway: the site file is refused:\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    register_secrets_from(site)
    if site.store is None:
        print(f"plantwire gateway: {args.config} has no store: block to write to", file=sys.stderr)
        return EXIT_CONFIG
    from gateway.service import Gateway, default_gateway_id
    from gateway.writer import InfluxUnauthorizedError
    from plantwire.memory import map_large_blocks
    from plantwire.store.open import make_line_writer

    map_large_blocks()  # a burst of large messages must not leave the heap at its peak
    gateway = Gateway(
        site,
        make_line_writer(site, max_connections=max(16, site.gateway.max_writes_in_flight)),
        gateway_id=args.id or default_gateway_id(),
        spool_path=args.spool,
        health_port=args.health_port,
    )
    try:
        asyncio.run(run_until_signalled(gateway.run()))
    except InfluxUnauthorizedError:
        return EXIT_UNAUTHORIZED
    return 0
