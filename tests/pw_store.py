"""Test helpers for the store backends: each backend behind one face (a store and a factory of
the gateway's line writer for it), and a run of lines through the gateway's own batching writer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.ack import AckTracker, Delivery
from gateway.spool import Spool
from gateway.writer import Writer, WriterStats
from plantwire.config.stores import InfluxConfig, SqliteConfig, StoreConfig
from plantwire.store import Store
from plantwire.store.base import LineWriter
from plantwire.store.registry import backend_for
from plantwire.testing.servers import InfluxClient, Influxd


@dataclass
class Backend:
    """A store, and how to make the gateway's writer into the same database.

    The writer is made inside each test's event loop: the InfluxDB one keeps connections that
    belong to the loop that opened them.
    """

    name: str
    store: Store
    line_writer: Callable[[], LineWriter]


def influx_config(request: pytest.FixtureRequest, tmp_path: Path) -> StoreConfig:
    # Asked for here, not in a test's signature, so that other backends' runs never need influxd.
    server: Influxd = request.getfixturevalue("influxd")
    database: InfluxClient = request.getfixturevalue("influx")
    return InfluxConfig(url=server.url, api="v1", database=database.database)


def sqlite_config(request: pytest.FixtureRequest, tmp_path: Path) -> StoreConfig:
    return SqliteConfig(path=tmp_path / "store" / "plantwire.db")


# Each store backend's block for a test, by backend name: the conformance suite runs on every
# backend of plantwire.store.registry, so a new backend adds its line here.
STORE_CONFIGS: dict[str, Callable[[pytest.FixtureRequest, Path], StoreConfig]] = {
    "influxdb": influx_config,
    "sqlite": sqlite_config,
}


@contextmanager
def registered_backend(config: StoreConfig) -> Iterator[Backend]:
    """A backend as the registry gives it: its store, and its gateway writer."""
    code = backend_for(config.backend)
    with code.open_store(config) as store:
        yield Backend(
            config.backend,
            store,
            lambda: code.line_writer(config, max_connections=4),
        )


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
    make_writer: Callable[[], LineWriter],
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
