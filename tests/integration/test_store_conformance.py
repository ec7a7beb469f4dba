"""One contract, every store: every test of the first part runs on each backend of the registry
(plantwire.store.registry) -- InfluxStore against a real influxd (Debian's 1.6.7), SqliteStore on
a file -- opened through the registry, and must pass on each. The second part
checks what only the embedded store has: its file, its failures and its threads."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pw_store import STORE_CONFIGS, Backend, registered_backend, through_gateway

from plantwire.lineprotocol import LineEncoder, Point, encode_points
from plantwire.store import SeriesBlock, Store, StoreError, WriteOutcome
from plantwire.store.registry import STORE_BACKENDS
from plantwire.store.sqlite import MAX_TIME_NS, MIN_TIME_NS, SCHEMA_VERSION, SqliteStore
from plantwire.store.sqlite_write import make_sqlite_writer

pytestmark = pytest.mark.servers

T0 = 1_763_712_000_000_000_000  # 2025-11-21T08:00:00Z
SECOND = 1_000_000_000
FILLER = {"site": "binh-duong", "area": "dairy", "line": "filling", "machine": "filler"}
CAPPER = {**FILLER, "machine": "capper"}
BAGGER = {**FILLER, "area": "snacks", "line": "packing", "machine": "bagger"}
# InfluxDB's words; nothing in them is special to a regular expression.
TYPE_CONFLICT = (
    'field type conflict: input field "temp" on measurement "telemetry" is type string, '
    "already exists as type float"
)


@pytest.fixture(params=sorted(STORE_BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Every backend of the registry, opened through it (as the gateway and analytics do)."""
    with registered_backend(STORE_CONFIGS[request.param](request, tmp_path)) as opened:
        yield opened


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.store


def read(
    store: Store, fields: list[str], tags: dict[str, str] = FILLER, **bounds: int
) -> SeriesBlock:
    start = bounds.get("start_ns", T0 - 3600 * SECOND)
    end = bounds.get("end_ns", T0 + 3600 * SECOND)
    return store.read("telemetry", fields, tags=tags, start_ns=start, end_ns=end)


def rows(block: SeriesBlock) -> list[tuple[object, ...]]:
    """The block as sorted rows (NaN as None), for results where points of several series share
    a timestamp: the order among those is the database's (InfluxDB does not define it)."""

    def plain(value: object) -> object:
        return None if isinstance(value, float) and math.isnan(value) else value

    columns = [block.time_ns.tolist(), *(column.tolist() for column in block.fields.values())]
    return sorted(
        (tuple(plain(value) for value in row) for row in zip(*columns, strict=True)), key=repr
    )


# -- values ----------------------------------------------------------------------------------


def test_the_store_is_a_store(store: Store) -> None:
    assert isinstance(store, Store)


def test_values_read_back_exactly_with_nan_and_none_where_missing(store: Store) -> None:
    points = [
        Point(
            "telemetry",
            FILLER,
            {"temp": 4.2, "count": 19271, "door_open": False, "product": "milk 1L"},
            T0,
        ),
        Point("telemetry", FILLER, {"temp": 0.1 + 0.2, "temp__quality": "uncertain"}, T0 + 1),
        Point("telemetry", FILLER, {"count": 2**53 + 1, "door_open": True}, T0 + SECOND),
        Point("telemetry", FILLER, {"product": 'yoghurt "greek" 500g'}, T0 + 2 * SECOND),
    ]
    assert store.write_points(points) == 4
    names = ["temp", "count", "door_open", "product", "temp__quality", "never_written"]
    block = read(store, names)

    assert block.time_ns.dtype == np.int64
    assert block.time_ns.tolist() == [T0, T0 + 1, T0 + SECOND, T0 + 2 * SECOND]
    fields = block.fields
    assert list(fields) == names
    np.testing.assert_array_equal(fields["temp"], [4.2, 0.1 + 0.2, np.nan, np.nan])
    # Integers come back as float64: 2**53 + 1 is the first one that cannot be held exactly.
    np.testing.assert_array_equal(fields["count"], [19271.0, np.nan, float(2**53), np.nan])
    np.testing.assert_array_equal(fields["door_open"], [0.0, np.nan, 1.0, np.nan])
    assert fields["product"].dtype == object
    assert fields["product"].tolist() == ["milk 1L", None, None, 'yoghurt "greek" 500g']
    assert fields["temp__quality"].tolist() == [None, "uncertain", None, None]
    assert fields["never_written"].dtype == np.float64
    assert np.isnan(fields["never_written"]).all()
    for name in ("temp", "count", "door_open"):
        assert fields[name].dtype == np.float64
    assert all(len(column) == len(block) for column in fields.values())


