"""Store and forward: every sample is on disk before it is sent, and leaves only when the broker
has acknowledged it.

SQLite in WAL mode with ``synchronous=NORMAL``: a committed write survives the process being
killed (``kill -9``), which is what an edge device sees most (power loss may lose the last
fraction of a second). Samples are stored as chunks -- one machine's samples of one reading,
already encoded for the wire -- so forming a batch is a byte join. A batch's sequence number is
written to its chunks before it is sent, so after a reconnect or restart the same batches go out
again with the same numbers (the gateway sees a duplicate, InfluxDB overwrites it).

The size cap's policy is **drop oldest**: when the stored payload exceeds ``max_bytes``, the
oldest chunks not already in flight are deleted, counted and logged -- recent data is worth more
to a plant than data from the start of a long outage.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from plantwire.codec.native import assemble_batch, encode_samples
from plantwire.model import AssetPath, Sample

__all__ = ["DiskBuffer", "OutgoingBatch"]

log = logging.getLogger("plantwire.edge.buffer")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    asset TEXT NOT NULL,
    samples INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    payload BLOB NOT NULL,
    seq INTEGER
);
CREATE INDEX IF NOT EXISTS chunks_seq ON chunks (seq);
"""


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        self._next_seq = int(row[0]) if row else 0
        totals = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(samples), 0), COALESCE(SUM(bytes), 0) FROM chunks"
        ).fetchone()
        self.chunks, self.samples, self.bytes = (int(v) for v in totals)
        unsent = self._db.execute(
            "SELECT COALESCE(SUM(samples), 0) FROM chunks WHERE seq IS NULL"
        ).fetchone()
        self.unsent_samples = int(unsent[0])
        self._staged: list[tuple[str, int, int, bytes]] = []
        self._acked: list[int] = []
        self.oldest_unsent_at: float | None = time.monotonic() if self.unsent_samples else None
        self.dropped_samples = 0
        if self.samples:
            log.info(
                "buffer %s holds %d samples from before the restart; sending them first",
                self.path,
                self.samples,
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
        """Write staged chunks and forget acknowledged batches, in one transaction."""
        if not self._staged and not self._acked:
            return
        staged, acked = self._staged, self._acked
        self._staged, self._acked = [], []
        db = self._db
        db.execute("BEGIN")
        try:
            if staged:
                db.executemany(
                    "INSERT INTO chunks (asset, samples, bytes, payload) VALUES (?, ?, ?, ?)",
                    staged,
                )
            removed = (0, 0, 0)
            if acked:
                marks = ",".join("?" * len(acked))
                removed = db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(samples), 0), COALESCE(SUM(bytes), 0) "
                    f"FROM chunks WHERE seq IN ({marks})",
                    acked,
                ).fetchone()
                db.execute(f"DELETE FROM chunks WHERE seq IN ({marks})", acked)
            db.execute("COMMIT")
        except sqlite3.Error:
            db.execute("ROLLBACK")
            self._staged = staged + self._staged
            self._acked = acked + self._acked
            raise
        added_samples = sum(chunk[1] for chunk in staged)
        self.chunks += len(staged) - removed[0]
        self.samples += added_samples - removed[1]
        self.bytes += sum(chunk[2] for chunk in staged) - removed[2]
        self.unsent_samples += added_samples
        if added_samples and self.oldest_unsent_at is None:
            self.oldest_unsent_at = time.monotonic()
        if self.bytes > self.max_bytes:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        """Enforce the cap: delete the oldest chunks that are not in flight."""
        excess = self.bytes - self.max_bytes
        rows = self._db.execute(
            "SELECT id, samples, bytes FROM chunks WHERE seq IS NULL ORDER BY id LIMIT 100000"
        ).fetchall()
        doomed: list[int] = []
        freed = samples = 0
        for chunk_id, count, size in rows:
            if freed >= excess:
                break
            doomed.append(chunk_id)
            freed += size
            samples += count
        if not doomed:
            return
        self._db.execute("BEGIN")
        self._db.executemany("DELETE FROM chunks WHERE id = ?", [(i,) for i in doomed])
        self._db.execute("COMMIT")
        self.chunks -= len(doomed)
        self.samples -= samples
        self.bytes -= freed
        self.unsent_samples -= samples
        self.dropped_samples += samples
        log.warning(
            "buffer %s is over its cap of %d bytes: dropped the oldest %d samples "
            "(%d dropped since start)",
            self.path,
            self.max_bytes,
            samples,
            self.dropped_samples,
        )

    # -- outgoing ---------------------------------------------------------------------------------
    def in_flight(self) -> list[OutgoingBatch]:
        """Batches already numbered but not acknowledged, in sequence order (resend these first)."""
        rows = self._db.execute(
            "SELECT seq, asset, samples, payload FROM chunks WHERE seq IS NOT NULL ORDER BY seq, id"
        ).fetchall()
        acked = set(self._acked)  # acknowledged, deleted at the next flush: not to be sent again
        return [batch for batch in self._batches(rows) if batch.seq not in acked]

    def take(self, max_samples: int, max_batches: int) -> list[OutgoingBatch]:
        """Number the oldest unsent chunks into batches (one machine each) and return them."""
        if max_batches <= 0 or not self.unsent_samples:
            return []
        rows = self._db.execute(
            "SELECT id, asset, samples FROM chunks WHERE seq IS NULL ORDER BY id LIMIT ?",
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
        self._db.execute("BEGIN")
        self._db.executemany("UPDATE chunks SET seq = ? WHERE id = ?", assignments)
        self._db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('next_seq', ?)", (self._next_seq,)
        )
        self._db.execute("COMMIT")
        marks = ",".join("?" * len(seqs))
        batch_rows = self._db.execute(
            "SELECT seq, asset, samples, payload FROM chunks "
            f"WHERE seq IN ({marks}) ORDER BY seq, id",
            seqs,
        ).fetchall()
        batches = self._batches(batch_rows)
        self.unsent_samples -= sum(batch.samples for batch in batches)
        self.oldest_unsent_at = time.monotonic() if self.unsent_samples else None
        return batches

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
