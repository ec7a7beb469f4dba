"""Fault suite, end to end: the simulated plant's Modbus server -> PlantWire edge agent -> real
Mosquitto -> PlantWire gateway -> real influxd, with one fault in each test.

Each test counts the samples going in (each (machine, metric, timestamp) once, as the edge read
or published them) and the points coming out (InfluxQL ``COUNT`` in influxd), and asserts they
are equal -- exactly, through a broker restart, a 60 s InfluxDB outage, an edge killed with
``kill -9`` holding a backlog, and a gateway killed with ``kill -9``. Distinct keys on both sides:
a batch re-sent after a fault is the same point in InfluxDB (same series, field and timestamp:
it overwrites), and the PLC clock read twice in one plant second is one sample.

Run with ``-s`` to see the figures (``sent=... arrived=...``) that docs/RELIABILITY.md quotes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import orjson
import pytest
from pw_faults import Intake, points_stored
from pw_gateway import running, stop
from pw_mqtt import BatchCollector, SampleKey, sim_site

from edge.agent import EdgeAgent
from gateway.service import Gateway
from plantwire.config import SiteConfig, load_site
from plantwire.model import AssetPath, Quality, Sample
from plantwire.store.influx_async import make_async_writer
from plantwire.testing.servers import InfluxClient, Influxd, Mosquitto, free_port
from plantwire.testing.simprocess import SimProcess
from plantwire.topics import service_state_topic
from simulators.link import LinkEmulator

pytestmark = pytest.mark.servers

SPEED = 10.0  # plant seconds per wall second: the edge polls every 0.1 s
EDGE = "edge-dairy"  # four Modbus machines: filler, capper, labeler, case packer


# -- counting in ------------------------------------------------------------------------------
class SampleLedger:
    """Samples going in, each (machine, metric, timestamp) once.

    A sample with a value becomes one value field in InfluxDB; one whose quality is not good
    also (or, without a value, only) writes ``<metric>__quality``. Both sets are kept so that
    both field counts can be compared exactly.
    """

    def __init__(self) -> None:
        self.valued: set[SampleKey] = set()
        self.flagged: set[SampleKey] = set()

    def add(self, asset: AssetPath, samples: Sequence[Sample]) -> None:
        for sample in samples:
            key = (asset, sample.metric, sample.ts_ns)
            if sample.value is not None:
                self.valued.add(key)
            if sample.quality is not Quality.GOOD:
                self.flagged.add(key)

    def wrap(self, intake: Intake) -> Intake:
        """Record what the edge's sources deliver, before report by exception or the buffer."""

        def recording(asset: AssetPath, samples: Sequence[Sample]) -> None:
            self.add(asset, samples)
            intake(asset, samples)

        return recording

    @property
    def expected(self) -> tuple[int, int]:
        """(value fields, quality fields) InfluxDB must hold."""
        return len(self.valued), len(self.flagged)


# -- counting out -----------------------------------------------------------------------------
def wait_stored(
    influx: InfluxClient, site_id: str, want: tuple[int, int], timeout_s: float
) -> tuple[int, int]:
    """Poll until influxd holds ``want`` points (or the time is up); return what it holds."""
    deadline = time.monotonic() + timeout_s
    got = points_stored(influx, site_id)
    while got != want and time.monotonic() < deadline:
        time.sleep(0.5)
        got = points_stored(influx, site_id)
    return got


async def until_stored(influx: InfluxClient, site_id: str, at_least: int, timeout_s: float) -> int:
    """Wait until the stream is flowing into influxd: ``at_least`` value points stored."""
    deadline = time.monotonic() + timeout_s
    while True:
        values, _ = await asyncio.to_thread(points_stored, influx, site_id)
        if values >= at_least:
            return values
        assert time.monotonic() < deadline, f"only {values} points stored in {timeout_s} s"
        await asyncio.sleep(0.5)


def report(test: str, sent: tuple[int, int], arrived: tuple[int, int], **figures: object) -> None:
    """The figures docs/RELIABILITY.md quotes (shown with ``pytest -s``)."""
    extra = " ".join(f"{name}={value}" for name, value in figures.items())
    print(
        f"\n[{test}] sent={sent[0]} arrived={arrived[0]}"
        f" quality_marks_sent={sent[1]} quality_marks_arrived={arrived[1]} {extra}"
    )


