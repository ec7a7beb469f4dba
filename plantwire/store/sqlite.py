"""The embedded store: the :class:`~plantwire.store.base.Store` in one SQLite file.

For the one-command demo and small single-machine sites: the gateway writes it (through
:mod:`plantwire.store.sqlite_write`) and analytics read it, with no InfluxDB anywhere. It answers
every call as :class:`~plantwire.store.influx.InfluxStore` does -- value types, tag matching,
time bounds, overwrites, refusals -- and one conformance suite
(``tests/integration/test_store_conformance.py``) runs on both.

Schema: one row per value, keyed by series, field and time::

    series       id, measurement, key       key: the escaped line-protocol series key (tags
                                            sorted), InfluxDB's identity of a series
    series_tags  (key, value, series_id)    tag matching and tag_values
    fields       id, measurement, name, type   a field's type within its measurement
    points       (series_id, field_id, time_ns) -> value      WITHOUT ROWID

Why one row per (series, field, time), not one per point with its fields as JSON or columns:

* InfluxDB merges a point into what is stored field by field (a later write of the same series,
  time and field replaces that value and leaves the other fields alone). Here that is a plain
  upsert on the primary key; a JSON row would need a read-modify-write of every point, and
  columns an ``ALTER TABLE`` for every new metric.
* Each value keeps SQLite's own storage class: REAL is the float64 bit for bit (``-0.0``
  included), INTEGER the int64, TEXT the string. JSON would take floats through text.
* A read of k fields reads only those fields: the primary key keeps each series' field in time
  order, so it is one b-tree range scan (InfluxDB's TSM files store a column per series and
  field the same way). The price is one row per value, measured by ``bench/store_sqlite.py``.

Types follow InfluxDB: a field keeps the type it was first written with (float, integer,
boolean or string) within its measurement, and a point carrying another type for it is refused
whole with InfluxDB's words (``field type conflict: input field "temp" on measurement
"telemetry" is type string, already exists as type float``) while the other points of the write
are stored. (InfluxDB 1.x keeps a type per shard, a week by default, so an old field could come
back with another type after a week there; here it never changes.) Points are checked by the
same encoder InfluxStore sends through, so a point one store refuses the other refuses too.

Durability and concurrency: WAL journal, ``synchronous=FULL`` -- the gateway acknowledges an MQTT
message once its points are committed, so a commit must survive a power cut, as InfluxDB's own
WAL does (it fsyncs every write). A write is one transaction (``BEGIN IMMEDIATE``) on the one
write connection, behind a lock: SQLite takes one writer at a time anyway, and other processes
wait up to ``timeout_s``. Every read takes a connection of its own from a small pool and reads
one snapshot, so analytics reading in one thread never waits for the gateway writing from
another (WAL lets readers and a writer run at once).
"""

from __future__ import annotations

import contextlib
import numbers
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice, repeat
from pathlib import Path
from typing import Any, NamedTuple, Self

import numpy as np
import orjson

from plantwire.errors import LineProtocolError
from plantwire.lineprotocol import LineEncoder, Point
from plantwire.store.base import SeriesBlock, StoreError, read_arguments

__all__ = [
    "MAX_TIME_NS",
    "MIN_TIME_NS",
    "SCHEMA_VERSION",
    "WRITE_CHUNK_POINTS",
    "InsertReport",
    "Refusal",
    "SqliteStore",
]

SCHEMA_VERSION = 1
WRITE_CHUNK_POINTS = 5_000  # as InfluxStore's bodies: what fails, fails for one chunk
# InfluxDB's range of timestamps, one narrower at the bottom than the encoder's int64 range.
MIN_TIME_NS = -9_223_372_036_854_775_806
MAX_TIME_NS = 9_223_372_036_854_775_806
_CACHE_LIMIT = 100_000
_KINDS: dict[type, str] = {float: "float", int: "integer", bool: "boolean", str: "string"}
_OUTSIDE_TIME_RANGE = f"time outside range {MIN_TIME_NS} - {MAX_TIME_NS}"

_SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    measurement TEXT NOT NULL,
    key TEXT NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS series_by_measurement ON series (measurement);
CREATE TABLE IF NOT EXISTS series_tags (
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    series_id INTEGER NOT NULL,
    PRIMARY KEY (key, value, series_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fields (
    id INTEGER PRIMARY KEY,
    measurement TEXT NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL CHECK (type IN ('float', 'integer', 'boolean', 'string')),
    UNIQUE (measurement, name)
);
-- value has no declared type, so SQLite keeps each value's own class (REAL, INTEGER, TEXT).
CREATE TABLE IF NOT EXISTS points (
    series_id INTEGER NOT NULL,
    field_id INTEGER NOT NULL,
    time_ns INTEGER NOT NULL,
    value NOT NULL,
    PRIMARY KEY (series_id, field_id, time_ns)
) WITHOUT ROWID;
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""
_UPSERT = (
    "INSERT INTO points (series_id, field_id, time_ns, value) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (series_id, field_id, time_ns) DO UPDATE SET value = excluded.value"
)
_SELECT_ONE_SERIES = (
    "SELECT time_ns, value FROM points "
    "WHERE series_id = ? AND field_id = ? AND time_ns >= ? AND time_ns < ?"
)
_SELECT_SERIES = (
    "SELECT series_id, time_ns, value FROM points WHERE field_id = ? "
    "AND series_id IN (SELECT value FROM json_each(?)) AND time_ns >= ? AND time_ns < ?"
)


class Refusal(NamedTuple):
    """A point the store did not take: its position in the write, and why in InfluxDB's words.

    ``conflict``: a field type conflict (InfluxDB counts those as ``dropped``); otherwise a
    timestamp outside InfluxDB's range (InfluxDB reports that as a line it cannot parse).
    """

    position: int
    reason: str
    conflict: bool


@dataclass(frozen=True)
class InsertReport:
    """What one write did: how many points are stored, and the ones refused."""

    written: int
    refused: list[Refusal]


class SqliteStore:
    """The :class:`~plantwire.store.base.Store` in a SQLite file (created when missing).

    Thread-safe (see the module docstring). Raises :class:`StoreError` for a file it cannot
    open or use, with SQLite's reason.
    """

    def __init__(self, path: str | Path, *, timeout_s: float = 10.0) -> None:
        if str(path) in ("", ":memory:"):
            raise ValueError("the SQLite store needs a file: every connection must see it")
        self.path = Path(path)
        self.timeout_s = timeout_s
        self._lock = threading.Lock()  # the write connection, its caches and encoder
        self._readers_lock = threading.Lock()
        self._idle_readers: list[sqlite3.Connection] = []
        self._closed = False
        self._checker = LineEncoder()  # refuses exactly what InfluxStore's encoder refuses
        self._checker_lock = threading.Lock()
        self._keys = LineEncoder()  # series keys, under _lock
        self._series_ids: dict[str, int] = {}
        # measurement -> field name -> (id, type); (measurement, names, types) -> field ids
        self._field_ids: dict[str, dict[str, tuple[int, str]]] = {}
        self._shapes: dict[tuple[str, tuple[str, ...], tuple[type, ...]], tuple[int, ...]] = {}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the folder of the SQLite store {self.path}: {exc}"
            ) from exc
        self._db = self._connect()
        try:
            self._set_up(self._db)
        except BaseException:
            self._db.close()
            raise

    # -- connections ----------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(
                self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the SQLite store {self.path}: {exc}") from exc
        return db

    def _set_up(self, db: sqlite3.Connection) -> None:
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the SQLite store {self.path} has schema version {version}, made by a "
                    f"newer PlantWire (this one reads version {SCHEMA_VERSION})"
                )
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"the SQLite store {self.path} cannot use WAL (mode {mode})")
            if version < SCHEMA_VERSION:
                db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the SQLite store {self.path}: {exc}") from exc

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """A connection of this read's own, in a read transaction: one consistent snapshot."""
        db = self._take_reader()
        try:
            db.execute("BEGIN")
            try:
                yield db
            finally:
                db.execute("COMMIT")  # a read-only transaction: this just ends the snapshot
        except sqlite3.Error as exc:
            db.close()
            raise StoreError(f"cannot read the SQLite store {self.path}: {exc}") from exc
        except BaseException:
            self._give_back(db)  # the read itself was refused: the connection is fine
            raise
        self._give_back(db)

    def _take_reader(self) -> sqlite3.Connection:
        with self._readers_lock:
            if self._closed:
                raise StoreError(f"{self!r} is closed")
            if self._idle_readers:
                return self._idle_readers.pop()
        db = self._connect()
        db.execute("PRAGMA query_only = ON")
        return db

    def _give_back(self, db: sqlite3.Connection) -> None:
        with self._readers_lock:
            if self._closed:
                db.close()
            else:
                self._idle_readers.append(db)

    # -- writing --------------------------------------------------------------------------
    def write_points(self, points: Iterable[Point]) -> int:
        """Write points, one transaction per 5,000; return how many were written.

        Raises :class:`StoreError` at the first chunk holding a point the store cannot take;
        the chunks before it stay written, and so do that chunk's other points, as with
        InfluxDB's partial writes. Writing them again overwrites them with the same values.
        """
        written = 0
        remaining = iter(points)
        while chunk := list(islice(remaining, WRITE_CHUNK_POINTS)):
            try:
                self._check(chunk)
            except LineProtocolError as exc:
                raise StoreError(f"{exc} ({written} points before it were written)") from exc
            report = self.insert_points(chunk)
            written += report.written
            if report.refused:
                raise StoreError(
                    f"the SQLite store {self.path} did not take {len(report.refused)} of "
                    f"{len(chunk)} points: {report.refused[0].reason} "
                    f"(points written: {written})"
                )
        return written

    def _check(self, points: Sequence[Point]) -> None:
        """Refuse what InfluxStore's encoder refuses, with its words: the same encoder, given
        each series once rather than once per point (what ``LineEncoder.lines`` does)."""
        series_of: dict[int, tuple[object, str, str]] = {}  # id(tags) -> tags, measurement, key
        with self._checker_lock:
            checker = self._checker
            rows = []
            for measurement, tags, fields, ts in points:
                series = series_of.get(id(tags))
                if series is None or series[0] is not tags or series[1] != measurement:
                    key = checker.series(measurement, tags)
                    series = series_of[id(tags)] = (tags, measurement, key)
                rows.append((series[2], fields, ts))
            checker.rows(rows)

    def insert_points(self, points: Sequence[Point]) -> InsertReport:
        """Store points in one transaction; the ones that conflict are refused, not raised.

        The points must have passed the encoder's or the parser's checks (names, finite
        values, int64). Raises :class:`StoreError` when SQLite fails (nothing is then stored);
        its ``__cause__`` is SQLite's error, which the gateway's writer sorts.
        """
        with self._lock:
            if self._closed:
                raise StoreError(f"{self!r} is closed")
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    rows, refused = self._rows(db, points)
                    db.executemany(_UPSERT, rows)
                    db.execute("COMMIT")
                except BaseException:
                    # Ids made in this transaction are gone with it: forget every cached id.
                    self._series_ids.clear()
                    self._field_ids.clear()
                    self._shapes.clear()
                    if db.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write the SQLite store {self.path}: {exc}") from exc
        return InsertReport(len(points) - len(refused), refused)

    def _rows(
        self, db: sqlite3.Connection, points: Sequence[Point]
    ) -> tuple[list[tuple[int, int, int, Any]], list[Refusal]]:
        """The rows to upsert, with the points refused for their time or a field's type."""
        rows: list[tuple[int, int, int, Any]] = []
        refused: list[Refusal] = []
        series_of: dict[int, tuple[object, str, int]] = {}  # id(tags) -> tags, measurement, id
        shapes = self._shapes
        for position, (measurement, tags, fields, ts) in enumerate(points):
            if not MIN_TIME_NS <= ts <= MAX_TIME_NS:
                refused.append(Refusal(position, _OUTSIDE_TIME_RANGE, conflict=False))
                continue
            # Points of one series usually share one tags mapping: know it by its identity.
            series = series_of.get(id(tags))
            if series is None or series[0] is not tags or series[1] != measurement:
                series_id = self._series_id(db, measurement, tags)
                series = series_of[id(tags)] = (tags, measurement, series_id)
            values = tuple(fields.values())
            # Points of one machine have the same fields of the same types, batch after batch:
            # their field ids are looked up (and their types checked) once per shape.
            shape = (measurement, tuple(fields), tuple(map(type, values)))
            field_ids = shapes.get(shape)
            if field_ids is None:
                plain = all(type(value) in _KINDS for value in values)
                values = values if plain else tuple(map(_plain, values))
                found = self._field_ids_of(db, measurement, shape[1], values)
                if isinstance(found, str):
                    refused.append(Refusal(position, found, conflict=True))
                    continue
                field_ids = found
                if plain:  # other types are turned into these on every point, not cached
                    if len(shapes) >= _CACHE_LIMIT:
                        shapes.clear()
                    shapes[shape] = field_ids
            rows.extend(zip(repeat(series[2]), field_ids, repeat(ts), values, strict=False))
        return rows, refused

    def _field_ids_of(
        self, db: sqlite3.Connection, measurement: str, names: Sequence[str], values: Sequence[Any]
    ) -> tuple[int, ...] | str:
        """The ids of a point's fields, new ones typed by the point; or, when a value's type is
        not its field's, why the point is refused."""
        found = []
        for name, value in zip(names, values, strict=True):
            kind = _KINDS[type(value)]
            field = self._field_ids.get(measurement, {}).get(name) or self._field(
                db, measurement, name
            )
            if field is not None and field[1] != kind:
                return (
                    f'field type conflict: input field "{name}" on measurement '
                    f'"{measurement}" is type {kind}, already exists as type {field[1]}'
                )
            found.append((name, kind, field))
        return tuple(
            (field or self._new_field(db, measurement, name, kind))[0]
            for name, kind, field in found
        )

    def _series_id(self, db: sqlite3.Connection, measurement: str, tags: Mapping[str, str]) -> int:
        key = self._keys.series(measurement, tags)  # canonical: escaped, tags sorted
        series_id = self._series_ids.get(key)
        if series_id is None:
            row = db.execute("SELECT id FROM series WHERE key = ?", (key,)).fetchone()
            if row is not None:
                series_id = int(row[0])
            else:
                cursor = db.execute(
                    "INSERT INTO series (measurement, key) VALUES (?, ?)", (measurement, key)
                )
                series_id = int(cursor.lastrowid or 0)
                db.executemany(
                    "INSERT INTO series_tags (key, value, series_id) VALUES (?, ?, ?)",
                    [(tag, value, series_id) for tag, value in tags.items()],
                )
            if len(self._series_ids) >= _CACHE_LIMIT:
                self._series_ids.clear()
            self._series_ids[key] = series_id
        return series_id

    def _field(self, db: sqlite3.Connection, measurement: str, name: str) -> tuple[int, str] | None:
        """A field's id and type, looked up in the file (another process may have made it)."""
        row = db.execute(
            "SELECT id, type FROM fields WHERE measurement = ? AND name = ?", (measurement, name)
        ).fetchone()
        if row is None:
            return None
        field = self._field_ids.setdefault(measurement, {})[name] = (int(row[0]), str(row[1]))
        return field

    def _new_field(
        self, db: sqlite3.Connection, measurement: str, name: str, kind: str
    ) -> tuple[int, str]:
        known = self._field_ids.setdefault(measurement, {})
        if name in known:  # an earlier point of this write made it
            return known[name]
        cursor = db.execute(
            "INSERT INTO fields (measurement, name, type) VALUES (?, ?, ?)",
            (measurement, name, kind),
        )
        field = known[name] = (int(cursor.lastrowid or 0), kind)
        return field

    # -- reading --------------------------------------------------------------------------
    def read(
        self,
        measurement: str,
        fields: Sequence[str],
        *,
        tags: Mapping[str, str],
        start_ns: int,
        end_ns: int,
    ) -> SeriesBlock:
        """The points in ``[start_ns, end_ns)`` of the series matching ``tags`` exactly."""
        names, start, end = read_arguments(fields, start_ns, end_ns)
        with self._reader() as db:
            types = _field_types(db, measurement)
            strings = {name for name in names if name in types and types[name][1] == "string"}
            if start >= end:
                return SeriesBlock.empty(names, strings)
            _check_query(measurement, names, start, end)
            series = _matching_series(db, measurement, tags)
            wanted = [(name, types[name][0]) for name in names if name in types]
            if not series or not wanted:
                return SeriesBlock.empty(names, strings)
            columns = {name: _fetch(db, field_id, series, start, end) for name, field_id in wanted}
        return _merge(names, strings, columns)

    def tag_values(
        self, measurement: str, tag: str, *, where: Mapping[str, str] | None = None
    ) -> list[str]:
        """The distinct values of ``tag`` in ``measurement``, sorted."""
        conditions, params = _series_conditions(measurement, where or {})
        with self._reader() as db:
            rows = db.execute(
                "SELECT DISTINCT value FROM series_tags WHERE key = ? AND series_id IN "
                f"(SELECT id FROM series WHERE {conditions})",
                (tag, *params),
            ).fetchall()
        return sorted(str(row[0]) for row in rows)

    # -- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:
        """Close every connection (SQLite then folds the WAL back into the file)."""
        with self._lock, self._readers_lock:
            if self._closed:
                return
            self._closed = True
            idle, self._idle_readers = self._idle_readers, []
        for db in idle:
            db.close()
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteStore(path={str(self.path)!r})"