def test_every_type_reads_back_at_its_extremes(store: Store) -> None:
    long_text = "ư" * 32_767  # 65,534 bytes of UTF-8: just inside the limit
    points = [
        Point("telemetry", FILLER, {"f": 5e-324, "i": -(2**63), "b": False, "s": ""}, T0),
        Point(
            "telemetry",
            FILLER,
            {"f": 1.7976931348623157e308, "i": 2**63 - 1, "b": True, "s": 'a\\"\nb\\'},
            T0 + 1,
        ),
        Point("telemetry", FILLER, {"f": -0.0, "i": 0, "s": long_text}, T0 + 2),
    ]
    store.write_points(points)
    block = read(store, ["f", "i", "b", "s"])
    assert block.fields["f"].tolist() == [5e-324, 1.7976931348623157e308, 0.0]
    assert not np.signbit(block.fields["f"][2])  # InfluxDB answers -0.0 with 0
    assert block.fields["i"].tolist() == [-(2.0**63), 2.0**63, 0.0]
    np.testing.assert_array_equal(block.fields["b"], [0.0, 1.0, np.nan])
    assert block.fields["s"].tolist() == ["", 'a\\"\nb\\', long_text]


def test_numpy_numbers_are_stored_as_the_numbers_they_stand_for(store: Store) -> None:
    fields: dict[str, Any] = {"f32": np.float32(1.5), "i64": np.int64(-3), "flag": np.bool_(True)}
    assert store.write_points([Point("telemetry", FILLER, fields, T0)]) == 1
    block = read(store, ["f32", "i64", "flag"])
    assert [column.tolist() for column in block.fields.values()] == [[1.5], [-3.0], [1.0]]
    # they took the types of a float, an integer and a boolean: another type is a conflict
    with pytest.raises(StoreError, match="is type float, already exists as type integer"):
        store.write_points([Point("telemetry", FILLER, {"i64": 2.5}, T0 + 1)])


def test_only_points_with_a_requested_field_come_back(store: Store) -> None:
    store.write_points(
        [
            Point("telemetry", FILLER, {"temp": 4.0}, T0),
            Point("telemetry", FILLER, {"pressure": 2.0}, T0 + SECOND),
            Point("telemetry", FILLER, {"temp": 4.5, "pressure": 2.5}, T0 + 2 * SECOND),
        ]
    )
    block = read(store, ["temp"])
    assert block.time_ns.tolist() == [T0, T0 + 2 * SECOND]
    np.testing.assert_array_equal(block.fields["temp"], [4.0, 4.5])


# -- tags ------------------------------------------------------------------------------------


def test_tags_match_exactly_and_keep_machines_apart(store: Store) -> None:
    store.write_points(
        [
            Point("telemetry", FILLER, {"temp": 1.0}, T0),
            Point("telemetry", CAPPER, {"temp": 2.0}, T0),
            Point("telemetry", {**FILLER, "machine": "filler 2"}, {"temp": 3.0}, T0),
            Point("telemetry", {**FILLER, "machine": "FILLER"}, {"temp": 4.0}, T0),
        ]
    )
    np.testing.assert_array_equal(read(store, ["temp"]).fields["temp"], [1.0])
    np.testing.assert_array_equal(read(store, ["temp"], CAPPER).fields["temp"], [2.0])
    assert len(read(store, ["temp"], {**FILLER, "machine": "fill"})) == 0
    assert len(read(store, ["temp"], {**FILLER, "shift": "night"})) == 0  # a tag no series has


