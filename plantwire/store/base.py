"""The time-series store interface every backend implements (InfluxDB now, embedded SQLite later).

Writers hand over :class:`~plantwire.lineprotocol.Point` objects; readers get one series' fields
over a time range as numpy arrays (:class:`SeriesBlock`), since analytics (OEE, anomaly scoring,
training) work on whole columns, never on one row at a time.

Value types, the same for every backend:

* floats come back as ``float64``, with NaN where the field has no value at that time;
* integers come back as ``float64`` too, so a column never changes type with its contents; a
  count above 2**53 (9.0e15) loses its last digits, far beyond any plant counter;
* booleans come back as ``float64`` 0.0/1.0 (NaN missing), ready for arithmetic;
* strings (products, ``<metric>__quality``) come back as ``object`` arrays holding ``str`` or
  ``None``.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Self, runtime_checkable

import numpy as np

from plantwire.errors import PlantWireError
from plantwire.lineprotocol import Point

if TYPE_CHECKING:
    from plantwire.store.influx_write import WriteResult

__all__ = ["LineWriter", "SeriesBlock", "Store", "StoreError", "read_arguments"]


class StoreError(PlantWireError):
    """A write or read the store could not do; the message says what the database answered."""


# eq=False: comparing numpy arrays gives arrays, so a generated __eq__ could only raise.
@dataclass(frozen=True, eq=False)
class SeriesBlock:
    """One series' (one machine's tag set's) fields over a time range, as columns.

    ``time_ns`` is int64 nanoseconds, ascending; every array in ``fields`` has the same length,
    one value per timestamp (see the module docstring for the types). If the tags given to
    :meth:`Store.read` match several series, their points are merged in time order, so equal
    timestamps may repeat.
    """

    time_ns: np.ndarray
    fields: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.time_ns)

    @classmethod
    def empty(cls, fields: Iterable[str], string_fields: Iterable[str] = ()) -> SeriesBlock:
        """A block without points that still holds every requested field (as empty arrays)."""
        strings = set(string_fields)
        return cls(
            time_ns=np.empty(0, dtype=np.int64),
            fields={
                name: np.empty(0, dtype=object if name in strings else np.float64)
                for name in fields
            },
        )


def read_arguments(fields: Sequence[str], start_ns: int, end_ns: int) -> tuple[list[str], int, int]:
    """A read's field names (once each, in the order asked) and time bounds, checked the same
    way by every backend."""
    if isinstance(fields, str):
        raise TypeError("fields must be a sequence of field names, not one string")
    names = list(dict.fromkeys(fields))
    if not names:
        raise ValueError("read needs at least one field")
    return names, operator.index(start_ns), operator.index(end_ns)


class LineWriter(Protocol):
    """The gateway's write path into a store: a body of line protocol in, the store's answer out
    (sorted as InfluxDB's: :class:`~plantwire.store.influx_write.WriteResult`), never an
    exception for what the store does."""

    async def write(self, body: bytes) -> WriteResult: ...

    async def close(self) -> None: ...


@runtime_checkable
class Store(Protocol):
    """Write points and read fields of one series back, whatever database holds them."""

    def write_points(self, points: Iterable[Point]) -> int:
        """Write points; return how many were written. Raises :class:`StoreError`."""
        ...

    def read(
        self,
        measurement: str,
        fields: Sequence[str],
        *,
        tags: Mapping[str, str],
        start_ns: int,
        end_ns: int,
    ) -> SeriesBlock:
        """The points in ``[start_ns, end_ns)`` of the series whose tags equal ``tags``.

        Every given tag must match exactly. A point is returned when it has at least one of the
        requested fields; the others are NaN (or None for strings) there. With no points, every
        requested field is still present, as an empty array. Raises :class:`StoreError`.
        """
        ...

    def tag_values(
        self, measurement: str, tag: str, *, where: Mapping[str, str] | None = None
    ) -> list[str]:
        """The distinct values of ``tag`` in ``measurement`` (sorted), among series whose other
        tags equal ``where``. Raises :class:`StoreError`."""
        ...

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...
