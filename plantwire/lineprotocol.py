"""InfluxDB line protocol: one encoder for every write path (InfluxDB 1.x ``/write``, 2.x and 3.x).

A line is ``measurement,tag=value,... field=value,... timestamp``. The escaping rules are the
ones InfluxDB reads back unchanged (checked against a real influxd in the tests):

* measurement: ``,`` and space are escaped; a leading ``#`` would make the line a comment, so it
  is refused;
* tag keys, tag values and field keys: ``,``, ``=`` and space are escaped;
* names may hold a backslash, except where InfluxDB versions disagree on how to read it back
  (see :mod:`plantwire.names`); ``time``, ``_field`` and ``_measurement`` are refused as keys;
* string field values are quoted, with ``"`` and ``\\`` escaped; newlines are kept; a lone
  surrogate (text with no UTF-8 form) is refused here and, by :mod:`plantwire.names`, in names;
* integers get an ``i`` suffix and must fit in 64 bits; booleans are ``true``/``false``;
* floats are written in their shortest round-trip form; NaN and ±inf are refused, since
  InfluxDB cannot store them;
* timestamps are integer nanoseconds.

Anything that cannot be written raises :class:`~plantwire.errors.LineProtocolError`, with what
and why. Encoding is the gateway's hot path, so escaped names are cached and a batch's tag set is
escaped once.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Iterable, Mapping
from typing import NamedTuple, TypeAlias

import numpy as np
import orjson

from plantwire.errors import InvalidNameError, LineProtocolError
from plantwire.model import INT64_MAX, INT64_MIN, MAX_STRING_BYTES, Batch, ColumnSamples, Quality
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
        if not text.isascii():  # isascii is O(1) for str; only other text is encoded to check it
            _check_unicode(text, "string field value")
        if len(text) > MAX_STRING_BYTES // 4 and len(text.encode()) > MAX_STRING_BYTES:
            raise LineProtocolError(f"string field value is longer than {MAX_STRING_BYTES} bytes")
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return _format_foreign(value)


def _check_unicode(text: str, what: str) -> None:
    """Refuse a lone surrogate: it has no UTF-8 form, so the body could not be encoded."""
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise LineProtocolError(
            f"{what} {text[max(0, exc.start - 10) : exc.end + 10]!r} is not valid Unicode "
            "(it holds a lone surrogate)"
        ) from None


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
        self._templates: dict[tuple[tuple[str, ...], tuple[type, ...]], _Template | None] = {}

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

    def _template(self, shape: tuple[tuple[str, ...], tuple[type, ...]]) -> _Template | None:
        """How to write a row of this field set and these value types in one step, or None when
        a value type has no fast form (numpy scalars, say: those rows go field by field)."""
        if len(self._templates) >= _CACHE_LIMIT:
            self._templates.clear()
        keys, kinds = shape
        template: _Template | None = None
        if set(kinds) <= _FAST_TYPES:
            parts = [
                self._lookup(self._field_keys, key, "field key").replace("%", "%%")
                + ("%si" if kind is int else "%s")
                for key, kind in zip(keys, kinds, strict=True)
            ]
            template = _Template(
                ",".join(parts),
                tuple(i for i, kind in enumerate(kinds) if kind is int),
                tuple(i for i, kind in enumerate(kinds) if kind is str),
            )
        self._templates[shape] = template
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
            raise LineProtocolError(f"{exc} (fields {', '.join(map(repr, fields))})") from None

    def line(self, series: str, fields: Mapping[str, object], ts_ns: int) -> str:
        """One complete line for an already escaped series."""
        _check_timestamp(ts_ns)
        return f"{series} {self.fields(fields)} {ts_ns}"

    def rows(self, rows: Iterable[tuple[str, Mapping[str, object], int]]) -> list[str]:
        """Lines for many ``(series, fields, ts_ns)`` rows, in order.

        The common rows -- floats, integers, booleans and strings -- are formatted together:
        each row becomes a ``series key=%s,key=%si,... ts`` template for its field set and value
        types, orjson writes every number and boolean of every row in one call (in C: floats in
        the same shortest round-trip form as ``repr``, ``true``/``false``), strings are quoted
        one by one, and a single ``%`` fills every template at once. Rows with other value types
        are formatted field by field.
        """
        slow: dict[int, str] = {}  # row index -> line, for rows without a fast form
        fast_templates: list[str] = []
        fast_counts: list[int] = []  # fields per fast row
        flat: list[object] = []
        strings: list[tuple[int, object]] = []  # (position in flat, the string)
        last_series, escaped_series = "", ""
        templates = self._templates
        for index, (series, fields, ts_ns) in enumerate(rows):
            values = tuple(fields.values())
            # The template lookup is inlined: a call per row costs as much as the lookup.
            # None: not seen yet or no fast form; _fast_form tells those apart.
            template = templates.get((tuple(fields), tuple(map(type, values))))
            if (
                template is None
                or template.ints
                or type(ts_ns) is not int
                or not values
                or not INT64_MIN < ts_ns < INT64_MAX
            ):
                template = self._fast_form(fields, values, ts_ns)
            if template is None:
                slow[index] = self.line(series, fields, ts_ns)
                continue
            start = len(flat)
            flat.extend(values)
            for position in template.strings:
                strings.append((start + position, values[position]))
                flat[start + position] = (
                    0  # quoted separately: JSON escapes differ from line protocol's
                )
            if series is not last_series:
                last_series, escaped_series = series, series.replace("%", "%%")
            fast_templates.append(f"{escaped_series} {template.text} {ts_ns}")
            fast_counts.append(len(values))
        if not fast_templates:
            return list(slow.values())
        dumped = orjson.dumps(flat)
        if b"null" in dumped:  # orjson writes NaN and infinities as null: find and name it
            for value in flat:
                format_field_value(value)
        texts = dumped[1:-1].decode().split(",")
        for position, text in strings:
            texts[position] = format_field_value(text)
        # Names refuse control characters and numbers have none; a string with a newline keeps
        # it, so the filled lines are joined and split on the fast path only when none has one.
        if any("\n" in text for _, text in strings):  # type: ignore[operator]
            fast = self._fill_one_by_one(fast_templates, fast_counts, texts)
        else:
            fast = ("\n".join(fast_templates) % tuple(texts)).split("\n")
        if not slow:
            return fast
        merged = iter(fast)
        return [
            slow[index] if index in slow else next(merged) for index in range(len(fast) + len(slow))
        ]

    def _fast_form(
        self, fields: Mapping[str, object], values: tuple[object, ...], ts_ns: int
    ) -> _Template | None:
        """The template a row is written with in bulk, or None if it must go field by field."""
        shape = (tuple(fields), tuple(map(type, values)))
        template = self._templates.get(shape, _MISSING)
        if template is _MISSING:
            template = self._template(shape)
        if (
            template is None
            or not values
            or type(ts_ns) is not int
            or not INT64_MIN < ts_ns < INT64_MAX
        ):
            return None
        assert isinstance(template, _Template)
        for position in template.ints:
            if not INT64_MIN <= values[position] <= INT64_MAX:  # type: ignore[operator]
                format_field_value(values[position])  # raises, naming the value
        return template

    @staticmethod
    def _fill_one_by_one(templates: list[str], counts: list[int], texts: list[str]) -> list[str]:
        lines = []
        cursor = 0
        for template, count in zip(templates, counts, strict=True):
            lines.append(template % tuple(texts[cursor : cursor + count]))
            cursor += count
        return lines

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


_FAST_TYPES = frozenset({float, int, bool, str})
_MISSING = object()


class _Template(NamedTuple):
    text: str  # "key=%s,key=%si,..." with % in keys doubled
    ints: tuple[int, ...]  # positions of integer fields (their range is checked)
    strings: tuple[int, ...]  # positions of string fields (quoted one by one)


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
    samples = batch.samples
    if isinstance(samples, ColumnSamples) and len(samples):
        return encoder.rows(_column_rows(series, samples))
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


def _column_rows(
    series: str, samples: ColumnSamples
) -> list[tuple[str, Mapping[str, object], int]]:
    """One row per run of equal timestamps, built from the columns in C-sized steps.

    Samples of one reading share a timestamp and arrive together, so runs are long. Should the
    same timestamp come back later in the batch, it simply makes a second line for the same
    point, and InfluxDB merges the fields of both.
    """
    ts, metrics, values = samples.ts, samples.metrics, samples.values
    if ts.count(ts[0]) == len(ts):  # one reading (a small message's usual case): no numpy
        return [(series, dict(zip(metrics, values, strict=True)), ts[0])]
    stamps = np.fromiter(ts, dtype=np.int64, count=len(ts))
    cuts = [0, *(np.flatnonzero(stamps[1:] != stamps[:-1]) + 1).tolist(), len(ts)]
    return [
        (series, dict(zip(metrics[start:end], values[start:end], strict=True)), ts[start])
        for start, end in itertools.pairwise(cuts)
    ]
