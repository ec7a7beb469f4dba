"""The plant overview: how each line does this shift, what every machine is doing now, and which
machines have an open anomaly alert.

"This shift" is the newest ``oee`` point of each line in the time range: the analytics service
rewrites the current shift's point (stamped at the shift's start) every minute, so with the range
ending now it is the running shift.
"""

from __future__ import annotations

from grafana_boards.fields import (
    FRACTION,
    flag_mappings,
    state_mappings,
    thresholds,
)
from grafana_boards.model import Board, Panel, Query
from grafana_boards.panels import bar_gauge, data_link, gauge, stat, table, time_series
from grafana_boards.queries import tag_variable, where

__all__ = ["UID", "board"]

UID = "plantwire-overview"
LINE_BOARD = "/d/plantwire-line/plantwire-line"
MACHINE_BOARD = "/d/plantwire-machine/plantwire-machine"
LINE_TAGS = ["site", "area", "line"]
LINES = where(LINE_TAGS, level="line")
MACHINES = where(LINE_TAGS)
BY_LINE = 'GROUP BY "area", "line"'
BY_MACHINE = 'GROUP BY "area", "line", "machine"'
TO_LINE = data_link(
    "Line board",
    LINE_BOARD + "?${site:queryparam}&var-area=${__field.labels.area}"
    "&var-line=${__field.labels.line}&${__url_time_range}",
)
TO_MACHINE = data_link(
    "Machine board",
    MACHINE_BOARD + "?${site:queryparam}&var-area=${__field.labels.area}"
    "&var-line=${__field.labels.line}&var-machine=${__field.labels.machine}&${__url_time_range}",
)


def _oee_now() -> Panel:
    query = Query(f'SELECT last("oee") FROM "oee" WHERE {LINES} {BY_LINE}', alias="$tag_line")
    return gauge(
        "OEE, current shift",
        [query],
        (8, 8),
        description="Each line's OEE so far this shift (its output machine's).",
        defaults={**FRACTION, "links": [TO_LINE]},
    )


def _apq_now() -> Panel:
    query = Query(
        'SELECT last("availability") AS "A", last("performance") AS "P", '
        f'last("quality") AS "Q" FROM "oee" WHERE {LINES} {BY_LINE}',
        alias="$tag_line $col",
    )
    return bar_gauge(
        "Availability, performance, quality",
        [query],
        (8, 8),
        description="The three factors of each line's OEE this shift.",
        defaults={**FRACTION, "links": [TO_LINE]},
    )


def _oee_trend() -> Panel:
    query = Query(
        f'SELECT "oee" FROM "oee" WHERE {LINES} {BY_LINE}',
        alias="$tag_line",
    )
    return time_series(
        "OEE per shift, last 7 days",
        [query],
        (8, 8),
        description="One point per shift, at its start; the newest is the shift so far.",
        defaults=FRACTION,
        style={"drawStyle": "line", "showPoints": "always", "pointSize": 6},
        time_from="7d",
    )


def _states_now() -> Panel:
    query = Query(
        f'SELECT last("state") FROM "telemetry" WHERE {MACHINES} {BY_MACHINE}',
        alias="$tag_line / $tag_machine",
    )
    return stat(
        "Machine states now",
        [query],
        (24, 5),
        description="Each machine's last reported state; click one for its board.",
        defaults={
            "mappings": state_mappings(),
            "thresholds": thresholds("text"),
            "color": {"mode": "thresholds"},
            "links": [TO_MACHINE],
        },
        color_mode="background",
    )


def _parts_made() -> Panel:
    query = Query(
        'SELECT last("good_count") AS "good", last("reject_count") AS "rejects" '
        f'FROM "oee" WHERE {LINES} {BY_LINE}',
        alias="$tag_line $col",
    )
    return stat(
        "Parts made, current shift",
        [query],
        (8, 6),
        description="Good parts and rejects that left each line (its output machine) this shift.",
        defaults={"unit": "short", "decimals": 0, "thresholds": thresholds("blue")},
    )


def _energy_per_part() -> Panel:
    query = Query(
        f'SELECT last("energy_per_good_part_kwh") FROM "oee" WHERE {LINES} {BY_LINE}',
        alias="$tag_line",
    )
    return stat(
        "Energy per good part, current shift",
        [query],
        (6, 6),
        description="All of the line's machines' energy over its good parts this shift.",
        defaults={"unit": "kwatth", "decimals": 4, "thresholds": thresholds("blue")},
    )


def _open_alerts() -> Panel:
    query = Query(
        f'SELECT last("alarm") FROM "anomaly" WHERE {MACHINES} {BY_MACHINE}',
        alias="$tag_line / $tag_machine",
    )
    return stat(
        "Anomaly alerts",
        [query],
        (10, 6),
        description="Each scored machine's alarm at its last scored sample: ALARM while open.",
        defaults={
            "mappings": flag_mappings(on=("ALARM", "red"), off=("normal", "green")),
            "thresholds": thresholds("text"),
            "color": {"mode": "thresholds"},
            "links": [TO_MACHINE],
        },
        color_mode="background",
    )


def _alert_events() -> Panel:
    query = Query(
        'SELECT "line", "machine", "event", "text" FROM "anomaly_events" '
        f"WHERE {MACHINES} ORDER BY time DESC LIMIT 50",
        result_format="table",
    )
    return table(
        "Anomaly events",
        [query],
        (24, 7),
        description="Alarms raised and cleared, newest first.",
        defaults={"thresholds": thresholds("text")},
    )


def board() -> Board:
    return Board(
        uid=UID,
        title="PlantWire / Plant overview",
        description="OEE per line this shift, machine states now, parts, energy and alerts.",
        rows=[
            [_oee_now(), _apq_now(), _oee_trend()],
            [_states_now()],
            [_parts_made(), _energy_per_part(), _open_alerts()],
            [_alert_events()],
        ],
        variables=[
            tag_variable("telemetry", "site", [], multi=False),
            tag_variable("telemetry", "area", ["site"], multi=True),
            tag_variable("telemetry", "line", ["site", "area"], multi=True),
        ],
        time_from="now-24h",
    )
