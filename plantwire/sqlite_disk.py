"""SQLite files that hold data through an outage -- the edge's buffer, the gateway's spool --
and must neither fill their disk nor die when something else fills it.

Three things make a WAL-mode SQLite file safe on a small disk:

* **A bounded WAL.** SQLite checkpoints every 1,000 pages (4 MB) by default and never shrinks the
  WAL after: on a 2 MB disk the WAL alone fills it. Here the WAL is checkpointed and truncated at
  ``wal_bytes`` (a thirty-second of the cap or of the disk, 16 KiB to 4 MiB).
* **The disk counted.** :meth:`DiskRoom.limit_bytes` is the cap, or less when the disk has less
  room: what the file already holds plus what is free, less room for the WAL to grow back.
  :meth:`DiskRoom.used_bytes` is what SQLite really uses: pages holding data plus the WAL.
* **A reserve.** Every write, a deletion included, needs room in the WAL. When something else
  fills the disk, a file that can no longer write can no longer delete to make room either. So a
  small reserve file (``<file>.reserve``) is kept beside it, big enough to open the file (its
  WAL index, ``-shm``, is 32 KiB) and write a WAL's worth: on ``SQLITE_FULL`` the reserve is
  given up, which lets the owner delete what its policy says and give the space back
  (``auto_vacuum=INCREMENTAL`` shrinks the file, a WAL's worth of pages at a time), and the
  reserve is made again when there is room.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from pathlib import Path

__all__ = ["DiskRoom", "is_disk_full", "open_bounded"]

log = logging.getLogger(__name__)

MIN_WAL_BYTES = 16 * 1024
MAX_WAL_BYTES = 4 * 1024 * 1024
SHM_BYTES = 32 * 1024  # SQLite's WAL index file, made when the file is opened


def is_disk_full(exc: BaseException) -> bool:
    """SQLITE_FULL: "database or disk is full"."""
    if not isinstance(exc, sqlite3.Error):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    return code == sqlite3.SQLITE_FULL or "disk is full" in str(exc)


def reserve_path(path: Path) -> Path:
    return path.with_name(path.name + ".reserve")


def open_bounded(path: Path, max_bytes: int) -> tuple[sqlite3.Connection, DiskRoom]:
    """Open (or create) a WAL-mode file whose pages can be given back to the disk.

    Opening writes too (the WAL's index, ``-shm``): on a full disk the reserve is given up for
    it, and made again once the owner has dropped enough.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = _connect(path)
    except sqlite3.Error as exc:
        reserve = reserve_path(path)
        if not reserve.exists():
            raise
        log.warning("%s: cannot open it (%s); giving up its reserve to make room", path, exc)
        reserve.unlink()
        db = _connect(path)
    return db, DiskRoom(db, path, max_bytes)


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        # Only takes effect on a new, empty file: a file from before keeps its mode.
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        # Debian builds SQLite with secure_delete on: every freed page is zeroed, so deleting
        # data writes as much as storing it did -- on a full disk, too much. FAST zeroes only
        # what is written anyway.
        db.execute("PRAGMA secure_delete=FAST")
    except sqlite3.Error:
        db.close()
        raise
    return db


class DiskRoom:
    """How much a SQLite file may hold, on its cap and on its disk; the reserve beside it."""

    def __init__(self, db: sqlite3.Connection, path: Path, max_bytes: int) -> None:
        self.db = db
        self.path = path
        self.max_bytes = max_bytes
        self.page_bytes = int(db.execute("PRAGMA page_size").fetchone()[0])
        room = min(max_bytes, self.disk_bytes())
        self.wal_bytes = min(MAX_WAL_BYTES, max(MIN_WAL_BYTES, room // 32))
        db.execute(f"PRAGMA journal_size_limit={self.wal_bytes}")
        db.execute(f"PRAGMA wal_autocheckpoint={max(8, self.wal_bytes // self.page_bytes)}")
        self.reserve_path = reserve_path(path)
        self.reserve_bytes = SHM_BYTES + 2 * self.wal_bytes + MIN_WAL_BYTES
        self.can_shrink = int(db.execute("PRAGMA auto_vacuum").fetchone()[0]) == 2
        self.keep_reserve()

    # -- measuring -----------------------------------------------------------------------------
    def _size(self, suffix: str) -> int:
        try:
            return os.stat(f"{self.path}{suffix}").st_size
        except OSError:
            return 0

    def disk_bytes(self) -> int:
        """The size of the file's disk."""
        stat = os.statvfs(self.path.parent)
        return stat.f_blocks * stat.f_frsize

    def free_bytes(self) -> int:
        """Free space on the file's disk for an unprivileged writer."""
        stat = os.statvfs(self.path.parent)
        return stat.f_bavail * stat.f_frsize

    def data_bytes(self) -> int:
        """Pages that hold data (free pages in the file are reusable, not used)."""
        pages = int(self.db.execute("PRAGMA page_count").fetchone()[0])
        free = int(self.db.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * self.page_bytes

    def used_bytes(self) -> int:
        """Pages that hold data, and the WAL as it is now."""
        return self.data_bytes() + self._size("-wal")

    def limit_bytes(self) -> int:
        """What the data may take: the cap less the WAL's room -- or, when the disk has less,
        all the space the file could have (its own, free pages included, its WAL's and the
        disk's free space) less what the WAL may take (its file as it is, at least four times
        its limit: a transaction writes past the limit before the checkpoint) and the reserve,
        if it was given up and must be made again."""
        wal_file = self._size("-wal")
        room = self._size("") + wal_file + self.free_bytes()
        keep = max(wal_file, 4 * self.wal_bytes) + (0 if self.has_reserve else self.reserve_bytes)
        return max(0, min(self.max_bytes - self.wal_bytes, room - keep))

    def disk_is_the_limit(self) -> bool:
        return self.limit_bytes() < self.max_bytes - self.wal_bytes

    # -- the reserve and giving space back ----------------------------------------------------
    @property
    def has_reserve(self) -> bool:
        return self.reserve_path.exists()

    def keep_reserve(self) -> bool:
        """Make the reserve file if it is missing and the disk has room; True if it is there."""
        if self.has_reserve:
            return True
        try:
            if self.free_bytes() < self.reserve_bytes + 2 * self.wal_bytes:
                return False
            with self.reserve_path.open("wb") as reserve:
                # Written, not a sparse file: the space must really be taken to be given back.
                reserve.write(b"\0" * self.reserve_bytes)
        except OSError:
            with contextlib.suppress(OSError):
                self.reserve_path.unlink()
            return False
        return True

    def release_reserve(self) -> bool:
        """Give up the reserve so that a deletion can be written; True if there was one."""
        try:
            self.reserve_path.unlink()
        except FileNotFoundError:
            return False
        return True

    def checkpoint(self) -> None:
        """Move the WAL into the file and truncate it: its space goes back to the disk now."""
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def shrink(self) -> None:
        """Give the file's free pages back to the disk, where the file allows it: a WAL's worth
        of pages at a time (each step writes the pages it moves to the WAL)."""
        step = max(1, self.wal_bytes // self.page_bytes // 2)
        while self.can_shrink:
            free = int(self.db.execute("PRAGMA freelist_count").fetchone()[0])
            if not free:
                break
            try:
                self.db.execute(f"PRAGMA incremental_vacuum({min(step, free)})").fetchall()
            except sqlite3.Error:
                break
            self.checkpoint()