def _plain(value: object) -> bool | int | float:
    """numpy and other numbers as the Python type they stand for, as the encoder writes them."""
    if isinstance(value, bool) or type(value).__name__ in ("bool", "bool_"):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"field value of type {type(value).__name__} cannot be stored")


# -- helpers of read ----------------------------------------------------------------------------


def _field_types(db: sqlite3.Connection, measurement: str) -> dict[str, tuple[int, str]]:
    rows = db.execute("SELECT name, id, type FROM fields WHERE measurement = ?", (measurement,))
    return {str(name): (int(field_id), str(kind)) for name, field_id, kind in rows}


def _check_query(measurement: str, names: Sequence[str], start: int, end: int) -> None:
    """Refuse what InfluxDB refuses to query, with its reason (tags: _series_conditions)."""
    if not measurement:
        raise StoreError("the SQLite store cannot read measurement '': invalid measurement")
    if "time" in names:
        raise StoreError("'time' is not a field: it is the timestamp of every point")
    for bound in (start, end):
        if not -(2**63) <= bound < 2**63:
            raise StoreError(f"time bound {bound} does not fit in 64 bits")


def _series_conditions(measurement: str, tags: Mapping[str, str]) -> tuple[str, list[str]]:
    """SQL over ``series`` for the series of ``measurement`` whose tags equal ``tags``.

    As in InfluxQL, a tag compared with ``''`` matches the series that do not have that tag,
    and the measurement ``''`` stands for every measurement (``read`` refuses it before).
    """
    if "time" in tags:
        raise StoreError("'time' is not a tag: it is the timestamp of every point")
    conditions = ["measurement = ?"] if measurement else ["1"]
    params = [measurement] if measurement else []
    for key in sorted(tags):
        value = tags[key]
        if type(value) is not str or type(key) is not str:
            raise TypeError(f"tags must map tag keys to strings, not {key!r}: {value!r}")
        if value:
            conditions.append(
                "id IN (SELECT series_id FROM series_tags WHERE key = ? AND value = ?)"
            )
            params += [key, value]
        else:
            conditions.append("id NOT IN (SELECT series_id FROM series_tags WHERE key = ?)")
            params.append(key)
    return " AND ".join(conditions), params


