"""Every tricky name and value written through the encoder reads back identical from a real
influxd with InfluxQL."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pw_strategies import finite_floats, int64s, metric_names, segments, strings

from plantwire.influxql import quote_ident, quote_literal
from plantwire.lineprotocol import LineEncoder, Point
from plantwire.testing.servers import InfluxClient

pytestmark = pytest.mark.servers

TRICKY_NAMES = [
    "plain",
    "with space",
    "with,comma",
    "with=equals",
    'with"quote',
    "with'apostrophe",
    "back\\slash",
    "\\leading backslash",
    "C:\\plant\\line 1",
    "#hash",
    "máy chiết rót",
    "温度传感器",
    "🏭 factory",
    'tab-free, but = and , and "all" together',
]

TRICKY_VALUES: list[Any] = [
    0.1,
    -0.0,
    1e-300,
    5e-324,
    1.7976931348623157e308,
    123456789.123456789,
    2.0,
    -(2**63),
    2**63 - 1,
    0,
    True,
    False,
    "",
    'say "hi"',
    "back\\slash",
    "ends with backslash\\",
    "two\nlines\r\nand a tab\t",
    "nul\x00inside",
    "máy 温度 🏭",
    "x" * 60_000,
]


def read_point(
    db: InfluxClient, measurement: str, tag_key: str, tag_value: str, ts: int
) -> dict[str, Any]:
    rows = db.rows(
        f"SELECT * FROM {quote_ident(measurement)} "
        f"WHERE {quote_ident(tag_key)} = {quote_literal(tag_value)} AND time = {ts}"
    )
    assert len(rows) == 1, rows
    return rows[0]


def field_types(db: InfluxClient, measurement: str) -> dict[str, str]:
    result = db.query(f"SHOW FIELD KEYS FROM {quote_ident(measurement)}")
    series = result["results"][0]["series"][0]
    return dict(series["values"])


def value_key(value: object) -> str:
    # A field keeps one type per shard; each type gets its own key.
    return f"v_{type(value).__name__}"


def measurement_for(name: str) -> str:
    # A measurement may not start with '#': the line would be a comment (refused by the encoder).
    return "m" + name if name.startswith("#") else name


def test_tricky_names_round_trip(influx: InfluxClient) -> None:
    encoder = LineEncoder()
    points = []
    for index, name in enumerate(TRICKY_NAMES):
        ts, n = 1_000 + index, str(index)
        points += [
            Point(measurement_for(name), {"n": n}, {"f": 1.5}, ts),
            Point("tag_keys", {name: "v", "n": n}, {"f": 1.5}, ts),
            Point("tag_values", {"tk": name, "n": n}, {"f": 1.5}, ts),
            Point("field_keys", {"n": n}, {name: index}, ts),
        ]
    influx.write(encoder.encode(points))

    measurements = {row["name"] for row in influx.rows("SHOW MEASUREMENTS")}
    assert measurements == {measurement_for(name) for name in TRICKY_NAMES} | {
        "tag_keys",
        "tag_values",
        "field_keys",
    }
    assert {row["tagKey"] for row in influx.rows('SHOW TAG KEYS FROM "tag_keys"')} == {
        *TRICKY_NAMES,
        "n",
    }
    assert field_types(influx, "field_keys") == dict.fromkeys(TRICKY_NAMES, "integer")
    for index, name in enumerate(TRICKY_NAMES):
        ts, n = 1_000 + index, str(index)
        assert read_point(influx, measurement_for(name), "n", n, ts)["f"] == 1.5
        assert read_point(influx, "tag_keys", "n", n, ts)[name] == "v"
        assert read_point(influx, "tag_values", "tk", name, ts)["n"] == n
        assert read_point(influx, "field_keys", "n", n, ts)[name] == index


def test_tricky_values_round_trip(influx: InfluxClient) -> None:
    encoder = LineEncoder()
    points = [
        Point(
            "values",
            {"case": str(index)},
            {value_key(value): value},
            1_763_712_000_123_456_789 + index,
        )
        for index, value in enumerate(TRICKY_VALUES)
    ]
    influx.write(encoder.encode(points))
    for index, value in enumerate(TRICKY_VALUES):
        row = read_point(influx, "values", "case", str(index), 1_763_712_000_123_456_789 + index)
        got = row[value_key(value)]
        if isinstance(value, float):
            # InfluxDB's JSON writes whole floats without a fraction (2.0 -> 2, -0.0 -> -0);
            # the stored type is checked separately below.
            assert float(got) == value
        else:
            assert got == value and type(got) is type(value), (index, got, value)
        assert row["time"] == 1_763_712_000_123_456_789 + index
    kinds = field_types(influx, "values")
    assert kinds == {
        "v_float": "float",
        "v_int": "integer",
        "v_bool": "boolean",
        "v_str": "string",
    }


def test_nanosecond_timestamps_are_kept(influx: InfluxClient) -> None:
    stamps = [1, 999_999_999, 1_763_712_000_000_000_001, 4_102_444_800_000_000_000]  # 1970 .. 2100
    influx.write(LineEncoder().encode([Point("ts", {"k": "v"}, {"f": 1.0}, ts) for ts in stamps]))
    assert [row["time"] for row in influx.rows('SELECT "f" FROM "ts"')] == stamps


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    measurement=metric_names.filter(lambda s: not s.startswith("#")),
    tag_key=metric_names,
    tag_value=segments,
    field_key=metric_names,
    value=st.one_of(finite_floats, int64s, st.booleans(), strings),
)
def test_generated_points_round_trip(
    influx: InfluxClient, measurement: str, tag_key: str, tag_value: str, field_key: str, value: Any
) -> None:
    ts = 1_763_712_000_000_000_000
    field_key = f"{field_key}_{type(value).__name__}"  # one type per field key, across examples
    if field_key == tag_key:
        field_key += "_f"
    influx.write(
        LineEncoder().encode([Point(measurement, {tag_key: tag_value}, {field_key: value}, ts)])
    )
    rows = influx.rows(
        f"SELECT {quote_ident(field_key)}, {quote_ident(tag_key)} FROM {quote_ident(measurement)} "
        f"WHERE {quote_ident(tag_key)} = {quote_literal(tag_value)} AND time = {ts}"
    )
    assert rows, (measurement, tag_key, tag_value, field_key)
    got = rows[-1][field_key]
    if isinstance(value, float):
        assert float(got) == value
    else:
        assert got == value
    assert rows[-1][tag_key] == tag_value
