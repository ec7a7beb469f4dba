"""Durations as plant engineers write them: ``90``, ``"45s"``, ``"2m"``, ``"1h30m"``, ``"1.5h"``."""

from __future__ import annotations

import math
import re

__all__ = ["format_duration", "parse_duration"]

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_UNIT_S = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_UNIT_ORDER = tuple(_UNIT_S)


def parse_duration(value: object) -> float:
    """Seconds in a duration; a bare number is seconds. Units go largest first, each once.

    >>> parse_duration("1h30m"), parse_duration(45), parse_duration("250ms"), parse_duration("1.5h")
    (5400.0, 45.0, 0.25, 5400.0)
    >>> parse_duration("30s1m")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: duration '30s1m' is not like 90, 45s, 2m, 1h30m or 1.5h (units ...
    """
    # bool is an int to Python, but `at: yes` in YAML is a mistake, not one second.
    # ValueError, not TypeError: pydantic turns only ValueError into a validation message.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"duration {value!r} is not seconds or text like 90s, 2m, 1h30m")  # noqa: TRY004
    seconds = _parse_text(value) if isinstance(value, str) else float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"duration {value!r} must be a finite number of seconds >= 0")
    return seconds


def _parse_text(text: str) -> float:
    stripped = text.strip().replace(" ", "")
    try:
        return float(stripped)
    except ValueError:
        pass  # not a bare number: try units
    parts = _PART.findall(stripped)
    units = [unit for _, unit in parts]
    whole = "".join(number + unit for number, unit in parts) == stripped
    ordered = units == sorted(set(units), key=_UNIT_ORDER.index)
    if not parts or not whole or not ordered:
        raise ValueError(
            f"duration {text!r} is not like 90, 45s, 2m, 1h30m or 1.5h "
            "(units d, h, m, s, ms, largest first)"
        )
    return sum(float(number) * _UNIT_S[unit] for number, unit in parts)


def format_duration(seconds: float) -> str:
    """``5400`` -> ``'1h30m'``.

    >>> format_duration(5400), format_duration(42.5)
    ('1h30m', '42.5s')
    """
    whole = int(seconds)
    if whole != seconds or seconds < 60:
        return f"{seconds:g}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if n)
