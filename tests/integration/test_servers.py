"""The real-server harness itself: Mosquitto and influxd start on free ports, answer, and keep
their data across a restart (what the fault tests rely on)."""

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties

from plantwire.testing.servers import Influxd, Mosquitto, ServerError

pytestmark = pytest.mark.servers


def _client(broker: Mosquitto, client_id: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client


def _receive_retained(broker: Mosquitto, topic: str) -> bytes:
    got: list[bytes] = []
    arrived = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="reader", protocol=mqtt.MQTTv5)

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        got.append(message.payload)
        arrived.set()

    client.on_message = on_message
    client.connect("127.0.0.1", broker.port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    try:
        assert arrived.wait(10), "no retained message arrived"
    finally:
        client.loop_stop()
        client.disconnect()
    return got[0]


def test_mosquitto_serves_mqtt5_and_keeps_retained_messages_across_a_restart(
    mosquitto_private: Mosquitto,
) -> None:
    publisher = _client(mosquitto_private, "writer")
    properties = Properties(mqtt.PacketTypes.PUBLISH)
    properties.MessageExpiryInterval = 3600
    publisher.publish(
        "plantwire/v1/test/state", b"online", qos=1, retain=True, properties=properties
    ).wait_for_publish(10)
    publisher.loop_stop()
    publisher.disconnect()
    assert _receive_retained(mosquitto_private, "plantwire/v1/test/state") == b"online"

    mosquitto_private.restart()
    assert _receive_retained(mosquitto_private, "plantwire/v1/test/state") == b"online"


def test_influxd_keeps_points_across_a_kill_and_start(influxd_private: Influxd) -> None:
    influxd_private.client.write("m,k=v f=1 1\nm,k=v f=2 2")
    influxd_private.kill()
    with pytest.raises(OSError):
        influxd_private.client.query("SHOW DATABASES")
    influxd_private.start()
    assert influxd_private.client.count("m", "f") == 2


def test_a_write_influxd_refuses_raises_with_its_message(influxd: Influxd) -> None:
    with pytest.raises(ServerError, match="unable to parse"):
        influxd.client.write("not line protocol")


def test_servers_use_their_own_folder(
    mosquitto: Mosquitto, influxd: Influxd, tmp_path: Path
) -> None:
    assert mosquitto.config_path.parent == mosquitto.workdir
    assert (influxd.workdir / "data").is_dir()
    assert mosquitto.port != influxd.port
