"""Read InfluxDB line protocol back into points: the inverse of :mod:`plantwire.lineprotocol`.

The embedded store takes the gateway's request bodies as they are, so it needs to read what the
encoder writes. The parser accepts exactly the names and values the encoder can produce and
refuses everything else with a reason in InfluxDB's words (``unable to parse '<line>': missing
field value``), so a dead letter reads the same whichever backend refused the line:

* measurement: ``\\,`` and ``\\ `` are escapes; tag keys, tag values and field keys also take
  ``\\=``; a backslash before anything else is kept as it is (the encoder's names never put one
  before those characters, see :mod:`plantwire.names`);
* string values are quoted, with ``\\"`` and ``\\\\`` as escapes; they may hold newlines, so a
  body is cut into lines by the grammar, not at every newline;
* ``12i`` is an integer (int64), ``t``/``true``/``False``/... a boolean, any other number a
  float (NaN and ±inf refused); ``12u`` (unsigned) is refused, as InfluxDB 1.x refuses it;
* the timestamp is required: PlantWire stamps every point where it was measured, and a point
  stamped on arrival would duplicate itself on every redelivery instead of overwriting itself;
* names go through the encoder's checks (empty, control characters, ambiguous backslashes,
  ``time``/``_field``/``_measurement`` as keys, a measurement starting with ``#``), duplicate
  tag keys are refused, and a repeated field key keeps its last value, as in InfluxDB.

Blank lines and ``#`` comment lines in a body are skipped. Points of one series share one tags
dict (which also lets :class:`~plantwire.lineprotocol.LineEncoder` escape it once on the way back
out): treat it as read-only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple

from plantwire.errors import InvalidNameError, LineProtocolError
from plantwire.lineprotocol import FieldValue, Point
from plantwire.model import INT64_MAX, INT64_MIN, MAX_STRING_BYTES
from plantwire.names import check_influx_name

__all__ = ["LineParser", "ParsedBody", "RefusedLine", "parse_body", "parse_line"]

# The keys the encoder refuses (plantwire.lineprotocol): InfluxDB uses them for itself.
_RESERVED_KEYS = frozenset({"time", "_field", "_measurement"})
_CACHE_LIMIT = 50_000

# One token of each kind; an escape (backslash + any character) is consumed as a pair, which is
# safe because a name never holds a backslash before a character that could be an escape. Names
# and bare values never span a newline, so a bad line cannot swallow the good one after it. The
# patterns are "unrolled" (a run of plain characters, then escape + run, ...): Python's re takes
# a run in one step but an alternation one character at a time.
_MEASUREMENT = r"(?:[^\\, \n]|\\[^\n])[^\\, \n]*(?:\\[^\n][^\\, \n]*)*"
_KEY = r"(?:[^\\,= \n]|\\[^\n])[^\\,= \n]*(?:\\[^\n][^\\,= \n]*)*"
_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_VALUE = rf'{_STRING}|[^," \\\n]+'
_FIELD = rf"{_KEY}=(?:{_VALUE})"
_SERIES = rf"{_MEASUREMENT}(?:,{_KEY}={_KEY})*"
# DOTALL: a string value may span lines (and hold an escaped newline).
_LINE = re.compile(rf"({_SERIES}) ({_FIELD}(?:,{_FIELD})*) (-?[0-9]+)", re.DOTALL)
_SERIES_RE = re.compile(_SERIES)
_MEASUREMENT_RE = re.compile(_MEASUREMENT)
_KEY_RE = re.compile(_KEY)
_STRING_RE = re.compile(_STRING, re.DOTALL)
_BARE_RE = re.compile(r'[^," \\\n]+')
_TAG_RE = re.compile(rf"({_KEY})=({_KEY})")
_FIELD_RE = re.compile(rf"({_KEY})=({_VALUE})", re.DOTALL)
_FLOAT_FIRST = frozenset("-.0123456789")
_FLOAT_LAST = frozenset(".0123456789")
_INTEGER_RE = re.compile(r"-?[0-9]+")
_NAME_ESCAPE = re.compile(r"\\([,= ])")
_MEASUREMENT_ESCAPE = re.compile(r"\\([, ])")
_STRING_ESCAPE = re.compile(r'\\(["\\])')
_NOT_FINITE = frozenset({"nan", "inf", "infinity"})
_BOOLEANS = {
    **dict.fromkeys(("t", "T", "true", "True", "TRUE"), True),
    **dict.fromkeys(("f", "F", "false", "False", "FALSE"), False),
}


class _RefusedError(Exception):
    """A line that cannot be read; carries InfluxDB's wording of why (without the line)."""