# -- the plant, the edge and the gateway --------------------------------------------------------
async def until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Wait for a condition of the in-process services, failing with ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout_s} s"
        await asyncio.sleep(0.1)


def fault_site(
    tmp_path: Path,
    *,
    modbus_port: int,
    mqtt_port: int,
    influx_url: str,
    database: str,
    wait_for_gateway: bool = True,
) -> tuple[Path, SiteConfig]:
    """The simulated plant's site file with a gateway writing to ``database``.

    A client id prefix of its own: the gateway's persistent session on a shared broker must not
    resume another test's session (and its subscriptions and queued messages).
    """
    path, _ = sim_site(
        tmp_path,
        modbus_port=modbus_port,
        mqtt_port=mqtt_port,
        speed=SPEED,
        wait_for_gateway=wait_for_gateway,  # shipped as true: data leaves once a gateway is online
        mqtt={
            "url": f"mqtt://127.0.0.1:{mqtt_port}",
            "client_id_prefix": f"fault-{uuid.uuid4().hex[:8]}",
        },
        store={"backend": "influxdb", "url": influx_url, "database": database},
        gateway={
            "spool_path": str(tmp_path / "gateway-spool.db"),
            "health_port": 0,
            "batch_max_latency_ms": 50,
        },
    )
    return path, load_site(path)


def gateway_in_process(site: SiteConfig) -> Gateway:
    assert site.store is not None
    return Gateway(site, make_async_writer(site.store), gateway_id="gw-fault")


