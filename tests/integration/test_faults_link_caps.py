"""Fault suite, part 2, end to end: the simulated plant's Modbus server -> PlantWire edge agent ->
the link emulator -> real Mosquitto -> PlantWire gateway -> real influxd.

Samples are counted going in (each (machine, metric, timestamp) the edge read, once) and coming
out (InfluxQL ``COUNT`` in influxd), through

* a 60 s link outage followed by five minutes of a degraded 5G cell: N in = N out;
* the edge's disk buffer reaching ``buffer_max_mb``: read = arrived + dropped (the edge's own
  counter), and the dropped samples are the oldest of the outage, per the "drop oldest" policy;
* the gateway's spool reaching ``spool_max_mb`` while influxd is down: intake stops at the cap
  (the broker holds the messages), nothing is dead-lettered, and after influxd is back N in =
  N out, each sample once.

Run with ``-s`` to see the figures (``sent=... arrived=... dropped=...``) that
docs/RELIABILITY.md quotes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from pw_faults import QUALITY_SUFFIX, Intake, fill_disk, free_bytes, points_stored
from pw_gateway import TopicCounter, running, stop
from pw_mqtt import DEMO, SampleKey, sim_site

from edge.agent import EdgeAgent
from gateway.service import Gateway
from plantwire.config import SiteConfig, load_site
from plantwire.influxql import quote_literal
from plantwire.model import AssetPath, Quality, Sample
from plantwire.store.influx_async import make_async_writer
from plantwire.testing.servers import InfluxClient, Influxd, Mosquitto, free_port
from simulators.link import LinkEmulator
from simulators.modbus_server import ModbusPlantServer
from simulators.plant import Plant
from simulators.runner import SimRunner

pytestmark = pytest.mark.servers

# Plant seconds per wall second. The edge reads the dairy line (four Modbus machines, about 100
# tags) every plant second: about 200 samples a wall second, light on two shared cores.
SPEED = 2.0
EDGE = "edge-dairy"
TAG_COLUMNS = frozenset({"time", "site", "area", "line", "machine", "_measurement"})

OUTAGE_S = 60.0  # test 1: the figures
DEGRADED_S = 300.0
BUFFER_CAP_MB = 0.1  # test 2: about five seconds of the line's samples, in SQLite pages and WAL
BUFFER_OUTAGE_S = 30.0
SPOOL_CAP_MB = 0.1  # test 3: about twenty seconds of the line's points
RECEIVE_MAXIMUM = 8  # test 3: what the gateway may hold unacknowledged; the broker keeps the rest


# -- counting in ----------------------------------------------------------------------------------
class ReadLedger:
    """What the edge's sources read, each (machine, metric, timestamp) once.

    A poll that lands twice in one PLC scan reads the same clock and values again: one sample,
    which InfluxDB stores once (see ``DistinctCount`` in demo/orchestra.py). A sample
    with a value becomes a value field in InfluxDB; one whose quality is not good also (or,
    without a value, only) writes ``<metric>__quality``: both are counted.

    Each poll also remembers how many times the edge had connected to the broker when it was
    read, which tells, exactly, whether it was read before or after a reconnection.
    """

    def __init__(self, connects: Callable[[], int], *, pass_rereads: bool = True) -> None:
        self.valued: set[SampleKey] = set()
        self.flagged: set[SampleKey] = set()
        self.rereads = 0
        self.polls: dict[tuple[AssetPath, int], int] = {}  # (machine, timestamp) -> connects
        self._connects = connects
        self._pass_rereads = pass_rereads

    def wrap(self, intake: Intake) -> Intake:
        def recording(asset: AssetPath, samples: Sequence[Sample]) -> None:
            fresh = [s for s in samples if not self._seen(asset, s)]
            self.rereads += len(samples) - len(fresh)
            for sample in fresh:
                key = (asset, sample.metric, sample.ts_ns)
                if sample.value is not None:
                    self.valued.add(key)
                if sample.quality is not Quality.GOOD:
                    self.flagged.add(key)
                self.polls.setdefault((asset, sample.ts_ns), self._connects())
            intake(asset, samples if self._pass_rereads else fresh)

        return recording

    def _seen(self, asset: AssetPath, sample: Sample) -> bool:
        key = (asset, sample.metric, sample.ts_ns)
        return key in self.valued or key in self.flagged

    @property
    def samples(self) -> set[SampleKey]:
        return self.valued | self.flagged

    @property
    def expected(self) -> tuple[int, int]:
        """(value fields, quality fields) InfluxDB must hold."""
        return len(self.valued), len(self.flagged)


# -- counting out ---------------------------------------------------------------------------------
def samples_stored(influx: InfluxClient, site_id: str) -> set[SampleKey]:
    """Every sample of one site in influxd, as (machine, metric, timestamp)."""
    keys: set[SampleKey] = set()
    for row in influx.rows(f"SELECT * FROM telemetry WHERE site = {quote_literal(site_id)}"):
        asset = AssetPath(row["site"], row["area"], row["line"], row["machine"])
        for column, value in row.items():
            if column not in TAG_COLUMNS and value is not None:
                keys.add((asset, column.removesuffix(QUALITY_SUFFIX), int(row["time"])))
    return keys


async def wait_stored(
    influx: InfluxClient, site_id: str, want: tuple[int, int], timeout_s: float
) -> tuple[int, int]:
    """Poll until influxd holds ``want`` fields (or the time is up); return what it holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = await asyncio.to_thread(points_stored, influx, site_id)
        if got == want or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.5)


