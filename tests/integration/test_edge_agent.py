"""The edge agent end to end over real sockets: the simulated plant's Modbus server, the agent,
the link emulator, and a real Mosquitto. Every sample the agent read is counted at a subscriber."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from pw_mqtt import BatchCollector, SampleKey, sim_site

from edge.agent import EdgeAgent
from plantwire.config import load_site
from plantwire.model import AssetPath, Sample
from plantwire.testing.servers import Mosquitto, free_port
from simulators.link import LinkEmulator
from simulators.modbus_server import ModbusPlantServer
from simulators.plant import Plant
from simulators.runner import SimRunner
from simulators.scenario import bundled_scenario, load_scenario

pytestmark = pytest.mark.servers
DEMO = load_scenario(bundled_scenario())
SPEED = 10.0


def recording(agent: EdgeAgent) -> list[SampleKey]:
    """Record every sample the agent's sources deliver (what was read, before any filtering)."""
    recorded: list[SampleKey] = []
    intake = agent.intake

    def record(asset: AssetPath, samples: Sequence[Sample]) -> None:
        recorded.extend((asset, s.metric, s.ts_ns) for s in samples)
        intake(asset, samples)

    agent.intake = record  # type: ignore[method-assign]
    return recorded


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


class Rig:
    """The simulated plant served over Modbus, paced in the test's event loop."""

    def __init__(self) -> None:
        self.plant = Plant(DEMO)
        self.modbus = ModbusPlantServer(self.plant, port=free_port())
        self.runner = SimRunner(self.plant, speed=SPEED, modbus=self.modbus)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Rig:
        await self.runner.start()
        self.task = asyncio.create_task(self.runner.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.runner.stop()


def test_every_sample_read_reaches_the_broker_in_order(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async def scenario() -> tuple[list[SampleKey], BatchCollector, dict[str, Any]]:
        async with Rig() as rig:
            path, _ = sim_site(
                tmp_path, modbus_port=rig.modbus.port, mqtt_port=mosquitto.port, speed=SPEED
            )
            site = load_site(path)
            collector = BatchCollector(mosquitto.port, site.site.id)
            agent = EdgeAgent(site, "edge-dairy", health_port=free_port())
            recorded = recording(agent)
            task = asyncio.create_task(agent.run())
            await asyncio.sleep(5)
            assert agent.health is not None
            health_status, health_body = await http_get(agent.health.port, "/healthz")
            metrics_status, metrics_body = await http_get(agent.health.port, "/metrics")
            assert await agent.drain(15)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert metrics_status == 200
        return (
            recorded,
            collector,
            {
                "health": (health_status, orjson.loads(health_body)),
                "metrics": metrics_body.decode(),
            },
        )

    recorded, collector, checks = asyncio.run(scenario())
    try:
        assert len(recorded) > 3000  # 4 machines x ~25 tags x 10 polls/s x 5 s
        missing = collector.wait_for(set(recorded), 10)
        assert not missing, f"{len(missing)} of {len(recorded)} samples never arrived"
        assert len(set(collector.keys())) == len(set(recorded))
        assert collector.per_tag_in_order()
    finally:
        collector.close()
    status, health = checks["health"]
    assert status == 200 and health["status"] == "ok" and health["mqtt_connected"] is True
    assert "plantwire_edge_samples_read_total" in checks["metrics"]
    assert 'plantwire_edge_source_connected{source="modbus tcp://127.0.0.1:' in checks["metrics"]


def test_a_60_s_link_outage_loses_nothing(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async def scenario() -> tuple[list[SampleKey], BatchCollector, dict[str, int]]:
        async with (
            Rig() as rig,
            LinkEmulator(
                ("127.0.0.1", 0), ("127.0.0.1", mosquitto.port), "5g-embb", seed=1
            ) as link,
        ):
            path, _ = sim_site(
                tmp_path, modbus_port=rig.modbus.port, mqtt_port=link.port, speed=SPEED
            )
            site = load_site(path)
            collector = BatchCollector(mosquitto.port, site.site.id)
            agent = EdgeAgent(site, "edge-dairy", health_port=0)
            recorded = recording(agent)
            task = asyncio.create_task(agent.run())
            await asyncio.sleep(5)
            await link.outage(60)
            await asyncio.sleep(30)
            figures = {
                "buffered_mid_outage": agent.buffer.samples,
                "connected_mid_outage": int(agent.forwarder.connected),
            }
            await link.wait_online()
            await asyncio.sleep(10)  # the backlog drains while new data keeps flowing
            drained = await agent.drain(60)
            figures["connects"] = agent.forwarder.connects
            assert drained, (
                agent.buffer.samples,
                agent.forwarder.refused,
                agent.forwarder.connected,
                agent.forwarder.inflight,
            )
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return recorded, collector, figures

    recorded, collector, figures = asyncio.run(scenario())
    try:
        assert figures["buffered_mid_outage"] > 10_000 and figures["connected_mid_outage"] == 0
        assert figures["connects"] >= 2
        missing = collector.wait_for(set(recorded), 15)
        assert not missing, f"{len(missing)} of {len(recorded)} samples never arrived"
        assert collector.per_tag_in_order()
    finally:
        collector.close()


def buffered_keys(database: Path) -> set[SampleKey]:
    """Every sample in an edge buffer file, read with plain sqlite3 (as after a crash)."""
    keys: set[SampleKey] = set()
    with sqlite3.connect(database) as db:
        for asset, payload in db.execute("SELECT asset, payload FROM chunks"):
            path = AssetPath(*asset.split("/"))
            for sample in orjson.loads(b"[" + payload + b"]"):
                keys.add((path, sample["m"], sample["t"]))
    return keys


def buffered_so_far(database: Path) -> set[SampleKey]:
    """The samples in a buffer the agent is still writing: none while the file or its tables
    are still being made (the file exists a moment before its schema does)."""
    try:
        return buffered_keys(database) if database.exists() else set()
    except sqlite3.OperationalError:
        return set()


def test_kill_9_with_a_full_buffer_then_restart_delivers_the_buffer(tmp_path: Path) -> None:
    modbus_port, broker_port = free_port(), free_port()
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "plantwire.cli",
            "sim",
            "--speed",
            str(SPEED),
            "--modbus-port",
            str(modbus_port),
            "--opcua-port",
            "0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    path, config = sim_site(tmp_path, modbus_port=modbus_port, mqtt_port=broker_port, speed=SPEED)
    database = Path(config["edge_nodes"][0]["buffer_path"])
    agent_command = [
        sys.executable,
        "-m",
        "plantwire.cli",
        "edge",
        "--config",
        str(path),
        "--node",
        "edge-dairy",
    ]
    log_file = (tmp_path / "agent.log").open("wb")
    try:
        agent = subprocess.Popen(agent_command, stdout=log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(buffered_so_far(database)) < 5000:
            time.sleep(0.5)
        os.kill(agent.pid, signal.SIGKILL)  # no chance to flush or say goodbye
        agent.wait()
        before = buffered_keys(database)
        assert len(before) >= 5000, (tmp_path / "agent.log").read_text()[-2000:]

        broker = Mosquitto(tmp_path / "broker", port=broker_port)
        broker.start()
        collector = BatchCollector(broker_port, config["site"]["id"])
        agent = subprocess.Popen(agent_command, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            missing = collector.wait_for(before, 60)
            assert not missing, f"{len(missing)} of {len(before)} buffered samples never arrived"
            assert collector.per_tag_in_order()
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(20)
            collector.close()
            broker.stop()
    finally:
        sim.terminate()
        sim.wait(10)
        log_file.close()


def test_device_trouble_is_logged_once_and_the_rest_keeps_running(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    dead_port = free_port()

    async def scenario() -> tuple[dict[AssetPath, int], list[str]]:
        async with Rig() as rig:
            path, config = sim_site(
                tmp_path, modbus_port=rig.modbus.port, mqtt_port=mosquitto.port, speed=SPEED
            )
            capper = config["areas"][0]["lines"][0]["machines"][1]
            capper["sources"][0]["endpoint"] = f"tcp://127.0.0.1:{dead_port}"  # unreachable
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            from simulators.modbus_server import Misbehaviour

            # The filler refuses its fill_pressure registers (input 24-25).
            rig.modbus.misbehaviour[1] = Misbehaviour(
                "illegal_address", table="input", addresses=range(24, 26)
            )  # type: ignore[arg-type]
            site = load_site(path)
            collector = BatchCollector(mosquitto.port, site.site.id)
            agent = EdgeAgent(site, "edge-dairy", health_port=0)
            task = asyncio.create_task(agent.run())
            await asyncio.sleep(4)
            assert await agent.drain(15)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        counts: dict[AssetPath, int] = {}
        for asset, _sample in collector.samples:
            counts[asset] = counts.get(asset, 0) + 1
        bad = [
            s.metric
            for a, s in collector.samples
            if s.quality.value == "bad" and a.machine == "filler"
        ]
        collector.close()
        return counts, bad

    with caplog.at_level(logging.INFO):
        counts, bad = asyncio.run(scenario())
    machines = {asset.machine: n for asset, n in counts.items()}
    assert set(machines) == {"filler", "labeler", "case-packer"}  # the capper is unreachable
    assert all(n > 500 for n in machines.values())
    assert set(bad) == {"fill_pressure"}
    messages = [r.getMessage() for r in caplog.records]
    unreachable = [m for m in messages if f"127.0.0.1:{dead_port} unavailable" in m]
    assert len(unreachable) == 1, unreachable  # once, not on every retry
    refused = [m for m in messages if "fill_pressure" in m and "reads bad" in m]
    assert len(refused) == 1 and "illegal address" in refused[0]


def test_a_bad_site_file_is_refused_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "site.yaml"
    bad.write_text("site:\n  id: plant/1\nareas: []\n")
    result = subprocess.run(
        [sys.executable, "-m", "plantwire.cli", "edge", "--config", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert f"{bad}:2:7: site.id: site id 'plant/1' contains '/'" in result.stderr


def test_an_edge_with_modbus_and_opcua_machines_delivers_both(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    from simulators.opcua_server import OpcuaPlantServer

    async def scenario() -> dict[str, int]:
        plant = Plant(DEMO)
        modbus = ModbusPlantServer(plant, port=free_port())
        opcua = OpcuaPlantServer(plant, port=free_port())
        runner = SimRunner(plant, speed=SPEED, modbus=modbus, opcua=opcua)
        await runner.start()
        sim = asyncio.create_task(runner.run())
        path, _ = sim_site(
            tmp_path,
            modbus_port=modbus.port,
            opcua_port=opcua.port,
            mqtt_port=mosquitto.port,
            speed=SPEED,
        )
        site = load_site(path)
        collector = BatchCollector(mosquitto.port, site.site.id)
        agent = EdgeAgent(site, "edge-snacks", health_port=0)
        recorded = recording(agent)
        task = asyncio.create_task(agent.run())
        await asyncio.sleep(5)
        assert await agent.drain(15)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sim.cancel()
        await asyncio.gather(sim, return_exceptions=True)
        await runner.stop()
        missing = collector.wait_for(set(recorded), 10)
        assert not missing
        counts: dict[str, int] = {}
        for asset, _ in collector.samples:
            counts[asset.machine] = counts.get(asset.machine, 0) + 1
        collector.close()
        return counts

    counts = asyncio.run(scenario())
    assert set(counts) == {"weigher", "bagger", "checkweigher", "case-packer"}
    assert min(counts.values()) > 100


def test_mqtt_over_tls_with_client_certificate_and_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plantwire.testing.pki import make_pki

    pki = make_pki(tmp_path / "pki")
    edge_cert, edge_key = pki.client("edge-dairy")
    reader_cert, reader_key = pki.client("reader")
    passwords = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "edge", "s3cret-edge"], check=True
    )
    subprocess.run(
        ["mosquitto_passwd", "-b", str(passwords), "reader", "s3cret-reader"], check=True
    )
    port = free_port()
    broker = Mosquitto(
        tmp_path / "broker",
        port=port,
        anonymous=False,
        default_listener=False,
        extra_config=[
            f"listener {port} 127.0.0.1",
            f"cafile {pki.ca_cert}",
            f"certfile {pki.server_cert}",
            f"keyfile {pki.server_key}",
            "require_certificate true",
            f"password_file {passwords}",
        ],
    )
    monkeypatch.setenv("EDGE_MQTT_PASSWORD", "s3cret-edge")

    async def scenario() -> tuple[list[SampleKey], BatchCollector]:
        async with Rig() as rig:
            path, config = sim_site(
                tmp_path, modbus_port=rig.modbus.port, mqtt_port=port, speed=SPEED
            )
            config["mqtt"] = {
                "url": f"mqtts://127.0.0.1:{port}",
                "username": "edge",
                "password": "${EDGE_MQTT_PASSWORD}",
                "tls": {
                    "ca_file": str(pki.ca_cert),
                    "cert_file": str(edge_cert),
                    "key_file": str(edge_key),
                },
            }
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            site = load_site(path)
            collector = BatchCollector(
                port,
                site.site.id,
                tls=(pki.ca_cert, reader_cert, reader_key),
                credentials=("reader", "s3cret-reader"),
            )
            agent = EdgeAgent(site, "edge-dairy", health_port=0)
            recorded = recording(agent)
            task = asyncio.create_task(agent.run())
            await asyncio.sleep(3)
            assert await agent.drain(15)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return recorded, collector

    with broker:
        recorded, collector = asyncio.run(scenario())
        try:
            assert len(recorded) > 1000
            assert not collector.wait_for(set(recorded), 10)
        finally:
            collector.close()


def test_the_agent_counters_for_the_pipeline_board(tmp_path: Path) -> None:
    path, _ = sim_site(tmp_path, modbus_port=free_port(), mqtt_port=free_port(), speed=SPEED)
    agent = EdgeAgent(load_site(path), "edge-dairy", health_port=0)
    stats = agent.stats()
    assert set(stats) == {
        "mqtt_connected",
        "sources_connected",
        "sources_total",
        "samples_read_total",
        "samples_published_total",
        "samples_buffered",
        "samples_dropped_total",
        "buffer_bytes",
        "reads_per_s",
    }
    assert all(isinstance(value, float) for value in stats.values())
    assert stats["sources_total"] == len(agent.drivers) and stats["mqtt_connected"] == 0
    assert agent.forwarder.publish_stats(stats) is False  # not connected: nothing to send
    agent.buffer.close()
