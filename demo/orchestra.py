"""Start and stop the whole demo in one event loop: plant servers, broker, link emulator, edge
agents, gateway and analytics -- and stop them so that every sample read reaches the store.

Stopping is the part that matters: the plant stops first, then the agents stop reading and drain
their buffers through the link (waiting out an outage), the gateway writes and acknowledges what
it holds, analytics runs a last round, and only then are the link, servers and broker closed.
The same path runs at the end of ``--duration`` and after Ctrl-C.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from analytics.anomaly.registry import Registry
from analytics.anomaly.training import train
from analytics.history import load_history
from analytics.service import AnalyticsService
from demo.broker import EmbeddedBroker
from demo.plant import TRAIN_SHARE, demo_scenario, demo_site_config
from edge.agent import EdgeAgent
from gateway.service import Gateway
from plantwire.config import SiteConfig, parse_site
from plantwire.config.stores import InfluxConfig
from plantwire.lifecycle import cancel_and_wait
from plantwire.model import AssetPath, Sample
from plantwire.store.open import make_line_writer, open_store
from plantwire.testing.servers import free_port
from simulators.link import LinkEmulator
from simulators.modbus_server import ModbusPlantServer
from simulators.opcua_server import OpcuaPlantServer
from simulators.plant import Plant
from simulators.runner import SimRunner

__all__ = ["DemoRun", "DemoSettings"]

log = logging.getLogger("demo")
NS = 1_000_000_000
OPEN_ENDED_PLANT_S = 2 * 3600.0  # without --duration, faults and training fit two plant hours
DRAIN_TIMEOUT_S = 60.0
TRAIN_FROM_SHARE = 0.25  # of the training part: skip the shift's start-up
ANALYTICS_EVERY_PLANT_S = 300.0  # fewer rounds than a site runs: each one competes with the edge


@dataclass(frozen=True)
class DemoSettings:
    workdir: Path
    duration_s: float | None = None  # wall seconds; None runs until Ctrl-C
    speed: float = 60.0
    broker_url: str | None = None  # None: the embedded amqtt broker
    influx_url: str | None = None  # None: the embedded SQLite store
    influx_database: str | None = None
    link_profile: str = "5g-embb"
    outage_at_share: float = 0.55  # of the run, after training: the models learn from full data
    outage_s: float | None = None  # wall seconds; default a tenth of the run, at least 3 s
    detector: str = "pca"  # needs least history: the demo trains on minutes
    seed: int | None = None


@dataclass
class DemoEvents:
    """What happened, for the view and the report."""

    outage: tuple[float, float] | None = None  # plant seconds from the start: begin, end
    trained: dict[str, int] = field(default_factory=dict)  # machine -> model version
    training_errors: dict[str, str] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)  # raised/cleared events
    interrupted: bool = False
    drained: bool = True


class DemoRun:
    def __init__(self, settings: DemoSettings) -> None:
        self.settings = settings
        self.workdir = settings.workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        wall = settings.duration_s
        self.plant_s = wall * settings.speed if wall is not None else None
        self.scenario = demo_scenario(self.plant_s or OPEN_ENDED_PLANT_S, seed=settings.seed)
        self.plant = Plant(self.scenario)
        self.t0_ns = round(self.plant.now * NS)
        self.broker_port = free_port()
        self.truth_path = self.workdir / "truth.json"
        self.events = DemoEvents()
        self._alert_keys: set[tuple[str, int]] = set()
        mqtt_url = settings.broker_url or f"mqtt://127.0.0.1:{self.broker_port}"
        config = demo_site_config(
            self.scenario,
            workdir=self.workdir,
            speed=settings.speed,
            modbus_port=free_port(),
            opcua_port=free_port(),
            mqtt_url=mqtt_url,
            # amqtt, the embedded broker, speaks MQTT 3.1.1 only.
            mqtt_protocol="5" if settings.broker_url else "3.1.1",
            influx_url=settings.influx_url,
            influx_database=settings.influx_database,
        )
        self.site_path = self.workdir / "site.yaml"
        self.site_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.site: SiteConfig = parse_site(
            self.site_path.read_text(), str(self.site_path), environ={}
        ).config
        self.modbus_port = _port_of(config, "modbus")
        self.opcua_port = _port_of(config, "opcua")
        self.agents: list[EdgeAgent] = []
        self.gateway: Gateway | None = None
        self.analytics: AnalyticsService | None = None
        self.link: LinkEmulator | None = None
        self.store: Any = None
        self.distinct: dict[str, DistinctCount] = {}

    # -- clocks -----------------------------------------------------------------------------------
    def plant_ns(self) -> int:
        return round(self.plant.now * NS)

    def plant_elapsed_s(self) -> float:
        return (self.plant_ns() - self.t0_ns) / NS

    # -- the run ----------------------------------------------------------------------------------
    async def run(self) -> None:
        """Run for the duration (or until cancelled), then stop everything cleanly."""
        try:
            await self._run()
        except asyncio.CancelledError:
            self.events.interrupted = True  # Ctrl-C: stop cleanly below, then return
            log.info("interrupted: stopping cleanly")

    async def _run(self) -> None:
        broker = EmbeddedBroker(self.broker_port) if self.settings.broker_url is None else None
        runner = SimRunner(
            self.plant,
            speed=self.settings.speed,
            modbus=ModbusPlantServer(self.plant, "127.0.0.1", self.modbus_port),
            opcua=OpcuaPlantServer(self.plant, "127.0.0.1", self.opcua_port),
            truth_path=self.truth_path,
        )
        tasks: dict[str, asyncio.Task[None]] = {}
        try:
            if broker is not None:
                await broker.start()
            await runner.start()
            await self._start_pipeline(tasks)
            await self._sources_connected()
            plant_task = asyncio.create_task(runner.run(self.plant_s), name="plant")
            tasks["plant"] = plant_task
            tasks["outage"] = asyncio.create_task(self._outage(), name="outage")
            tasks["training"] = asyncio.create_task(self._training(), name="training")
            tasks["analytics"] = asyncio.create_task(self._analytics_rounds(), name="analytics")
            await asyncio.shield(plant_task)
        finally:
            # A second Ctrl-C while stopping must not leave servers behind.
            await asyncio.shield(self._stop(tasks, runner, broker))

    async def _start_pipeline(self, tasks: dict[str, asyncio.Task[None]]) -> None:
        site = self.site
        target = (site.mqtt.host, site.mqtt.port)
        self.link = LinkEmulator(("127.0.0.1", 0), target, self.settings.link_profile, seed=1)
        await self.link.start()
        # The edge reaches the broker through the link; gateway and analytics sit beside it.
        edge_mqtt = site.mqtt.model_copy(update={"url": f"mqtt://127.0.0.1:{self.link.port}"})
        edge_site = site.model_copy(update={"mqtt": edge_mqtt})
        if isinstance(site.store, InfluxConfig):
            await asyncio.to_thread(_create_database, site.store.url, site.store.database)
        self.store = open_store(site)
        self.gateway = Gateway(site, make_line_writer(site), gateway_id="demo", health_port=0)
        tasks["gateway"] = asyncio.create_task(self.gateway.run(), name="gateway")
        for node in site.edge_nodes:
            agent = EdgeAgent(edge_site, node.id, health_port=0)
            self.distinct[node.id] = DistinctCount()
            # Count what the sources deliver, once per sample: see DistinctCount.
            agent.intake = self.distinct[node.id].wrap(agent.intake)  # type: ignore[method-assign,assignment]
            self.agents.append(agent)
            tasks[f"edge {node.id}"] = asyncio.create_task(agent.run(), name=node.id)
        self.analytics = AnalyticsService(site, self.store, clock=self.plant_ns, health_port=0)

    async def _sources_connected(self, timeout_s: float = 30.0) -> None:
        """Hold the plant at its start until every edge source is connected: parts made before
        the first counter reading would be in the truth but in no reading."""
        deadline = time.monotonic() + timeout_s
        drivers = [driver for agent in self.agents for driver in agent.drivers]
        while not all(driver.stats.connected for driver in drivers):
            if time.monotonic() > deadline:
                log.warning(
                    "not every edge source connected within %.0f s; starting anyway", timeout_s
                )
                return
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # and has read once

    async def _outage(self) -> None:
        """One scheduled outage of the edge's link, after the models have their history."""
        duration = self.settings.duration_s or OPEN_ENDED_PLANT_S / self.settings.speed
        length = self.settings.outage_s or max(3.0, duration / 10)
        await asyncio.sleep(duration * self.settings.outage_at_share)
        assert self.link is not None
        begin = self.plant_elapsed_s()
        await self.link.outage(length)
        await self.link.wait_online()
        self.events.outage = (begin, self.plant_elapsed_s())

    async def _training(self) -> None:
        """Train and promote a model per machine on the first part of the run (normal data)."""
        plant_s = self.plant_s or OPEN_ENDED_PLANT_S
        while self.plant_elapsed_s() < plant_s * TRAIN_SHARE:
            await asyncio.sleep(0.2)
        # What the edge read up to now must be stored first: wait a moment for the pipeline.
        end_ns = self.plant_ns()
        await asyncio.sleep(1.0)
        await self._train_all(end_ns)

    async def _train_all(self, end_ns: int) -> None:
        # Training is CPU-bound: in a process of its own, so the plant servers and the edge in
        # this loop keep answering (a thread would hold the GIL and make the edge's polls time out).
        context = multiprocessing.get_context("spawn")
        loop = asyncio.get_running_loop()
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            for area, line, machine in self.site.machines():
                path = f"{area.id}/{line.id}/{machine.id}"
                # The first minutes are start-up (setup, first parts): not the normal to learn.
                start_ns = self.t0_ns + round(TRAIN_FROM_SHARE * (end_ns - self.t0_ns))
                job = (str(self.site_path), path, start_ns, end_ns, self.settings.detector)
                try:
                    self.events.trained[path] = await loop.run_in_executor(
                        pool, train_and_promote, *job
                    )
                except Exception as exc:  # noqa: BLE001 - one machine's model must not stop the others
                    self.events.training_errors[path] = str(exc)
                    log.warning("no model for %s: %s", path, exc)

    async def _analytics_rounds(self) -> None:
        """An analytics round every few plant minutes: at 60x a round a wall second would take
        the CPU the edge's Modbus polls need to keep pace (a late poll is a gap in the state)."""
        assert self.analytics is not None
        every = max(1.0, ANALYTICS_EVERY_PLANT_S / self.settings.speed)
        try:
            while True:
                await self.analytics_round()
                await asyncio.sleep(every)
        finally:
            await self.analytics.disconnect()

    async def analytics_round(self) -> None:
        assert self.analytics is not None
        await asyncio.to_thread(self.analytics.run_once)
        self._note_alerts()
        await self.analytics.publish_alerts()

    def _note_alerts(self) -> None:
        assert self.analytics is not None
        for alert in self.analytics.pending_alerts:
            if not alert.topic.endswith("/events"):
                continue
            event = orjson.loads(alert.payload)
            key = (alert.topic, int(event.get("time_ns", 0)))
            if key not in self._alert_keys:
                self._alert_keys.add(key)
                machine = "/".join(alert.topic.split("/")[4:7])
                self.events.alerts.append({"machine": machine, **event})

    # -- stopping ---------------------------------------------------------------------------------
    async def _stop(
        self,
        tasks: dict[str, asyncio.Task[None]],
        runner: SimRunner,
        broker: EmbeddedBroker | None,
    ) -> None:
        side = [tasks.pop(name) for name in ("plant", "outage", "training") if name in tasks]
        await cancel_and_wait(side)
        runner.write_truth()
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        drained = True
        for agent in self.agents:  # stop reading; send what is buffered (after any outage)
            drained &= await agent.drain(max(0.0, deadline - time.monotonic()))
        if self.gateway is not None:
            drained &= await self.gateway.drain(max(1.0, deadline - time.monotonic()))
        self.events.drained = drained
        await cancel_and_wait([t for name, t in tasks.items() if name.startswith("edge ")])
        analytics = tasks.pop("analytics", None)
        if analytics is not None:
            await cancel_and_wait([analytics])
            await self.analytics_round()  # the last round sees everything stored
            assert self.analytics is not None
            await self.analytics.disconnect()
        await cancel_and_wait(list(tasks.values()))
        if self.link is not None:
            await self.link.stop()
        await runner.stop()
        if broker is not None:
            await broker.stop()