async def until_arrived(
    influx: InfluxClient, site_id: str, want: int, timeout_s: float
) -> set[SampleKey]:
    """The samples in influxd once ``want`` arrived (the gateway writes what the broker holds
    for it), or when the time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        arrived = await asyncio.to_thread(samples_stored, influx, site_id)
        if len(arrived) >= want or time.monotonic() > deadline:
            return arrived
        await asyncio.sleep(0.5)


def report(test: str, **figures: object) -> None:
    """The figures docs/RELIABILITY.md quotes (shown with ``pytest -s``)."""
    print(f"\n[{test}] " + " ".join(f"{name}={value}" for name, value in figures.items()))


# -- the services ---------------------------------------------------------------------------------
async def until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Wait for a condition of the in-process services, failing with ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout_s} s"
        await asyncio.sleep(0.1)


async def scrape(port: int) -> dict[str, float]:
    """A service's Prometheus metrics from its health endpoint, as the site's Prometheus sees
    them: ``{'name{labels}': value}``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: plantwire\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split()[1] == b"200", head
    metrics: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            metrics[name] = float(value)
    return metrics


@contextlib.asynccontextmanager
async def simulated_plant() -> AsyncIterator[ModbusPlantServer]:
    """The simulated plant served over Modbus, paced by the wall clock in this event loop."""
    plant = Plant(DEMO)
    modbus = ModbusPlantServer(plant, port=free_port())
    runner = SimRunner(plant, speed=SPEED, modbus=modbus)
    await runner.start()
    task = asyncio.create_task(runner.run())
    try:
        yield modbus
    finally:
        await stop(task)
        await runner.stop()


def fault_site(
    tmp_path: Path,
    *,
    modbus_port: int,
    mqtt_port: int,
    influxd: Influxd,
    database: str,
    edge: dict[str, Any] | None = None,
    gateway: dict[str, Any] | None = None,
) -> SiteConfig:
    """The simulated plant's site file: the edge publishes to ``mqtt_port`` (the link emulator
    or the broker), the gateway writes to ``database``.

    A client id prefix of its own: the gateway's persistent session must never resume another
    test's session, with its subscriptions and queued messages.
    """
    path, config = sim_site(
        tmp_path,
        modbus_port=modbus_port,
        mqtt_port=mqtt_port,
        speed=SPEED,
        wait_for_gateway=True,  # as shipped: data leaves only once a gateway is online
        mqtt={
            "url": f"mqtt://127.0.0.1:{mqtt_port}",
            "client_id_prefix": f"caps-{uuid.uuid4().hex[:8]}",
        },
        store={"backend": "influxdb", "url": influxd.url, "database": database},
        gateway={"health_port": 0, "batch_max_latency_ms": 50, **(gateway or {})},
    )
    for node in config["edge_nodes"]:
        if node["id"] == EDGE:
            node.update(edge or {})
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return load_site(path)


