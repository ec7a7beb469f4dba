"""The machine board: one machine's state and process signals, its anomaly score against the
model's threshold, its output, and its alarms drawn on every panel as annotations."""

from __future__ import annotations

from grafana_boards.fields import FRACTION, PER_MINUTE, flag_mappings, state_mappings, thresholds
from grafana_boards.model import Annotation, Board, Panel, Query
from grafana_boards.panels import (
    bar_gauge,
    gauge,
    hide_series,
    stat,
    state_timeline,
    time_series,
)
from grafana_boards.queries import tag_variable, where

__all__ = ["UID", "board"]

UID = "plantwire-machine"
TAGS = ["site", "area", "line", "machine"]
MACHINE = where(TAGS)
# Fields of ``telemetry`` that are no process signal: the OEE signals as the example site and the
# simulator name them, counters that only grow, the PLC clock and the product code. Drawn with
# the signals they would flatten every line on the shared axis.
NOT_SIGNALS = (
    "state|good_count|reject_count|cycle_count|energy_kwh|energy_wh|run_seconds|stop_seconds"
    "|plc_clock_ns|product_code|power_w|speed_pct"
)


def _state() -> Panel:
    query = Query(
        f'SELECT last("state") FROM "telemetry" WHERE {MACHINE} '
        "GROUP BY time($__interval) fill(none)",
        alias="$tag_machine",
    )
    return state_timeline(
        "State",
        [query],
        (24, 4),
        defaults={"mappings": state_mappings(), "thresholds": thresholds("text")},
    )


def _signals() -> Panel:
    # mean(*) takes every numeric field; InfluxDB answers the fields of other machines as empty
    # columns, which the first override hides, and the second hides what is not a signal.
    query = Query(
        f'SELECT mean(*) FROM "telemetry" WHERE {MACHINE} GROUP BY time($__interval) fill(none)',
        alias="$col",
    )
    return time_series(
        "Process signals",
        [query],
        (24, 10),
        description="Every numeric signal of the machine (mean per interval); counters, the "
        "OEE signals and the PLC clock are left out.",
        defaults={"unit": "short", "thresholds": thresholds("green")},
        overrides=[
            hide_series(
                {"id": "byValue", "options": {"reducer": "allIsNull", "op": "gte", "value": 0}}
            ),
            hide_series({"id": "byRegexp", "options": f"^({NOT_SIGNALS})$"}),
        ],
        transformations=[
            {"id": "renameByRegex", "options": {"regex": "^mean_(.*)$", "renamePattern": "$1"}}
        ],
    )


def _score() -> Panel:
    query = Query(
        'SELECT max("score") AS "score", last("threshold") AS "threshold" FROM "anomaly" '
        f"WHERE {MACHINE} GROUP BY time($__interval) fill(none)",
        alias="$col",
    )
    threshold_line = {
        "matcher": {"id": "byName", "options": "threshold"},
        "properties": [
            {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}},
            {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
            {"id": "custom.fillOpacity", "value": 0},
        ],
    }
    return time_series(
        "Anomaly score",
        [query],
        (18, 8),
        description="The promoted model's score (highest per interval) and its threshold; an "
        "alarm is raised after several rows above it. Logarithmic: a fault scores far above.",
        defaults={"unit": "short", "thresholds": thresholds("green")},
        overrides=[threshold_line],
        style={"scaleDistribution": {"type": "log", "log": 10}},
    )


def _alarm_now() -> Panel:
    query = Query(
        f'SELECT last("alarm") FROM "anomaly" WHERE {MACHINE} GROUP BY "model"',
        alias="model $tag_model",
    )
    return stat(
        "Anomaly alarm",
        [query],
        (6, 8),
        description="The alarm at the last scored sample, and the model version scoring.",
        defaults={
            "mappings": flag_mappings(on=("ALARM", "red"), off=("normal", "green")),
            "thresholds": thresholds("text"),
            "color": {"mode": "thresholds"},
        },
        color_mode="background",
    )


def _parts_per_minute() -> Panel:
    query = Query(
        'SELECT non_negative_derivative(last("good_count"), 1m) AS "good", '
        'non_negative_derivative(last("reject_count"), 1m) AS "rejects" FROM "telemetry" '
        f"WHERE {MACHINE} GROUP BY time($__interval) fill(none)",
        alias="$col",
    )
    return time_series(
        "Parts per minute",
        [query],
        (12, 8),
        defaults=PER_MINUTE,
        style={"drawStyle": "bars", "fillOpacity": 60, "showPoints": "never"},
        interval="1m",
    )


def _oee_now() -> Panel:
    query = Query(
        f'SELECT last("oee") FROM "oee" WHERE {where(TAGS, level="machine")}', alias="OEE"
    )
    return gauge(
        "OEE, current shift",
        [query],
        (6, 8),
        defaults=FRACTION,
    )


def _apq_now() -> Panel:
    query = Query(
        'SELECT last("availability") AS "A", last("performance") AS "P", '
        f'last("quality") AS "Q" FROM "oee" WHERE {where(TAGS, level="machine")}',
        alias="$col",
    )
    return bar_gauge(
        "Availability, performance, quality",
        [query],
        (6, 8),
        defaults=FRACTION,
    )


def board() -> Board:
    alarms = Annotation(
        "Anomaly alarms",
        f'SELECT "text", "event" FROM "anomaly_events" WHERE {MACHINE}',
        text_column="text",
        tags_column="event",
    )
    return Board(
        uid=UID,
        title="PlantWire / Machine",
        description="One machine: state, signals, anomaly score and alarms, output and OEE.",
        rows=[
            [_state()],
            [_signals()],
            [_score(), _alarm_now()],
            [_parts_per_minute(), _oee_now(), _apq_now()],
        ],
        variables=[
            tag_variable("telemetry", "site", [], multi=False),
            tag_variable("telemetry", "area", ["site"], multi=False),
            tag_variable("telemetry", "line", ["site", "area"], multi=False),
            tag_variable("telemetry", "machine", ["site", "area", "line"], multi=False),
        ],
        annotations=[alarms],
        time_from="now-6h",
    )
