"""What a decoder makes of one message, and the small rules every format shares: a value is
stored only as what it is, a time is converted exactly, an asset level is a valid name."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from plantwire.config.ingest import TimeUnit
from plantwire.errors import InvalidNameError, PayloadError
from plantwire.model import INT64_MAX, INT64_MIN, MAX_STRING_BYTES, AssetPath, Quality, Sample
from plantwire.names import check_metric_name, check_segment

__all__ = ["Readings", "Rejected", "asset_of", "plain_value", "sample", "time_ns"]

_NS_PER = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


@dataclass(frozen=True)
class Rejected:
    """A part of a message that is not a sample: which, why, and what it held."""

    where: str
    reason: str
    raw: object


@dataclass
class Readings:
    """One message's samples per asset, and what was refused inside it."""

    samples: dict[AssetPath, list[Sample]] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)

    def add(self, asset: AssetPath, item: Sample | Rejected) -> None:
        if isinstance(item, Rejected):
            self.rejected.append(item)
        else:
            self.samples.setdefault(asset, []).append(item)

    @property
    def count(self) -> int:
        return sum(map(len, self.samples.values()))


def asset_of(site: str, levels: dict[str, str]) -> AssetPath:
    """The asset a message is about; a PayloadError when a level is not a valid name."""
    try:
        return AssetPath(
            site,
            check_segment(levels["area"], "area id"),
            check_segment(levels["line"], "line id"),
            check_segment(levels["machine"], "machine id"),
        )
    except InvalidNameError as exc:
        raise PayloadError(str(exc)) from None


def time_ns(raw: object, unit: TimeUnit) -> int:
    """A time as the message says it, in nanoseconds since the epoch; ValueError when it is
    not one (a number for s/ms/us/ns, an RFC 3339 text for rfc3339)."""
    if unit == "rfc3339":
        if not isinstance(raw, str):
            raise ValueError(f"time must be an RFC 3339 text, got {_kind(raw)}")
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise ValueError(f"time {raw[:40]!r} is not RFC 3339") from None
        if moment.tzinfo is None:
            raise ValueError(f"time {raw[:40]!r} has no UTC offset")
        seconds = moment.timestamp()
        stamp = int(seconds) * 1_000_000_000 + moment.microsecond * 1_000
    elif isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError(f"time must be a number of {unit}, got {_kind(raw)}")
    elif isinstance(raw, float):
        if not math.isfinite(raw):
            raise ValueError("time is not finite")
        # Whole units and the fraction apart: the product in one float would round off the
        # nanoseconds of a time this far from 1970 (1.7e18 needs 61 bits).
        whole = math.floor(raw)
        stamp = whole * _NS_PER[unit] + round((raw - whole) * _NS_PER[unit])
    else:
        stamp = raw * _NS_PER[unit]
    if not 0 <= stamp < INT64_MAX:
        raise ValueError(f"time {raw!r} {unit} is outside 1970..2262")
    return stamp


def plain_value(raw: object) -> float | bool | str:
    """A value as stored: numbers as floats (one field type whatever a device sends, as
    Telegraf's parsers do), booleans and text as they are; ValueError otherwise."""
    if isinstance(raw, bool | str):
        if isinstance(raw, str) and len(raw.encode()) > MAX_STRING_BYTES:
            raise ValueError(f"text is longer than {MAX_STRING_BYTES} bytes")
        return raw
    if isinstance(raw, int):
        if not INT64_MIN <= raw <= INT64_MAX:
            raise ValueError("integer does not fit in 64 bits")
        return float(raw)
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise ValueError("value is not finite")
        return raw
    raise ValueError(f"value must be a number, true/false or text, got {_kind(raw)}")


def sample(
    where: str, ts_ns: int, metric: object, raw: object, quality: Quality
) -> Sample | Rejected:
    """A sample, or why this part of the message is not one."""
    try:
        name = check_metric_name(metric)
        if raw is None and quality is not Quality.GOOD:
            return Sample(ts_ns, name, None, quality)
        return Sample(ts_ns, name, plain_value(raw), quality)
    except (InvalidNameError, ValueError) as exc:
        return Rejected(where, str(exc), raw)


def _kind(raw: Any) -> str:
    if raw is None:
        return "null"
    return {dict: "an object", list: "a list", str: "text", bool: "true/false"}.get(
        type(raw), type(raw).__name__
    )
