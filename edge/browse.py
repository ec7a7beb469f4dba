"""``plantwire edge browse``: list an OPC UA server's variables as tags ready for a site file.

Commissioning a machine starts with "what does this PLC serve?". The command walks the server's
address space and prints YAML that pastes straight into a machine's ``tags:`` list, with one
comment line per object (usually a machine or a module of one) so the engineer can cut the list
up. Metric names are made from browse names and always pass ``check_metric_name``; review them,
they become InfluxDB field names.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Sequence
from typing import Literal

from pydantic import ValidationError

from edge.browse_args import PASSWORD_ENV, add_browse_arguments
from edge.sources.base import NotConnected
from edge.sources.opcua_security import (
    BrowsedVariable,
    browse_variables,
    open_client,
    quiet_disconnect,
)
from plantwire.config.models import OpcuaSecurity
from plantwire.errors import InvalidNameError
from plantwire.names import check_metric_name

__all__ = ["PASSWORD_ENV", "add_browse_arguments", "browse", "main_browse", "metric_names"]

SecurityMode = Literal["None", "Sign", "SignAndEncrypt"]

_SEPARATORS = re.compile(r"[\s.\-/:]+")
_INVALID = re.compile(r"[^a-z0-9_]")
_RUNS = re.compile(r"_{2,}")
_PLAIN = re.compile(r"[a-z_][a-z0-9_]*")
# Plain scalars YAML 1.1 would read as something other than text.
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})
_MAX_UNIT = 32  # the site file's limit for a unit


def _metric_name(browse_name: str) -> str:
    """A browse name as a metric name: lower case, separators to ``_``, other characters gone."""
    name = _SEPARATORS.sub("_", browse_name.strip().lower())
    name = _RUNS.sub("_", _INVALID.sub("", name)).strip("_") or "tag"
    try:
        return check_metric_name(name)
    except InvalidNameError:  # reserved (time, site, ...): keep it recognisable
        return f"{name}_value"


def metric_names(browse_names: Sequence[str]) -> list[str]:
    """Metric names for the variables of one object, made unique with ``_2``, ``_3``, ...

    >>> metric_names(["Motor Current", "motor.current", "Temp (°C)", "time"])
    ['motor_current', 'motor_current_2', 'temp_c', 'time_value']
    """
    taken: set[str] = set()
    names = []
    for browse_name in browse_names:
        base = name = _metric_name(browse_name)
        counter = 1
        while name in taken:
            counter += 1
            name = f"{base}_{counter}"
        taken.add(name)
        names.append(name)
    return names


def _scalar(text: str) -> str:
    """Text as a YAML scalar: plain when that reads back as the same text, else double-quoted
    (JSON's string syntax is YAML's double-quoted style)."""
    if _PLAIN.fullmatch(text) and text not in _YAML_WORDS:
        return text
    return json.dumps(text, ensure_ascii=False)


def _format(endpoint: str, root: str | None, depth: int, variables: list[BrowsedVariable]) -> str:
    lines = [
        f"# Tags browsed from {endpoint} (root {root or 'Objects'}, depth {depth}).",
        "# Paste the groups you want under a machine's OPC UA source `tags:`.",
    ]
    groups: dict[tuple[tuple[str, ...], str], list[BrowsedVariable]] = {}
    for variable in variables:
        groups.setdefault((variable.path, variable.parent), []).append(variable)
    for (path, parent), members in groups.items():
        lines.append(f"# {'/'.join(path) or '(root)'}  ({parent})")
        for variable, metric in zip(members, metric_names([v.name for v in members]), strict=True):
            fields = [f"metric: {_scalar(metric)}", f"node: {json.dumps(variable.node)}"]
            unit = variable.unit
            if unit and len(unit) <= _MAX_UNIT and unit.isprintable():
                fields.append(f"unit: {json.dumps(unit, ensure_ascii=False)}")
            lines.append(f"- {{{', '.join(fields)}}}")
    if not variables:
        lines.append("[]  # no variables found; try another --root or a larger --depth")
    return "\n".join(lines) + "\n"


async def browse(
    endpoint: str,
    *,
    root: str | None = None,
    depth: int = 6,
    security: OpcuaSecurity | None = None,
    username: str | None = None,
    password: str | None = None,
    timeout_s: float = 10.0,
) -> str:
    """Walk the server's address space from Objects (or ``root``, a NodeId string) and return
    YAML tags grouped per parent object. Raises NotConnected when the server cannot be reached
    or refuses the connection (untrusted certificate, wrong password, ...), ValueError for a
    ``root`` that is no NodeId."""
    client = await open_client(
        endpoint,
        security=security or OpcuaSecurity(),
        username=username,
        password=password,
        timeout_s=timeout_s,
    )
    try:
        variables = await browse_variables(client, root, depth)
    except (OSError, RuntimeError) as exc:  # asyncua's UaError is a RuntimeError
        raise NotConnected(f"browsing {endpoint} failed: {exc}") from exc
    finally:
        await quiet_disconnect(client, timeout_s)
    return _format(endpoint, root, depth, variables)


def main_browse(args: argparse.Namespace) -> int:
    """Run ``plantwire edge browse``: print the tags (exit 0), or say why not (exit 2)."""
    try:
        security = OpcuaSecurity.model_validate(
            {
                "mode": args.security,
                "cert_file": args.cert,
                "key_file": args.key,
                "trust": args.server_cert,
            }
        )
    except ValidationError as exc:
        problems = "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())
        print(f"plantwire edge browse: {problems} (--cert, --key, --server-cert)", file=sys.stderr)
        return 2
    password = os.environ.get(PASSWORD_ENV)
    if args.user and password is None:
        print(
            f"plantwire edge browse: --user needs the password in ${PASSWORD_ENV}", file=sys.stderr
        )
        return 2
    try:
        text = asyncio.run(
            browse(
                args.endpoint,
                root=args.root,
                depth=args.depth,
                security=security,
                username=args.user,
                password=password if args.user else None,
                timeout_s=args.timeout,
            )
        )
    except NotConnected as exc:
        print(f"plantwire edge browse: cannot browse {args.endpoint}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"plantwire edge browse: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0
