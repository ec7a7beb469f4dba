"""Test helpers shared by the fault suites: counting what reached influxd, filling a disk."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from plantwire.influxql import quote_literal
from plantwire.model import AssetPath, Sample
from plantwire.testing.servers import InfluxClient

QUALITY_SUFFIX = "__quality"
Intake = Callable[[AssetPath, Sequence[Sample]], None]


def points_stored(influx: InfluxClient, site_id: str) -> tuple[int, int]:
    """(value fields, quality fields) of one site's telemetry in influxd, by InfluxQL COUNT.

    A sample with a value is one value field; one whose quality is not good also (or, without
    a value, only) writes ``<metric>__quality``, so both are counted apart.
    """
    rows = influx.rows(
        f"SELECT COUNT(*) FROM telemetry WHERE site = {quote_literal(site_id)} GROUP BY *"
    )
    values = quality = 0
    for row in rows:
        for column, count in row.items():
            if not column.startswith("count_") or count is None:
                continue
            if column.endswith(QUALITY_SUFFIX):
                quality += int(count)
            else:
                values += int(count)
    return values, quality


def fill_disk(folder: Path) -> int:
    """Take every free byte of ``folder``'s disk, as a runaway log would; the bytes taken."""
    taken = 0
    with (folder / "filler").open("wb", buffering=0) as filler, contextlib.suppress(OSError):
        while True:  # until ENOSPC: full
            taken += filler.write(b"\0" * 4096)
    return taken


def free_bytes(folder: Path) -> int:
    """Free space on ``folder``'s disk."""
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize
