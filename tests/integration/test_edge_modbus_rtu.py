"""Modbus RTU: framed over TCP (serial gateways), and over a real serial line -- a pair of
pseudo-terminals joined by socat, the edge on one end and the simulated plant on the other."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

from conftest import missing_server

from edge.sources.base import SourceTarget
from edge.sources.modbus import ModbusSourceDriver
from plantwire.config.models import ModbusSource
from plantwire.model import AssetPath, Quality, Sample
from plantwire.testing.servers import ServerMissingError, free_port
from simulators.kinds import KINDS
from simulators.modbus_server import ModbusPlantServer
from simulators.plant import Plant
from simulators.registers import machine_map
from simulators.scenario import bundled_scenario, load_scenario

DEMO = load_scenario(bundled_scenario())
FILLER = AssetPath("binh-duong", "dairy", "filling", "filler")


def filler_source(endpoint: str, **extra: object) -> ModbusSource:
    tags = [
        {
            "metric": s.metric,
            "table": str(s.table),
            "address": s.address,
            "type": str(s.type),
            "order": str(s.order),
            "scale": s.scale,
            **({"length": s.length} if s.length else {}),
        }
        for s in machine_map(KINDS["filler"], 0)
    ]
    return ModbusSource.model_validate(
        {"protocol": "modbus", "endpoint": endpoint, "device_id": 1, "tags": tags, **extra}
    )


async def read_once(server: ModbusPlantServer, source: ModbusSource) -> dict[str, Sample]:
    await server.start()
    driver = ModbusSourceDriver([SourceTarget(FILLER, source)])
    got: dict[str, Sample] = {}
    try:
        await driver.connect()
        await driver.poll(1.0, lambda asset, samples: got.update({s.metric: s for s in samples}))
    finally:
        await driver.close()
        await server.stop()
    return got


def check(got: dict[str, Sample], plant: Plant) -> None:
    truth = plant.values(0)
    assert got["good_count"].value == truth["good_count"]
    assert got["state"].value == truth["state"]
    assert got["product"].value == truth["product"]
    assert all(s.quality is Quality.GOOD for s in got.values())
    assert len(got) == len(truth)


def test_rtu_framing_over_tcp() -> None:
    plant = Plant(DEMO)
    plant.advance(3600)
    port = free_port()
    got = asyncio.run(
        read_once(
            ModbusPlantServer(plant, port=port, framer="rtu"),
            filler_source(f"rtu+tcp://127.0.0.1:{port}"),
        )
    )
    check(got, plant)


def test_rtu_over_a_serial_line(tmp_path: Path) -> None:
    if shutil.which("socat") is None:
        missing_server(
            ServerMissingError("socat is not installed (scripts/install-servers installs it)")
        )
    plant_end, edge_end = tmp_path / "plc", tmp_path / "edge"
    link = subprocess.Popen(
        ["socat", f"pty,raw,echo=0,link={plant_end}", f"pty,raw,echo=0,link={edge_end}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not (plant_end.exists() and edge_end.exists()) and time.monotonic() < deadline:
            time.sleep(0.05)
        plant = Plant(DEMO)
        plant.advance(3600)
        # A pseudo-terminal refuses parity settings, so this line runs 8N1 (real RS-485: often 8E1).
        source = filler_source(
            f"rtu://{edge_end}", serial={"baudrate": 19200, "parity": "N"}, timeout_s=2.0
        )
        server = ModbusPlantServer(plant, serial_port=str(plant_end), serial_parity="N")
        got = asyncio.run(read_once(server, source))
        check(got, plant)
    finally:
        link.terminate()
        link.wait(5)
