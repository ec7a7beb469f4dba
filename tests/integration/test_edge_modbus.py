"""The Modbus driver against the simulated plant over real sockets: every type and byte order,
the fewest requests, plant-time stamps, and each kind of device trouble."""

from __future__ import annotations

import asyncio
import logging
import math
import struct
import time
from collections.abc import Sequence
from typing import Any

import pytest

from edge.sources.base import NotConnected, SourceTarget
from edge.sources.modbus import ModbusSourceDriver
from plantwire.config import parse_site
from plantwire.config.models import ModbusSource
from plantwire.model import AssetPath, Quality, Sample
from plantwire.testing.servers import free_port
from simulators.modbus_server import Misbehaviour, ModbusPlantServer
from simulators.plant import Plant
from simulators.scenario import bundled_scenario, load_scenario
from simulators.siteconfig import scenario_site_yaml

DEMO = load_scenario(bundled_scenario())


def modbus_targets(port: int) -> list[SourceTarget]:
    site = parse_site(scenario_site_yaml(DEMO, modbus_port=port), environ={}).config
    return [
        SourceTarget(
            AssetPath(site.site.id, area.id, line.id, machine.id), source, machine.clock_metric
        )
        for area, line, machine in site.machines()
        for source in machine.sources
        if isinstance(source, ModbusSource)
    ]


class Collector:
    def __init__(self) -> None:
        self.samples: dict[AssetPath, list[Sample]] = {}

    def __call__(self, asset: AssetPath, samples: Sequence[Sample]) -> None:
        self.samples.setdefault(asset, []).extend(samples)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def served(plant: Plant) -> ModbusPlantServer:
    server = ModbusPlantServer(plant, port=free_port())
    await server.start()
    return server


def expected_value(want: Any, unit_tag: Any) -> Any:
    return want


def test_every_tag_decodes_to_the_simulator_value_with_the_fewest_requests() -> None:
    plant = Plant(DEMO)
    plant.advance(6 * 3600 + 300)  # 12:05: cnc-1's coolant_temp is in dropout (NaN -> bad)

    async def scenario() -> None:
        server = await served(plant)
        targets = modbus_targets(server.port)
        driver = ModbusSourceDriver(targets)
        sink = Collector()
        try:
            await driver.connect()
            before = server.requests
            await driver.poll(1.0, sink)
            sent = server.requests - before
        finally:
            await driver.close()
            await server.stop()
        machines = len(targets)
        assert machines == 11
        # Four tables per device, each read in one request: nothing can be merged further.
        assert sent == driver.requests_per_cycle[1.0] == 4 * machines
        for target in targets:
            index = plant.paths.index("/".join(target.asset[1:]))
            truth = plant.values(index)
            got = {s.metric: s for s in sink.samples[target.asset]}
            assert "plc_clock_ns" not in got  # the clock stamps samples, it is not one
            assert set(got) == set(truth) - {"plc_clock_ns"}
            for metric, sample in got.items():
                want = truth[metric]
                assert sample.ts_ns == round(plant.now * 1e9)  # stamped with the PLC clock
                if isinstance(want, float) and math.isnan(want):
                    assert (sample.value, sample.quality) == (None, Quality.BAD), metric
                elif metric in ("cabinet_temp", "cabinet_humidity", "speed_pct"):
                    assert sample.value == pytest.approx(want, abs=0.051), metric  # scaled integers
                elif isinstance(want, float) and metric != "energy_kwh":
                    assert sample.value == struct.unpack(">f", struct.pack(">f", want))[0], metric
                else:
                    assert sample.value == want and type(sample.value) is type(want), metric
                    assert sample.quality is Quality.GOOD

    run(scenario())