@contextlib.asynccontextmanager
async def edge_in_process(site: SiteConfig, ledger: SampleLedger) -> AsyncIterator[EdgeAgent]:
    """The edge agent in this event loop, every sample it reads recorded in ``ledger``."""
    agent = EdgeAgent(site, EDGE, health_port=0)
    agent.intake = ledger.wrap(agent.intake)  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(agent.run())
    try:
        yield agent
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def plantwire_process(log: Path, *arguments: str) -> subprocess.Popen[bytes]:
    """``plantwire <arguments>`` as a process of its own, so that it can be killed with -9."""
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "plantwire.cli", *arguments],
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def kill_9(process: subprocess.Popen[bytes]) -> None:
    """No chance to flush, acknowledge or say goodbye: a power cut, or the OOM killer."""
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def terminate(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> int:
    """A clean stop (SIGTERM); returns the exit code, killing the process if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def log_tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


# -- the edge's disk buffer, read as after a crash -----------------------------------------------
def buffered_keys(database: Path) -> set[SampleKey]:
    """Every sample in an edge buffer file, read with plain sqlite3 (WAL: a safe second reader)."""
    if not database.exists():  # sqlite3 would create it
        return set()
    keys: set[SampleKey] = set()
    with contextlib.closing(sqlite3.connect(database)) as db:
        for asset, payload in db.execute("SELECT asset, payload FROM chunks"):
            path = AssetPath(*asset.split("/"))
            for sample in orjson.loads(b"[" + payload + b"]"):
                keys.add((path, sample["m"], sample["t"]))
    return keys


def buffered_samples(database: Path) -> int:
    if not database.exists():
        return 0
    with contextlib.closing(sqlite3.connect(database)) as db:
        return int(db.execute("SELECT COALESCE(SUM(samples), 0) FROM chunks").fetchone()[0])


async def until_buffered(database: Path, at_least: int, timeout_s: float, log: Path) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        held = await asyncio.to_thread(buffered_samples, database)
        if held >= at_least:
            return held
        assert time.monotonic() < deadline, (
            f"the edge buffered only {held} samples in {timeout_s} s:\n{log_tail(log)}"
        )
        await asyncio.sleep(0.2)


async def until_buffered_empty(database: Path, timeout_s: float, log: Path) -> None:
    """Wait until the edge's buffer is empty and stays so for half a second: a last reading
    may still be staged in memory (at most 50 ms) when the file first looks empty."""
    deadline = time.monotonic() + timeout_s
    empty_since: float | None = None
    while empty_since is None or time.monotonic() - empty_since < 0.5:
        held = await asyncio.to_thread(buffered_samples, database)
        if held:
            empty_since = None
            assert time.monotonic() < deadline, (
                f"{held} samples still buffered after {timeout_s} s:\n{log_tail(log)}"
            )
        elif empty_since is None:
            empty_since = time.monotonic()
        await asyncio.sleep(0.1)


# -- 0. the edge starts before any gateway ---------------------------------------------------------
@pytest.mark.parametrize("wait_for_gateway", [True, False], ids=["waiting", "not-waiting"])
def test_an_edge_started_before_any_gateway_keeps_its_data_until_one_is_online(
    tmp_path: Path,
    mosquitto: Mosquitto,
    influxd: Influxd,
    influx: InfluxClient,
    wait_for_gateway: bool,
) -> None:
    """A first deployment: the edge runs before any gateway has ever subscribed, so the broker
    has no session to queue its data for. Waiting for a gateway (the default) keeps it in the
    edge's buffer until one is online: N in = N out. Not waiting, the broker acknowledges the
    early batches and delivers them to nobody -- the loss this option exists to prevent, shown
    here so that the test would notice if it ever stopped being real."""
    ledger = SampleLedger()
    figures: dict[str, int] = {}

    async def scenario() -> str:
        with SimProcess(modbus_port=free_port(), speed=SPEED) as sim:
            _, site = fault_site(
                tmp_path,
                modbus_port=sim.modbus_port,
                mqtt_port=mosquitto.port,
                influx_url=influxd.url,
                database=influx.database,
                wait_for_gateway=wait_for_gateway,
            )
            async with edge_in_process(site, ledger) as agent:
                await until(lambda: agent.forwarder.connected, 30, "the edge connecting")
                await until(lambda: len(ledger.valued) >= 2000, 60, "2,000 samples read")
                figures["published_before_gateway"] = agent.forwarder.samples_published
                gateway = gateway_in_process(site)
                gateway_task = await running(gateway)
                try:
                    await until_stored(influx, site.site.id, 1000, timeout_s=60)
                    assert await agent.drain(60), "the edge's backlog did not drain"
                    await asyncio.to_thread(wait_stored, influx, site.site.id, ledger.expected, 30)
                    assert await gateway.drain(15)
                finally:
                    await stop(gateway_task)
        return site.site.id

    site_id = asyncio.run(scenario())
    arrived = points_stored(influx, site_id)
    report(
        f"edge before any gateway, wait_for_gateway={wait_for_gateway}",
        ledger.expected,
        arrived,
        published_before_gateway=figures["published_before_gateway"],
    )
    if wait_for_gateway:
        assert figures["published_before_gateway"] == 0  # held in the buffer, not sent
        assert arrived == ledger.expected
    else:
        assert figures["published_before_gateway"] > 0
        assert arrived[0] < ledger.expected[0]  # the broker dropped what nobody had asked for


# -- 1. the broker --------------------------------------------------------------------------------
BROKER_DOWN_S = 4.0


@pytest.mark.parametrize("stop_signal", ["SIGTERM", "SIGKILL"])
def test_broker_restarted_mid_stream_loses_nothing(
    tmp_path: Path,
    mosquitto_private: Mosquitto,
    influxd: Influxd,
    influx: InfluxClient,
    stop_signal: str,
) -> None:
    """Mosquitto (persistence on disk) stopped mid-stream for a few seconds and started again on
    the same port and persistence file: the edge buffers meanwhile, the gateway's persistent
    session survives in the file, both reconnect on their own.

    SIGTERM is a service restart: Mosquitto saves everything on the way out. SIGKILL is a crash:
    Mosquitto restores its last autosave (every second here), so what it had received and not
    yet passed on in that second would be gone -- with a gateway that keeps up there is next to
    nothing in that state, and the edge re-sends whatever was not acknowledged.
    """
    broker = mosquitto_private
    ledger = SampleLedger()
    figures: dict[str, int] = {}

    async def scenario() -> str:
        with SimProcess(modbus_port=free_port(), speed=SPEED) as sim:
            _, site = fault_site(
                tmp_path,
                modbus_port=sim.modbus_port,
                mqtt_port=broker.port,
                influx_url=influxd.url,
                database=influx.database,
            )
            gateway = gateway_in_process(site)
            gateway_task = await running(gateway)  # subscribed before the first sample
            try:
                async with edge_in_process(site, ledger) as agent:
                    figures["stored_before"] = await until_stored(
                        influx, site.site.id, 2000, timeout_s=60
                    )
                    await asyncio.to_thread(
                        broker.stop if stop_signal == "SIGTERM" else broker.kill
                    )
                    await until(
                        lambda: not agent.forwarder.connected and not gateway.connected,
                        30,
                        "edge and gateway noticing the broker is gone",
                    )
                    await asyncio.sleep(BROKER_DOWN_S)  # the outage itself, not a wait
                    figures["buffered_while_down"] = agent.buffer.samples
                    await asyncio.to_thread(broker.start)
                    await until(
                        lambda: agent.forwarder.connected and gateway.connected,
                        60,
                        "edge and gateway reconnecting by themselves",
                    )
                    figures["edge_connects"] = agent.forwarder.connects
                    # The backlog and live data flow together for a while after the restart.
                    await until_stored(
                        influx, site.site.id, figures["stored_before"] + 5000, timeout_s=60
                    )
                    assert await agent.drain(60), "the edge's backlog did not drain"
                await asyncio.to_thread(wait_stored, influx, site.site.id, ledger.expected, 60)
                assert await gateway.drain(15)
                figures["duplicates"] = gateway.intake.sequences.duplicates
                figures["gaps"] = gateway.intake.sequences.gaps
            finally:
                await stop(gateway_task)
        return site.site.id

    site_id = asyncio.run(scenario())
    arrived = points_stored(influx, site_id)
    report(
        f"broker {stop_signal} restart",
        ledger.expected,
        arrived,
        broker_down_s=BROKER_DOWN_S,
        stored_before_stop=figures["stored_before"],
        buffered_while_down=figures["buffered_while_down"],
        edge_connects=figures["edge_connects"],
        gateway_duplicate_batches=figures["duplicates"],
    )
    assert figures["buffered_while_down"] > 1000  # the edge really held data through it
    assert figures["edge_connects"] >= 2
    assert figures["gaps"] == 0
    assert ledger.expected[0] > 5000
    assert arrived == ledger.expected


# -- 2. InfluxDB ----------------------------------------------------------------------------------
INFLUX_DOWN_S = 60.0


def test_influxd_down_for_60_s_mid_stream_spools_and_loses_nothing(
    tmp_path: Path, mosquitto: Mosquitto, influxd_private: Influxd
) -> None:
    """influxd stopped for a full minute while the edge keeps publishing: the gateway spools
    to disk and acknowledges, then replays oldest first when influxd is back."""
    influx = influxd_private.client
    ledger = SampleLedger()
    figures: dict[str, int] = {}

    async def scenario() -> str:
        with SimProcess(modbus_port=free_port(), speed=SPEED) as sim:
            _, site = fault_site(
                tmp_path,
                modbus_port=sim.modbus_port,
                mqtt_port=mosquitto.port,
                influx_url=influxd_private.url,
                database=influx.database,
            )
            gateway = gateway_in_process(site)
            gateway_task = await running(gateway)
            try:
                async with edge_in_process(site, ledger) as agent:
                    figures["stored_before"] = await until_stored(
                        influx, site.site.id, 2000, timeout_s=60
                    )
                    await asyncio.to_thread(influxd_private.stop)
                    down_at = time.monotonic()
                    await until(
                        lambda: not gateway.writer.influx_up, 30, "the gateway noticing influxd"
                    )
                    # The outage lasts a full minute by definition: this sleep is the fault.
                    await asyncio.sleep(max(0.0, INFLUX_DOWN_S - (time.monotonic() - down_at)))
                    figures["spool_lines_at_end_of_outage"] = gateway.spool.lines
                    figures["influx_up_during_outage"] = int(gateway.writer.influx_up)
                    await asyncio.to_thread(influxd_private.start)
                    await until(lambda: gateway.spool.lines == 0, 120, "the spool replaying")
                    assert await agent.drain(60), "the edge's backlog did not drain"
                await asyncio.to_thread(wait_stored, influx, site.site.id, ledger.expected, 120)
                assert await gateway.drain(15)
                figures["spooled_lines_total"] = gateway.writer.stats.spooled_lines
                figures["spool_lines_after"] = gateway.spool.lines
                figures["edge_buffered_after"] = agent.buffer.samples
            finally:
                await stop(gateway_task)
        return site.site.id

    site_id = asyncio.run(scenario())
    arrived = points_stored(influx, site_id)
    report(
        "influxd down 60 s",
        ledger.expected,
        arrived,
        influx_down_s=INFLUX_DOWN_S,
        stored_before_stop=figures["stored_before"],
        spool_lines_at_end_of_outage=figures["spool_lines_at_end_of_outage"],
        lines_spooled_total=figures["spooled_lines_total"],
    )
    assert figures["influx_up_during_outage"] == 0
    assert figures["spool_lines_at_end_of_outage"] > 1000  # 4 machines x 10 readings/s x 60 s
    assert figures["spooled_lines_total"] >= figures["spool_lines_at_end_of_outage"]
    assert figures["spool_lines_after"] == 0
    assert ledger.expected[0] > 40_000
    assert arrived == ledger.expected


# -- 3. the edge, killed holding a backlog ------------------------------------------------------
EDGE_BACKLOG = 5000  # samples on disk when the edge is killed (about 5 s of the dairy)


def test_edge_killed_with_kill_9_holding_a_backlog_loses_nothing(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, influx: InfluxClient
) -> None:
    """``plantwire edge`` reaches the broker through a link that is cut: it buffers to disk and
    is killed with -9 holding the backlog. Restarted on the same buffer (still cut off, reading
    on), then the link comes back: everything it had on disk before the kill and everything it
    read after arrives in influxd. Only the samples of the last 50 ms in memory may be lost with
    the process (docs/edge.md); "in" is therefore what the edge published, counted at a
    subscriber on the broker, and its buffer must be empty when it stops."""
    figures: dict[str, int] = {}
    log = tmp_path / "edge.log"
    modbus_port = free_port()

    async def scenario() -> tuple[str, set[SampleKey], SampleLedger, BatchCollector]:
        link = LinkEmulator(("127.0.0.1", 0), ("127.0.0.1", mosquitto.port), "ideal")
        await link.start()
        path, site = fault_site(
            tmp_path,
            modbus_port=modbus_port,
            mqtt_port=link.port,
            influx_url=influxd.url,
            database=influx.database,
        )
        # The gateway goes to the broker directly: only the edge's link is cut.
        direct = site.mqtt.model_copy(update={"url": f"mqtt://127.0.0.1:{mosquitto.port}"})
        gateway = gateway_in_process(site.model_copy(update={"mqtt": direct}))
        gateway_task = await running(gateway)
        collector = BatchCollector(mosquitto.port, site.site.id)
        buffer = tmp_path / f"{EDGE}.db"
        edge_command = ("edge", "--config", str(path), "--node", EDGE, "--buffer", str(buffer))
        edge: subprocess.Popen[bytes] | None = None
        try:
            with SimProcess(modbus_port=modbus_port, speed=SPEED):
                edge = plantwire_process(log, *edge_command)
                await until(lambda: len(collector.samples) > 1000, 60, "the edge publishing")
                await link.stop()  # the link is cut: the edge buffers to disk
                await until_buffered(buffer, EDGE_BACKLOG, 60, log)
                await asyncio.to_thread(kill_9, edge)
                at_kill = await asyncio.to_thread(buffered_keys, buffer)
                figures["buffered_at_kill"] = len(at_kill)
                edge = plantwire_process(log, *edge_command)  # same buffer, link still cut
                # It reads on into the same buffer before the link is back.
                await until_buffered(buffer, len(at_kill) + 2000, 60, log)
                figures["buffered_before_link_back"] = await asyncio.to_thread(
                    buffered_samples, buffer
                )
                await link.start()
                missing = await asyncio.to_thread(collector.wait_for, at_kill, 60)
                assert not missing, f"{len(missing)} of {len(at_kill)} buffered samples lost"
                published = len(collector.samples)
                await until(
                    lambda: len(collector.samples) > published + 2000, 60, "live data after it"
                )
            # The plant has stopped: the edge reads nothing more and empties its buffer.
            await until_buffered_empty(buffer, 60, log)
            figures["edge_exit_code"] = await asyncio.to_thread(terminate, edge)
            figures["buffered_after_stop"] = await asyncio.to_thread(buffered_samples, buffer)
            ledger = SampleLedger()
            for asset, sample in list(collector.samples):
                ledger.add(asset, [sample])
            await asyncio.to_thread(wait_stored, influx, site.site.id, ledger.expected, 60)
            assert await gateway.drain(15)
            figures["gateway_duplicate_batches"] = gateway.intake.sequences.duplicates
        finally:
            if edge is not None:
                await asyncio.to_thread(terminate, edge)
            await link.stop()
            await stop(gateway_task)
            collector.close()  # what it collected stays readable
        return site.site.id, at_kill, ledger, collector

    site_id, at_kill, ledger, collector = asyncio.run(scenario())
    arrived = points_stored(influx, site_id)
    report(
        "edge kill -9 with a backlog",
        ledger.expected,
        arrived,
        buffered_at_kill=figures["buffered_at_kill"],
        buffered_before_link_back=figures["buffered_before_link_back"],
        batches_published_twice=sum(n - 1 for n in Counter(collector.batches).values()),
        gateway_duplicate_batches=figures["gateway_duplicate_batches"],
    )
    assert at_kill <= ledger.valued | ledger.flagged, "samples on disk at the kill were lost"
    assert figures["buffered_after_stop"] == 0, "read but never delivered"
    assert figures["edge_exit_code"] == 0, log_tail(log)
    assert collector.per_tag_in_order()
    assert arrived == ledger.expected


# -- 4. the gateway, killed mid-stream ------------------------------------------------------------
GATEWAY_DOWN_S = 3.0


def test_gateway_killed_with_kill_9_mid_stream_with_a_real_edge_loses_nothing(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, influx: InfluxClient
) -> None:
    """``plantwire gateway`` killed with -9 while a real edge streams the plant: what it had
    received but not acknowledged comes again from the broker, what arrived while it was away
    was kept in its persistent session; a new gateway on the same id and spool writes it all."""
    ledger = SampleLedger()
    figures: dict[str, int] = {}
    log = tmp_path / "gateway.log"

    async def scenario() -> str:
        with SimProcess(modbus_port=free_port(), speed=SPEED) as sim:
            path, site = fault_site(
                tmp_path,
                modbus_port=sim.modbus_port,
                mqtt_port=mosquitto.port,
                influx_url=influxd.url,
                database=influx.database,
            )
            command = ("gateway", "--config", str(path), "--id", "gw-kill")
            gateway = plantwire_process(log, *command)
            try:
                # Its persistent session must exist before the first sample: it says so with
                # its retained online state, published once it has subscribed.
                await asyncio.to_thread(
                    wait_for_state,
                    mosquitto.port,
                    service_state_topic(site.site.id, "gw-kill"),
                    log,
                )
                async with edge_in_process(site, ledger) as agent:
                    figures["stored_before"] = await until_stored(
                        influx, site.site.id, 2000, timeout_s=60
                    )
                    await asyncio.to_thread(kill_9, gateway)
                    await asyncio.sleep(GATEWAY_DOWN_S)  # the edge keeps publishing meanwhile
                    gateway = plantwire_process(log, *command)
                    await until_stored(
                        influx, site.site.id, figures["stored_before"] + 5000, timeout_s=60
                    )
                    assert await agent.drain(60), "the edge's backlog did not drain"
                await asyncio.to_thread(wait_stored, influx, site.site.id, ledger.expected, 60)
            finally:
                figures["gateway_exit_code"] = await asyncio.to_thread(terminate, gateway)
        return site.site.id

    site_id = asyncio.run(scenario())
    arrived = points_stored(influx, site_id)
    report(
        "gateway kill -9",
        ledger.expected,
        arrived,
        stored_before_kill=figures["stored_before"],
        gateway_down_s=GATEWAY_DOWN_S,
    )
    assert arrived == ledger.expected
    assert figures["gateway_exit_code"] == 0, log_tail(log)
    assert ledger.expected[0] > 7000


def wait_for_state(port: int, topic: str, log: Path, timeout_s: float = 30.0) -> None:
    """Wait for a service's retained ``online`` state on ``topic``."""
    from pw_gateway import TopicCounter

    watcher = TopicCounter(port, topic)
    try:
        deadline = time.monotonic() + timeout_s
        while not any(b'"online"' in message for message in list(watcher.messages)):
            assert time.monotonic() < deadline, f"no online state on {topic}:\n{log_tail(log)}"
            time.sleep(0.1)
    finally:
        watcher.close()
