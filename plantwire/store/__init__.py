"""The time-series store: one interface (:class:`Store`), an InfluxDB backend and its writers.

The gateway writes with :func:`make_writer` (a :class:`WriteResult` per body, never an exception);
analytics reads and writes through a :class:`Store`.
"""

from plantwire.store.base import SeriesBlock, Store, StoreError
from plantwire.store.influx import InfluxStore
from plantwire.store.influx_write import (
    InfluxV1Writer,
    InfluxV2Writer,
    WriteOutcome,
    WriteResult,
    make_writer,
)

__all__ = [
    "InfluxStore",
    "InfluxV1Writer",
    "InfluxV2Writer",
    "SeriesBlock",
    "Store",
    "StoreError",
    "WriteOutcome",
    "WriteResult",
    "make_writer",
]
