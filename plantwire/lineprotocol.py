"""InfluxDB line protocol: one encoder for every write path (InfluxDB 1.x ``/write``, 2.x and 3.x).

A line is ``measurement,tag=value,... field=value,... timestamp``. The escaping rules are the
ones InfluxDB reads back unchanged (checked against a real influxd in the tests):

* measurement: ``,`` and space are escaped; a leading ``#`` would make the line a comment, so it
  is refused;
* tag keys, tag values and field keys: ``,``, ``=`` and space are escaped;
* names may hold a backslash, except where InfluxDB versions disagree on how to read it back
  (see :mod:`plantwire.names`); ``time``, ``_field`` and ``_measurement`` are refused as keys;
* string field values are quoted, with ``"`` and ``\\`` escaped; newlines are kept;
* integers get an ``i`` suffix and must fit in 64 bits; booleans are ``true``/``false``;
* floats are written in their shortest round-trip form; NaN and ±inf are refused, since
  InfluxDB cannot store them;
* timestamps are integer nanoseconds.

Anything that cannot be written raises :class:`~plantwire.errors.LineProtocolError`, with what
and why. Encoding is the gateway's hot path, so escaped names are cached and a batch's tag set is
escaped once.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from typing import NamedTuple, TypeAlias

import orjson

from plantwire.errors import InvalidNameError, LineProtocolError
from plantwire.model import INT64_MAX, INT64_MIN, MAX_STRING_BYTES, Batch, Quality
from plantwire.names import QUALITY_SUFFIX, check_influx_name

__all__ = [
    "TELEMETRY_MEASUREMENT",
    "FieldValue",
    "LineEncoder",
    "Point",
    "batch_lines",
    "encode_points",
    "format_field_value",
]

TELEMETRY_MEASUREMENT = "telemetry"
_RESERVED_KEYS = frozenset({"time", "_field", "_measurement"})
_CACHE_LIMIT = 50_000

FieldValue: TypeAlias = float | int | bool | str


class Point(NamedTuple):
    """One InfluxDB point: a series (measurement + tags), its fields, and a timestamp in ns."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    ts_ns: int


def _escape_measurement(name: str) -> str:
    try:
        check_influx_name(name, "measurement")
    except InvalidNameError as exc:
        raise LineProtocolError(str(exc)) from None
    if name.startswith("#"):
        raise LineProtocolError(f"measurement {name!r} starts with '#', which marks a comment line")
    return name.replace(",", "\\,").replace(" ", "\\ ")


def _escape_name(name: str, what: str) -> str:
    try:
        check_influx_name(name, what)
    except InvalidNameError as exc:
        raise LineProtocolError(str(exc)) from None
    return name.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _escape_key(name: str, what: str) -> str:
    if name in _RESERVED_KEYS:
        raise LineProtocolError(f"{what} {name!r} is reserved by InfluxDB")
    return _escape_name(name, what)


def format_field_value(value: object) -> str:
    """Format one field value.

    >>> format_field_value(72.5), format_field_value(3), format_field_value(True)
    ('72.5', '3i', 'true')
    >>> format_field_value('say "hi"')
    '"say \\\\"hi\\\\""'
    >>> format_field_value(float("nan"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    plantwire.errors.LineProtocolError: field value nan is not finite; ...
    """
    kind = type(value)
    if kind is float:
        # x - x is 0.0 for every finite float and NaN for NaN and both infinities.
        if value - value == 0.0:  # type: ignore[operator]
            return repr(value)
        raise LineProtocolError(
            f"field value {value!r} is not finite; InfluxDB cannot store NaN or infinity"
        )
    if kind is int:
        if INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
            return f"{value}i"
        raise LineProtocolError(f"integer field value {value} does not fit in 64 bits")
    if kind is bool:
        return "true" if value else "false"
    if kind is str:
        text: str = value  # type: ignore[assignment]
        if len(text) > MAX_STRING_BYTES // 4 and len(text.encode()) > MAX_STRING_BYTES:
            raise LineProtocolError(f"string field value is longer than {MAX_STRING_BYTES} bytes")
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return _format_foreign(value)