def gateway_for(site: SiteConfig, broker: Mosquitto, spool: Path) -> Gateway:
    """The gateway, subscribed on ``broker`` itself (never through the link emulator)."""
    influxdb = site.store
    assert influxdb is not None
    direct = site.mqtt.model_copy(update={"url": broker.url})  # host and port follow the url
    return Gateway(
        site.model_copy(update={"mqtt": direct}),
        make_async_writer(influxdb),
        gateway_id="gw-caps",
        spool_path=spool,
        health_port=free_port(),
    )


def published_more(agent: EdgeAgent, samples: int) -> Callable[[], bool]:
    """A condition: the broker has acknowledged ``samples`` more of the edge's samples."""
    target = agent.forwarder.samples_published + samples
    return lambda: agent.forwarder.samples_published >= target


def published_batches(agent: EdgeAgent, batches: int) -> Callable[[], bool]:
    """A condition: the broker has acknowledged ``batches`` more of the edge's batches."""
    target = agent.forwarder.batches_published + batches
    return lambda: agent.forwarder.batches_published >= target


def edge_for(site: SiteConfig, *, pass_rereads: bool = True) -> tuple[EdgeAgent, ReadLedger]:
    """The edge agent, every sample it reads recorded in the returned ledger."""
    agent = EdgeAgent(site, EDGE, health_port=free_port())
    ledger = ReadLedger(lambda: agent.forwarder.connects, pass_rereads=pass_rereads)
    agent.intake = ledger.wrap(agent.intake)  # type: ignore[method-assign,assignment]
    return agent, ledger


# -- 1. a link outage, then a weak 5G cell ------------------------------------------------------
@pytest.mark.timeout(900)  # a 60 s outage and five minutes of a weak cell, as the issue asks
def test_a_60_s_outage_then_5_minutes_of_degraded_5g_lose_nothing(
    tmp_path: Path, mosquitto_private: Mosquitto, influxd: Influxd, influx: InfluxClient
) -> None:
    async def scenario() -> dict[str, Any]:
        async with (
            simulated_plant() as modbus,
            LinkEmulator(
                ("127.0.0.1", 0), ("127.0.0.1", mosquitto_private.port), "5g-embb", seed=5
            ) as link,
        ):
            site = fault_site(
                tmp_path,
                modbus_port=modbus.port,
                mqtt_port=link.port,
                influxd=influxd,
                database=influx.database,
            )
            gateway = gateway_for(site, mosquitto_private, tmp_path / "spool.db")
            agent, ledger = edge_for(site)
            gateway_task = await running(gateway)
            edge_task = asyncio.create_task(agent.run())
            loop = asyncio.get_running_loop()
            try:
                await until(lambda: agent.forwarder.samples_published > 0, 30, "a first batch")
                await link.outage(OUTAGE_S)
                await until(lambda: not agent.forwarder.connected, 10, "the edge seeing it")
                await link.wait_online()
                buffered_at_restore = agent.buffer.samples
                link.set_profile("5g-degraded")
                degraded_from = loop.time()
                await asyncio.sleep(DEGRADED_S)  # the plant is read on, through the weak cell
                # Reading stops; the rest still crosses the weak cell.
                drained = await agent.drain(120)
                degraded_s = loop.time() - degraded_from
                assert drained, (agent.buffer.samples, agent.forwarder.connected)
                assert await gateway.drain(60)
                stored = await wait_stored(influx, site.site.id, ledger.expected, 60)
            finally:
                await stop(edge_task)
                await stop(gateway_task)
        return {
            "sent": ledger.expected,
            "stored": stored,
            "buffered_at_restore": buffered_at_restore,
            "degraded_s": degraded_s,
            "edge_dropped": agent.buffer.dropped_samples,
            "connects": agent.forwarder.connects,
            "random_resets": link.stats.reset_random,
            "gaps": gateway.intake.sequences.gaps,
            "duplicates": gateway.intake.sequences.duplicates,
            "rereads": ledger.rereads,
        }

    run = asyncio.run(scenario())
    sent, stored = run["sent"], run["stored"]
    report(
        "outage 60 s + 5g-degraded 5 min",
        sent=sent[0],
        arrived=stored[0],
        dropped=sent[0] - stored[0],
        quality_marks_sent=sent[1],
        quality_marks_arrived=stored[1],
        buffered_at_restore=run["buffered_at_restore"],
        degraded_s=f"{run['degraded_s']:.0f}",
        edge_connects=run["connects"],
        random_resets=run["random_resets"],
        batches_redelivered=run["duplicates"],
        plc_scan_rereads=run["rereads"],
    )
    assert run["buffered_at_restore"] > 1000 and run["connects"] >= 2  # the outage did bite
    assert stored == sent
    assert run["edge_dropped"] == 0 and run["gaps"] == 0


