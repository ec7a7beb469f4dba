"""The gateway as a Sparkplug B host application, with real Mosquitto and influxd: a hand-built
NBIRTH published with mosquitto_pub lands with its names, types and timestamp; a sequence gap
asks the node for a rebirth and keeps the data; the host's STATE is retained, and offline after
it stops."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from pw_gateway import gateway_site, running, stop

from gateway.service import Gateway
from plantwire.codec.sparkplug import DataType, Metric, Payload, decode, encode
from plantwire.config import SiteConfig
from plantwire.config.models import SparkplugConfig
from plantwire.store.influx_async import make_async_writer
from plantwire.testing.servers import InfluxClient, Influxd, Mosquitto

pytestmark = pytest.mark.servers
NS = 1_000_000_000

# An NBIRTH worked out by hand from the protobuf wire format (see the golden vectors in
# tests/unit/test_sparkplug_codec.py for the byte rules):
#   08 80d095ffbc31            Payload.timestamp = 1700000000000 ms (varint)
#   12 0b 0a05 6264536571 2008 5800     metric "bdSeq", datatype UInt64 (8), long_value 0
#   12 08 0a0161 2003 50ac02            metric "a", Int32 (3), int_value 300
#   12 0e 0a0162 200a 6900000000000004c0  metric "b", Double (10), double_value -2.5
#   12 07 0a0163 200b 7001              metric "c", Boolean (11), boolean_value true
#   12 09 0a0164 200c 7a026869          metric "d", String (12), string_value "hi"
#   18 00                      Payload.seq = 0
NBIRTH_HEX = (
    "08 80d095ffbc31"
    " 12 0b 0a056264536571 2008 5800"
    " 12 08 0a0161 2003 50ac02"
    " 12 0e 0a0162 200a 6900000000000004c0"
    " 12 07 0a0163 200b 7001"
    " 12 09 0a0164 200c 7a026869"
    " 18 00"
)
BIRTH_MS = 1_700_000_000_000


class Watcher:
    """Every message on a topic filter, decoded later."""

    def __init__(self, port: int, topic_filter: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_connect = lambda c, *_: c.subscribe(topic_filter, qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload, bool(message.retain)))

    def wait(self, predicate: Any, timeout_s: float = 10.0) -> list[tuple[str, bytes, bool]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                found = [m for m in self.messages if predicate(m)]
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no such message in {self.messages}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def sparkplug_site(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, database: str
) -> SiteConfig:
    site = gateway_site(
        tmp_path, mqtt_port=mosquitto.port, influx_url=influxd.url, database=database
    )
    group = f"g{uuid.uuid4().hex[:6]}"
    host = f"host-{uuid.uuid4().hex[:6]}"
    return site.model_copy(update={"sparkplug": SparkplugConfig(group_id=group, host_id=host)})


def wait_rows(influx: InfluxClient, query: str, count: int, timeout_s: float = 10.0) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    rows = influx.rows(query)
    while len(rows) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = influx.rows(query)
    return rows


def mosquitto_pub(port: int, topic: str, payload: bytes, tmp_path: Path) -> None:
    path = tmp_path / f"payload-{uuid.uuid4().hex[:6]}.bin"
    path.write_bytes(payload)
    subprocess.run(
        ["mosquitto_pub", "-p", str(port), "-q", "1", "-t", topic, "-f", str(path)],
        check=True,
        timeout=10,
    )


def test_a_hand_built_birth_from_mosquitto_pub_lands_typed_and_timed(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, influx: InfluxClient
) -> None:
    site = sparkplug_site(tmp_path, mosquitto, influxd, influx.database)
    assert site.sparkplug is not None
    group, host = site.sparkplug_group, site.sparkplug.host_id
    state = Watcher(mosquitto.port, f"spBv1.0/STATE/{host}")
    commands = Watcher(mosquitto.port, f"spBv1.0/{group}/NCMD/#")

    async def scenario() -> Gateway:
        assert site.store is not None
        gateway = Gateway(site, make_async_writer(site.store), gateway_id="gw-sp")
        task = await running(gateway)
        online = await asyncio.to_thread(
            state.wait, lambda m: json.loads(m[1]).get("online") is True
        )
        assert online
        topic = f"spBv1.0/{group}/NBIRTH/press-7"
        await asyncio.to_thread(
            mosquitto_pub, mosquitto.port, topic, bytes.fromhex(NBIRTH_HEX), tmp_path
        )
        query = f"SELECT * FROM telemetry WHERE line = 'press-7' AND area = '{group}'"
        rows = await asyncio.to_thread(wait_rows, influx, query, 1)
        assert len(rows) == 1
        # seq 7 where 1 was due: a gap. The value is stored all the same.
        gap = Payload(
            timestamp=BIRTH_MS + 1000,
            seq=7,
            metrics=(Metric(name="a", datatype=DataType.Int32, value=301),),
        )
        await asyncio.to_thread(
            mosquitto_pub,
            mosquitto.port,
            f"spBv1.0/{group}/NDATA/press-7",
            encode(gap),
            tmp_path,
        )
        await asyncio.to_thread(wait_rows, influx, query, 2)
        await gateway.drain(5)
        await stop(task)
        return gateway

    try:
        gateway = asyncio.run(scenario())
        rebirths = commands.wait(lambda m: m[0] == f"spBv1.0/{group}/NCMD/press-7")
        request = decode(rebirths[0][1])
        assert [(m.name, m.value) for m in request.metrics] == [("Node Control/Rebirth", True)]
        state.wait(lambda m: json.loads(m[1]).get("online") is False)
        # Retained: a host that comes later (or an edge node starting) reads it at once.
        later = Watcher(mosquitto.port, f"spBv1.0/STATE/{host}")
        retained = later.wait(lambda m: m[2])
        later.close()
        assert json.loads(retained[0][1])["online"] is False
    finally:
        state.close()
        commands.close()
    assert gateway.sparkplug is not None and gateway.sparkplug.seq_gaps == 1
    rows = influx.rows(f"SELECT * FROM telemetry WHERE line = 'press-7' AND area = '{group}'")
    assert rows[0]["time"] == BIRTH_MS * 1_000_000
    assert rows[0]["machine"] == "node" and rows[0]["site"] == site.site.id
    assert (rows[0]["a"], rows[0]["b"], rows[0]["c"], rows[0]["d"]) == (300, -2.5, True, "hi")
    assert "bdSeq" not in rows[0]  # session bookkeeping is not telemetry
    assert rows[1]["time"] == (BIRTH_MS + 1000) * 1_000_000 and rows[1]["a"] == 301
    keys = influx.rows("SHOW FIELD KEYS FROM telemetry")
    types = {k["fieldKey"]: k["fieldType"] for k in keys}
    assert (types["a"], types["b"], types["c"], types["d"]) == (
        "integer",
        "float",
        "boolean",
        "string",
    )


def test_edge_node_to_gateway_n_in_n_out_through_a_gateway_restart(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, influx: InfluxClient
) -> None:
    """PlantWire's edge in Sparkplug mode -> Mosquitto -> PlantWire's gateway -> influxd. The
    gateway stops mid-stream and a new one starts on the same spool: the edge waits while the
    host is offline, rebirths when it is back, and every sample published arrives."""
    from pw_mqtt import sim_site

    from demo.orchestra import DistinctCount
    from edge.agent import EdgeAgent
    from edge.sparkplug_node import SparkplugNode
    from plantwire.config import load_site
    from plantwire.testing.servers import free_port
    from simulators.modbus_server import ModbusPlantServer
    from simulators.plant import Plant
    from simulators.runner import SimRunner
    from simulators.scenario import bundled_scenario, load_scenario

    edge_id = "edge-dairy"
    distinct = DistinctCount()
    host_id = f"host-{uuid.uuid4().hex[:8]}"
    spool = tmp_path / "gateway-spool.db"

    async def scenario() -> tuple[int, str]:
        plant = Plant(load_scenario(bundled_scenario()))
        modbus = ModbusPlantServer(plant, port=free_port())
        runner = SimRunner(plant, speed=10.0, modbus=modbus)
        await runner.start()
        sim = asyncio.create_task(runner.run())
        path, config = sim_site(
            tmp_path, modbus_port=modbus.port, mqtt_port=mosquitto.port, speed=10.0
        )
        config["sparkplug"] = {"host_id": host_id}
        for edge_node in config["edge_nodes"]:
            if edge_node["id"] == edge_id:
                edge_node["payload"] = "sparkplug"
        config["store"] = {"backend": "influxdb", "url": influxd.url, "database": influx.database}
        config["gateway"] = {"health_port": 0, "batch_max_latency_ms": 50}
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        site = load_site(path)
        assert site.store is not None
        agent = EdgeAgent(site, edge_id, health_port=0)
        # Each (machine, metric, timestamp) once: the PLC clock read by two poll groups in one
        # plant second is one sample, and the store keeps it once (see docs/demo.md).
        agent.intake = distinct.wrap(agent.intake)  # type: ignore[method-assign]
        edge = asyncio.create_task(agent.run())
        first = Gateway(site, make_async_writer(site.store), gateway_id="gw-a", spool_path=spool)
        gateway_task = await running(first)
        try:
            await asyncio.sleep(4)
            await stop(gateway_task)  # STATE offline: the edge keeps data on disk meanwhile
            await asyncio.sleep(2)
            second = Gateway(
                site, make_async_writer(site.store), gateway_id="gw-a", spool_path=spool
            )
            gateway_task = await running(second)
            await asyncio.sleep(4)
            assert await agent.drain(30)
            assert await second.drain(15)
            await asyncio.sleep(0.5)
            assert await second.drain(15)
        finally:
            await stop(gateway_task)
            edge.cancel()
            await asyncio.gather(edge, return_exceptions=True)
            sim.cancel()
            await asyncio.gather(sim, return_exceptions=True)
            await runner.stop()
        node = agent.forwarder.format
        assert isinstance(node, SparkplugNode)
        assert node.births_published >= 2  # a birth for each host session
        assert agent.forwarder.samples_published >= distinct.samples
        return distinct.samples, site.site.id

    published, site_id = asyncio.run(scenario())
    answer = influx.rows(f"SELECT COUNT(*) FROM telemetry WHERE site = '{site_id}' GROUP BY *")
    stored = sum(
        int(v)
        for row in answer
        for k, v in row.items()
        if k.startswith("count_") and not k.endswith("__quality") and v is not None
    )
    assert published > 1000
    assert stored == published