def _format_foreign(value: object) -> str:
    """Numbers from numpy and friends: write them as the Python type they stand for."""
    if isinstance(value, bool) or type(value).__name__ in ("bool", "bool_"):
        return format_field_value(bool(value))
    if isinstance(value, numbers.Integral):
        return format_field_value(int(value))
    if isinstance(value, numbers.Real):
        return format_field_value(float(value))
    raise LineProtocolError(f"field value of type {type(value).__name__} cannot be written")


class LineEncoder:
    """Encodes points into line protocol, remembering the names it has escaped.

    One encoder per writer; the caches are bounded so a stream of ever-new names cannot grow
    memory without limit. Rows whose fields are all floats (the common case for machine
    signals) take a fast path: their values are formatted together by orjson, which writes the
    same shortest round-trip form as ``repr`` at a fraction of the cost, and each line is
    assembled from a per-field-set template in one step.
    """

    def __init__(self) -> None:
        self._measurements: dict[str, str] = {}
        self._tag_keys: dict[str, str] = {}
        self._tag_values: dict[str, str] = {}
        self._field_keys: dict[str, str] = {}  # escaped key with its '=' appended
        self._templates: dict[tuple[str, ...], str] = {}  # field-key set -> line template

    # -- names --------------------------------------------------------------------------
    def _cached(self, cache: dict[str, str], name: str, what: str) -> str:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        if type(name) is not str:
            raise LineProtocolError(f"{what} must be a string, not {type(name).__name__}")
        if what == "measurement":
            escaped = _escape_measurement(name)
        elif what == "field key":
            escaped = _escape_key(name, what) + "="
        elif what == "tag key":
            escaped = _escape_key(name, what)
        else:
            escaped = _escape_name(name, what)
        cache[name] = escaped
        return escaped

    def _lookup(self, cache: dict[str, str], name: str, what: str) -> str:
        escaped = cache.get(name)
        return escaped if escaped is not None else self._cached(cache, name, what)

    def series(self, measurement: str, tags: Mapping[str, str]) -> str:
        """The escaped ``measurement,tag=value,...`` prefix, tags sorted by key."""
        try:
            parts = [self._lookup(self._measurements, measurement, "measurement")]
            parts += [
                self._lookup(self._tag_keys, key, "tag key")
                + "="
                + self._lookup(self._tag_values, tags[key], "tag value")
                for key in sorted(tags)
            ]
        except TypeError as exc:  # unhashable or unsortable names
            raise LineProtocolError(f"tags must map strings to strings ({exc})") from None
        return ",".join(parts)

    def _template(self, keys: tuple[str, ...]) -> str:
        """``key1=%s,key2=%s,...`` for a field-key set (escaped, with ``%`` doubled)."""
        if len(self._templates) >= _CACHE_LIMIT:
            self._templates.clear()
        template = ",".join(
            self._lookup(self._field_keys, key, "field key").replace("%", "%%") + "%s"
            for key in keys
        )
        self._templates[keys] = template
        return template

    # -- fields and lines ---------------------------------------------------------------
    def fields(self, fields: Mapping[str, object]) -> str:
        """The escaped ``field=value,...`` part; a point needs at least one field."""
        if not fields:
            raise LineProtocolError("a point needs at least one field")
        keys = self._field_keys
        fmt = format_field_value
        try:
            return ",".join(
                [
                    (keys.get(k) or self._cached(keys, k, "field key")) + fmt(v)
                    for k, v in fields.items()
                ]
            )
        except LineProtocolError as exc:
            raise LineProtocolError(f"{exc} (fields {', '.join(map(str, fields))})") from None

    def line(self, series: str, fields: Mapping[str, object], ts_ns: int) -> str:
        """One complete line for an already escaped series."""
        _check_timestamp(ts_ns)
        return f"{series} {self.fields(fields)} {ts_ns}"

    def rows(self, rows: Iterable[tuple[str, Mapping[str, object], int]]) -> list[str]:
        """Lines for many ``(series, fields, ts_ns)`` rows, in order.

        Rows whose fields are all floats (machine signals, the bulk of telemetry) are formatted
        together: each becomes a ``series key=%s,... ts`` template, orjson writes all their
        values in one call (in C, the same shortest round-trip form as ``repr``), and a single
        ``%`` fills every template at once. Other rows are formatted field by field.
        """
        templates = self._templates
        slow: dict[int, str] = {}  # row index -> line, for rows that were not all floats
        fast_templates: list[str] = []
        floats: list[object] = []
        last_series, escaped_series = "", ""
        for index, (series, fields, ts_ns) in enumerate(rows):
            values = fields.values()
            if (
                set(map(type, values)) == _ONLY_FLOAT
                and type(ts_ns) is int
                and INT64_MIN < ts_ns < INT64_MAX
            ):
                if series is not last_series:
                    last_series, escaped_series = series, series.replace("%", "%%")
                keys = tuple(fields)
                template = templates.get(keys) or self._template(keys)
                fast_templates.append(f"{escaped_series} {template} {ts_ns}")
                floats.extend(values)
            else:
                slow[index] = self.line(series, fields, ts_ns)
        if not floats:
            return list(slow.values())
        dumped = orjson.dumps(floats)
        if b"null" in dumped:  # orjson writes NaN and infinities as null: find and name it
            for value in floats:
                format_field_value(value)
        texts = tuple(dumped[1:-1].decode().split(","))
        # Fast lines hold no newline: names refuse control characters, floats have none.
        fast = ("\n".join(fast_templates) % texts).split("\n")
        if not slow:
            return fast
        merged = iter(fast)
        return [
            slow[index] if index in slow else next(merged) for index in range(len(fast) + len(slow))
        ]

    def point(self, point: Point) -> str:
        return self.line(self.series(point.measurement, point.tags), point.fields, point.ts_ns)

    def lines(self, points: Iterable[Point]) -> list[str]:
        """Lines for many points; consecutive points with the same tags share one series."""
        last_measurement: str | None = None
        last_tags: Mapping[str, str] | None = None
        series = ""
        rows: list[tuple[str, Mapping[str, object], int]] = []
        for point in points:
            # Identity, not equality: comparing tag dicts would cost as much as escaping them.
            if point.tags is not last_tags or point.measurement != last_measurement:
                series = self.series(point.measurement, point.tags)
                last_tags, last_measurement = point.tags, point.measurement
            rows.append((series, point.fields, point.ts_ns))
        return self.rows(rows)

    def encode(self, points: Iterable[Point]) -> bytes:
        """Encode many points into one request body (lines joined by newlines)."""
        return "\n".join(self.lines(points)).encode()


