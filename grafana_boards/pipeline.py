"""The pipeline health board: is every edge agent and gateway up and connected, does data wait
anywhere (edge buffers, the gateway's spool), how fast it flows, and is anything lost or refused
(dead letters, sequence gaps, samples an edge had to drop).

It reads the ``pipeline`` measurement the gateway writes (its own report, each edge's stats and
every service's status); the gateway's counters count from its start, so a restart shows as a
drop to zero.
"""

from __future__ import annotations

from grafana_boards.fields import flag_mappings, thresholds
from grafana_boards.model import Board, Panel, Query
from grafana_boards.panels import state_timeline, time_series
from grafana_boards.queries import tag_variable, where

__all__ = ["UID", "board"]

UID = "plantwire-pipeline"
SERVICES = where(["site", "service"])
PER_SERVICE = 'GROUP BY time($__interval), "service" fill(none)'
UP_DOWN = flag_mappings(on=("up", "green"), off=("down", "red"))


def _series(field: str, aggregate: str = "last", name: str = "") -> Query:
    alias = f"$tag_service {name}" if name else "$tag_service"
    return Query(
        f'SELECT {aggregate}("{field}") FROM "pipeline" WHERE {SERVICES} {PER_SERVICE}',
        alias=alias,
    )


def _status() -> Panel:
    return state_timeline(
        "Services online",
        [_series("online")],
        (12, 6),
        description="Each edge agent's and gateway's status message (retained, so the broker "
        "reports a service that vanished as offline).",
        defaults={
            "mappings": flag_mappings(on=("online", "green"), off=("offline", "red")),
            "thresholds": thresholds("text"),
        },
    )


def _connections() -> Panel:
    return state_timeline(
        "Connections",
        [_series("mqtt_connected", name="MQTT"), _series("influx_up", name="InfluxDB")],
        (12, 6),
        description="Each service's link to the broker, and the gateway's to InfluxDB.",
        defaults={"mappings": UP_DOWN, "thresholds": thresholds("text")},
    )


def _edge_sources() -> Panel:
    return time_series(
        "Edge sources connected",
        [_series("sources_connected", name="connected"), _series("sources_total", name="total")],
        (8, 8),
        description="PLCs and devices each edge agent is connected to, of those it reads.",
        defaults={"unit": "short", "min": 0, "decimals": 0, "thresholds": thresholds("green")},
        style={"lineInterpolation": "stepAfter"},
    )


def _edge_buffer() -> Panel:
    return time_series(
        "Buffered samples at the edge",
        [_series("samples_buffered")],
        (8, 8),
        description="Samples an edge agent holds on disk until the broker has them: it grows "
        "while the link is down and drains after.",
        defaults={"unit": "short", "min": 0, "thresholds": thresholds("green")},
    )


def _edge_dropped() -> Panel:
    return time_series(
        "Samples dropped at the edge",
        [_series("samples_dropped_total", "max")],
        (8, 8),
        description="Samples an edge agent had to drop since it started (a full buffer): "
        "anything above zero is lost data.",
        defaults={"unit": "short", "min": 0, "thresholds": thresholds("green", (1, "red"))},
        style={"lineInterpolation": "stepAfter"},
    )


def _throughput() -> Panel:
    return time_series(
        "Gateway throughput",
        [_series("points_per_s", "mean")],
        (8, 8),
        description="Points written to InfluxDB per second.",
        defaults={"unit": "suffix:points/s", "min": 0, "thresholds": thresholds("green")},
    )


def _latency() -> Panel:
    return time_series(
        "Write latency",
        [_series("write_latency_ms", "mean")],
        (8, 8),
        description="Mean time an InfluxDB write took.",
        defaults={"unit": "ms", "min": 0, "thresholds": thresholds("green")},
    )


def _spool() -> Panel:
    return time_series(
        "Spool depth",
        [_series("spool_lines", "max")],
        (8, 8),
        description="Lines the gateway keeps on disk while InfluxDB does not take them.",
        defaults={"unit": "short", "min": 0, "thresholds": thresholds("green")},
    )


def _dead_letters() -> Panel:
    return time_series(
        "Dead letters",
        [_series("dead_letters_total", "max")],
        (12, 8),
        description="Payloads the gateway refused since it started (each is on the dead-letter "
        "topic with its reason).",
        defaults={"unit": "short", "min": 0, "thresholds": thresholds("green", (1, "orange"))},
        style={"lineInterpolation": "stepAfter"},
    )


def _sequence_gaps() -> Panel:
    return time_series(
        "Sequence gaps",
        [_series("sequence_gaps_total", "max")],
        (12, 8),
        description="Batches numbered by an edge that never reached the gateway, since it started.",
        defaults={"unit": "short", "min": 0, "thresholds": thresholds("green", (1, "orange"))},
        style={"lineInterpolation": "stepAfter"},
    )


def board() -> Board:
    return Board(
        uid=UID,
        title="PlantWire / Pipeline health",
        description="Edge agents and gateways: connections, buffers, throughput, losses.",
        rows=[
            [_status(), _connections()],
            [_edge_sources(), _edge_buffer(), _edge_dropped()],
            [_throughput(), _latency(), _spool()],
            [_dead_letters(), _sequence_gaps()],
        ],
        variables=[
            tag_variable("pipeline", "site", [], multi=False),
            tag_variable("pipeline", "service", ["site"], multi=True),
        ],
        time_from="now-6h",
    )