# -- 2. the edge's disk buffer at its cap: drop oldest ------------------------------------------
def lost_polls(ledger: ReadLedger, arrived: set[SampleKey]) -> dict[AssetPath, list[int]]:
    """Per machine, the timestamps of the polls of which nothing arrived, oldest first.

    The buffer stores and drops a machine's poll as one chunk, so a poll that arrived in part
    is a bug, and fails here.
    """
    read_per_poll: dict[tuple[AssetPath, int], int] = defaultdict(int)
    arrived_per_poll: dict[tuple[AssetPath, int], int] = defaultdict(int)
    for asset, _metric, ts in ledger.samples:
        read_per_poll[asset, ts] += 1
    for asset, _metric, ts in arrived:
        arrived_per_poll[asset, ts] += 1
    partial = [poll for poll, n in read_per_poll.items() if 0 < arrived_per_poll[poll] < n]
    assert not partial, f"{len(partial)} polls arrived in part, like {partial[0]}"
    lost: dict[AssetPath, list[int]] = defaultdict(list)
    for asset, ts in sorted(read_per_poll, key=lambda poll: poll[1]):
        if not arrived_per_poll[asset, ts]:
            lost[asset].append(ts)
    return lost


def check_oldest_dropped(
    ledger: ReadLedger, lost: dict[AssetPath, list[int]], connects_in_outage: int
) -> int:
    """Per machine, the lost polls are one unbroken stretch of the outage, with what was sent
    before it and the newest polls of the outage after it arrived. Returns how many polls read
    during the outage (before the reconnection) arrived: the newest ones, kept by the cap."""
    kept_from_outage = 0
    for asset, lost_ts in lost.items():
        polls = sorted(ts for machine, ts in ledger.polls if machine == asset)
        first, last = polls.index(lost_ts[0]), polls.index(lost_ts[-1])
        assert polls[first : last + 1] == lost_ts, f"{asset.machine}: the lost polls have holes"
        assert first > 0, f"{asset.machine}: nothing from before the outage arrived"
        # Every lost poll was read before the edge got its link back: nothing read since, the
        # newest data, was dropped.
        assert all(ledger.polls[asset, ts] <= connects_in_outage for ts in lost_ts)
        newest = [ts for ts in polls[last + 1 :] if ledger.polls[asset, ts] <= connects_in_outage]
        assert newest, f"{asset.machine}: none of the outage's newest polls was kept"
        kept_from_outage += len(newest)
    return kept_from_outage