class RefusedLine(NamedTuple):
    """A line of a body that was not read, and why (``unable to parse '<line>': <reason>``)."""

    line: str
    reason: str

    @property
    def message(self) -> str:
        return f"unable to parse '{self.line}': {self.reason}"


@dataclass(frozen=True)
class ParsedBody:
    """A body's points, each beside the text of its line, and the lines that were refused."""

    points: list[Point] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    refused: list[RefusedLine] = field(default_factory=list)


class LineParser:
    """Parses lines, remembering the series and field keys it has read and checked.

    One parser per writer; the caches are bounded like the encoder's. Not thread-safe: a writer
    that parses from several threads holds a lock around it.
    """

    def __init__(self) -> None:
        self._series: dict[str, tuple[str, dict[str, str]]] = {}
        self._field_keys: dict[str, str] = {}

    # -- public ---------------------------------------------------------------------------
    def parse(self, line: str) -> Point:
        """One line as a point; raises :class:`LineProtocolError` (InfluxDB's wording)."""
        try:
            return self._parse(line)
        except _RefusedError as exc:
            raise LineProtocolError(f"unable to parse '{line}': {exc}") from None

    def parse_body(self, body: bytes | str) -> ParsedBody:
        """Every line of a request body; bad lines are collected, never raised."""
        lossy = False
        if isinstance(body, bytes):
            try:
                text = body.decode()
            except UnicodeDecodeError:
                # Keep the good lines: only a line holding the bad bytes is refused.
                text, lossy = body.decode(errors="surrogateescape"), True
        else:
            text = body
        parsed = ParsedBody()
        if '"' in text:
            self._parse_quoted(text, parsed, lossy=lossy)
        else:
            for line in text.split("\n"):
                self._parse_into(line, None, parsed, lossy=lossy)
        return parsed

    # -- lines ----------------------------------------------------------------------------
    def _parse_quoted(self, text: str, parsed: ParsedBody, *, lossy: bool) -> None:
        """A body with quotes is cut into lines by the grammar, since a newline inside a string
        value is part of its line; a line that does not parse ends at the next newline."""
        position, end = 0, len(text)
        match_line = _LINE.match
        while position <= end:
            match = match_line(text, position)
            stop = match.end() if match is not None else -1
            if stop < 0 or (stop < end and text[stop] != "\n"):
                match = None
                stop = text.find("\n", position)
                stop = end if stop < 0 else stop
            self._parse_into(text[position:stop], match, parsed, lossy=lossy)
            position = stop + 1

    def _parse_into(
        self, line: str, match: re.Match[str] | None, parsed: ParsedBody, *, lossy: bool
    ) -> None:
        """Parse a line of a body (``match``: the grammar's match of it, when already made;
        ``lossy``: the body was not all UTF-8, so this line may hold undecodable bytes)."""
        if not line or line[0] == "#":
            return
        # surrogateescape turned each byte that is not UTF-8 into a lone surrogate.
        if lossy and any("\udc80" <= char <= "\udcff" for char in line):
            parsed.refused.append(RefusedLine(line, "invalid UTF-8"))
            return
        try:
            point = self._parse(line) if match is None else self._point(*match.groups())
        except _RefusedError as exc:
            parsed.refused.append(RefusedLine(line, str(exc)))
        else:
            parsed.points.append(point)
            parsed.lines.append(line)

    def _parse(self, line: str) -> Point:
        if "\\" in line or '"' in line:
            return self._parse_escaped(line)
        # Most lines hold neither escapes nor strings: exactly three parts split by spaces.
        parts = line.split(" ")
        if len(parts) != 3 or not parts[1]:
            raise _RefusedError(_diagnose(line))
        series, fields_text, stamp = parts
        measurement, tags = self._series_of(series)
        fields: dict[str, FieldValue] = {}
        keys = self._field_keys
        for pair in fields_text.split(","):
            key, equals, value = pair.partition("=")
            if not equals or not key or not value:
                raise _RefusedError(_diagnose(line))
            fields[keys.get(key) or self._field_key(key)] = _value(value)
        return Point(measurement, tags, fields, _timestamp(stamp))

    def _parse_escaped(self, line: str) -> Point:
        match = _LINE.fullmatch(line)
        if match is None:
            raise _RefusedError(_diagnose(line))
        return self._point(*match.groups())

    def _point(self, series: str, fields_text: str, stamp: str) -> Point:
        """A point from the three parts of a line that matched the grammar."""
        measurement, tags = self._series_of(series)
        keys, field_key = self._field_keys, self._field_key
        fields: dict[str, FieldValue] = {
            (keys.get(key) or field_key(key)): _value(value)
            for key, value in _FIELD_RE.findall(fields_text)
        }
        return Point(measurement, tags, fields, _timestamp(stamp))

    # -- names ----------------------------------------------------------------------------
    def _series_of(self, text: str) -> tuple[str, dict[str, str]]:
        known = self._series.get(text)
        if known is None:
            if len(self._series) >= _CACHE_LIMIT:
                self._series.clear()
            known = self._series[text] = _read_series(text)
        return known

    def _field_key(self, raw: str) -> str:
        key = self._field_keys.get(raw)
        if key is None:
            if len(self._field_keys) >= _CACHE_LIMIT:
                self._field_keys.clear()
            key = _check_key(_unescape_name(raw), "field key")
            self._field_keys[raw] = key
        return key