def test_tags_that_match_several_series_merge_them_in_time_order(store: Store) -> None:
    store.write_points(
        [
            Point("telemetry", FILLER, {"temp": 1.0}, T0 + 2),
            Point("telemetry", CAPPER, {"temp": 2.0}, T0),
            Point("telemetry", FILLER, {"temp": 3.0}, T0),
            Point("telemetry", CAPPER, {"pressure": 5.0}, T0 + 1),
            Point("telemetry", {**CAPPER, "head": "2"}, {"temp": 6.0}, T0 + 1),
            Point("telemetry", BAGGER, {"temp": 9.0}, T0 + 1),
            Point("other", FILLER, {"temp": 9.0}, T0 + 1),
        ]
    )
    filling = {"site": "binh-duong", "line": "filling"}
    block = read(store, ["temp", "pressure"], filling)
    # One row per point, never one per timestamp: two machines at T0 are two rows.
    assert block.time_ns.tolist() == [T0, T0, T0 + 1, T0 + 1, T0 + 2]
    assert rows(block) == sorted(
        [
            (T0, 2.0, None),
            (T0, 3.0, None),
            (T0 + 1, None, 5.0),
            (T0 + 1, 6.0, None),
            (T0 + 2, 1.0, None),
        ],
        key=repr,
    )
    everything = store.read("telemetry", ["temp"], tags={}, start_ns=T0, end_ns=T0 + 3)
    assert sorted(everything.fields["temp"].tolist()) == [1.0, 2.0, 3.0, 6.0, 9.0]


def test_a_tag_compared_with_nothing_matches_the_series_without_it(store: Store) -> None:
    """InfluxQL's ``tag = ''``: the series that do not have the tag."""
    store.write_points(
        [
            Point("telemetry", FILLER, {"temp": 1.0}, T0),
            Point("telemetry", {**FILLER, "head": "2"}, {"temp": 2.0}, T0 + 1),
        ]
    )
    assert read(store, ["temp"], {**FILLER, "head": ""}).fields["temp"].tolist() == [1.0]
    assert read(store, ["temp"], {"head": ""}).fields["temp"].tolist() == [1.0]
    assert store.tag_values("telemetry", "head", where={"machine": "filler"}) == ["2"]
    assert store.tag_values("telemetry", "machine", where={"head": ""}) == ["filler"]


TRICKY_TAGS = {
    "site": "Bình Dương 🏭",
    "area": "dairy, chilled",
    "line": 'line "A" = 1',
    "machine": "O'Brien's filler\\2",
    "plant room": "温度 room",
}


def test_tricky_names_read_back(store: Store) -> None:
    fields: dict[str, float | str] = {"product temp, °C": 4.25, 'say "hi"': "xin chào", "máy=1": 7}
    store.write_points([Point("tele metry,x", TRICKY_TAGS, fields, T0)])
    block = store.read("tele metry,x", list(fields), tags=TRICKY_TAGS, start_ns=T0, end_ns=T0 + 1)
    assert block.time_ns.tolist() == [T0]
    assert block.fields["product temp, °C"].tolist() == [4.25]
    assert block.fields['say "hi"'].tolist() == ["xin chào"]
    assert block.fields["máy=1"].tolist() == [7.0]
    for key, value in TRICKY_TAGS.items():
        assert store.tag_values("tele metry,x", key) == [value]
    where = {"site": TRICKY_TAGS["site"], "line": TRICKY_TAGS["line"]}
    assert store.tag_values("tele metry,x", "machine", where=where) == [TRICKY_TAGS["machine"]]