def test_a_full_edge_buffer_drops_the_oldest_samples_and_counts_them(
    tmp_path: Path, mosquitto_private: Mosquitto, influxd: Influxd, influx: InfluxClient
) -> None:
    async def scenario() -> dict[str, Any]:
        async with (
            simulated_plant() as modbus,
            LinkEmulator(("127.0.0.1", 0), ("127.0.0.1", mosquitto_private.port), "ideal") as link,
        ):
            site = fault_site(
                tmp_path,
                modbus_port=modbus.port,
                mqtt_port=link.port,
                influxd=influxd,
                database=influx.database,
                edge={"buffer_max_mb": BUFFER_CAP_MB},
            )
            gateway = gateway_for(site, mosquitto_private, tmp_path / "spool.db")
            # Re-reads of one PLC scan are held back from the edge: InfluxDB keeps them once but
            # the edge's dropped counter would count them twice, and this test adds up exactly.
            agent, ledger = edge_for(site, pass_rereads=False)
            gateway_task = await running(gateway)
            edge_task = asyncio.create_task(agent.run())
            try:
                await until(published_more(agent, 1000), 60, "a stream before the outage")
                dropped_before = agent.buffer.dropped_samples
                connects_in_outage = agent.forwarder.connects
                await link.outage(BUFFER_OUTAGE_S)
                await link.wait_online()
                await until(lambda: agent.forwarder.connected, 60, "the edge reconnecting")
                await until(published_more(agent, 2000), 60, "the stream after the outage")
                assert await agent.drain(60), agent.buffer.samples
                assert agent.health is not None
                metrics = await scrape(agent.health.port)
                dropped = int(metrics["plantwire_edge_samples_dropped_total"])
                want = len(ledger.samples) - dropped
                arrived = await until_arrived(influx, site.site.id, want, 60)
                assert await gateway.drain(30)
                counted = await asyncio.to_thread(points_stored, influx, site.site.id)
            finally:
                await stop(edge_task)
                await stop(gateway_task)
        return {
            "metrics": metrics,
            "dropped_before": dropped_before,
            "connects_in_outage": connects_in_outage,
            "arrived": arrived,
            "counted": counted,
            "read": ledger,
        }

    run = asyncio.run(scenario())
    metrics, arrived, read = run["metrics"], run["arrived"], run["read"]
    dropped = int(metrics["plantwire_edge_samples_dropped_total"])
    lost = lost_polls(read, arrived)
    kept = check_oldest_dropped(read, lost, run["connects_in_outage"])
    report(
        "edge buffer cap",
        sent=len(read.samples),
        arrived=len(arrived),
        dropped=dropped,
        buffer_cap_bytes=int(BUFFER_CAP_MB * 1_000_000),
        outage_polls_kept=kept,
        polls_lost=sum(len(ts) for ts in lost.values()),
    )
    assert run["dropped_before"] == 0  # the cap is ample while the link is up
    assert dropped > 0
    assert int(metrics["plantwire_edge_samples_read_total"]) == len(read.samples)
    assert arrived <= read.samples, "influxd holds samples nobody read"
    assert len(read.samples) == len(arrived) + dropped
    assert run["counted"] == (len(arrived & read.valued), len(arrived & read.flagged))


# -- 3. the gateway's spool at its cap: back-pressure -------------------------------------------
class SpoolWatch:
    """Every push to the gateway's spool: its size on disk after the push, whether that filled
    it, and how many messages the gateway had taken by then -- which tells exactly whether it
    took any after the spool filled.
    """

    def __init__(self, gateway: Gateway) -> None:
        self.pushes: list[tuple[int, bool, int]] = []  # (disk bytes after, full, messages taken)
        spool, push = gateway.spool, gateway.spool.push

        def watched(body: bytes, lines: int) -> None:
            push(body, lines)
            self.pushes.append((spool.disk_bytes, spool.full, gateway.messages))

        spool.push = watched  # type: ignore[method-assign]

    def after_full(self) -> list[tuple[int, bool, int]]:
        """The push that filled the spool and every one after it, so far."""
        first = next(i for i, (_, full, _) in enumerate(self.pushes) if full)
        return self.pushes[first:]


def spool_figures(metrics: dict[str, float]) -> tuple[int, int, int, int]:
    """(spool bytes on disk, messages taken, dead letters, lines spooled) from the gateway's
    /metrics."""
    dead = sum(v for k, v in metrics.items() if k.startswith("plantwire_gateway_dead_letters"))
    return (
        int(metrics["plantwire_gateway_spool_disk_bytes"]),
        int(metrics["plantwire_gateway_messages_total"]),
        int(dead),
        int(metrics["plantwire_gateway_spool_lines"]),
    )


