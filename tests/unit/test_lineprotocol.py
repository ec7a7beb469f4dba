"""Line protocol encoding, checked against the text InfluxDB expects (the real influxd
round trip is in tests/integration/test_lineprotocol_influxd.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pw_strategies import finite_floats

from plantwire.errors import LineProtocolError
from plantwire.lineprotocol import (
    LineEncoder,
    Point,
    batch_lines,
    encode_points,
    format_field_value,
)
from plantwire.model import AssetPath, Batch, Quality, Sample

TAGS = {"site": "binh-duong", "line": "filling"}


def test_a_plain_point() -> None:
    body = encode_points(
        [
            Point(
                "telemetry",
                TAGS,
                {"temp": 4.5, "count": 19271, "on": True, "product": "milk 1L"},
                1763712000000000001,
            )
        ]
    )
    assert (
        body
        == b'telemetry,line=filling,site=binh-duong temp=4.5,count=19271i,on=true,product="milk 1L" 1763712000000000001'
    )


@pytest.mark.parametrize(
    ("measurement", "tags", "field", "expected_head"),
    [
        ("tank level", {"a b": "c d"}, "f g", "tank\\ level,a\\ b=c\\ d f\\ g=1i"),
        ("a,b", {"k,1": "v,1"}, "f,1", "a\\,b,k\\,1=v\\,1 f\\,1=1i"),
        ("a=b", {"k=1": "v=1"}, "f=1", "a=b,k\\=1=v\\=1 f\\=1=1i"),
        ('q"m', {'k"': 'v"'}, 'f"', 'q"m,k"=v" f"=1i'),
        ("C:\\m", {"k\\x": "v\\x"}, "f\\x", "C:\\m,k\\x=v\\x f\\x=1i"),
        ("nhiệt độ", {"máy": "chiết rót"}, "温度", "nhiệt\\ độ,máy=chiết\\ rót 温度=1i"),
    ],
)
def test_names_are_escaped(
    measurement: str, tags: dict[str, str], field: str, expected_head: str
) -> None:
    line = LineEncoder().point(Point(measurement, tags, {field: 1}, 5))
    assert line == f"{expected_head} 5"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ('a "quoted" word', '"a \\"quoted\\" word"'),
        ("back\\slash", '"back\\\\slash"'),
        ("ends with \\", '"ends with \\\\"'),
        ("two\nlines", '"two\nlines"'),
        ("", '""'),
        (-(2**63), "-9223372036854775808i"),
        (2**63 - 1, "9223372036854775807i"),
        (False, "false"),
        (1e-300, "1e-300"),
        (-0.0, "-0.0"),
    ],
)
def test_field_values(value: object, text: str) -> None:
    assert format_field_value(value) == text


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float64("nan")])
def test_nan_and_infinity_are_refused(value: float) -> None:
    with pytest.raises(LineProtocolError, match="not finite"):
        format_field_value(value)


def test_nan_in_a_fast_path_row_is_refused_with_the_field_named() -> None:
    encoder = LineEncoder()
    series = encoder.series("telemetry", TAGS)
    with pytest.raises(LineProtocolError, match="not finite"):
        encoder.rows([(series, {"a": 1.0, "b": 2.0}, 1), (series, {"a": math.nan, "b": 2.0}, 2)])


@pytest.mark.parametrize(
    ("point", "reason"),
    [
        (Point("#comment", TAGS, {"f": 1}, 1), "comment"),
        (Point("", TAGS, {"f": 1}, 1), "empty"),
        (Point("m", {"time": "x"}, {"f": 1}, 1), "reserved"),
        (Point("m", TAGS, {"time": 1}, 1), "reserved"),
        (Point("m", {"k": ""}, {"f": 1}, 1), "empty"),
        (Point("m", {"k": "trailing\\"}, {"f": 1}, 1), "backslash"),
        (Point("m", {"k": "new\nline"}, {"f": 1}, 1), "control character"),
        (Point("m", TAGS, {}, 1), "at least one field"),
        (Point("m", TAGS, {"f": 2**63}, 1), "64 bits"),
        (Point("m", TAGS, {"f": [1]}, 1), "cannot be written"),
        (Point("m", TAGS, {"f": 1}, 1.5), "timestamp"),  # type: ignore[arg-type]
        (Point("m", {"k": 1}, {"f": 1}, 1), "must be a string"),  # type: ignore[dict-item]
        (Point("m", {"k": ["x"]}, {"f": 1}, 1), "strings"),  # type: ignore[dict-item]
        (Point("m", TAGS, {"f": "x" * 70_000}, 1), "longer than"),
    ],
)
def test_unwritable_points_raise_line_protocol_error(point: Point, reason: str) -> None:
    with pytest.raises(LineProtocolError, match=reason):
        LineEncoder().encode([point])


def test_numpy_scalars_are_written_as_their_python_types() -> None:
    line = LineEncoder().point(
        Point("m", TAGS, {"a": np.float32(0.5), "b": np.int64(3), "c": np.bool_(True)}, 1)
    )
    assert line.endswith(" a=0.5,b=3i,c=true 1")


def test_a_percent_sign_in_a_field_key_survives_the_template_path() -> None:
    encoder = LineEncoder()
    series = encoder.series("m", TAGS)
    assert encoder.rows([(series, {"load %": 1.5, "x%s": 2.5}, 9)]) == [
        f"{series} load\\ %=1.5,x%s=2.5 9"
    ]


@given(st.lists(st.lists(finite_floats, min_size=1, max_size=12), min_size=1, max_size=20))
def test_fast_path_writes_floats_that_parse_back_exactly(rows: list[list[float]]) -> None:
    encoder = LineEncoder()
    series = encoder.series("m", TAGS)
    lines = encoder.rows(
        [(series, {f"f{i}": v for i, v in enumerate(row)}, n) for n, row in enumerate(rows)]
    )
    for line, row in zip(lines, rows, strict=True):
        fields = line.split(" ")[1].split(",")
        parsed = [float(field.split("=", 1)[1]) for field in fields]
        assert parsed == row
        assert all(
            math.copysign(1, a) == math.copysign(1, b) for a, b in zip(parsed, row, strict=True)
        )


def test_batch_lines_group_samples_by_timestamp_and_keep_quality() -> None:
    batch = Batch(
        "edge-dairy",
        1,
        AssetPath("binh-duong", "dairy", "filling", "filler"),
        [
            Sample(10, "temp", 4.5),
            Sample(10, "count", 7),
            Sample(20, "temp", 4.6, Quality.UNCERTAIN),
            Sample(20, "pressure", None, Quality.BAD),
        ],
    )
    assert batch_lines(LineEncoder(), batch) == [
        "telemetry,area=dairy,line=filling,machine=filler,site=binh-duong temp=4.5,count=7i 10",
        'telemetry,area=dairy,line=filling,machine=filler,site=binh-duong temp=4.6,temp__quality="uncertain",pressure__quality="bad" 20',
    ]


def test_escape_caches_stay_bounded() -> None:
    import plantwire.lineprotocol as lp

    encoder = LineEncoder()
    series = encoder.series("m", TAGS)
    for i in range(lp._CACHE_LIMIT + 10):
        encoder.line(series, {f"field_{i}": 1}, 1)
    assert len(encoder._field_keys) <= lp._CACHE_LIMIT


def test_the_fast_path_handles_every_common_type_and_strings_with_newlines_and_commas() -> None:
    encoder = LineEncoder()
    series = encoder.series("m", TAGS)
    rows = [
        (series, {"f": 1.5, "i": -7, "b": False, "s": 'a, "b"=c'}, 1),
        (series, {"f": 2.0, "s": "two\nlines", "k%s": 3}, 2),
        (series, {"x": np.float64(0.25)}, 3),  # numpy: field by field
    ]
    assert encoder.rows(rows) == [
        f'{series} f=1.5,i=-7i,b=false,s="a, \\"b\\"=c" 1',
        f'{series} f=2.0,s="two\nlines",k%s=3i 2',
        f"{series} x=0.25 3",
    ]
    with pytest.raises(LineProtocolError, match="64 bits"):
        encoder.rows([(series, {"i": 2**63}, 4)])
