"""The embedded store's throughput: points/s written and rows/s read, beside InfluxDB's.

    python bench/store_sqlite.py [--points 200000] [--fields 5] [--machines 4] [--chunk 5000]
                                 [--influx-url http://127.0.0.1:8086 [--influx-database bench]]

Three figures per store, on the same points: ``write_points`` (analytics' path), the gateway's
path (line-protocol bodies of ``--chunk`` lines through the store's line writer), and one
``read`` of every point of one machine's fields (the best of three). Points are telemetry-like:
floats with a few significant digits, a counter, a run flag and a product name. With
``--influx-url`` the same figures are printed for InfluxStore and the gateway's InfluxDB 1.x
writer (the database is created if missing; ``plantwire.testing.servers.Influxd`` starts a
private influxd).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from plantwire.config.stores import InfluxConfig
from plantwire.lineprotocol import LineEncoder, Point
from plantwire.store import InfluxStore, Store
from plantwire.store.influx_async import AsyncInfluxV1Writer
from plantwire.store.influx_write import WriteOutcome, WriteResult
from plantwire.store.sqlite import SqliteStore
from plantwire.store.sqlite_write import make_sqlite_writer


class LineWriter(Protocol):
    async def write(self, body: bytes) -> WriteResult: ...
    async def close(self) -> None: ...


T0 = 1_763_712_000_000_000_000
STEP_NS = 100_000_000  # 10 readings a second


def make_points(count: int, fields: int, machines: int, *, first: int = 0) -> list[Point]:
    rng = random.Random(1)
    tags = [
        {"site": "binh-duong", "area": "dairy", "line": "filling", "machine": f"filler-{m}"}
        for m in range(machines)
    ]
    names = ["temp", "count", "running", "product", *(f"signal_{i}" for i in range(fields))]
    names = names[:fields]
    points = []
    for n in range(count):
        row: dict[str, float | int | bool | str] = {}
        for name in names:
            if name == "count":
                row[name] = first + n
            elif name == "running":
                row[name] = rng.random() < 0.9
            elif name == "product":
                row[name] = "milk 1L"
            else:
                row[name] = round(rng.uniform(0, 200), 2)
        points.append(Point("telemetry", tags[n % machines], row, T0 + (first + n) * STEP_NS))
    return points


def timed(action: Callable[..., object], *args: object) -> float:
    started = time.perf_counter()
    action(*args)
    return time.perf_counter() - started


def bodies_of(points: list[Point], chunk: int) -> list[bytes]:
    encoder = LineEncoder()
    return [encoder.encode(points[i : i + chunk]) for i in range(0, len(points), chunk)]


def write_bodies(writer_factory: Callable[[], LineWriter], bodies: list[bytes]) -> None:
    async def run() -> None:
        writer = writer_factory()
        try:
            for body in bodies:  # one at a time: the figure is per write path, not parallelism
                result = await writer.write(body)
                assert result.outcome is WriteOutcome.OK, result
        finally:
            await writer.close()

    asyncio.run(run())


def measure(
    name: str,
    store: Store,
    writer_factory: Callable[[], LineWriter],
    args: argparse.Namespace,
) -> None:
    count = args.points
    first = make_points(count, args.fields, args.machines)
    second = bodies_of(make_points(count, args.fields, args.machines, first=count), args.chunk)
    write_s = timed(store.write_points, first)
    lines_s = timed(write_bodies, writer_factory, second)
    fields = list(first[0].fields)
    tags = dict(first[0].tags)
    # Analytics do not hold 200,000 points while reading: without them the read is not timed
    # with the garbage collector walking them.
    del first, second
    gc.collect()
    result: dict[str, int] = {}

    def read_all() -> None:
        block = store.read(
            "telemetry", fields, tags=tags, start_ns=T0, end_ns=T0 + 2 * count * STEP_NS
        )
        result["rows"] = len(block)

    read_s = min(timed(read_all) for _ in range(3))  # the best of three: a busy machine
    rows = result["rows"]
    assert rows == 2 * count // args.machines, rows
    values = count * args.fields
    print(
        f"{name:8} write_points {count / write_s:>10,.0f} points/s ({values / write_s:>11,.0f} "
        f"values/s) | gateway bodies {count / lines_s:>9,.0f} lines/s | "
        f"read {rows / read_s:>10,.0f} rows/s ({rows:,} rows x {len(fields)} fields)"
    )


def influx_store(url: str, database: str) -> tuple[InfluxStore, Callable[[], LineWriter]]:
    query = urllib.parse.urlencode({"q": f'CREATE DATABASE "{database}"'}).encode()
    urllib.request.urlopen(f"{url.rstrip('/')}/query", data=query, timeout=30).read()
    store = InfluxStore(InfluxConfig(url=url, api="v1", database=database))
    return store, lambda: AsyncInfluxV1Writer(url, database)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--fields", type=int, default=5)
    parser.add_argument("--machines", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=5_000, help="lines per gateway body")
    parser.add_argument("--influx-url", default=None)
    parser.add_argument("--influx-database", default=f"bench_{os.getpid()}")
    args = parser.parse_args()
    print(
        f"{args.points:,} points x {args.fields} fields, {args.machines} machines, "
        f"bodies of {args.chunk:,} lines; python {sys.version.split()[0]}"
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "plantwire.db"
        with SqliteStore(path) as store:
            measure("sqlite", store, lambda: make_sqlite_writer(path), args)
        print(f"{'':8} file: {path.stat().st_size / 2**20:,.1f} MiB for {2 * args.points:,} points")
    if args.influx_url:
        influx, writer = influx_store(args.influx_url, args.influx_database)
        with influx:
            measure("influxdb", influx, writer, args)


if __name__ == "__main__":
    main()