# -- pieces of a line ---------------------------------------------------------------------------


def _read_series(text: str) -> tuple[str, dict[str, str]]:
    """``measurement,key=value,...`` (escaped) as a checked name and tags."""
    if _SERIES_RE.fullmatch(text) is None:
        raise _RefusedError(_diagnose_series(text))
    head = _MEASUREMENT_RE.match(text)
    assert head is not None  # the series matched, so its measurement does
    measurement = head.group()
    if "\\" in measurement:
        measurement = _MEASUREMENT_ESCAPE.sub(r"\1", measurement)
    try:
        check_influx_name(measurement, "measurement")
    except InvalidNameError as exc:
        raise _RefusedError(str(exc)) from None
    if measurement.startswith("#"):
        raise _RefusedError(
            f"measurement {measurement!r} starts with '#', which marks a comment line"
        )
    tags: dict[str, str] = {}
    for raw_key, raw_value in _TAG_RE.findall(text, head.end()):
        key = _check_key(_unescape_name(raw_key), "tag key")
        if key in tags:
            raise _RefusedError("duplicate tags")
        tags[key] = _check_name(_unescape_name(raw_value), "tag value")
    return measurement, tags


def _unescape_name(raw: str) -> str:
    return _NAME_ESCAPE.sub(r"\1", raw) if "\\" in raw else raw


def _check_name(name: str, what: str) -> str:
    try:
        return check_influx_name(name, what)
    except InvalidNameError as exc:
        raise _RefusedError(str(exc)) from None


def _check_key(name: str, what: str) -> str:
    if name in _RESERVED_KEYS:
        raise _RefusedError(f"{what} {name!r} is reserved by InfluxDB")
    return _check_name(name, what)


def _value(text: str) -> FieldValue:
    """One field value, typed by its form: ``"..."``, ``12i``, ``true``, ``1.5``."""
    first, last = text[0], text[-1]
    if first == '"':
        return _string(text)
    # float() reads more than line protocol's floats: signs, underscores, spaces, nan, inf and
    # digits of other scripts. Those all fail one of these cheap checks, which cost far less
    # than matching a pattern; what passes is -?digits[.digits][e[+-]digits] or float() fails.
    if last in _FLOAT_LAST and first in _FLOAT_FIRST and "_" not in text and text.isascii():
        try:
            number = float(text)
        except ValueError:
            raise _RefusedError("invalid number") from None
        if number - number == 0.0:  # NaN and both infinities give NaN here
            return number
        raise _RefusedError(f"field value {text} is not finite; InfluxDB cannot store it")
    if last in "iu" and _INTEGER_RE.fullmatch(text, 0, len(text) - 1):
        if last == "u":
            raise _RefusedError(
                "unsigned integers are not supported (InfluxDB 1.x has no such type)"
            )
        integer = int(text[:-1])
        if INT64_MIN <= integer <= INT64_MAX:
            return integer
        raise _RefusedError(f"integer {text[:-1]} does not fit in 64 bits")
    boolean = _BOOLEANS.get(text)
    if boolean is not None:
        return boolean
    if text.lower().lstrip("+-") in _NOT_FINITE:
        raise _RefusedError(f"field value {text} is not finite; InfluxDB cannot store it")
    # InfluxDB's words: what starts like a number is an invalid number, the rest a bad boolean.
    raise _RefusedError("invalid number" if first in _FLOAT_FIRST else "invalid boolean")


