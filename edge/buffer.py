"""Store and forward: every sample is on disk before it is sent, and leaves only when the broker
has acknowledged it.

SQLite in WAL mode with ``synchronous=NORMAL``: a committed write survives the process being
killed (``kill -9``), which is what an edge device sees most (power loss may lose the last
fraction of a second). Samples are stored as chunks -- one machine's samples of one reading,
already encoded for the wire -- so forming a batch is a byte join. A batch's sequence number is
written for its chunks before it is sent (in a small table of its own, so that numbering does not
write the chunks' pages again), so after a reconnect or restart the same batches go out again
with the same numbers (the gateway sees a duplicate, InfluxDB overwrites it).

The size cap's policy is **drop oldest**: when what SQLite really uses (pages holding data, and
room for the WAL) would exceed ``max_bytes`` -- or what the disk allows, when that is less -- the
oldest chunks not already in flight are deleted, counted and logged: recent data is worth more
to a plant than data from the start of a long outage. The same policy answers a full disk
(``SQLITE_FULL``, something else took the space): the reserve beside the file is given up, the
oldest chunks go, the file gives their space back, and the write is tried again; only when
nothing is left to drop are the new samples themselves dropped, counted and logged. The edge
keeps running either way (:mod:`plantwire.sqlite_disk`).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from plantwire.codec.native import assemble_batch, encode_samples
from plantwire.logs import LogOnce
from plantwire.model import AssetPath, Sample
from plantwire.sqlite_disk import is_disk_full, open_bounded

__all__ = ["BufferUnavailableError", "DiskBuffer", "OutgoingBatch"]

log = logging.getLogger("plantwire.edge.buffer")

T = TypeVar("T")
# Over the cap, enough is dropped to be this much under it: not a drop at every flush.
CAP_SLACK = 0.95
DROP_LOG_EVERY_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    asset TEXT NOT NULL,
    samples INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    payload BLOB NOT NULL
);
-- The chunks of batches sent and not yet acknowledged, with their batch's number.
CREATE TABLE IF NOT EXISTS numbered (chunk INTEGER PRIMARY KEY, seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS numbered_seq ON numbered (seq);
"""
# Buffers from before kept the number in the chunk (chunks.seq): carried over at open.
_CARRY_OVER = (
    "INSERT OR IGNORE INTO numbered (chunk, seq) SELECT id, seq FROM chunks WHERE seq >= 0"
)
_UNSENT = "id NOT IN (SELECT chunk FROM numbered)"
_OF_BATCHES = "id IN (SELECT chunk FROM numbered WHERE seq IN ({marks}))"


class BufferUnavailableError(Exception):
    """The buffer file cannot be opened or created (a new file on a full disk, say)."""


@dataclass(frozen=True)
class OutgoingBatch:
    """A numbered batch ready to go: its samples as stored, encoded for the wire."""

    seq: int
    asset: AssetPath
    samples: int
    edge_id: str
    fragments: tuple[bytes, ...]

    def encode(self, sent_ns: int | None = None) -> bytes:
        """The native payload; ``sent_ns`` is the wall clock at publication, stamped by the
        publisher when it sends (a resent or long-buffered batch gets a fresh one)."""
        return assemble_batch(self.edge_id, self.seq, self.asset, self.fragments, sent_ns=sent_ns)

    @property
    def payload(self) -> bytes:
        """The payload without a send time."""
        return self.encode()


