"""The gateway's disk spool: batches of line protocol kept while InfluxDB cannot take them, and
replayed in order when it can.

SQLite in WAL mode; a batch is committed before the MQTT messages it came from are acknowledged,
so a gateway killed while InfluxDB is down loses nothing. The spool has a cap, counted in what
SQLite really uses (pages holding data, and room for the WAL), or less when its disk has less
room (:mod:`plantwire.sqlite_disk`): when it is full, the gateway stops taking messages and the
broker keeps them (back-pressure, not dropping). A full disk (``SQLITE_FULL``, something else
took the space) makes it full too: the batch that did not fit is held in memory by the writer,
and a replayed batch can always be deleted, with the reserve kept beside the file for that.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from plantwire.logs import LogOnce
from plantwire.sqlite_disk import is_disk_full, open_bounded

__all__ = ["Spool", "SpoolFullError"]

log = logging.getLogger("plantwire.gateway.spool")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    lines INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    body BLOB NOT NULL
);
"""


class SpoolFullError(Exception):
    """The spool's disk is full: the batch was not stored."""


class Spool:
    def __init__(self, path: str | Path, *, max_bytes: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._db, self.room = open_bounded(self.path, max_bytes)
        self._db.executescript(_SCHEMA)
        batches, lines, size = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(lines), 0), COALESCE(SUM(bytes), 0) FROM spool"
        ).fetchone()
        self.batches, self.lines, self.bytes = int(batches), int(lines), int(size)
        self._once = LogOnce(log)
        self.full = False
        self.refresh()

    @property
    def disk_bytes(self) -> int:
        """What SQLite uses for the spool: pages holding data, and the WAL."""
        return self.room.used_bytes()

    def refresh(self) -> None:
        """Measure whether the spool is full. A push or a pop does; the disk's free space can
        change without either, so a paused gateway looks again now and then. An empty spool is
        never full: there would be nothing to drain."""
        self.full = self.batches > 0 and self.room.data_bytes() >= self.room.limit_bytes()

    def push(self, body: bytes, lines: int) -> None:
        """Append a batch (committed when this returns); SpoolFullError on a full disk."""
        try:
            self._db.execute(
                "INSERT INTO spool (lines, bytes, body) VALUES (?, ?, ?)",
                (lines, len(body), body),
            )
        except sqlite3.Error as exc:
            if not is_disk_full(exc):
                raise
            self.full = True
            self._once.problem(
                "disk-full",
                "spool %s: its disk is full (%d bytes free); not taking messages until "
                "InfluxDB takes the spool back",
                self.path,
                self.room.free_bytes(),
            )
            raise SpoolFullError(f"the disk of the spool {self.path} is full") from exc
        self.batches += 1
        self.lines += lines
        self.bytes += len(body)
        self.refresh()

    def head(self) -> tuple[int, bytes, int] | None:
        """The oldest batch: (id, body, lines)."""
        row = self._db.execute("SELECT id, body, lines FROM spool ORDER BY id LIMIT 1").fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]), int(row[2]))

    def pop(self, batch_id: int) -> None:
        row = self._db.execute(
            "SELECT lines, bytes FROM spool WHERE id = ?", (batch_id,)
        ).fetchone()
        if row is None:
            return
        try:
            self._delete(batch_id)
        except sqlite3.Error as exc:
            if not is_disk_full(exc):
                raise
            # Not even a deletion fits: the reserve makes room for it.
            self.room.release_reserve()
            self.room.checkpoint()
            self._delete(batch_id)
        self.batches -= 1
        self.lines -= int(row[0])
        self.bytes -= int(row[1])
        if not self.room.has_reserve:
            self.room.shrink()
            self.room.keep_reserve()
        self.refresh()
        if not self.full:
            self._once.recovered("disk-full", "spool %s has room again", self.path)

    def _delete(self, batch_id: int) -> None:
        self._db.execute("DELETE FROM spool WHERE id = ?", (batch_id,))

    def close(self) -> None:
        self._db.close()
