"""The Sparkplug host application's own connection: its retained STATE, and rebirth requests.

MQTT allows one will per connection, and the gateway's data connection already carries its
service status will. So the host's ``spBv1.0/STATE/<host id>`` lives on a second, small
connection: its will is STATE offline (retained) and, once connected, it publishes STATE online
(retained) with the same timestamp, as Sparkplug 3.0 asks. It connects only after the data
connection has subscribed to the Sparkplug topics, so no birth sent in answer to our STATE can
be missed. Rebirth requests (``NCMD Node Control/Rebirth``) go out on it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from plantwire.backoff import Backoff
from plantwire.codec.sparkplug import Payload, encode, rebirth_metric
from plantwire.config.models import MqttConfig
from plantwire.logs import LogOnce
from plantwire.mqtt import AsyncMqtt, MqttUnavailable
from plantwire.sparkplug_topics import (
    MessageType,
    encode_host_state,
    host_state_topic,
    sparkplug_topic,
)

__all__ = ["HostStateLink"]

log = logging.getLogger("plantwire.gateway.sparkplug")


class HostStateLink:
    def __init__(self, mqtt: MqttConfig, *, host_id: str, group_id: str) -> None:
        self.mqtt = mqtt
        self.host_id = host_id
        self.group_id = group_id
        self.online = False
        self.rebirths_sent = 0
        self._client: AsyncMqtt | None = None
        self._once = LogOnce(log)

    async def run(self, ready: asyncio.Event) -> None:
        """Hold the STATE connection, reconnecting with backoff, once ``ready`` is set."""
        await ready.wait()
        backoff = Backoff(0.1, 10.0)
        topic = host_state_topic(self.host_id)
        while True:
            lost = asyncio.Event()
            client = AsyncMqtt(self.mqtt, f"{self.mqtt.client_id_prefix}-host-{self.host_id}")
            client.on_lost = lambda reason, lost=lost: lost.set()  # type: ignore[misc]
            stamp = time.time_ns() // 1_000_000
            try:
                await client.connect(will=(topic, encode_host_state(False, stamp)))
                client.publish(topic, encode_host_state(True, stamp), qos=1, retain=True)
            except MqttUnavailable as exc:
                self._once.problem("state", "Sparkplug STATE not published (%s); retrying", exc)
                client.abandon()
                await backoff.sleep()
                continue
            self._client, self.online = client, True
            backoff.reset()
            self._once.recovered("state", "Sparkplug host %s online (%s)", self.host_id, topic)
            try:
                await lost.wait()
            finally:
                self._client, self.online = None, False
                client.abandon()

    def request_rebirth(self, edge_node: str) -> bool:
        """Ask an edge node to publish its births again; False while not connected."""
        client = self._client
        if client is None:
            return False
        payload = Payload(timestamp=time.time_ns() // 1_000_000, metrics=(rebirth_metric(True),))
        topic = sparkplug_topic(self.group_id, MessageType.NCMD, edge_node)
        try:
            client.publish(topic, encode(payload), qos=0)
        except MqttUnavailable:
            return False
        self.rebirths_sent += 1
        return True

    async def stop(self) -> None:
        """STATE offline (retained), then leave without the will."""
        client, self._client = self._client, None
        self.online = False
        if client is not None and client.connected:
            stamp = time.time_ns() // 1_000_000
            with contextlib.suppress(MqttUnavailable):
                client.publish(
                    host_state_topic(self.host_id), encode_host_state(False, stamp), retain=True
                )
            await asyncio.sleep(0.1)
            await client.disconnect()
