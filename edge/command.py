"""``plantwire edge``: run the edge agent of one edge node, or browse an OPC UA server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from edge.browse_args import add_browse_arguments, run_browse
from plantwire.lifecycle import run_until_signalled

log = logging.getLogger("plantwire.edge")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "edge", help="run the edge agent: read PLCs, buffer, publish to MQTT"
    )
    parser.add_argument("--config", type=Path, help="the site file")
    parser.add_argument("--node", default=None, help="the edge node to run (default: the only one)")
    parser.add_argument("--buffer", type=Path, default=None, help="override the node's buffer_path")
    parser.add_argument(
        "--health-port", type=int, default=None, help="override the node's health_port (0: off)"
    )
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    parser.set_defaults(handler=run_edge)
    actions = parser.add_subparsers(dest="edge_command", metavar="ACTION")
    browse = actions.add_parser(
        "browse", help="print an OPC UA server's variables as site-file tags"
    )
    add_browse_arguments(browse)
    browse.set_defaults(handler=run_browse)


EXIT_BUFFER = 4  # the disk buffer cannot be opened at all


def run_edge(args: argparse.Namespace) -> int:
    from plantwire.config import load_site
    from plantwire.errors import ConfigError
    from plantwire.logs import register_secrets_from, setup_logging

    setup_logging(args.log_level, args.log_format)
    if args.config is None:
        print("plantwire edge: --config SITE.yaml is required", file=sys.stderr)
        return 2
    try:
        site = load_site(args.config)
    except ConfigError as exc:
        print(f"plantwire edge: the site file is refused:\n{exc}", file=sys.stderr)
        return 2
    register_secrets_from(site)
    node = args.node
    if node is None:
        if len(site.edge_nodes) != 1:
            names = ", ".join(n.id for n in site.edge_nodes)
            print(
                f"plantwire edge: the site has several edge nodes ({names}); say which with --node",
                file=sys.stderr,
            )
            return 2
        node = site.edge_nodes[0].id
    from edge.agent import EdgeAgent
    from edge.buffer import BufferUnavailableError

    try:
        agent = EdgeAgent(site, node, buffer_path=args.buffer, health_port=args.health_port)
    except ValueError as exc:
        print(f"plantwire edge: {exc}", file=sys.stderr)
        return 2
    except BufferUnavailableError as exc:
        print(
            f"plantwire edge: {exc}; nothing can be buffered, so the edge does not start -- "
            "free space on that disk or point edge_nodes[].buffer_path elsewhere",
            file=sys.stderr,
        )
        return EXIT_BUFFER
    asyncio.run(run_until_signalled(agent.run()))
    return 0
