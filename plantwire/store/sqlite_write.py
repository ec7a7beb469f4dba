"""The gateway's write path into the embedded store: line-protocol bodies into a SQLite file.

:class:`SqliteLineWriter` keeps the gateway's ``LineWriter`` contract (``async write(body) ->
WriteResult``, never raising for what the database does) and answers as InfluxDB would, so the
gateway acts on it without knowing which store is behind it:

=======================================  ===============  ====================================
what happened                            outcome, status  what the gateway does
=======================================  ===============  ====================================
every line stored                        ``OK``, 204      acknowledge
some lines refused: unparsable, a        ``BAD_REQUEST``, split until the refused lines stand
timestamp outside InfluxDB's range, a    400              alone, dead-letter them with the
field type conflict; the others stored                    message, which is InfluxDB's
the file is busy (another writer held    ``RETRY``,       retry with backoff, then spool
it past the timeout)                     None
the file cannot be opened or used (not   ``UNREACHABLE``, spool, and replay once a write
a database, corrupt, unwritable, disk    None             works again
full)
=======================================  ===============  ====================================

The status is the one InfluxDB answers in the same case, so logs, metrics and dead letters
read alike for both backends; None means no answer, as for a network failure. As with
InfluxDB's partial writes, the good lines of a body with bad ones are stored at once: when the
gateway splits the body and writes the halves again, they overwrite themselves.

Parsing and the SQLite transaction run in a worker thread: both hold the CPU for milliseconds
per 5,000 lines, which the event loop must not wait for. After a failure of the file the store
is opened afresh on the next write, so a file that was replaced or repaired is picked up.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from plantwire.lineprotocol_parse import LineParser, ParsedBody
from plantwire.store.base import StoreError
from plantwire.store.influx_write import WriteOutcome, WriteResult
from plantwire.store.sqlite import InsertReport, SqliteStore

__all__ = ["SqliteLineWriter", "make_sqlite_writer"]

_MAX_MESSAGE_CHARS = 4096  # as influx_message: a refused line may quote 64 KiB of string
# SQLite's primary result codes for "someone else holds the file" (SQLITE_BUSY, SQLITE_LOCKED):
# worth retrying. Extended codes carry the primary one in their low byte.
_BUSY_CODES = (5, 6)


class SqliteLineWriter:
    """Writes line-protocol bodies into a :class:`SqliteStore` at ``path``."""

    def __init__(self, path: str | Path, *, timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self._parser = LineParser()
        self._parser_lock = threading.Lock()
        self._store: SqliteStore | None = None
        self._store_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SqliteLineWriter(path={str(self.path)!r})"

    async def write(self, body: bytes) -> WriteResult:
        """Write one body of lines; never raises for what the file or its contents do."""
        if not body:
            return WriteResult(WriteOutcome.OK, None, "nothing to write")
        return await asyncio.to_thread(self.write_blocking, body)

    def write_blocking(self, body: bytes) -> WriteResult:
        """:meth:`write` in the calling thread (for tools and tests without an event loop)."""
        if not body:
            return WriteResult(WriteOutcome.OK, None, "nothing to write")
        with self._parser_lock:
            parsed = self._parser.parse_body(body)
        store: SqliteStore | None = None
        try:
            store = self._opened()
            report = store.insert_points(parsed.points)
        except StoreError as exc:
            return self._failed(exc, store)
        return _result(parsed, report)

    def _opened(self) -> SqliteStore:
        with self._store_lock:
            if self._store is None:
                self._store = SqliteStore(self.path, timeout_s=self.timeout_s)
            return self._store

    def _failed(self, exc: StoreError, store: SqliteStore | None) -> WriteResult:
        cause = exc.__cause__
        if isinstance(cause, sqlite3.Error) and cause.sqlite_errorcode & 0xFF in _BUSY_CODES:
            return WriteResult(WriteOutcome.RETRY, None, _clip(str(exc)))
        # Anything else is the file itself: open it afresh next time, in case it is repaired
        # (unless a write in another thread has done so already).
        if store is not None:
            with self._store_lock:
                if self._store is store:
                    self._store = None
            store.close()
        return WriteResult(WriteOutcome.UNREACHABLE, None, _clip(str(exc)))

    async def close(self) -> None:
        with self._store_lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()


def make_sqlite_writer(path: str | Path, *, timeout_s: float = 10.0) -> SqliteLineWriter:
    """The gateway's writer for an embedded store (the file is made on the first write)."""
    return SqliteLineWriter(path, timeout_s=timeout_s)


def _result(parsed: ParsedBody, report: InsertReport) -> WriteResult:
    """InfluxDB's answer to the same body: 204, or 400 with its ``partial write`` message."""
    unparsable = [refused.message for refused in parsed.refused]
    conflicts = []
    for refusal in report.refused:
        if refusal.conflict:
            conflicts.append(refusal.reason)
        else:  # InfluxDB reports a timestamp out of its range as a line it cannot parse
            line = parsed.lines[refusal.position]
            unparsable.append(f"unable to parse '{line}': {refusal.reason}")
    if not unparsable and not conflicts:
        return WriteResult(WriteOutcome.OK, 204, "")
    if conflicts:
        # influxd names the first type conflict only (not even the lines it could not parse)
        # and counts the conflicting points as dropped.
        message = f"partial write: {conflicts[0]} dropped={len(conflicts)}"
    elif report.written:
        message = "partial write: " + "\n".join(unparsable) + " dropped=0"
    else:  # nothing stored: influxd says only what it could not parse
        message = "\n".join(unparsable)
    return WriteResult(WriteOutcome.BAD_REQUEST, 400, _clip(message))


def _clip(text: str) -> str:
    if len(text) > _MAX_MESSAGE_CHARS:
        return text[:_MAX_MESSAGE_CHARS] + f"... ({len(text)} characters)"
    return text
