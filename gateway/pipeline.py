"""The pipeline's own health as time series: what the "Pipeline health" board draws.

The gateway writes a ``pipeline`` point for itself every ``gateway.pipeline_interval_s`` (its
counters and gauges, the mean InfluxDB write latency of the interval), and turns the services'
messages into points too: an edge agent's periodic counters (``services/<id>/stats``) and every
service's retained status (``services/<id>/state``: ``online`` 1 or 0).

========  ==============================  ======================================================
tag       ``site``, ``service``           the gateway id, or the edge node id the stats are from
fields    gateway                         ``mqtt_connected``, ``influx_up``, ``messages_total``,
                                          ``samples_total``, ``points_written_total``,
                                          ``points_per_s``, ``write_latency_ms``, ``spool_lines``,
                                          ``spool_bytes``, ``dead_letters_total``,
                                          ``sequence_gaps_total``, ``messages_unacked``,
                                          ``messages_unrouted_total``; per ingest rule
                                          ``ingest_<rule>_messages_total``,
                                          ``ingest_<rule>_refused_total``
fields    gateway, per edge it heard      ``clock_offset_s``, ``clock_skewed`` (see
          from (its clocks)               :mod:`gateway.clocks`)
fields    edge (from its stats)           ``mqtt_connected``, ``sources_connected``,
                                          ``sources_total``, ``samples_read_total``,
                                          ``samples_published_total``, ``samples_buffered``,
                                          ``samples_dropped_total``, ``buffer_bytes``,
                                          ``reads_per_s``
fields    any service (from its state)    ``online``
========  ==============================  ======================================================
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import orjson

from plantwire.lineprotocol import FieldValue, Point
from plantwire.logs import LogOnce
from plantwire.names import check_segment
from plantwire.topics import ServiceTopic

__all__ = ["PIPELINE_MEASUREMENT", "PipelinePoints"]

log = logging.getLogger("plantwire.gateway.pipeline")
PIPELINE_MEASUREMENT = "pipeline"
MAX_STATS_FIELDS = 64


class RefusedServiceMessageError(ValueError):
    """A service message that is not a status or a stats snapshot."""


class PipelinePoints:
    """Pipeline points from service messages; counts what it refuses (never raises)."""

    def __init__(self, site: str) -> None:
        self.site = site
        self.refused = 0
        self._once = LogOnce(log)

    def point(self, service: str, fields: dict[str, FieldValue], ts_ns: int) -> Point:
        return Point(PIPELINE_MEASUREMENT, {"site": self.site, "service": service}, fields, ts_ns)

    def from_message(self, topic: ServiceTopic, payload: bytes | bytearray) -> list[Point]:
        """The point a service's state or stats message carries; [] when it is refused."""
        try:
            fields, ts_ns = _parse(topic, payload)
        except (ValueError, orjson.JSONDecodeError) as exc:
            self.refused += 1
            self._once.problem(
                f"service:{topic.service}",
                "service message on %s/%s refused: %s",
                topic.service,
                topic.kind,
                exc,
            )
            return []
        return [self.point(topic.service, fields, ts_ns)]


def _parse(topic: ServiceTopic, payload: bytes | bytearray) -> tuple[dict[str, FieldValue], int]:
    check_segment(topic.service, "service id")
    body = orjson.loads(payload) if payload else {}
    if not isinstance(body, dict):
        raise RefusedServiceMessageError("not a JSON object")
    ts = body.get("ts")
    ts_ns = ts if isinstance(ts, int) and not isinstance(ts, bool) and ts > 0 else time.time_ns()
    if topic.kind == "state":
        status = body.get("status")
        if status not in ("online", "offline"):
            raise RefusedServiceMessageError(f"status {status!r} is not online or offline")
        return {"online": float(status == "online")}, ts_ns
    return _stats_fields(body.get("stats")), ts_ns


def _stats_fields(stats: Any) -> dict[str, FieldValue]:
    if not isinstance(stats, dict) or not stats:
        raise RefusedServiceMessageError("stats is not a non-empty object")
    if len(stats) > MAX_STATS_FIELDS:
        raise RefusedServiceMessageError(f"more than {MAX_STATS_FIELDS} stats")
    fields: dict[str, FieldValue] = {}
    for name, value in stats.items():
        check_segment(name, "stat name")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RefusedServiceMessageError(f"stat {name!r} is not a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise RefusedServiceMessageError(f"stat {name!r} is not finite")
        fields[name] = float(value)  # one type per field, whatever the sender's JSON had
    return fields
