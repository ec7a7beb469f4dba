"""What a name may contain, so that it survives every place PlantWire puts it.

An asset id (site, area, line, machine) becomes an MQTT topic segment and an InfluxDB tag value;
an edge id becomes a topic segment and an MQTT client id; a metric name becomes an InfluxDB field
key. The rules below refuse exactly what would break one of those places, with a reason a plant
engineer can act on.

Backslashes deserve a word: InfluxDB 1.x and 2.x disagree on how a backslash before a space,
comma, equals sign, quote or another backslash (or at the end of a name) is read back, so such a
name would not come back identical. A lone backslash elsewhere (``C:\\line``) is kept as it is.
"""

from __future__ import annotations

import re

from plantwire.errors import InvalidNameError

__all__ = [
    "MAX_NAME_LENGTH",
    "QUALITY_SUFFIX",
    "RESERVED_AREA_IDS",
    "RESERVED_METRIC_NAMES",
    "check_influx_name",
    "check_metric_name",
    "check_segment",
]

MAX_NAME_LENGTH = 256
# Telemetry tags share a series with metric fields; a field with a tag's name cannot be queried.
RESERVED_METRIC_NAMES = frozenset(
    {"time", "site", "area", "line", "machine", "_field", "_measurement"}
)
# Levels of the topic tree that PlantWire itself uses beside the areas of a site.
RESERVED_AREA_IDS = frozenset({"alerts", "deadletter", "services"})
# Quality other than good is stored in a companion field ``<metric>__quality``.
QUALITY_SUFFIX = "__quality"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_AMBIGUOUS_BACKSLASH = re.compile(r'\\(?=[\\ ,="]|$)')
_TOPIC_FORBIDDEN = re.compile(r"[/+#]")
# Segments found valid, so the same machine's names are not checked again on every message
# (whatever a segment names, the rules are the same); bounded against floods of new names.
_VALID_SEGMENTS: dict[str, None] = {}
_VALID_SEGMENTS_LIMIT = 100_000


def check_influx_name(name: object, what: str = "name") -> str:
    """Refuse a name InfluxDB could not store and read back unchanged; return it otherwise.

    >>> check_influx_name("Tank 1, outlet=open")
    'Tank 1, outlet=open'
    >>> check_influx_name("bad\\\\")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    plantwire.errors.InvalidNameError: name 'bad\\\\' ends with a backslash or has one before ...
    """
    if not isinstance(name, str):
        raise InvalidNameError(f"{what} must be a string, not {type(name).__name__}")
    if not name:
        raise InvalidNameError(f"{what} is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"{what} is longer than {MAX_NAME_LENGTH} characters")
    if _CONTROL.search(name):
        raise InvalidNameError(f"{what} {name!r} contains a control character")
    if not name.isascii() and _SURROGATE.search(name):  # no UTF-8 form: no topic, no line
        raise InvalidNameError(f"{what} {name!r} is not valid Unicode (it holds a lone surrogate)")
    if name != name.strip():
        raise InvalidNameError(f"{what} {name!r} starts or ends with white space")
    if _AMBIGUOUS_BACKSLASH.search(name):
        raise InvalidNameError(
            f'{what} {name!r} ends with a backslash or has one before \\, space, comma, = or " '
            "(InfluxDB cannot read that back unchanged)"
        )
    return name


def check_segment(segment: object, what: str = "segment") -> str:
    """Check one level of the topic tree (site, area, line, machine or edge id).

    >>> check_segment("filling-line-1")
    'filling-line-1'
    >>> check_segment("line/1", "line id")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    plantwire.errors.InvalidNameError: line id 'line/1' contains '/', '+' or '#', which MQTT ...
    """
    if type(segment) is str and segment in _VALID_SEGMENTS:
        return segment
    name = check_influx_name(segment, what)
    if _TOPIC_FORBIDDEN.search(name):
        raise InvalidNameError(
            f"{what} {name!r} contains '/', '+' or '#', which MQTT reserves for its topic tree"
        )
    if name.startswith("$"):
        raise InvalidNameError(f"{what} {name!r} starts with '$', which MQTT reserves for brokers")
    if len(_VALID_SEGMENTS) < _VALID_SEGMENTS_LIMIT:
        _VALID_SEGMENTS[name] = None
    return name


def check_metric_name(name: object) -> str:
    """Check a metric name, which becomes an InfluxDB field key.

    >>> check_metric_name("spindle_speed")
    'spindle_speed'
    >>> check_metric_name("time")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    plantwire.errors.InvalidNameError: metric name 'time' is reserved (time, site, area, ...
    """
    checked = check_influx_name(name, "metric name")
    if checked in RESERVED_METRIC_NAMES:
        raise InvalidNameError(
            f"metric name {checked!r} is reserved "
            "(time, site, area, line, machine are InfluxDB columns of every telemetry point)"
        )
    if checked.endswith(QUALITY_SUFFIX):
        raise InvalidNameError(
            f"metric name {checked!r} ends with {QUALITY_SUFFIX!r}, which holds sample quality"
        )
    return checked