def _matching_series(
    db: sqlite3.Connection, measurement: str, tags: Mapping[str, str]
) -> list[int]:
    conditions, params = _series_conditions(measurement, tags)
    rows = db.execute(f"SELECT id FROM series WHERE {conditions} ORDER BY id", params)
    return [int(row[0]) for row in rows]


class _Column(NamedTuple):
    series: np.ndarray | None  # the series of each value; None when only one was read
    time_ns: np.ndarray
    values: list[Any]


def _fetch(
    db: sqlite3.Connection, field_id: int, series: list[int], start: int, end: int
) -> _Column:
    """One field's values in the range, of one series in time order or of several."""
    if len(series) == 1:
        rows = db.execute(_SELECT_ONE_SERIES, (series[0], field_id, start, end)).fetchall()
        times, values = zip(*rows, strict=True) if rows else ((), ())
        return _Column(None, np.array(times, dtype=np.int64), list(values))
    # The ids go as one JSON text (as TEXT: newer SQLite reads a BLOB as its binary JSONB).
    ids_json = orjson.dumps(series).decode()
    rows = db.execute(_SELECT_SERIES, (field_id, ids_json, start, end)).fetchall()
    ids, times, values = zip(*rows, strict=True) if rows else ((), (), ())
    return _Column(np.array(ids, dtype=np.int64), np.array(times, dtype=np.int64), list(values))