class DiskBuffer:
    """The edge's outbox. Not thread-safe: use it from the event loop's thread only."""

    def __init__(self, path: str | Path, edge_id: str, *, max_bytes: int) -> None:
        self.path = Path(path)
        self.edge_id = edge_id
        self.max_bytes = max_bytes
        self._once = LogOnce(log)
        self.dropped_samples = 0
        self.disk_full_events = 0
        self._drop_logged_at = -DROP_LOG_EVERY_S  # the first drop is logged at once
        self._drops_unlogged = 0
        try:
            self._db, self.room = open_bounded(self.path, max_bytes)
            self._db.executescript(_SCHEMA)  # writes nothing when the file has it already
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(chunks)")}
            if "seq" in columns:
                self._transaction(lambda: self._db.execute(_CARRY_OVER))
        except sqlite3.Error as exc:
            raise BufferUnavailableError(f"cannot open the buffer {self.path}: {exc}") from exc
        row = self._db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        self._next_seq = int(row[0]) if row else 0
        totals = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(samples), 0), COALESCE(SUM(bytes), 0) FROM chunks"
        ).fetchone()
        self.chunks, self.samples, self.bytes = (int(v) for v in totals)
        unsent = self._db.execute(
            f"SELECT COALESCE(SUM(samples), 0) FROM chunks WHERE {_UNSENT}"
        ).fetchone()
        self.unsent_samples = int(unsent[0])
        self._staged: list[tuple[str, int, int, bytes]] = []
        self._acked: list[int] = []
        self.oldest_unsent_at: float | None = time.monotonic() if self.unsent_samples else None
        if self.samples:
            log.info(
                "buffer %s holds %d samples from before the restart; sending them first",
                self.path,
                self.samples,
            )
        limit = self.room.limit_bytes() + self.room.wal_bytes
        if self.room.disk_is_the_limit():
            log.warning(
                "buffer %s: its disk has room for %.1f MB, less than buffer_max_mb (%.1f MB); "
                "the buffer keeps within what the disk allows and drops its oldest samples "
                "beyond it (counted)",
                self.path,
                limit / 1e6,
                max_bytes / 1e6,
            )

    # -- intake -----------------------------------------------------------------------------------
    def append(self, asset: AssetPath, samples: Sequence[Sample]) -> None:
        """Stage one machine's samples; they are on disk after the next :meth:`flush`."""
        if samples:
            payload = encode_samples(samples)
            self._staged.append(("/".join(asset), len(samples), len(payload), payload))

    @property
    def staged(self) -> int:
        return sum(chunk[1] for chunk in self._staged)

    def flush(self) -> None:
        """Write staged chunks and forget acknowledged batches, in one transaction.

        On a full disk that even dropping the oldest chunks cannot make room on, the staged
        samples are dropped (counted and logged) and the acknowledged batches forgotten later:
        the edge keeps running.
        """
        if not self._staged and not self._acked:
            return
        staged, acked = self._staged, self._acked
        self._staged, self._acked = [], []
        try:
            removed = self._transaction(lambda: self._write(staged, acked))
        except sqlite3.Error as exc:
            if not is_disk_full(exc):
                self._staged = staged + self._staged
                self._acked = acked + self._acked
                raise
            self._acked = acked + self._acked
            self._lose_staged(staged)
            return
        self._once.recovered("write", "buffer %s takes samples again", self.path)
        added_samples = sum(chunk[1] for chunk in staged)
        self.chunks += len(staged) - removed[0]
        self.samples += added_samples - removed[1]
        self.bytes += sum(chunk[2] for chunk in staged) - removed[2]
        self.unsent_samples += added_samples
        if added_samples and self.oldest_unsent_at is None:
            self.oldest_unsent_at = time.monotonic()
        self._keep_to_cap()

    def _write(
        self, staged: list[tuple[str, int, int, bytes]], acked: list[int]
    ) -> tuple[int, int, int]:
        """Insert staged chunks, delete acknowledged ones; (chunks, samples, bytes) removed."""
        db = self._db
        if staged:
            db.executemany(
                "INSERT INTO chunks (asset, samples, bytes, payload) VALUES (?, ?, ?, ?)",
                staged,
            )
        if not acked:
            return (0, 0, 0)
        marks = ",".join("?" * len(acked))
        chunks = _OF_BATCHES.format(marks=marks)
        removed = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(samples), 0), COALESCE(SUM(bytes), 0) "
            f"FROM chunks WHERE {chunks}",
            acked,
        ).fetchone()
        db.execute(f"DELETE FROM chunks WHERE {chunks}", acked)
        db.execute(f"DELETE FROM numbered WHERE seq IN ({marks})", acked)
        return int(removed[0]), int(removed[1]), int(removed[2])

    # -- the cap and the disk ---------------------------------------------------------------------
    def _transaction(self, work: Callable[[], T]) -> T:
        """Run ``work`` in a transaction; on a full disk, make room and try once more."""
        try:
            return self._attempt(work)
        except sqlite3.Error as exc:
            if not is_disk_full(exc):
                raise
        self._make_room_on_full_disk()
        return self._attempt(work)

    def _attempt(self, work: Callable[[], T]) -> T:
        db = self._db
        db.execute("BEGIN")
        try:
            result = work()
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite itself rolls back on SQLITE_FULL at COMMIT
                db.execute("ROLLBACK")
            raise
        return result

    def _keep_to_cap(self) -> None:
        """Drop oldest until the data fits the cap (or what the disk allows), WAL room included.

        Measured in SQLite's pages, converted to payload bytes by the file's own ratio.
        """
        room = self.room
        dropped = False
        for _ in range(3):  # a page count converts to chunks roughly: measure again
            limit = room.limit_bytes()
            used = room.data_bytes()
            if used <= limit or not self.bytes:
                break
            payload_per_byte = self.bytes / max(1, used)
            target = used - int(limit * CAP_SLACK)
            why = "what its disk allows" if room.disk_is_the_limit() else "its cap"
            if not self._drop_oldest(int(target * payload_per_byte) + 1, why):
                break
            dropped = True
        if not room.has_reserve and dropped:
            room.shrink()  # the space dropped goes back to the disk, for the reserve
            room.keep_reserve()

    def _make_room_on_full_disk(self) -> None:
        """SQLITE_FULL: give up the reserve, drop the oldest chunks, give the space back."""
        self.disk_full_events += 1
        room = self.room
        released = room.release_reserve()
        room.checkpoint()  # the WAL may be well past its limit: give that back first
        share = max(self.bytes // 10, room.reserve_bytes)  # a tenth, at least the reserve's size
        self._drop_oldest(share, "a full disk", quiet=True)
        room.checkpoint()
        room.shrink()  # the reserve is made again once the cap has left room for it
        self._once.problem(
            "disk-full",
            "buffer %s: the disk is full (%d bytes free%s); dropping the oldest samples to make "
            "room, as buffer_max_mb would (%d dropped since start)",
            self.path,
            room.free_bytes(),
            ", reserve given up" if released else ", no reserve left",
            self.dropped_samples,
        )

    def _lose_staged(self, staged: list[tuple[str, int, int, bytes]]) -> None:
        lost = sum(chunk[1] for chunk in staged)
        if not lost:
            return  # only acknowledged batches to forget: tried again at the next flush
        self.dropped_samples += lost
        self._once.problem(
            "write",
            "buffer %s: the disk is full and nothing older is left to drop; %d new samples "
            "dropped (%d dropped since start) -- free space on %s",
            self.path,
            lost,
            self.dropped_samples,
            self.path.parent,
            level=logging.ERROR,
        )

    def _drop_oldest(self, payload_bytes: int, why: str, *, quiet: bool = False) -> bool:
        """Delete the oldest chunks not in flight, about ``payload_bytes`` of them; True if any
        went."""
        rows = self._db.execute(
            f"SELECT id, samples, bytes FROM chunks WHERE {_UNSENT} ORDER BY id LIMIT 100000"
        ).fetchall()
        doomed: list[int] = []
        freed = samples = 0
        for chunk_id, count, size in rows:
            if freed >= payload_bytes:
                break
            doomed.append(chunk_id)
            freed += size
            samples += count
        if not doomed:
            return False
        try:
            self._attempt(
                lambda: self._db.executemany(
                    "DELETE FROM chunks WHERE id = ?", [(i,) for i in doomed]
                )
            )
        except sqlite3.Error as exc:
            if not is_disk_full(exc):
                raise
            return False  # not even a deletion fits: the caller drops what is new
        self.chunks -= len(doomed)
        self.samples -= samples
        self.bytes -= freed
        self.unsent_samples -= samples
        self.dropped_samples += samples
        if self.unsent_samples == 0:
            self.oldest_unsent_at = None
        self._drops_unlogged += samples
        now = time.monotonic()
        if not quiet and now - self._drop_logged_at >= DROP_LOG_EVERY_S:
            # At the cap every flush drops a little: one line a minute says how much.
            log.warning(
                "buffer %s is over %s (%.1f MB): dropped the oldest %d samples "
                "(%d dropped since start)",
                self.path,
                why,
                self.room.limit_bytes() / 1e6,
                self._drops_unlogged,
                self.dropped_samples,
            )
            self._drop_logged_at, self._drops_unlogged = now, 0
        return True

    # -- outgoing ---------------------------------------------------------------------------------
    def in_flight(self) -> list[OutgoingBatch]:
        """Batches already numbered but not acknowledged, in sequence order (resend these first)."""
        rows = self._db.execute(
            "SELECT n.seq, c.asset, c.samples, c.payload FROM numbered n "
            "JOIN chunks c ON c.id = n.chunk ORDER BY n.seq, c.id"
        ).fetchall()
        acked = set(self._acked)  # acknowledged, deleted at the next flush: not to be sent again
        return [batch for batch in self._batches(rows) if batch.seq not in acked]

    def take(self, max_samples: int, max_batches: int) -> list[OutgoingBatch]:
        """Number the oldest unsent chunks into batches (one machine each) and return them."""
        if max_batches <= 0 or not self.unsent_samples:
            return []
        rows = self._db.execute(
            f"SELECT id, asset, samples FROM chunks WHERE {_UNSENT} ORDER BY id LIMIT ?",
            (max_batches * max(1, max_samples),),
        ).fetchall()
        open_batch: dict[str, tuple[int, int]] = {}  # asset -> (seq, samples so far)
        waiting: set[str] = set()  # machines whose next chunk did not fit this round
        assignments: list[tuple[int, int]] = []
        opened = 0
        for chunk_id, asset, count in rows:
            if asset in waiting:
                continue  # a later chunk must not overtake an earlier one of the same machine
            current = open_batch.get(asset)
            if current is None or current[1] + count > max_samples:
                if opened >= max_batches:
                    waiting.add(asset)
                    continue
                current = (self._next_seq, 0)
                self._next_seq += 1
                opened += 1
            open_batch[asset] = (current[0], current[1] + count)
            assignments.append((current[0], chunk_id))
        if not assignments:
            return []
        seqs = sorted({seq for seq, _ in assignments})
        try:
            self._transaction(lambda: self._number(assignments))
        except sqlite3.Error as exc:
            if not is_disk_full(exc):
                raise
            self._next_seq = seqs[0]  # nothing was numbered: the same numbers next time
            self._once.problem(
                "take", "buffer %s: the disk is full; cannot number batches to send", self.path
            )
            return []
        self._once.recovered("take", "buffer %s numbers batches again", self.path)
        marks = ",".join("?" * len(seqs))
        batch_rows = self._db.execute(
            "SELECT n.seq, c.asset, c.samples, c.payload FROM numbered n "
            f"JOIN chunks c ON c.id = n.chunk WHERE n.seq IN ({marks}) ORDER BY n.seq, c.id",
            seqs,
        ).fetchall()
        batches = self._batches(batch_rows)
        self.unsent_samples -= sum(batch.samples for batch in batches)
        self.oldest_unsent_at = time.monotonic() if self.unsent_samples else None
        return batches

    def _number(self, assignments: list[tuple[int, int]]) -> None:
        self._db.executemany("INSERT INTO numbered (seq, chunk) VALUES (?, ?)", assignments)
        self._db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('next_seq', ?)", (self._next_seq,)
        )

    def _batches(self, rows: list[tuple[int, str, int, bytes]]) -> list[OutgoingBatch]:
        batches: list[OutgoingBatch] = []
        current_seq: int | None = None
        fragments: list[bytes] = []
        asset = ""
        samples = 0
        for seq, row_asset, count, payload in rows:
            if seq != current_seq:
                if current_seq is not None:
                    batches.append(self._batch(current_seq, asset, samples, fragments))
                current_seq, asset, samples, fragments = seq, row_asset, 0, []
            samples += count
            fragments.append(payload)
        if current_seq is not None:
            batches.append(self._batch(current_seq, asset, samples, fragments))
        return batches

    def _batch(self, seq: int, asset: str, samples: int, fragments: list[bytes]) -> OutgoingBatch:
        path = AssetPath(*asset.split("/"))
        return OutgoingBatch(seq, path, samples, self.edge_id, tuple(fragments))

    def ack(self, seq: int) -> None:
        """The broker has the batch: forget it at the next flush."""
        self._acked.append(seq)

    def close(self) -> None:
        self.flush()
        self._db.close()