def test_tag_values(store: Store) -> None:
    store.write_points(
        [
            Point("telemetry", FILLER, {"temp": 1.0}, T0),
            Point("telemetry", CAPPER, {"temp": 1.0}, T0),
            Point(
                "telemetry", {**FILLER, "line": "snacks", "machine": "bagger"}, {"temp": 1.0}, T0
            ),
            Point("oee", {"line": "capping"}, {"oee": 0.5}, T0),
        ]
    )
    assert store.tag_values("telemetry", "machine") == ["bagger", "capper", "filler"]
    assert store.tag_values("telemetry", "machine", where={"line": "filling"}) == [
        "capper",
        "filler",
    ]
    assert store.tag_values("telemetry", "line", where={"machine": "bagger"}) == ["snacks"]
    assert store.tag_values("telemetry", "machine", where={"line": "nope"}) == []
    assert store.tag_values("telemetry", "nope") == []
    assert store.tag_values("no such measurement", "machine") == []
    # InfluxQL reads FROM "" as every measurement
    assert store.tag_values("", "line") == ["capping", "filling", "snacks"]


# -- time ------------------------------------------------------------------------------------


def test_the_time_range_is_start_inclusive_end_exclusive(store: Store) -> None:
    store.write_points([Point("telemetry", FILLER, {"temp": float(i)}, T0 + i) for i in range(5)])
    block = read(store, ["temp"], start_ns=T0 + 1, end_ns=T0 + 3)
    assert block.time_ns.tolist() == [T0 + 1, T0 + 2]
    np.testing.assert_array_equal(block.fields["temp"], [1.0, 2.0])
    assert read(store, ["temp"], start_ns=T0 + 4, end_ns=T0 + 5).time_ns.tolist() == [T0 + 4]
    assert len(read(store, ["temp"], start_ns=T0 + 2, end_ns=T0 + 2)) == 0
    assert len(read(store, ["temp"], start_ns=T0 + 3, end_ns=T0 + 1)) == 0
    assert len(read(store, ["temp"], start_ns=T0 + 5, end_ns=T0 + 10)) == 0


def test_the_whole_time_range_of_influxdb_reads_back(store: Store) -> None:
    edges = [MIN_TIME_NS, -1, 0, MAX_TIME_NS]
    store.write_points(
        [Point("telemetry", FILLER, {"temp": float(i)}, t) for i, t in enumerate(edges)]
    )
    block = read(store, ["temp"], start_ns=-(2**63), end_ns=2**63 - 1)
    assert block.time_ns.tolist() == edges
    assert block.fields["temp"].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_an_empty_result_still_holds_every_field(store: Store) -> None:
    store.write_points([Point("telemetry", FILLER, {"temp": 1.0, "product": "milk"}, T0)])
    block = read(store, ["temp", "product", "missing"], start_ns=0, end_ns=T0)
    assert block.time_ns.dtype == np.int64 and len(block) == 0
    assert list(block.fields) == ["temp", "product", "missing"]
    assert block.fields["temp"].dtype == np.float64 and len(block.fields["temp"]) == 0
    assert block.fields["product"].dtype == object and len(block.fields["product"]) == 0
    assert read(store, ["product"], CAPPER).fields["product"].dtype == object
    nothing = store.read("no such measurement", ["x"], tags={}, start_ns=0, end_ns=T0)
    assert len(nothing) == 0 and list(nothing.fields) == ["x"]


# -- overwrites and types --------------------------------------------------------------------


def test_a_later_write_of_the_same_point_overwrites_it_field_by_field(store: Store) -> None:
    store.write_points([Point("telemetry", FILLER, {"temp": 1.0, "count": 5}, T0)])
    store.write_points([Point("telemetry", CAPPER, {"temp": 7.0}, T0)])
    store.write_points([Point("telemetry", FILLER, {"temp": 2.0, "product": "milk"}, T0)])
    store.write_points([Point("telemetry", FILLER, {"temp": 3.0}, T0)])  # a redelivery, say
    block = read(store, ["temp", "count", "product"])
    assert block.time_ns.tolist() == [T0]
    assert rows(block) == [(T0, 3.0, 5.0, "milk")]
    assert read(store, ["temp"], CAPPER).fields["temp"].tolist() == [7.0]


