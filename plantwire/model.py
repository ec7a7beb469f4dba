"""The sample model every part of PlantWire shares.

A :class:`Sample` is one reading of one metric: when the plant produced it (ns since the Unix
epoch, UTC), what it measured, the value, and how much to trust it. A :class:`Batch` is what one
edge agent publishes for one machine in one message, numbered so the gateway can see gaps.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple, TypeAlias, overload

from plantwire.errors import InvalidNameError
from plantwire.names import RESERVED_AREA_IDS, check_metric_name, check_segment

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_STRING_BYTES",
    "AssetPath",
    "Batch",
    "ColumnSamples",
    "Quality",
    "Sample",
    "Value",
    "check_value",
    "sample_problem",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# InfluxDB keeps at most 64 KiB of a string field.
MAX_STRING_BYTES = 65_535

Value: TypeAlias = float | int | bool | str | None


class Quality(StrEnum):
    """How far a value can be trusted (OPC UA's Good / Uncertain / Bad status classes)."""

    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


class Sample(NamedTuple):
    """One reading. ``value`` is None only when quality is not good (no value could be read)."""

    ts_ns: int
    metric: str
    value: Value
    quality: Quality = Quality.GOOD


def check_value(value: object, quality: Quality) -> str | None:  # noqa: PLR0911  (one return per type)
    """Return why a value is not storable, or None when it is.

    >>> check_value(72.5, Quality.GOOD) is None
    True
    >>> check_value(float("nan"), Quality.GOOD)
    'value is NaN or infinite'
    >>> check_value(None, Quality.GOOD)
    'value is missing but quality is good'
    """
    if isinstance(value, bool):  # before int: a bool is an int to Python, not to InfluxDB
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "value is NaN or infinite"
    if isinstance(value, int):
        return None if INT64_MIN <= value <= INT64_MAX else "integer does not fit in 64 bits"
    if isinstance(value, str):
        if len(value) > MAX_STRING_BYTES // 4 and len(value.encode()) > MAX_STRING_BYTES:
            return f"string is longer than {MAX_STRING_BYTES} bytes"
        return None
    if value is None:
        return None if quality is not Quality.GOOD else "value is missing but quality is good"
    return f"value has unsupported type {type(value).__name__}"


class AssetPath(NamedTuple):
    """Where a machine sits in the plant (ISA-95 style): site / area / line / machine."""

    site: str
    area: str
    line: str
    machine: str

    def validate(self) -> AssetPath:
        """Return self if every level is a valid topic segment, else raise InvalidNameError."""
        check_segment(self.site, "site id")
        check_segment(self.area, "area id")
        if self.area in RESERVED_AREA_IDS:
            raise InvalidNameError(
                f"area id {self.area!r} is reserved by PlantWire's topic tree "
                f"({', '.join(sorted(RESERVED_AREA_IDS))})"
            )
        check_segment(self.line, "line id")
        check_segment(self.machine, "machine id")
        return self

    def __str__(self) -> str:
        return "/".join(self)


class ColumnSamples(Sequence[Sample]):
    """Good-quality samples held as three columns, made into :class:`Sample` objects only if
    someone asks. The gateway's decoder produces these so the line-protocol encoder can work on
    the columns directly; to everyone else they are a sequence of samples like any other."""

    __slots__ = ("_rows", "metrics", "ts", "values")

    def __init__(self, ts: list[int], metrics: list[str], values: list[Value]) -> None:
        self.ts = ts
        self.metrics = metrics
        self.values = values
        self._rows: list[Sample] | None = None

    def _all(self) -> list[Sample]:
        if self._rows is None:
            self._rows = list(map(Sample, self.ts, self.metrics, self.values))
        return self._rows

    def __len__(self) -> int:
        return len(self.ts)

    @overload
    def __getitem__(self, index: int) -> Sample: ...
    @overload
    def __getitem__(self, index: slice) -> list[Sample]: ...
    def __getitem__(self, index: int | slice) -> Sample | list[Sample]:
        return self._all()[index]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ColumnSamples({self._all()!r})"


@dataclass(frozen=True, slots=True)
class Batch:
    """What one edge agent sends for one machine in one message.

    ``seq`` counts the edge's batches (all machines together), so the gateway can see gaps and
    duplicates per edge. ``sent_ns`` is the edge's wall clock when it published the batch (None
    when the sender did not say): the gateway compares it with its own to spot a wrong edge
    clock. It says nothing about the samples' times, which are the plant's.
    """

    edge_id: str
    seq: int
    asset: AssetPath
    samples: Sequence[Sample]
    sent_ns: int | None = None

    def validate(self) -> Batch:
        """Check ids, asset path and every sample; raise ValueError on the first problem."""
        check_segment(self.edge_id, "edge id")
        if type(self.seq) is not int or not 0 <= self.seq <= INT64_MAX:
            raise ValueError(
                f"batch sequence number must be a non-negative integer, got {self.seq!r}"
            )
        if self.sent_ns is not None and (
            type(self.sent_ns) is not int or not 0 <= self.sent_ns <= INT64_MAX
        ):
            raise ValueError(
                f"batch send time must be a non-negative integer of nanoseconds, "
                f"got {self.sent_ns!r}"
            )
        self.asset.validate()
        for index, sample in enumerate(self.samples):
            problem = sample_problem(sample)
            if problem:
                raise ValueError(f"sample {index} ({sample.metric!r}): {problem}")
        return self


def sample_problem(sample: Sample) -> str | None:
    """Why a sample cannot be stored, or None."""
    if type(sample.ts_ns) is not int or not 0 <= sample.ts_ns <= INT64_MAX:
        return "timestamp must be a non-negative integer of nanoseconds"
    try:
        check_metric_name(sample.metric)
    except InvalidNameError as exc:
        return str(exc)
    quality: object = sample.quality  # typed, but a caller may still pass a plain string
    if not isinstance(quality, Quality):
        return f"quality must be one of {', '.join(Quality)}"
    return check_value(sample.value, quality)