def _check_timestamp(ts_ns: object) -> None:
    if type(ts_ns) is not int or not INT64_MIN < ts_ns < INT64_MAX:
        raise LineProtocolError(f"timestamp {ts_ns!r} must be an integer of nanoseconds")


_ONLY_FLOAT = {float}


def encode_points(points: Iterable[Point]) -> bytes:
    """Encode points with a fresh encoder; prefer a long-lived :class:`LineEncoder`."""
    return LineEncoder().encode(points)


def batch_lines(
    encoder: LineEncoder, batch: Batch, measurement: str = TELEMETRY_MEASUREMENT
) -> list[str]:
    """Turn a telemetry batch into lines: one line per timestamp, one field per metric.

    A sample with quality other than good also writes ``<metric>__quality``; a sample with no
    value (bad quality) writes only that field, so the gap and its reason are both visible.
    """
    asset = batch.asset
    series = encoder.series(
        measurement,
        {"site": asset.site, "area": asset.area, "line": asset.line, "machine": asset.machine},
    )
    by_time: dict[int, dict[str, object]] = {}
    good = Quality.GOOD
    for ts, metric, value, quality in batch.samples:
        fields = by_time.get(ts)
        if fields is None:
            fields = by_time[ts] = {}
        if value is not None:
            fields[metric] = value
        if quality is not good:
            fields[metric + QUALITY_SUFFIX] = quality.value
    return encoder.rows([(series, fields, ts) for ts, fields in by_time.items()])