def test_refused_addresses_mark_only_their_tags_bad_and_recover(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plant = Plant(DEMO)
    plant.advance(600)

    async def scenario() -> None:
        server = await served(plant)
        target = modbus_targets(server.port)[0]  # the filler, device 1
        driver = ModbusSourceDriver([target])
        try:
            await driver.connect()
            # fill_pressure lives at input registers 24-25.
            server.misbehaviour[1] = Misbehaviour(
                "illegal_address", table="input", addresses=range(24, 26)
            )  # type: ignore[arg-type]
            polls = []
            for _ in range(3):
                sink = Collector()
                await driver.poll(1.0, sink)
                polls.append({s.metric: s for s in sink.samples[target.asset]})
            isolated_requests = driver.requests_per_cycle[1.0]
            server.misbehaviour.clear()
            sink = Collector()
            await driver.poll(1.0, sink)
            healed = {s.metric: s for s in sink.samples[target.asset]}
        finally:
            await driver.close()
            await server.stop()
        for poll in polls:
            assert (
                poll["fill_pressure"].quality is Quality.BAD and poll["fill_pressure"].value is None
            )
            good = [
                m for m, s in poll.items() if m != "fill_pressure" and s.quality is Quality.GOOD
            ]
            assert len(good) == len(poll) - 1
        # The bad tag is read alone; its neighbours are still read together around it.
        assert isolated_requests == 4 + 2
        assert healed["fill_pressure"].quality is Quality.GOOD
        problems = [
            r
            for r in caplog.records
            if "fill_pressure" in r.getMessage() and "reads bad" in r.getMessage()
        ]
        assert len(problems) == 1 and "illegal address" in problems[0].getMessage()
        assert sum("fill_pressure reads again" in r.getMessage() for r in caplog.records) == 1

    with caplog.at_level(logging.INFO, logger="plantwire.edge.modbus"):
        run(scenario())


def test_a_poll_without_its_plc_clock_stays_on_the_plc_time_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The plant runs 60x faster than the edge's clock and weeks in the past: a poll whose clock
    read fails is stamped with the PLC time carried on, not with the edge's clock."""
    plant = Plant(DEMO)
    plant.advance(600)
    speed, pause_s = 60, 0.2

    async def scenario() -> tuple[list[int], int, float, ModbusSourceDriver]:
        server = await served(plant)
        target = modbus_targets(server.port)[0]  # the filler, device 1
        clock = next(tag for tag in target.config.tags if tag.metric == target.clock_metric)
        driver = ModbusSourceDriver([target])
        stamps = []
        try:
            await driver.connect()
            for _ in range(4):  # good readings: the pace of the PLC clock is learnt
                sink = Collector()
                await driver.poll(1.0, sink)
                stamps.append(sink.samples[target.asset][0].ts_ns)
                await asyncio.sleep(pause_s)
                plant.advance(speed * pause_s)
            server.misbehaviour[1] = Misbehaviour(  # type: ignore[arg-type]
                "device_failure",
                table=clock.table,
                addresses=range(clock.address, clock.address + 4),
            )
            sink = Collector()
            await driver.poll(1.0, sink)
            carried = {s.ts_ns for s in sink.samples[target.asset]}
        finally:
            await driver.close()
            await server.stop()
        assert len(carried) == 1 and len(sink.samples[target.asset]) > 1
        return stamps, carried.pop(), plant.now, driver

    with caplog.at_level(logging.WARNING, logger="plantwire.edge.modbus"):
        stamps, carried, plant_now_s, driver = run(scenario())
    assert stamps == sorted(stamps)
    # On the PLC's time line, after the last good stamp and within a few seconds of plant time
    # (the edge's own pauses vary on a busy machine; 3 s of plant time is 50 ms of the edge's).
    assert stamps[-1] < carried
    assert abs(carried - plant_now_s * 1e9) < 30 * 1e9
    assert abs(carried - time.time_ns()) > 86_400 * 1e9  # the plant is weeks in the past
    assert driver.stats.errors["clock"] == 1
    logged = [r.getMessage() for r in caplog.records if "PLC clock" in r.getMessage()]
    assert len(logged) == 1 and "carried on" in logged[0]


def test_busy_devices_are_retried_then_marked_bad() -> None:
    plant = Plant(DEMO)

    async def scenario() -> tuple[dict[str, Sample], dict[str, Sample]]:
        server = await served(plant)
        target = modbus_targets(server.port)[1]  # the capper, device 2
        driver = ModbusSourceDriver([target])
        try:
            await driver.connect()
            server.misbehaviour[2] = Misbehaviour("busy", table="holding", remaining=2)  # type: ignore[arg-type]
            first = Collector()
            await driver.poll(1.0, first)
            server.misbehaviour[2] = Misbehaviour("busy", table="holding")  # type: ignore[arg-type]
            second = Collector()
            await driver.poll(1.0, second)
            assert driver.stats.errors["busy"] >= 2 + 4
        finally:
            await driver.close()
            await server.stop()
        return (
            {s.metric: s for s in first.samples[target.asset]},
            {s.metric: s for s in second.samples[target.asset]},
        )

    first, second = run(scenario())
    assert first["state"].quality is Quality.GOOD  # two busy answers, three retries: read
    assert second["state"].quality is Quality.BAD  # busy for good: bad, not a crash
    assert second["good_count"].quality is Quality.GOOD  # other tables unaffected
    assert second["state"].ts_ns > 0


def test_unreachable_endpoint_and_lost_connection_raise_not_connected() -> None:
    plant = Plant(DEMO)

    async def scenario() -> None:
        dead_port = free_port()
        driver = ModbusSourceDriver(modbus_targets(dead_port)[:1])
        with pytest.raises(NotConnected, match=r"modbus tcp://127\.0\.0\.1"):
            await driver.connect()
        server = await served(plant)
        driver = ModbusSourceDriver(modbus_targets(server.port)[:1])
        await driver.connect()
        await server.stop()
        await asyncio.sleep(0.2)

        async def poll_until_it_fails() -> None:
            for _ in range(5):
                await driver.poll(1.0, Collector())

        with pytest.raises(NotConnected):
            await poll_until_it_fails()
        await driver.close()

    run(scenario())
