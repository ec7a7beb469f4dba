"""InfluxQL pieces the boards share: filters on the template variables and the variables' own
queries.

A variable named like a tag filters that tag with a regex, as Grafana expects: it fills
``/^$machine$/`` with the value regex-escaped, with ``(a|b)`` for several values and with ``.*``
for "All". Every query is bounded by ``$timeFilter`` -- also the variables' ``SHOW TAG VALUES``,
which InfluxDB 3 otherwise answers for the last day only.
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_boards.model import Variable
from plantwire.influxql import quote_ident, quote_literal

__all__ = ["LABELS", "matching", "tag_variable", "where"]

LABELS = {
    "site": "Site",
    "area": "Area",
    "line": "Line",
    "machine": "Machine",
    "service": "Service",
}


def matching(tags: Sequence[str]) -> list[str]:
    """One condition per tag: its value matches the variable of the same name."""
    return [f"{quote_ident(tag)} =~ /^${tag}$/" for tag in tags]


def where(tags: Sequence[str], *, level: str | None = None) -> str:
    """The WHERE conditions of a panel query: the variables' tags, the OEE level, the time range.

    >>> where(["site", "line"], level="line")
    '"level" = \\'line\\' AND "site" =~ /^$site$/ AND "line" =~ /^$line$/ AND $timeFilter'
    """
    conditions = [f'"level" = {quote_literal(level)}'] if level else []
    return " AND ".join([*conditions, *matching(tags), "$timeFilter"])


def tag_variable(measurement: str, tag: str, parents: Sequence[str], *, multi: bool) -> Variable:
    """A drop-down of the values of ``tag`` in ``measurement``, within the parent variables."""
    conditions = " AND ".join([*matching(parents), "$timeFilter"])
    influxql = (
        f"SHOW TAG VALUES FROM {quote_ident(measurement)} WITH KEY = {quote_ident(tag)} "
        f"WHERE {conditions}"
    )
    return Variable(tag, LABELS.get(tag, tag.title()), influxql, multi=multi)
