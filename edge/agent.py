"""The edge agent: the sources of one edge node's machines, report by exception, the disk buffer,
the forwarder to MQTT, and the health endpoint, run together in one event loop.

Every source runs under a supervisor that owns reconnection: connect, read until the transport
is lost, close, wait with jittered exponential backoff, connect again -- logging once when a
source becomes unavailable and once when it is back. Readings go through report by exception
into the buffer (flushed to disk every ``FLUSH_INTERVAL_S``), and the forwarder drains the buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from edge.buffer import DiskBuffer
from edge.forwarder import Forwarder
from edge.publish import make_format
from edge.rbe import ReportByException, TagPolicy
from edge.sources.base import NotConnected, Source, SourceStats, SourceTarget
from edge.sources.registry import driver_for
from plantwire.backoff import Backoff
from plantwire.config.common import DeadbandKind, SourceConfig
from plantwire.config.models import EdgeNode, Machine, SiteConfig
from plantwire.health import HealthServer, HealthStatus
from plantwire.lifecycle import cancel_and_wait
from plantwire.logs import LogOnce
from plantwire.metrics import CounterFunction, Gauge, Registry
from plantwire.model import AssetPath, Sample

__all__ = ["EdgeAgent", "make_drivers", "node_machines"]

log = logging.getLogger("plantwire.edge")
FLUSH_INTERVAL_S = 0.05  # samples wait at most this long in memory before they are on disk
RATE_WINDOW_S = 10.0


def node_machines(site: SiteConfig, node_id: str) -> list[tuple[AssetPath, Machine]]:
    """The machines an edge node reads, with their asset paths (a machine without sources
    publishes its own data: ingest rules)."""
    return [
        (AssetPath(site.site.id, area.id, line.id, machine.id), machine)
        for area, line, machine in site.machines()
        if machine.sources and site.edge_node_of(machine) == node_id
    ]


def make_drivers(machines: list[tuple[AssetPath, Machine]]) -> list[Source]:
    """One driver per connection: the source blocks with the same protocol and connection key
    (the same endpoint, and what else one connection must share) share one."""
    groups: dict[tuple[object, ...], list[SourceTarget[SourceConfig]]] = defaultdict(list)
    for asset, machine in machines:
        for source in machine.sources:
            metrics = {tag.metric for tag in source.tags}
            clock = machine.clock_metric if machine.clock_metric in metrics else None
            key = (source.protocol, *source.connection_key())
            groups[key].append(SourceTarget(asset, source, clock))
    return [driver_for(targets[0].config.protocol)(targets) for targets in groups.values()]


def _policies(machines: list[tuple[AssetPath, Machine]]) -> dict[tuple[AssetPath, str], TagPolicy]:
    policies: dict[tuple[AssetPath, str], TagPolicy] = {}
    for asset, machine in machines:
        for source in machine.sources:
            for tag in source.tags:
                kind = getattr(tag, "deadband_kind", DeadbandKind.ABSOLUTE)  # percent: OPC UA only
                policies[(asset, tag.metric)] = TagPolicy(tag.deadband, kind, tag.max_interval_s)
    return policies


def _is_connected(stats: SourceStats) -> float:
    return float(stats.connected)


def _reads(stats: SourceStats) -> float:
    return float(stats.reads)


def _errors(stats: SourceStats, kind: str) -> float:
    return float(stats.errors.get(kind, 0))


class EdgeAgent:
    def __init__(
        self,
        site: SiteConfig,
        node_id: str,
        *,
        buffer_path: Path | None = None,
        health_port: int | None = None,
        health_host: str = "127.0.0.1",
    ) -> None:
        node = next((n for n in site.edge_nodes if n.id == node_id), None)
        if node is None:
            known = ", ".join(n.id for n in site.edge_nodes)
            raise ValueError(f"edge node {node_id!r} is not in the site file (edge_nodes: {known})")
        self.site = site
        self.node: EdgeNode = node
        self.machines = node_machines(site, node_id)
        if not self.machines:
            raise ValueError(f"edge node {node_id!r} reads no machines (set edge_node on machines)")
        self.drivers = make_drivers(self.machines)
        self.rbe = ReportByException(_policies(self.machines))
        path = buffer_path or node.buffer_path or Path(f"plantwire-edge-{node.id}.db")
        self.buffer = DiskBuffer(path, node.id, max_bytes=int(node.buffer_max_mb * 1_000_000))
        self.forwarder = Forwarder(
            self.buffer,
            site.mqtt,
            make_format(site, node, self.buffer, self.machines),
            edge_id=node.id,
            site=site.site.id,
            max_samples=node.batch_max_samples,
            max_latency_s=node.batch_max_latency_ms / 1000,
        )
        self.samples_read = 0
        self._source_tasks: list[asyncio.Task[None]] = []
        self._rate_marks: list[tuple[float, int]] = [(time.monotonic(), 0)]
        self._once = LogOnce(log)
        self.registry = Registry()
        self._metrics()
        port = node.health_port if health_port is None else health_port  # 0: no endpoint
        self.health = HealthServer(self.registry, self.status, health_host, port) if port else None

    # -- intake -----------------------------------------------------------------------------------
    def intake(self, asset: AssetPath, samples: Sequence[Sample]) -> None:
        """Every source delivers here: filter, then stage for the disk buffer."""
        self.samples_read += len(samples)
        kept = self.rbe.filter(asset, samples)
        if kept:
            self.buffer.append(asset, kept)
            if self.buffer.staged >= self.node.batch_max_samples:
                self._flush()

    def _flush(self) -> None:
        self.buffer.flush()
        self.forwarder.notify()

    def stats(self) -> dict[str, float]:
        """The counters the agent publishes for the pipeline board."""
        sources = [driver.stats.connected for driver in self.drivers]
        return {
            "mqtt_connected": float(self.forwarder.connected),
            "sources_connected": float(sum(sources)),
            "sources_total": float(len(sources)),
            "samples_read_total": float(self.samples_read),
            "samples_published_total": float(self.forwarder.samples_published),
            "samples_buffered": float(self.buffer.samples),
            "samples_dropped_total": float(self.buffer.dropped_samples),
            "buffer_bytes": float(self.buffer.bytes),
            "reads_per_s": self.reads_per_second(),
        }

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.node.stats_interval_s)
            self.forwarder.publish_stats(self.stats())

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            self._flush()

    # -- sources ----------------------------------------------------------------------------------
    async def _supervise(self, driver: Source) -> None:
        backoff = Backoff()
        while True:
            reason: str | None = None
            try:
                await driver.connect()
                backoff.reset()
                self._once.recovered(driver.name, "source %s connected", driver.name)
                self._eu_ranges(driver)
                await driver.run(self.intake)
            except NotConnected as exc:
                reason = str(exc)
            except Exception:  # a driver bug must not take the other sources down with it
                log.exception("source %s failed unexpectedly; restarting it", driver.name)
            else:
                reason = "the source stopped delivering"
            finally:
                driver.stats.connected = False
                await driver.close()
            if reason is not None:
                driver.stats.error("transport")
                self._once.problem(
                    driver.name,
                    "source %s unavailable: %s; retrying with backoff",
                    driver.name,
                    reason,
                )
            await backoff.sleep()

    def _eu_ranges(self, driver: Source) -> None:
        eu_range = getattr(driver, "eu_range", None)
        if eu_range is None:
            return
        for (asset, metric), policy in list(self.rbe.policies.items()):
            if policy.kind is DeadbandKind.PERCENT:
                found = eu_range(asset, metric)
                if found is not None:
                    self.rbe.set_eu_range(asset, metric, found)

    # -- health -----------------------------------------------------------------------------------
    def _metrics(self) -> None:
        registry = self.registry
        CounterFunction(
            registry, "plantwire_edge_samples_read_total", "Samples read from sources."
        ).set_function(lambda: self.samples_read)
        CounterFunction(
            registry,
            "plantwire_edge_samples_suppressed_total",
            "Samples not sent: unchanged within deadband.",
        ).set_function(lambda: self.rbe.suppressed)
        CounterFunction(
            registry,
            "plantwire_edge_samples_published_total",
            "Samples acknowledged by the broker.",
        ).set_function(lambda: self.forwarder.samples_published)
        CounterFunction(
            registry,
            "plantwire_edge_batches_published_total",
            "Batches acknowledged by the broker.",
        ).set_function(lambda: self.forwarder.batches_published)
        CounterFunction(
            registry, "plantwire_edge_batches_refused_total", "Batches the broker refused."
        ).set_function(lambda: self.forwarder.refused)
        Gauge(
            registry, "plantwire_edge_samples_buffered", "Samples on disk not yet acknowledged."
        ).set_function(lambda: self.buffer.samples)
        Gauge(
            registry, "plantwire_edge_buffer_bytes", "Payload bytes in the disk buffer."
        ).set_function(lambda: self.buffer.bytes)
        CounterFunction(
            registry,
            "plantwire_edge_samples_dropped_total",
            "Samples dropped because the buffer was full (its cap, or its disk).",
        ).set_function(lambda: self.buffer.dropped_samples)
        Gauge(
            registry,
            "plantwire_edge_buffer_disk_bytes",
            "What SQLite uses for the buffer (pages with data, and the WAL): the cap counts it.",
        ).set_function(self.buffer.room.used_bytes)
        Gauge(
            registry,
            "plantwire_edge_buffer_limit_bytes",
            "The buffer's limit now: buffer_max_mb, or less when its disk has less room.",
        ).set_function(lambda: self.buffer.room.limit_bytes() + self.buffer.room.wal_bytes)
        CounterFunction(
            registry,
            "plantwire_edge_buffer_disk_full_total",
            "Times a write to the buffer found its disk full (SQLITE_FULL).",
        ).set_function(lambda: self.buffer.disk_full_events)
        Gauge(
            registry, "plantwire_edge_mqtt_connected", "1 while connected to the broker."
        ).set_function(lambda: float(self.forwarder.connected))
        CounterFunction(
            registry,
            "plantwire_edge_mqtt_connect_failures_total",
            "Connection attempts the broker refused or did not answer (TLS, login, network).",
        ).set_function(lambda: self.forwarder.connect_failures)
        Gauge(
            registry, "plantwire_edge_reads_per_second", "Samples read per second, last 10 s."
        ).set_function(self.reads_per_second)
        connected = Gauge(
            registry,
            "plantwire_edge_source_connected",
            "1 while a source is connected.",
            ["source"],
        )
        reads = CounterFunction(
            registry,
            "plantwire_edge_source_reads_total",
            "Requests or notifications per source.",
            ["source"],
        )
        errors = CounterFunction(
            registry,
            "plantwire_edge_source_errors_total",
            "Source errors by kind.",
            ["source", "kind"],
        )
        for driver in self.drivers:
            stats = driver.stats
            connected.set_function(functools.partial(_is_connected, stats), source=driver.name)
            reads.set_function(functools.partial(_reads, stats), source=driver.name)
            for kind in ("transport", "timeout", "busy", "illegal", "device", "clock"):
                errors.set_function(
                    functools.partial(_errors, stats, kind), source=driver.name, kind=kind
                )

    def reads_per_second(self) -> float:
        now = time.monotonic()
        self._rate_marks.append((now, self.samples_read))
        while len(self._rate_marks) > 2 and now - self._rate_marks[1][0] > RATE_WINDOW_S:
            self._rate_marks.pop(0)
        first_time, first_count = self._rate_marks[0]
        return (self.samples_read - first_count) / (now - first_time) if now > first_time else 0.0

    def status(self) -> HealthStatus:
        sources = {driver.name: driver.stats.connected for driver in self.drivers}
        healthy = self.forwarder.connected and all(sources.values())
        return HealthStatus(
            healthy,
            {
                "edge": self.node.id,
                "mqtt_connected": self.forwarder.connected,
                "sources": sources,
                "samples_read": self.samples_read,
                "samples_published": self.forwarder.samples_published,
                "samples_buffered": self.buffer.samples,
                "samples_dropped": self.buffer.dropped_samples,
                "buffer_disk_full": self.buffer.room.disk_is_the_limit(),
            },
        )

    # -- lifecycle --------------------------------------------------------------------------------
    async def run(self) -> None:
        """Run until cancelled; then flush, say goodbye to the broker and close."""
        if self.health is not None:
            await self.health.start()
        log.info(
            "edge %s: %d machines, %d sources, buffer %s (%d samples waiting)",
            self.node.id,
            len(self.machines),
            len(self.drivers),
            self.buffer.path,
            self.buffer.samples,
        )
        self._source_tasks = [
            asyncio.create_task(self._supervise(d), name=d.name) for d in self.drivers
        ]
        delivery = [
            asyncio.create_task(self._flush_loop(), name="flush"),
            asyncio.create_task(self.forwarder.run(), name="forwarder"),
        ]
        tasks = [*self._source_tasks, *delivery]
        if self.node.stats_interval_s > 0:
            tasks.append(asyncio.create_task(self._stats_loop(), name="stats"))
        try:
            # Only delivery ends the agent: sources may be stopped on their own (see drain).
            await asyncio.gather(*delivery)
        finally:
            await cancel_and_wait(tasks)
            await self._shutdown()

    async def drain(self, timeout_s: float) -> bool:
        """Stop reading and wait until the broker has everything buffered (True) or the time is up.

        For a planned stop: what is not acknowledged by then stays on disk for the next start.
        """
        await cancel_and_wait(self._source_tasks)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._flush()
            if self.buffer.samples == 0 and self.buffer.staged == 0:
                return True
            await asyncio.sleep(FLUSH_INTERVAL_S)
        return False

    async def _shutdown(self) -> None:
        for driver in self.drivers:
            with contextlib.suppress(Exception):  # closing is best effort; the buffer matters
                await driver.close()
        self.buffer.flush()
        await self.forwarder.stop()
        self.buffer.close()
        if self.health is not None:
            await self.health.stop()
        log.info(
            "edge %s stopped; %d samples stay buffered for the next start",
            self.node.id,
            self.buffer.samples,
        )