def _merge(names: list[str], strings: set[str], columns: Mapping[str, _Column]) -> SeriesBlock:
    """Put each field's values on the rows of the points that hold any of them, ordered by time
    (points of several series at one time by series, in the order they were first written)."""
    present = {name: column for name, column in columns.items() if len(column.time_ns)}
    if not present:
        return SeriesBlock.empty(names, strings)
    parts = list(present.values())
    if len(parts) == 1 and parts[0].series is None:  # one field of one series: rows as stored
        time_ns = parts[0].time_ns
        rows = {name: np.arange(len(time_ns)) for name in present}
    else:
        time_ns, rows = _union(present)
    fields: dict[str, np.ndarray] = {}
    for name in names:
        column = present.get(name)
        if name in strings:
            out = np.full(len(time_ns), None, dtype=object)
            if column is not None:
                out[rows[name]] = np.array(column.values, dtype=object)
        else:
            out = np.full(len(time_ns), np.nan)
            if column is not None:
                # + 0.0 turns -0.0 into 0.0 (and leaves every other value alone): InfluxDB
                # answers a stored -0.0 with 0, so both stores give the same column.
                out[rows[name]] = np.array(column.values, dtype=np.float64) + 0.0
        fields[name] = out
    return SeriesBlock(time_ns=time_ns, fields=fields)


def _union(columns: Mapping[str, _Column]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The sorted union of (time, series) over the columns, and each value's row in it."""
    times = np.concatenate([column.time_ns for column in columns.values()])
    series = np.concatenate(
        [
            column.series if column.series is not None else np.zeros(len(column.time_ns), np.int64)
            for column in columns.values()
        ]
    )
    order = np.lexsort((series, times))
    sorted_times, sorted_series = times[order], series[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (sorted_times[1:] != sorted_times[:-1]) | (sorted_series[1:] != sorted_series[:-1])
    row_of = np.empty(len(order), dtype=np.int64)
    row_of[order] = np.cumsum(first) - 1
    rows: dict[str, np.ndarray] = {}
    offset = 0
    for name, column in columns.items():
        rows[name] = row_of[offset : offset + len(column.time_ns)]
        offset += len(column.time_ns)
    return sorted_times[first], rows
