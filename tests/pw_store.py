"""Test helpers for the store backends: each backend behind one face (a store and a factory of
the gateway's line writer for it), and a run of lines through the gateway's own batching writer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gateway.ack import AckTracker, Delivery
from gateway.spool import Spool
from gateway.writer import LineWriter, Writer, WriterStats
from plantwire.config.models import InfluxConfig
from plantwire.store import InfluxStore, Store
from plantwire.store.influx_async import AsyncInfluxV1Writer
from plantwire.store.sqlite import SqliteStore
from plantwire.store.sqlite_write import make_sqlite_writer
from plantwire.testing.servers import InfluxClient, Influxd


class ClosingLineWriter(LineWriter, Protocol):
    async def close(self) -> None: ...


@dataclass
class Backend:
    """A store, and how to make the gateway's writer into the same database.

    The writer is made inside each test's event loop: the InfluxDB one keeps connections that
    belong to the loop that opened them.
    """

    name: str
    store: Store
    line_writer: Callable[[], ClosingLineWriter]


@contextmanager
def influx_backend(server: Influxd, database: InfluxClient) -> Iterator[Backend]:
    config = InfluxConfig(url=server.url, api="v1", database=database.database)
    with InfluxStore(config) as store:
        yield Backend("influxdb", store, lambda: AsyncInfluxV1Writer(server.url, database.database))


@contextmanager
def sqlite_backend(path: Path) -> Iterator[Backend]:
    with SqliteStore(path) as store:
        yield Backend("sqlite", store, lambda: make_sqlite_writer(path))


@dataclass
class GatewayRun:
    """What the gateway's writer did with some lines: dead letters, acknowledgements, stats."""

    dead: list[tuple[str, str]] = field(default_factory=list)  # (line, reason)
    acked: list[Any] = field(default_factory=list)
    stats: WriterStats = field(default_factory=WriterStats)
    spooled_lines: int = 0


class _Message:
    def __init__(self, mid: int) -> None:
        self.mid = mid
        self.qos = 1


def through_gateway(
    make_writer: Callable[[], ClosingLineWriter],
    messages: list[list[str]],
    spool_path: Path,
    *,
    max_lines: int = 1000,
    meanwhile: Callable[[Writer], None] = lambda writer: None,
    timeout_s: float = 30,
) -> GatewayRun:
    """Hand each message's lines to the gateway's :class:`Writer` as the gateway does, wait
    until every message is acknowledged, call ``meanwhile`` (to repair a broken store, say),
    then wait until the writer's loop has replayed its spool, and report."""
    run = GatewayRun()
    tracker = AckTracker(run.acked.append)

    async def scenario() -> None:
        line_writer = make_writer()
        spool = Spool(spool_path, max_bytes=10**8)
        writer = Writer(
            line_writer,
            spool,
            release=tracker.release,
            dead_line=lambda line, reason: run.dead.append((line, reason)),
            max_lines=max_lines,
            max_latency_s=0.01,
            max_in_flight=4,
        )
        loop_task = asyncio.create_task(writer.run())
        clock = asyncio.get_running_loop()
        try:
            for mid, lines in enumerate(messages):
                delivery: Delivery = tracker.receive(_Message(mid))  # type: ignore[arg-type]
                writer.add(lines, delivery)
                tracker.release(delivery)  # the receiver is done with it
            assert await writer.drain(timeout_s)
            run.spooled_lines = writer.stats.spooled_lines
            meanwhile(writer)
            deadline = clock.time() + timeout_s
            while writer.spool.batches:
                assert clock.time() < deadline, "the spool was never replayed"
                await asyncio.sleep(0.02)
            run.stats = writer.stats
        finally:
            loop_task.cancel()
            await asyncio.gather(loop_task, return_exceptions=True)
            await line_writer.close()
            spool.close()

    asyncio.run(scenario())
    return run
