"""The gateway's disk spool: batches of line protocol kept while InfluxDB cannot take them, and
replayed in order when it can.

SQLite in WAL mode; a batch is committed before the MQTT messages it came from are acknowledged,
so a gateway killed while InfluxDB is down loses nothing. The spool has a cap: when it is full,
the gateway stops taking messages and the broker keeps them (back-pressure, not dropping).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["Spool"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    lines INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    body BLOB NOT NULL
);
"""


class Spool:
    def __init__(self, path: str | Path, *, max_bytes: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        batches, lines, size = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(lines), 0), COALESCE(SUM(bytes), 0) FROM spool"
        ).fetchone()
        self.batches, self.lines, self.bytes = int(batches), int(lines), int(size)

    @property
    def full(self) -> bool:
        return self.bytes >= self.max_bytes

    def push(self, body: bytes, lines: int) -> None:
        """Append a batch (committed when this returns)."""
        self._db.execute(
            "INSERT INTO spool (lines, bytes, body) VALUES (?, ?, ?)", (lines, len(body), body)
        )
        self.batches += 1
        self.lines += lines
        self.bytes += len(body)

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
        self._db.execute("DELETE FROM spool WHERE id = ?", (batch_id,))
        self.batches -= 1
        self.lines -= int(row[0])
        self.bytes -= int(row[1])

    def close(self) -> None:
        self._db.close()