def test_a_field_keeps_its_first_type_and_a_conflicting_point_is_refused(store: Store) -> None:
    store.write_points([Point("telemetry", FILLER, {"temp": 1.0, "count": 1}, T0)])
    with pytest.raises(StoreError, match=TYPE_CONFLICT):
        store.write_points(
            [
                Point("telemetry", FILLER, {"temp": 2.0}, T0 + 1),
                Point("telemetry", FILLER, {"temp": "warm", "pressure": 2.0}, T0 + 2),
                Point("telemetry", CAPPER, {"temp": "cold"}, T0 + 3),
                Point("telemetry", FILLER, {"temp": 4.0, "pressure": 4.0}, T0 + 4),
            ]
        )
    # Like an InfluxDB partial write: the conflicting points are refused whole, the rest stored.
    block = read(store, ["temp", "pressure"])
    assert rows(block) == [(T0, 1.0, None), (T0 + 1, 2.0, None), (T0 + 4, 4.0, 4.0)]
    assert len(read(store, ["temp"], CAPPER)) == 0
    for value, kind in [(True, "boolean"), (5, "integer")]:
        with pytest.raises(StoreError, match=f"is type {kind}, already exists as type float"):
            store.write_points([Point("telemetry", FILLER, {"temp": value}, T0 + 9)])
    with pytest.raises(StoreError, match="is type float, already exists as type integer"):
        store.write_points([Point("telemetry", FILLER, {"count": 1.5}, T0 + 9)])
    # A type belongs to its measurement: another one may use the name for strings.
    assert store.write_points([Point("events", FILLER, {"temp": "warm"}, T0)]) == 1
    assert store.read("events", ["temp"], tags={}, start_ns=T0, end_ns=T0 + 1).fields[
        "temp"
    ].tolist() == ["warm"]


def test_what_influxdb_cannot_store_is_refused(store: Store) -> None:
    for bad, reason in [
        ({"temp": math.nan}, "not finite"),
        ({"temp": -math.inf}, "not finite"),
        ({"temp": None}, "cannot be written"),
        ({"time": 1.0}, "reserved"),
        ({}, "at least one field"),
    ]:
        with pytest.raises(StoreError, match=reason):
            store.write_points([Point("telemetry", FILLER, bad, T0)])  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="must be an integer of nanoseconds"):
        store.write_points([Point("telemetry", FILLER, {"temp": 1.0}, 1.5)])  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="tag value is empty"):
        store.write_points([Point("telemetry", {**FILLER, "line": ""}, {"temp": 1.0}, T0)])
    with pytest.raises(StoreError, match="starts with '#'"):
        store.write_points([Point("#telemetry", FILLER, {"temp": 1.0}, T0)])
    # The encoder takes int64's whole range; InfluxDB refuses its lowest but one.
    with pytest.raises(StoreError, match="time outside range"):
        store.write_points(
            [
                Point("telemetry", FILLER, {"temp": 1.0}, MIN_TIME_NS - 1),
                Point("telemetry", FILLER, {"temp": 2.0}, T0),
            ]
        )
    assert rows(read(store, ["temp"], start_ns=-(2**63), end_ns=2**63 - 1)) == [(T0, 2.0)]


def test_bad_reads_are_refused(store: Store) -> None:
    store.write_points([Point("telemetry", FILLER, {"temp": 1.0}, T0)])
    with pytest.raises(TypeError, match="not one string"):
        store.read("telemetry", "temp", tags=FILLER, start_ns=T0, end_ns=T0 + 1)
    with pytest.raises(ValueError, match="at least one field"):
        store.read("telemetry", [], tags=FILLER, start_ns=T0, end_ns=T0 + 1)
    with pytest.raises(TypeError):
        store.read("telemetry", ["temp"], tags=FILLER, start_ns=float(T0), end_ns=T0 + 1)  # type: ignore[arg-type]
    for measurement, fields, tags in [
        ("", ["temp"], FILLER),
        ("telemetry", ["time"], FILLER),
        ("telemetry", ["temp"], {**FILLER, "time": "x"}),
    ]:
        with pytest.raises(StoreError):
            store.read(measurement, fields, tags=tags, start_ns=T0, end_ns=T0 + 1)
    with pytest.raises(StoreError):
        store.read("telemetry", ["temp"], tags=FILLER, start_ns=-(2**64), end_ns=2**64)
    with pytest.raises(StoreError):
        store.tag_values("telemetry", "machine", where={"time": "x"})


