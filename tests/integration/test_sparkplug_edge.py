"""The edge agent as a Sparkplug B edge node against a real Mosquitto, with a raw paho client
playing the primary host: STATE gating, births, DDATA by alias, rebirth on NCMD, the NDEATH
will and bdSeq across reconnections."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from pw_mqtt import sim_site

from edge.agent import EdgeAgent
from edge.sparkplug_node import SparkplugNode
from plantwire.codec.sparkplug import (
    BDSEQ_METRIC_NAME,
    REBIRTH_METRIC_NAME,
    DataType,
    Payload,
    decode,
    encode,
    rebirth_metric,
)
from plantwire.config import load_site
from plantwire.sparkplug_topics import (
    MessageType,
    SparkplugTopic,
    encode_host_state,
    host_state_topic,
    parse_topic,
)
from plantwire.testing.servers import Mosquitto, free_port
from simulators.modbus_server import ModbusPlantServer
from simulators.plant import Plant
from simulators.runner import SimRunner
from simulators.scenario import bundled_scenario, load_scenario

pytestmark = pytest.mark.servers
DEMO = load_scenario(bundled_scenario())
SPEED = 10.0
EDGE = "edge-dairy"

Received = tuple[SparkplugTopic, Payload, int]  # topic, payload, QoS


class Host:
    """A raw paho client in the primary host's place: records the group's messages."""

    def __init__(self, port: int, group: str, host_id: str) -> None:
        self.group = group
        self.host_id = host_id
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"host-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"spBv1.0/{group}/#", qos=1)
        self.client.loop_start()
        assert subscribed.wait(10), "subscription not acknowledged"

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        topic = parse_topic(message.topic)
        assert isinstance(topic, SparkplugTopic)
        with self._lock:
            self.messages.append((topic, decode(message.payload), message.qos))

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.messages)

    def of(self, kind: MessageType) -> list[Received]:
        return [m for m in self.received() if m[0].message_type is kind]

    def state(self, online: bool) -> None:
        payload = encode_host_state(online, time.time_ns() // 1_000_000)
        self.client.publish(host_state_topic(self.host_id), payload, qos=1, retain=True)

    def request_rebirth(self, edge: str) -> None:
        payload = Payload(timestamp=time.time_ns() // 1_000_000, metrics=(rebirth_metric(True),))
        self.client.publish(f"spBv1.0/{self.group}/NCMD/{edge}", encode(payload), qos=1)

    def close(self) -> None:
        # The shared broker must not keep this host's retained STATE for other tests.
        self.client.publish(
            host_state_topic(self.host_id), b"", qos=1, retain=True
        ).wait_for_publish(5)
        self.client.loop_stop()
        self.client.disconnect()


async def until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def bdseq_of(payload: Payload) -> object:
    return next(m.value for m in payload.metrics if m.name == BDSEQ_METRIC_NAME)


def check_session(messages: list[Received], devices: set[str]) -> int:
    """Check seq, births and DDATA aliases over a stretch of messages; return the DDATA count."""
    seq: int | None = None
    births: dict[str, dict[int, DataType]] = {}  # device -> alias -> datatype
    ddata = 0
    for topic, payload, qos in messages:
        kind = topic.message_type
        if kind in (MessageType.NCMD, MessageType.DCMD):
            continue  # the host's, not the node's
        if kind is MessageType.NDEATH:
            seq = None
            continue
        if kind is MessageType.NBIRTH:
            assert payload.seq == 0
            names = {m.name: m for m in payload.metrics}
            assert names[BDSEQ_METRIC_NAME].datatype is DataType.UInt64
            assert names[REBIRTH_METRIC_NAME].value is False
            births = {}
        else:
            assert seq is not None, f"{kind} before any NBIRTH"
            assert payload.seq == (seq + 1) % 256, (kind, payload.seq, seq)
        seq = payload.seq
        if kind is MessageType.DBIRTH:
            assert topic.device_id in devices
            assert all(m.name and m.alias is not None for m in payload.metrics)
            births[str(topic.device_id)] = {int(m.alias or 0): m.datatype for m in payload.metrics}
        elif kind is MessageType.DDATA:
            assert qos == 1
            born = births[str(topic.device_id)]  # a device's DDATA only after its DBIRTH
            for metric in payload.metrics:
                assert metric.name is None and metric.alias in born
                assert metric.datatype is born[metric.alias]
                assert metric.timestamp is not None
            ddata += 1
    return ddata


def sparkplug_site(tmp_path: Path, modbus_port: int, mqtt_port: int, host_id: str) -> Path:
    path, config = sim_site(tmp_path, modbus_port=modbus_port, mqtt_port=mqtt_port, speed=SPEED)
    config["sparkplug"] = {"host_id": host_id}
    for node in config["edge_nodes"]:
        if node["id"] == EDGE:
            node["payload"] = "sparkplug"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_edge_node_session_births_data_rebirth_and_death(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    host_id = f"host-{uuid.uuid4().hex[:8]}"  # the broker is shared: no stale retained STATE

    async def scenario() -> None:
        plant = Plant(DEMO)
        modbus = ModbusPlantServer(plant, port=free_port())
        runner = SimRunner(plant, speed=SPEED, modbus=modbus)
        await runner.start()
        sim = asyncio.create_task(runner.run())
        site = load_site(sparkplug_site(tmp_path, modbus.port, mosquitto.port, host_id))
        host = Host(mosquitto.port, site.sparkplug_group, host_id)
        agent = EdgeAgent(site, EDGE, health_port=0)
        forwarder = agent.forwarder
        node = forwarder.format
        assert isinstance(node, SparkplugNode)
        devices = {f"{a.area}:{a.line}:{a.machine}" for a, _ in agent.machines}
        task = asyncio.create_task(agent.run())
        try:
            # Connected, reading, buffering -- and silent until the host is online.
            await until(lambda: forwarder.connected and agent.buffer.samples > 100, 15, "data")
            await asyncio.sleep(1)
            assert host.received() == []
            first_bdseq = node.bdseq

            host.state(True)
            await until(lambda: len(host.of(MessageType.DDATA)) >= 20, 15, "DDATA")
            births = host.of(MessageType.NBIRTH)
            assert bdseq_of(births[0][1]) == first_bdseq
            dbirths = host.of(MessageType.DBIRTH)
            assert {str(t.device_id) for t, _, _ in dbirths} == devices
            aliases = [m.alias for _, p, _ in dbirths[: len(devices)] for m in p.metrics]
            assert len(aliases) == len(set(aliases)), "aliases are unique across the node"
            assert node.births_published >= 1 and forwarder.batches_published > 0

            # The host asks for a rebirth: NBIRTH (same bdSeq) and every DBIRTH again.
            nbirths = len(host.of(MessageType.NBIRTH))
            host.request_rebirth(EDGE)
            await until(lambda: len(host.of(MessageType.NBIRTH)) > nbirths, 10, "rebirth")
            await until(lambda: node.rebirths_requested == 1, 5, "rebirth counted")
            assert bdseq_of(host.of(MessageType.NBIRTH)[-1][1]) == first_bdseq

            # Host offline: no new DDATA (what was in flight may still arrive); back: births first.
            host.state(False)
            await until(lambda: not node.host_online, 5, "host offline")
            await asyncio.sleep(0.5)
            quiet = len(host.received())
            await asyncio.sleep(1.5)
            assert len(host.received()) == quiet
            host.state(True)
            await until(lambda: len(host.received()) > quiet, 10, "births after host is back")
            assert host.received()[quiet][0].message_type is MessageType.NBIRTH

            # The connection dies: the broker publishes the will, an NDEATH with the same bdSeq.
            client = forwarder._client
            assert client is not None
            client.abandon()
            forwarder._connection_lost("killed by the test")
            await until(lambda: bool(host.of(MessageType.NDEATH)), 10, "NDEATH will")
            death = host.of(MessageType.NDEATH)[0][1]
            assert death.seq is None and bdseq_of(death) == first_bdseq

            # Reconnected: bdSeq + 1, births again once the retained STATE is read.
            await until(
                lambda: bdseq_of(host.of(MessageType.NBIRTH)[-1][1]) == (first_bdseq + 1) % 256,
                15,
                "a birth of the new connection",
            )
            assert node.bdseq_file.path.read_text().strip() == str((first_bdseq + 1) % 256)
            await asyncio.sleep(1)
            assert await agent.drain(20)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            sim.cancel()
            await asyncio.gather(sim, return_exceptions=True)
            await runner.stop()
        try:
            # A clean stop says goodbye with the NDEATH of the current connection.
            await until(lambda: len(host.of(MessageType.NDEATH)) == 2, 5, "NDEATH at stop")
            assert bdseq_of(host.of(MessageType.NDEATH)[-1][1]) == (first_bdseq + 1) % 256
            ddata = check_session(host.received(), devices)
            assert ddata >= forwarder.batches_published  # at least once: a resend may repeat one
        finally:
            host.close()

    asyncio.run(scenario())