def test_a_full_gateway_spool_stops_intake_until_influxd_is_back(
    tmp_path: Path, mosquitto_private: Mosquitto, influxd_private: Influxd
) -> None:
    influx = influxd_private.client
    cap = int(SPOOL_CAP_MB * 1_000_000)

    async def scenario() -> dict[str, Any]:
        async with simulated_plant() as modbus:
            site = fault_site(
                tmp_path,
                modbus_port=modbus.port,
                mqtt_port=mosquitto_private.port,
                influxd=influxd_private,
                database=influx.database,
                gateway={
                    "spool_max_mb": SPOOL_CAP_MB,
                    "receive_maximum": RECEIVE_MAXIMUM,
                    # Its own report every second: those lines must not grow a full spool either.
                    "pipeline_interval_s": 1,
                },
            )
            gateway = gateway_for(site, mosquitto_private, tmp_path / "spool.db")
            assert gateway.health is not None
            spool = SpoolWatch(gateway)
            agent, ledger = edge_for(site)
            dead_letters = TopicCounter(
                mosquitto_private.port, f"plantwire/v1/{site.site.id}/deadletter/#"
            )
            gateway_task = await running(gateway)
            edge_task = asyncio.create_task(agent.run())
            try:
                await until(lambda: gateway.writer.stats.lines_written > 0, 30, "a first write")
                await asyncio.to_thread(influxd_private.stop)
                await until(lambda: gateway.spool.full, 180, "the spool reaching its cap")
                # The edge publishes on and the broker acknowledges it: two stretches of 50
                # batches, during which the gateway must take nothing and spool nothing.
                await until(published_batches(agent, 50), 120, "the edge publishing on")
                paused = spool_figures(await scrape(gateway.health.port))
                await until(published_batches(agent, 50), 120, "the edge publishing on")
                held = spool_figures(await scrape(gateway.health.port))
                pushes_while_full = spool.after_full()
                influx_up = gateway.writer.influx_up
                await asyncio.to_thread(influxd_private.start)
                await until(lambda: gateway.spool.batches == 0, 180, "the spool draining")
                assert await agent.drain(60), agent.buffer.samples
                stored = await wait_stored(influx, site.site.id, ledger.expected, 180)
                assert await gateway.drain(30)
                final = spool_figures(await scrape(gateway.health.port))
            finally:
                await stop(edge_task)
                await stop(gateway_task)
                dead_letters.close()
        return {
            "sent": ledger.expected,
            "stored": stored,
            "paused": paused,
            "held": held,
            "final": final,
            "after_full": pushes_while_full,
            "influx_up_while_held": influx_up,
            "dead_letter_messages": len(dead_letters.messages),
            "edge_published": agent.forwarder.samples_published,
            "gateway_samples": gateway.samples,
            "gaps": gateway.intake.sequences.gaps,
            "duplicates": gateway.intake.sequences.duplicates,
        }

    run = asyncio.run(scenario())
    sent, stored = run["sent"], run["stored"]
    (spool_bytes, taken, dead, _), (held_bytes, held_taken, held_dead, _) = (
        run["paused"],
        run["held"],
    )
    filled_at = run["after_full"][0]
    report(
        "gateway spool cap",
        sent=sent[0],
        arrived=stored[0],
        dropped=sent[0] - stored[0],
        spool_cap_bytes=cap,
        spool_bytes_held=held_bytes,
        spool_pushes_after_full=len(run["after_full"]) - 1,
        messages_taken_while_held=held_taken - filled_at[1],
        dead_letters=run["final"][2],
        batches_redelivered=run["duplicates"],
    )
    # Stopped at the cap: from the push that filled the spool on, the gateway took no message;
    # what it spooled after that push it had taken before, and while held not a byte was added.
    assert all(taken_then == filled_at[2] for _, _, taken_then in run["after_full"])
    assert taken == held_taken == filled_at[2]
    assert held_bytes == spool_bytes == run["after_full"][-1][0]
    # Near the cap: over it by what the gateway held when it filled -- at most receive_maximum
    # messages, which the gateway itself holds to -- far less than a second cap's worth. (The
    # cap counts SQLite's pages and room for the WAL: the file is full a little below it.)
    assert 0.8 * cap <= spool_bytes < 2 * cap
    assert run["influx_up_while_held"] is False
    assert dead == held_dead == run["final"][2] == 0 and run["dead_letter_messages"] == 0
    assert run["final"][3] == 0  # drained
    # Every sample once: N in = N out, and the gateway took every batch once.
    assert stored == sent
    assert run["gateway_samples"] == run["edge_published"]
    assert run["gaps"] == run["duplicates"] == 0


# -- 4. the edge's buffer on a small disk, then a full one ---------------------------------------
SMALL_DISK = "512k"  # an edge device's small data partition: about 6,000 of the line's samples