# -- volume ----------------------------------------------------------------------------------


def test_200k_points_written_in_batches_read_back_exactly(store: Store) -> None:
    count, batch = 200_000, 25_000
    states = ("idle", "run", "stop")

    def points(start: int) -> Iterator[Point]:
        for i in range(start, start + batch):
            fields: dict[str, float | int | str] = {"temp": i / 8, "count": i}
            if i % 10 == 0:
                fields["state"] = states[i // 10 % 3]
            yield Point("telemetry", FILLER, fields, T0 + i * 10_000_000)

    written = sum(store.write_points(points(start)) for start in range(0, count, batch))
    assert written == count
    block = read(store, ["temp", "count", "state"], start_ns=T0, end_ns=T0 + count * 10_000_000)
    assert len(block) == count
    assert (np.diff(block.time_ns) == 10_000_000).all() and block.time_ns[0] == T0
    np.testing.assert_array_equal(block.fields["temp"], np.arange(count) / 8)
    np.testing.assert_array_equal(block.fields["count"], np.arange(count, dtype=np.float64))
    state = block.fields["state"]
    assert state[:21].tolist() == ["idle", *[None] * 9, "run", *[None] * 9, "stop"]
    assert sum(value is not None for value in state) == count // 10


def test_write_points_takes_any_iterable_and_counts_what_it_wrote(store: Store) -> None:
    assert store.write_points([]) == 0
    assert store.write_points(iter(())) == 0
    generated = (Point("telemetry", FILLER, {"temp": float(i)}, T0 + i) for i in range(3))
    assert store.write_points(generated) == 3
    assert len(read(store, ["temp"])) == 3


# -- the gateway's write path ----------------------------------------------------------------

GOOD = [
    Point("telemetry", FILLER, {"temp": 4.5, "count": 7, "on": True}, T0),
    Point("telemetry", FILLER, {"product": 'milk "1L"\nbatch 7\\b', "temp": 4.75}, T0 + 1),
    Point("telemetry", TRICKY_TAGS, {"product temp, °C": 4.0}, T0 + 2),
    Point("telemetry", CAPPER, {"temp": 5.0, "temp__quality": "uncertain"}, T0 + 3),
]


def write_body(backend: Backend, body: bytes) -> tuple[WriteOutcome, int | None, str]:
    async def scenario() -> tuple[WriteOutcome, int | None, str]:
        writer = backend.line_writer()
        try:
            result = await writer.write(body)
        finally:
            await writer.close()
        return result.outcome, result.status, result.message

    return asyncio.run(scenario())


def test_a_body_of_lines_is_stored_as_written(backend: Backend) -> None:
    outcome, status, _ = write_body(backend, encode_points(GOOD))
    assert (outcome, status) == (WriteOutcome.OK, 204)
    store = backend.store
    block = read(store, ["temp", "count", "on", "product"])
    assert rows(block) == [
        (T0, 4.5, 7.0, 1.0, None),
        (T0 + 1, 4.75, None, None, 'milk "1L"\nbatch 7\\b'),
    ]
    tricky = read(store, ["product temp, °C"], TRICKY_TAGS)
    assert tricky.fields["product temp, °C"].tolist() == [4.0]
    capper = read(store, ["temp", "temp__quality"], CAPPER)
    assert rows(capper) == [(T0 + 3, 5.0, "uncertain")]


def test_a_partly_bad_body_stores_its_good_lines_and_is_a_bad_request(backend: Backend) -> None:
    store = backend.store
    store.write_points([Point("telemetry", FILLER, {"temp": 1.0}, T0 - 1)])
    good = LineEncoder().lines(GOOD[:2])
    unparsable = "telemetry,machine=filler temp= 1763712000000000005"
    conflict = LineEncoder().point(Point("telemetry", FILLER, {"temp": "hot"}, T0 + 6))

    outcome, status, message = write_body(backend, "\n".join([good[0], unparsable]).encode())
    assert (outcome, status) == (WriteOutcome.BAD_REQUEST, 400)
    assert (
        message == f"partial write: unable to parse '{unparsable}': missing field value dropped=0"
    )

    # With a type conflict in the body, InfluxDB names only that, and counts it as dropped.
    outcome, status, message = write_body(
        backend, "\n".join([unparsable, good[1], conflict]).encode()
    )
    assert (outcome, status) == (WriteOutcome.BAD_REQUEST, 400)
    assert message == f"partial write: {TYPE_CONFLICT} dropped=1"
    assert read(store, ["temp"]).time_ns.tolist() == [T0 - 1, T0, T0 + 1]

    # Only bad lines: nothing is stored and InfluxDB says why, line by line.
    outcome, status, message = write_body(backend, b"bad\ntelemetry temp= 1")
    assert (outcome, status) == (WriteOutcome.BAD_REQUEST, 400)
    assert message == (
        "unable to parse 'bad': missing fields\nunable to parse 'telemetry temp= 1': "
        "missing field value"
    )


def test_the_gateway_dead_letters_only_the_refused_lines(backend: Backend, tmp_path: Path) -> None:
    backend.store.write_points([Point("telemetry", FILLER, {"temp": 1.0}, T0 - 1)])
    encoder = LineEncoder()
    good = [
        encoder.point(Point("telemetry", FILLER, {"temp": float(i)}, T0 + i)) for i in range(40)
    ]
    unparsable = "telemetry,machine=filler temp=1.0.0 1763712000000000100"
    conflict = encoder.point(Point("telemetry", FILLER, {"temp": "hot"}, T0 + 101))
    messages = [[*good[:15], unparsable, *good[15:30]], [conflict, *good[30:]]]
    run = through_gateway(backend.line_writer, messages, tmp_path / "spool.db", max_lines=100)

    assert sorted(line for line, _ in run.dead) == sorted([unparsable, conflict])
    reasons = dict(run.dead)
    assert "invalid number" in reasons[unparsable]
    assert "field type conflict" in reasons[conflict]
    assert run.stats.lines_written == 40 and run.spooled_lines == 0
    assert len(run.acked) == 2
    block = read(backend.store, ["temp"])
    assert block.fields["temp"].tolist() == [1.0, *map(float, range(40))]


# -- the embedded store's own behaviour -------------------------------------------------------


def test_the_file_is_in_wal_mode_with_the_documented_schema(tmp_path: Path) -> None:
    path = tmp_path / "plantwire.db"
    with SqliteStore(path) as store:
        store.write_points([Point("telemetry", FILLER, {"temp": 1.0}, T0)])
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"series", "series_tags", "fields", "points"} <= tables
        assert db.execute("SELECT type FROM fields WHERE name = 'temp'").fetchone() == ("float",)
    db.close()
    with SqliteStore(path) as reopened:  # the data and the field's type outlive the process
        assert read(reopened, ["temp"]).fields["temp"].tolist() == [1.0]
        with pytest.raises(StoreError, match=TYPE_CONFLICT):
            reopened.write_points([Point("telemetry", FILLER, {"temp": "hot"}, T0 + 1)])