class DistinctCount:
    """Samples read, each (machine, metric, timestamp) once.

    A machine's PLC clock is read in every poll group, so when two groups poll in the same plant
    second the clock comes twice with one timestamp: one sample, which the store keeps once.
    """

    def __init__(self) -> None:
        self.samples = 0
        self._last: dict[tuple[AssetPath, str], int] = {}

    def wrap(
        self, intake: Callable[[AssetPath, Sequence[Sample]], None]
    ) -> Callable[[AssetPath, Sequence[Sample]], None]:
        def counting(asset: AssetPath, samples: Sequence[Sample]) -> None:
            for sample in samples:
                key = (asset, sample.metric)
                if self._last.get(key) != sample.ts_ns:
                    self._last[key] = sample.ts_ns
                    self.samples += 1
            intake(asset, samples)

        return counting


def train_and_promote(
    site_path: str, machine: str, start_ns: int, end_ns: int, detector: str
) -> int:
    """Train a machine's model on its stored history and promote it; returns the version."""
    from plantwire.config import load_site

    site = load_site(site_path)
    registry = Registry(Path(site.analytics.registry_path))
    with open_store(site) as store:
        history = load_history(site, store, machine, start=start_ns, end=end_ns)
    version = train(history, registry, site=site.site.id, detector_name=detector)
    registry.promote(version.machine, version.version)
    return version.version


def _create_database(url: str, database: str | None) -> None:
    """InfluxDB 1.x writes only into a database that exists (CREATE DATABASE is idempotent)."""
    if not database:
        return
    body = urllib.parse.urlencode({"q": f'CREATE DATABASE "{database}"'}).encode()
    with urllib.request.urlopen(f"{url.rstrip('/')}/query", body, timeout=10) as answer:  # noqa: S310 - the user's URL
        answer.read()


def _port_of(config: dict[str, Any], protocol: str) -> int:
    """The simulator port the site file's sources of ``protocol`` point at."""
    for area in config["areas"]:
        for line in area["lines"]:
            for machine in line["machines"]:
                source = machine["sources"][0]
                if source["protocol"] == protocol:
                    return int(source["endpoint"].rsplit(":", 1)[1].split("/")[0])
    raise ValueError(f"the demo site has no {protocol} source")
