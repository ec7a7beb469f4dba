"""The ingest formats' readers by name: one plain table, as the gateway's routes and the site
file's rule models (:data:`plantwire.config.ingest.INGEST_MODELS`) have. A reader turns one
message of a rule's topic -- its captured and fixed asset levels, its payload, when it arrived --
into :class:`~gateway.ingest.readings.Readings`, or raises a PayloadError for the whole message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.ingest.influx_format import read_influx
from gateway.ingest.json_format import read_json
from gateway.ingest.readings import Readings, asset_of
from gateway.ingest.value_format import read_value
from plantwire.config.ingest import InfluxRule, JsonRule, ValueRule

__all__ = ["READERS", "Reader"]

Levels = dict[str, str]  # asset levels (and the metric) from the topic and the rule
Reader = Callable[[Any, str, Levels, bytes, int], Readings]


def _json(rule: JsonRule, site: str, levels: Levels, payload: bytes, now: int) -> Readings:
    return read_json(rule, asset_of(site, levels), payload, now)


def _value(
    rule: ValueRule, site: str, levels: dict[str, str], payload: bytes, now: int
) -> Readings:
    metric = levels.get("metric") or rule.metric or ""
    return read_value(rule, asset_of(site, levels), metric, payload, now)


def _influx(
    rule: InfluxRule, site: str, levels: dict[str, str], payload: bytes, now: int
) -> Readings:
    return read_influx(rule, site, levels, payload)


READERS: dict[str, Reader] = {"json": _json, "value": _value, "influx": _influx}
