"""The line board: what each machine of one line did over time, what it made, and where this
shift's time went (the six big losses, micro-stops), with the line's OEE shift by shift."""

from __future__ import annotations

from grafana_boards.fields import FRACTION, PER_MINUTE, state_mappings, thresholds
from grafana_boards.model import Board, Panel, Query
from grafana_boards.panels import bar_gauge, data_link, state_timeline, table, time_series
from grafana_boards.queries import tag_variable, where

__all__ = ["UID", "board"]

UID = "plantwire-line"
MACHINE_BOARD = "/d/plantwire-machine/plantwire-machine"
LINE_TAGS = ["site", "area", "line"]
MACHINE_TAGS = [*LINE_TAGS, "machine"]
TO_MACHINE = data_link(
    "Machine board",
    MACHINE_BOARD + "?${site:queryparam}&${area:queryparam}&${line:queryparam}"
    "&var-machine=${__field.labels.machine}&${__url_time_range}",
)
BARS = {"drawStyle": "bars", "fillOpacity": 60, "showPoints": "never"}


def _states() -> Panel:
    query = Query(
        f'SELECT last("state") FROM "telemetry" WHERE {where(MACHINE_TAGS)} '
        'GROUP BY time($__interval), "machine" fill(none)',
        alias="$tag_machine",
    )
    return state_timeline(
        "Machine states",
        [query],
        (24, 8),
        description="Each machine's state over time; click a band for the machine's board.",
        defaults={
            "mappings": state_mappings(),
            "thresholds": thresholds("text"),
            "links": [TO_MACHINE],
        },
    )


def _rate(title: str, counter: str, description: str) -> Panel:
    # A rate per minute reads the same at any zoom; a counter wrap or reset shows as a missing
    # bar (non_negative_*), never as a negative one.
    query = Query(
        f'SELECT non_negative_derivative(last("{counter}"), 1m) FROM "telemetry" '
        f'WHERE {where(MACHINE_TAGS)} GROUP BY time($__interval), "machine" fill(none)',
        alias="$tag_machine",
    )
    return time_series(
        title,
        [query],
        (12, 8),
        description=description,
        defaults=PER_MINUTE,
        style=BARS,
        interval="1m",
    )


def _counts_this_shift() -> Panel:
    query = Query(
        'SELECT last("good_count") AS "good", last("reject_count") AS "rejects" FROM "oee" '
        f'WHERE {where(MACHINE_TAGS, level="machine")} GROUP BY "machine"',
        alias="$tag_machine $col",
    )
    return bar_gauge(
        "Good and rejects per machine, current shift",
        [query],
        (8, 9),
        description="What each machine counted this shift (the OEE engine's figures).",
        defaults={"unit": "short", "decimals": 0, "min": 0, "thresholds": thresholds("blue")},
    )


def _time_losses() -> Panel:
    query = Query(
        'SELECT last("breakdown_s") AS "Breakdowns", last("setup_s") AS "Setup and changeover", '
        'last("small_stop_s") AS "Small stops", last("reduced_speed_s") AS "Reduced speed", '
        'last("no_data_s") AS "No data" '
        f'FROM "oee" WHERE {where(LINE_TAGS, level="line")}',
        alias="$col",
    )
    return bar_gauge(
        "Six big losses: time, current shift",
        [query],
        (8, 9),
        description=(
            "Availability losses (breakdowns, setup and changeover, and time without state "
            "data) and performance losses (small stops, reduced speed) of the line's output "
            "machine. Reduced speed is negative when the line ran faster than its ideal cycle."
        ),
        defaults={"unit": "s", "thresholds": thresholds("orange")},
    )


def _reject_losses() -> Panel:
    query = Query(
        'SELECT last("startup_rejects") AS "Start-up rejects", '
        'last("production_rejects") AS "Production rejects" '
        f'FROM "oee" WHERE {where(LINE_TAGS, level="line")}',
        alias="$col",
    )
    return bar_gauge(
        "Six big losses: rejects, current shift",
        [query],
        (8, 9),
        description="Quality losses in parts: rejects soon after a restart, and all others.",
        defaults={"unit": "short", "decimals": 0, "min": 0, "thresholds": thresholds("orange")},
    )


def _micro_stops() -> Panel:
    query = Query(
        'SELECT last("small_stops") FROM "oee" '
        f'WHERE {where(MACHINE_TAGS, level="machine")} GROUP BY "machine"',
        alias="$tag_machine",
    )
    return bar_gauge(
        "Micro-stops per machine, current shift",
        [query],
        (12, 8),
        description="Stops shorter than the small-stop threshold (120 s by default): they "
        "stay in run time and cost performance.",
        defaults={"unit": "short", "decimals": 0, "min": 0, "thresholds": thresholds("orange")},
    )


def _micro_stop_time() -> Panel:
    query = Query(
        'SELECT last("small_stop_s") FROM "oee" '
        f'WHERE {where(MACHINE_TAGS, level="machine")} GROUP BY "machine"',
        alias="$tag_machine",
    )
    return bar_gauge(
        "Time in micro-stops per machine, current shift",
        [query],
        (12, 8),
        defaults={"unit": "s", "min": 0, "thresholds": thresholds("orange")},
    )


def _oee_by_shift() -> Panel:
    query = Query(
        'SELECT "availability", "performance", "quality", "oee" AS "OEE" FROM "oee" '
        f"WHERE {where(LINE_TAGS, level='line')}",
        alias="$col",
    )
    return time_series(
        "OEE by shift, last 7 days",
        [query],
        (12, 9),
        description="A, P, Q and OEE of each shift, drawn at the shift's start.",
        defaults=FRACTION,
        style={"drawStyle": "bars", "fillOpacity": 50, "showPoints": "never"},
        time_from="7d",
    )


def _shift_table() -> Panel:
    query = Query(
        'SELECT "day", "shift", "availability", "performance", "quality", "oee", '
        '"good_count", "reject_count", "energy_per_good_part_kwh", "final" FROM "oee" '
        f"WHERE {where(LINE_TAGS, level='line')} ORDER BY time DESC",
        result_format="table",
    )
    return table(
        "Shifts, last 7 days",
        [query],
        (12, 9),
        description="Each shift's figures; final is true once the shift is over and late data "
        "had time to arrive.",
        defaults={"decimals": 3, "thresholds": thresholds("text")},
        time_from="7d",
    )


def board() -> Board:
    return Board(
        uid=UID,
        title="PlantWire / Line",
        description="One line: machine states, parts, the six big losses, micro-stops, OEE.",
        rows=[
            [_states()],
            [
                _rate(
                    "Good parts per minute",
                    "good_count",
                    "Each machine's good-part counter as a rate.",
                ),
                _rate(
                    "Rejects per minute", "reject_count", "Each machine's reject counter as a rate."
                ),
            ],
            [_counts_this_shift(), _time_losses(), _reject_losses()],
            [_micro_stops(), _micro_stop_time()],
            [_oee_by_shift(), _shift_table()],
        ],
        variables=[
            tag_variable("telemetry", "site", [], multi=False),
            tag_variable("telemetry", "area", ["site"], multi=False),
            tag_variable("telemetry", "line", ["site", "area"], multi=False),
            tag_variable("telemetry", "machine", ["site", "area", "line"], multi=True),
        ],
        time_from="now-12h",
    )