def test_an_edge_buffer_on_a_small_disk_drops_its_oldest_and_restarts_on_a_full_disk(
    tmp_path: Path,
    small_disk: Callable[[str], Path],
    mosquitto_private: Mosquitto,
    influxd: Influxd,
    influx: InfluxClient,
) -> None:
    """The buffer's disk is far smaller than buffer_max_mb: during an outage the edge fills what
    the disk allows and drops its oldest samples. Stopped there, the rest of the disk is taken by
    something else, and a new edge process starts on the full disk, reads on, and drains when
    the link returns: every sample read is stored or counted as dropped, and everything read
    after the link returned is stored."""
    disk = small_disk(SMALL_DISK)

    async def scenario() -> dict[str, Any]:
        async with (
            simulated_plant() as modbus,
            LinkEmulator(("127.0.0.1", 0), ("127.0.0.1", mosquitto_private.port), "ideal") as link,
        ):
            site = fault_site(
                tmp_path,
                modbus_port=modbus.port,
                mqtt_port=link.port,
                influxd=influxd,
                database=influx.database,
                edge={"buffer_path": str(disk / "edge.db")},  # buffer_max_mb: 1024, as shipped
            )
            gateway = gateway_for(site, mosquitto_private, tmp_path / "spool.db")
            first, ledger = edge_for(site, pass_rereads=False)
            gateway_task = await running(gateway)
            first_task = asyncio.create_task(first.run())
            second_task: asyncio.Task[None] | None = None
            try:
                await until(published_more(first, 1000), 60, "a stream before the outage")
                await link.outage(600)
                await until(lambda: first.buffer.dropped_samples > 500, 180, "the disk filling")
                first_dropped = first.buffer.dropped_samples
                first_buffered = first.buffer.samples
                await stop(first_task)  # the agent flushes and closes its buffer
                filled = fill_disk(disk)
                free_at_restart = free_bytes(disk)
                # A new process would start here: the same buffer file, the same reads ledger.
                second = EdgeAgent(site, EDGE, health_port=free_port())
                second.intake = ledger.wrap(second.intake)  # type: ignore[method-assign,assignment]
                restored_buffer = second.buffer.samples
                second_task = asyncio.create_task(second.run())
                await until(lambda: second.samples_read > 2000, 60, "reading on a full disk")
                disk_full_events = second.buffer.disk_full_events
                read_before_link = set(ledger.samples)
                link.end_outage()
                await until(lambda: second.forwarder.connected, 60, "the edge reconnecting")
                await until(published_more(second, 2000), 60, "the stream after the outage")
                # The backlog can drain within one poll: wait for a read after the link returned.
                await until(
                    lambda: bool(ledger.samples - read_before_link), 60, "a read after the link"
                )
                assert await second.drain(60), second.buffer.samples
                dropped = first_dropped + second.buffer.dropped_samples
                want = len(ledger.samples) - dropped
                arrived = await until_arrived(influx, site.site.id, want, 60)
                assert await gateway.drain(30)
            finally:
                await stop(first_task)
                if second_task is not None:
                    await stop(second_task)
                await stop(gateway_task)
        return {
            "read": ledger,
            "arrived": arrived,
            "dropped": dropped,
            "first_dropped": first_dropped,
            "first_buffered": first_buffered,
            "restored_buffer": restored_buffer,
            "filled": filled,
            "free_at_restart": free_at_restart,
            "disk_full_events": disk_full_events,
            "read_after_link": ledger.samples - read_before_link,
        }

    run = asyncio.run(scenario())
    read, arrived, dropped = run["read"], run["arrived"], run["dropped"]
    report(
        "edge buffer on a 512 KB disk",
        sent=len(read.samples),
        arrived=len(arrived),
        dropped=dropped,
        dropped_by_first_process=run["first_dropped"],
        buffered_at_stop=run["first_buffered"],
        buffered_at_restart=run["restored_buffer"],
        filler_bytes=run["filled"],
        free_bytes_at_restart=run["free_at_restart"],
        disk_full_events=run["disk_full_events"],
    )
    assert run["first_dropped"] > 0 and run["free_at_restart"] == 0
    assert run["restored_buffer"] == run["first_buffered"]  # nothing lost across the restart
    assert arrived <= read.samples, "influxd holds samples nobody read"
    assert len(read.samples) == len(arrived) + dropped  # every sample stored or counted
    assert run["read_after_link"] and run["read_after_link"] <= arrived