def _string(text: str) -> str:
    body = text[1:-1]
    if "\\" in body:
        body = _STRING_ESCAPE.sub(r"\1", body)
    if len(body) > MAX_STRING_BYTES // 4 and len(body.encode()) > MAX_STRING_BYTES:
        raise _RefusedError(f"string field value is longer than {MAX_STRING_BYTES} bytes")
    return body


def _timestamp(text: str) -> int:
    if not _INTEGER_RE.fullmatch(text):
        raise _RefusedError("bad timestamp")
    stamp = int(text)
    # The encoder's range; InfluxDB's own is one narrower at the bottom (the stores check it).
    if not INT64_MIN < stamp < INT64_MAX:
        raise _RefusedError(f"timestamp {text} does not fit in 64 bits")
    return stamp


def _diagnose(line: str) -> str:
    """Why a line does not follow the grammar (called only for lines that do not)."""
    head = _SERIES_RE.match(line)
    if head is None:
        return "missing measurement"
    position = head.end()
    if position == len(line):
        return "missing fields"
    if line[position] != " ":
        return _diagnose_series(line)
    return _diagnose_fields(line, position + 1)


def _diagnose_series(text: str) -> str:
    """Why the ``measurement,key=value,...`` at the start of ``text`` does not follow the
    grammar (``text`` may go on with the fields)."""
    head = _SERIES_RE.match(text)
    if head is None:
        return "missing measurement"
    position, end = head.end(), len(text)
    if text[position] == "=":
        return "invalid tag format (an unescaped '=')"
    if text[position] != ",":
        return "invalid measurement or tag"
    tag = _KEY_RE.match(text, position + 1)
    if tag is None:
        return "missing tag key"
    after = tag.end()
    if after == end or text[after] != "=" or _KEY_RE.match(text, after + 1) is None:
        return "missing tag value"
    return "invalid tag format"


def _diagnose_fields(line: str, position: int) -> str:  # noqa: PLR0911  (one return per fault)
    end = len(line)
    while True:
        key = _KEY_RE.match(line, position)
        if key is None:
            return "missing fields"
        position = key.end()
        if position == end or line[position] != "=":
            return "invalid field format"
        position += 1
        if position == end or line[position] in ", ":
            return "missing field value"
        value = (_STRING_RE if line[position] == '"' else _BARE_RE).match(line, position)
        if value is None:
            return "unbalanced quotes" if line[position] == '"' else "invalid field format"
        position = value.end()
        if position == end:
            return "missing timestamp"
        if line[position] == " ":
            break
        if line[position] != ",":
            return "invalid field format"
        position += 1
    if _INTEGER_RE.fullmatch(line, position + 1):
        return "invalid line"  # every part reads on its own: nothing more precise to say
    return "point is invalid" if " " in line[position + 1 :] else "bad timestamp"


# -- conveniences -------------------------------------------------------------------------------


def parse_line(line: str) -> Point:
    """Parse one line with a fresh parser; prefer a long-lived :class:`LineParser`.

    >>> point = parse_line('telemetry,machine=filler temp=4.5,count=3i,on=true,product="milk" 17')
    >>> point.measurement, point.tags, point.ts_ns
    ('telemetry', {'machine': 'filler'}, 17)
    >>> point.fields
    {'temp': 4.5, 'count': 3, 'on': True, 'product': 'milk'}
    >>> parse_line("telemetry temp= 17")
    Traceback (most recent call last):
    ...
    plantwire.errors.LineProtocolError: unable to parse 'telemetry temp= 17': missing field value
    """
    return LineParser().parse(line)


def parse_body(body: bytes | str) -> ParsedBody:
    """Parse a request body with a fresh parser; prefer a long-lived :class:`LineParser`."""
    return LineParser().parse_body(body)
