"""The line-protocol parser reads back exactly what the encoder writes, and refuses bad lines with
InfluxDB's reason (the stores' tests run it against a real influxd's answers)."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pw_strategies import raw_names, values

from plantwire.errors import InvalidNameError, LineProtocolError
from plantwire.lineprotocol import LineEncoder, Point, encode_points
from plantwire.lineprotocol_parse import LineParser, RefusedLine, parse_body, parse_line
from plantwire.names import check_influx_name


def _is_name(text: str) -> bool:
    try:
        check_influx_name(text)
    except InvalidNameError:
        return False
    return True


names = raw_names.filter(_is_name)
keys = names.filter(lambda name: name not in {"time", "_field", "_measurement"})
measurements = names.filter(lambda name: not name.startswith("#"))
points = st.builds(
    Point,
    measurements,
    st.dictionaries(keys, names, max_size=4),
    st.dictionaries(keys, values, min_size=1, max_size=6),
    st.integers(-(2**63) + 1, 2**63 - 2),
)


def typed(point: Point) -> tuple[object, ...]:
    """A point with each value beside its type and exact text, so 1 == 1.0 == True and
    0.0 == -0.0 cannot hide a difference."""
    fields = {key: (type(value), repr(value)) for key, value in point.fields.items()}
    return point.measurement, dict(point.tags), fields, point.ts_ns


# -- round trips ---------------------------------------------------------------------------


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(points)
def test_every_encoded_point_parses_back_exactly(point: Point) -> None:
    line = LineEncoder().point(point)
    assert typed(parse_line(line)) == typed(point)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(points, min_size=1, max_size=12))
def test_a_body_of_encoded_points_parses_back_exactly_in_order(batch: list[Point]) -> None:
    """Strings may hold newlines: the body is cut into lines by the grammar, not at each one."""
    parsed = parse_body(encode_points(batch))
    assert parsed.refused == []
    assert [typed(point) for point in parsed.points] == [typed(point) for point in batch]
    assert parsed.lines == LineEncoder().lines(batch)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(points, min_size=1, max_size=8))
def test_parsing_then_encoding_gives_the_same_body(batch: list[Point]) -> None:
    body = encode_points(batch)
    assert encode_points(parse_body(body).points) == body


def test_the_documented_example_line() -> None:
    line = (
        "telemetry,area=dairy,line=filling,machine=filler,site=binh-duong "
        'product_temp=4.2,good_count=19271i,door_open=false,product="milk-1l",'
        'fill_pressure__quality="bad" 1763712000000000000'
    )
    point = parse_line(line)
    assert point == Point(
        "telemetry",
        {"area": "dairy", "line": "filling", "machine": "filler", "site": "binh-duong"},
        {
            "product_temp": 4.2,
            "good_count": 19271,
            "door_open": False,
            "product": "milk-1l",
            "fill_pressure__quality": "bad",
        },
        1763712000000000000,
    )
    assert type(point.fields["good_count"]) is int and type(point.fields["door_open"]) is bool


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("tank\\ level,a\\ b=c\\ d f\\ g=1i 5", Point("tank level", {"a b": "c d"}, {"f g": 1}, 5)),
        ("a\\,b,k\\,1=v\\,1 f\\,1=1i 5", Point("a,b", {"k,1": "v,1"}, {"f,1": 1}, 5)),
        ("a=b,k\\=1=v\\=1 f\\=1=1i 5", Point("a=b", {"k=1": "v=1"}, {"f=1": 1}, 5)),
        ('q"m,k"=v" f"=1i 5', Point('q"m', {'k"': 'v"'}, {'f"': 1}, 5)),
        ("C:\\m,k\\x=v\\x f\\x=1i 5", Point("C:\\m", {"k\\x": "v\\x"}, {"f\\x": 1}, 5)),
        ('m s="a \\"b\\" \\\\ c" 5', Point("m", {}, {"s": 'a "b" \\ c'}, 5)),
        ('m s="two\nlines" 5', Point("m", {}, {"s": "two\nlines"}, 5)),
        ('m s="back\\slash" 5', Point("m", {}, {"s": "back\\slash"}, 5)),  # kept, as InfluxDB
    ],
)
def test_escapes_read_back(line: str, expected: Point) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1.0),
        ("-1.5", -1.5),
        ("1.", 1.0),
        (".5", 0.5),
        ("1e-05", 1e-05),
        ("1.5E+300", 1.5e300),
        ("-0.0", -0.0),
        ("5e-324", 5e-324),
        ("-9223372036854775808i", -(2**63)),
        ("9223372036854775807i", 2**63 - 1),
        ("0i", 0),
        *[(word, True) for word in ("t", "T", "true", "True", "TRUE")],
        *[(word, False) for word in ("f", "F", "false", "False", "FALSE")],
    ],
)
def test_values_written_by_other_encoders_read_too(text: str, value: object) -> None:
    parsed = parse_line(f"m v={text} 1").fields["v"]
    assert type(parsed) is type(value) and repr(parsed) == repr(value)


LINE_PROTOCOL_FLOAT = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


@settings(max_examples=1000)
@given(st.text(st.sampled_from(list("0123456789.-+eE_ \tnaifNtyu٣²")), min_size=1, max_size=8))
def test_a_bare_value_is_a_float_exactly_when_line_protocol_says_so(text: str) -> None:
    """The parser reads floats with float() behind cheap checks; float() alone would also take
    '1_0', ' 1', '+1', 'nan' or digits of other scripts."""
    try:
        value = parse_line(f"m v={text} 1").fields["v"]
    except LineProtocolError:
        value = None
    if LINE_PROTOCOL_FLOAT.fullmatch(text) and math.isfinite(float(text)):
        assert type(value) is float and value == float(text)
    else:
        assert type(value) is not float


def test_tags_in_any_order_and_a_repeated_field_keep_influxdb_meaning() -> None:
    point = parse_line("m,z=1,a=2 f=1,f=2 7")
    assert point.tags == {"z": "1", "a": "2"}
    assert point.fields == {"f": 2.0}  # the last one wins, as in InfluxDB


def test_points_of_one_series_share_their_tags() -> None:
    body = b"m,machine=filler a=1 1\nm,machine=filler a=2 2\nm,machine=capper a=3 3"
    first, second, third = parse_body(body).points
    assert first.tags is second.tags and first.tags is not third.tags


# -- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("bad", "missing fields"),
        ("m ", "missing fields"),
        ("m  f=1 1", "missing fields"),
        (",t=1 f=1 1", "missing measurement"),
        ("m,t f=1 1", "missing tag value"),
        ("m,t= f=1 1", "missing tag value"),
        ("m,=x f=1 1", "missing tag key"),
        ("m,t=a=b f=1 1", "invalid tag format"),
        ("m,a=1,a=2 f=1 1", "duplicate tags"),
        ("m f 1", "invalid field format"),
        ("m f= 1", "missing field value"),
        ("m f=1,=2 1", "missing fields"),
        ('m f="abc 1', "unbalanced quotes"),
        ("m f=1", "missing timestamp"),
        ("m f=1 x", "bad timestamp"),
        ("m f=1 1.5", "bad timestamp"),
        ("m f=1 1 2", "point is invalid"),
        ("m f=1 9223372036854775807", "does not fit in 64 bits"),
        ("m f=1.0.0 1", "invalid number"),
        ("m f=+1 1", "invalid boolean"),
        ("m f=tru 1", "invalid boolean"),
        ("m f=1_000 1", "invalid number"),
        ("m f=NaN 1", "not finite"),
        ("m f=-inf 1", "not finite"),
        ("m f=1e999 1", "not finite"),
        ("m f=1u 1", "unsigned integers are not supported"),
        ("m f=9223372036854775808i 1", "does not fit in 64 bits"),
        ("m f=1 ١٢", "bad timestamp"),  # digits of other scripts are not digits here
        ("m,time=x f=1 1", "tag key 'time' is reserved"),
        ("m _field=1 1", "field key '_field' is reserved"),
        ("#m f=1 1", "starts with '#'"),
        ("m,t=a\\ f=1 1", "invalid tag format"),  # the space is escaped: one long tag value
        ("m,t=a\\\\b f=1 1", "backslash"),
        ("m,t=a\tb f=1 1", "control character"),
        (f'm s="{"x" * 65_536}" 1', "longer than 65535 bytes"),
    ],
)
def test_a_malformed_line_is_refused_with_the_reason(line: str, reason: str) -> None:
    with pytest.raises(LineProtocolError, match="unable to parse '") as refused:
        parse_line(line)
    assert reason in str(refused.value)


def test_a_body_keeps_its_good_lines_and_names_each_bad_one() -> None:
    body = (
        b"\n# a comment line\n"
        b"m f=1 1\n"
        b"m f= 2\n"
        b'm s="x 3\n'  # unbalanced: ends at the newline, the next line still reads
        b"m f=4 4\n"
        b"m f=\xff 5\n"  # not UTF-8: that line alone
        b"m f=6 6\n"
    )
    parsed = parse_body(body)
    assert [point.ts_ns for point in parsed.points] == [1, 4, 6]
    assert parsed.lines == ["m f=1 1", "m f=4 4", "m f=6 6"]
    assert [refused.reason for refused in parsed.refused] == [
        "missing field value",
        "unbalanced quotes",
        "invalid UTF-8",
    ]
    assert parsed.refused[0] == RefusedLine("m f= 2", "missing field value")
    assert parsed.refused[0].message == "unable to parse 'm f= 2': missing field value"


def test_an_empty_body_has_no_points() -> None:
    assert parse_body(b"") == parse_body("\n\n# only comments\n")
    assert parse_body(b"").points == [] and parse_body(b"").refused == []


def test_a_parser_reused_across_bodies_checks_every_line_again() -> None:
    """The caches hold checked names, never a verdict on a whole line."""
    parser = LineParser()
    assert parser.parse("m,t=1 f=1 1").fields == {"f": 1.0}
    with pytest.raises(LineProtocolError, match="missing field value"):
        parser.parse("m,t=1 f= 1")
    assert math.isclose(float(parser.parse("m,t=1 f=2 2").fields["f"]), 2.0)