def test_a_file_that_is_not_a_store_is_refused_clearly(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database " * 1000)
    with pytest.raises(StoreError, match=r"garbage\.db: file is not a database"):
        SqliteStore(garbage)
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="made by a newer PlantWire"):
        SqliteStore(newer)
    with pytest.raises(ValueError, match="needs a file"):
        SqliteStore(":memory:")
    store = SqliteStore(tmp_path / "closed.db")
    store.close()
    with pytest.raises(StoreError, match="is closed"):
        read(store, ["temp"])
    with pytest.raises(StoreError, match="is closed"):
        store.write_points([Point("telemetry", FILLER, {"temp": 1.0}, T0)])


def test_a_broken_file_is_spooled_by_the_gateway_and_replayed_once_repaired(
    tmp_path: Path,
) -> None:
    path = tmp_path / "plantwire.db"
    path.write_bytes(b"not a database " * 1000)
    broken = asyncio.run(make_sqlite_writer(path).write(encode_points(GOOD)))  # never raises
    assert (broken.outcome, broken.status) == (WriteOutcome.UNREACHABLE, None)
    assert "plantwire.db: file is not a database" in broken.message

    lines = [
        LineEncoder().point(Point("telemetry", FILLER, {"temp": float(i)}, T0 + i))
        for i in range(10)
    ]

    def repair(_: object) -> None:
        path.unlink()  # the operator moves the broken file away

    run = through_gateway(
        lambda: make_sqlite_writer(path),
        [lines[:5], lines[5:]],
        tmp_path / "spool.db",
        meanwhile=repair,
    )
    assert run.spooled_lines == 10 and run.dead == []  # safe on disk, nothing dead-lettered
    assert len(run.acked) == 2
    with SqliteStore(path) as store:
        assert read(store, ["temp"]).fields["temp"].tolist() == [float(i) for i in range(10)]


def test_a_busy_file_is_retried(tmp_path: Path) -> None:
    path = tmp_path / "plantwire.db"
    SqliteStore(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a long write
    writer = make_sqlite_writer(path, timeout_s=0.05)
    try:
        busy = writer.write_blocking(encode_points(GOOD))
        assert (busy.outcome, busy.status) == (WriteOutcome.RETRY, None)
        assert "locked" in busy.message
        holder.execute("COMMIT")
        assert writer.write_blocking(encode_points(GOOD)).outcome is WriteOutcome.OK
    finally:
        holder.close()
        asyncio.run(writer.close())


def test_reads_in_threads_see_whole_writes_while_the_event_loop_writes(tmp_path: Path) -> None:
    """The gateway writes from its event loop while analytics read from threads: no read fails
    or waits for a write, and each sees whole bodies only (a body is one transaction)."""
    path = tmp_path / "plantwire.db"
    bodies, per_body = 60, 500
    encoder = LineEncoder()
    seen: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def analytics(store: SqliteStore) -> None:
        try:
            while not done.is_set():
                block = read(store, ["temp"], start_ns=T0, end_ns=T0 + bodies * per_body)
                seen.append(len(block))
        except BaseException as exc:  # reported below, so the test fails with it
            errors.append(exc)

    async def gateway() -> None:
        writer = make_sqlite_writer(path)
        results = await asyncio.gather(
            *(
                writer.write(
                    encoder.encode(
                        Point("telemetry", FILLER, {"temp": 1.0}, T0 + n * per_body + i)
                        for i in range(per_body)
                    )
                )
                for n in range(bodies)
            )
        )
        await writer.close()
        assert {result.outcome for result in results} == {WriteOutcome.OK}

    with SqliteStore(path) as store:
        readers = [threading.Thread(target=analytics, args=(store,)) for _ in range(2)]
        for thread in readers:
            thread.start()
        try:
            asyncio.run(gateway())
        finally:
            done.set()
            for thread in readers:
                thread.join()
        assert errors == []
        assert len(read(store, ["temp"], end_ns=T0 + bodies * per_body)) == bodies * per_body
    assert seen and all(count % per_body == 0 for count in seen)


def test_writes_from_several_threads_all_land(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "plantwire.db") as store:

        def write(machine: str) -> None:
            tags = {**FILLER, "machine": machine}
            for n in range(20):
                store.write_points(
                    Point("telemetry", tags, {"temp": float(i)}, T0 + n * 100 + i)
                    for i in range(100)
                )

        threads = [threading.Thread(target=write, args=(f"m{k}",)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        block = store.read(
            "telemetry", ["temp"], tags={"line": "filling"}, start_ns=T0, end_ns=T0 + 2000
        )
        assert len(block) == 4 * 2000
        assert store.tag_values("telemetry", "machine") == ["m0", "m1", "m2", "m3"]
