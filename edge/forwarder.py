"""The forwarder: drains the disk buffer into MQTT, batch by batch, and forgets a batch only when
the broker has acknowledged it -- in whatever format the edge node publishes
(:mod:`edge.publish`).

On every (re)connection the format greets (states, births, subscriptions), then the batches that
were in flight are sent again (same sequence numbers, in order), then new batches are formed from
the oldest unsent samples -- so a backlog drains in order while new data keeps joining its end. A
batch is formed when a machine has ``max_samples`` waiting or the oldest has waited
``max_latency_s``. At most ``max_inflight`` batches are unacknowledged at a time. While the format
says data may not leave (no gateway online, no Sparkplug host), it stays in the buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

import orjson

from edge.buffer import DiskBuffer, OutgoingBatch
from edge.publish import Publication, PublishFormat
from plantwire.backoff import Backoff
from plantwire.config.models import MqttConfig
from plantwire.logs import LogOnce
from plantwire.mqtt import AsyncMqtt, Message, MqttUnavailable
from plantwire.topics import service_stats_topic

__all__ = ["Forwarder"]

log = logging.getLogger("plantwire.edge.forwarder")

# Retained states follow a subscription within moments: only a longer wait is worth a log line.
WAIT_GRACE_S = 2.0


class Forwarder:
    def __init__(
        self,
        buffer: DiskBuffer,
        mqtt: MqttConfig,
        publish_format: PublishFormat,
        *,
        edge_id: str,
        site: str,
        max_samples: int,
        max_latency_s: float,
        max_inflight: int = 32,
    ) -> None:
        self.buffer = buffer
        self.mqtt_config = mqtt
        self.format = publish_format
        self.edge_id = edge_id
        self.site = site
        self.max_samples = max_samples
        self.max_latency_s = max_latency_s
        self.max_inflight = max_inflight
        self.connected = False
        self.batches_published = 0
        self.samples_published = 0
        self.refused = 0
        self.connects = 0
        # Attempts that never got a connection (TLS refused, login refused, no answer), apart from
        # connections lost later: a wrong CA or password shows as this climbing, not as an outage.
        self.connect_failures = 0
        self._resend = False  # batches left in flight by an earlier connection, sent first
        self._wake = asyncio.Event()
        self._inflight: dict[int, OutgoingBatch] = {}  # mid -> batch
        self._client: AsyncMqtt | None = None
        self._lost: str | None = None
        self._once = LogOnce(log)
        # A radio link comes back on its own: retry often enough to notice within seconds.
        self._backoff = Backoff(0.1, 10.0)

    def notify(self) -> None:
        """New samples are in the buffer."""
        self._wake.set()

    # -- connection lifecycle ---------------------------------------------------------------------
    async def run(self) -> None:
        """Publish forever, reconnecting with backoff."""
        while True:
            try:
                await self._connect()
                self._backoff.reset()
                await self._pump()
            except MqttUnavailable as exc:
                if not self.connected:
                    self.connect_failures += 1
                self._once.problem(
                    "broker", "MQTT broker unavailable (%s); buffering, retrying with backoff", exc
                )
                log.debug("connection attempt %d failed: %s", self._backoff.failures + 1, exc)
            except Exception:  # a bug must not stop delivery for good: log it, reconnect, go on
                log.exception("forwarder failed unexpectedly; reconnecting")
            finally:
                self._drop_connection()
            await self._backoff.sleep()

    def _client_id(self) -> str:
        return f"{self.mqtt_config.client_id_prefix}-edge-{self.edge_id}"

    async def _connect(self) -> None:
        client = AsyncMqtt(
            self.mqtt_config,
            self._client_id(),
            max_inflight=self.max_inflight + self.format.extra_inflight,
        )
        client.on_ack = self._acked
        client.on_lost = self._connection_lost
        client.on_message = self._message
        self._lost = None
        topic, payload, retain = self.format.will()
        await client.connect(will=(topic, payload), will_retain=retain, timeout_s=10.0)
        self._client = client
        self.connected = True
        self.connects += 1
        self._once.recovered("broker", "MQTT broker %s connected", self.mqtt_config.url)
        await self.format.connected(client)
        # What was in flight when the last connection (or process) ended goes first, in order.
        self._resend = True
        self._wake.set()

    def _message(self, message: Message) -> None:
        try:
            if self.format.message(message):
                self._wake.set()
        except Exception:  # an unexpected message must never stop delivery
            log.exception("cannot handle a message on %s", message.topic)

    def _connection_lost(self, reason: str) -> None:
        self._lost = reason or "connection lost"
        self._wake.set()

    def _drop_connection(self) -> None:
        self.connected = False
        self._inflight.clear()
        client, self._client = self._client, None
        if client is not None:
            client.abandon()

    def publish_stats(self, stats: dict[str, float]) -> bool:
        """Publish the agent's counters for the pipeline board (QoS 0: a snapshot, the next one
        follows); False while not connected."""
        client = self._client
        if client is None or not self.connected:
            return False
        body = {"edge": self.edge_id, "ts": time.time_ns(), "stats": stats}
        try:
            client.publish(service_stats_topic(self.site, self.edge_id), orjson.dumps(body), qos=0)
        except MqttUnavailable:
            return False
        return True

    async def stop(self) -> None:
        """Say goodbye in the format's words, then disconnect."""
        client = self._client
        if client is not None and client.connected:
            with contextlib.suppress(MqttUnavailable):
                await self.format.goodbye(client)
            await asyncio.sleep(0.2)  # let the goodbyes leave before the socket closes
            await client.disconnect()
        self._client = None
        self.connected = False

    # -- publishing -------------------------------------------------------------------------------
    def _send(self, batches: Sequence[OutgoingBatch]) -> None:
        """Publish the format's messages for these batches (stamped now: a resent or
        long-buffered batch carries a fresh send time)."""
        client = self._client
        assert client is not None
        publications: list[Publication] = self.format.publications(batches)
        for topic, payload, batch in publications:
            mid = client.publish(topic, payload, qos=self.mqtt_config.qos)
            if batch is not None:
                self._inflight[mid] = batch

    def _acked(self, mid: int, ok: bool) -> None:
        batch = self._inflight.pop(mid, None)
        if batch is None:
            return  # a birth or status message
        if ok:
            self.buffer.ack(batch.seq)
            self.batches_published += 1
            self.samples_published += batch.samples
        else:
            # Kept in the buffer and sent again after the next reconnection.
            self.refused += 1
            self._once.problem(
                f"refused:{batch.asset}",
                "broker refused batch %d for %s (not authorized for %s?); kept for a later retry",
                batch.seq,
                batch.asset,
                self.format.data_topic(batch.asset),
            )
        self._wake.set()

    def _due(self) -> bool:
        buffer = self.buffer
        if buffer.unsent_samples >= self.max_samples:
            return True
        oldest = buffer.oldest_unsent_at
        return oldest is not None and time.monotonic() - oldest >= self.max_latency_s

    async def _pump(self) -> None:
        while True:
            if self._lost is not None:
                raise MqttUnavailable(self._lost)
            if not self.format.may_send():
                await self._wait_for_permission()
                continue
            self._once.recovered("waiting", "data may leave again; sending")
            self._send(())  # whatever the format owes first (a rebirth)
            if self._resend:
                self._resend = False
                self._send(self.buffer.in_flight())
            room = self.max_inflight - len(self._inflight)
            if room > 0 and self._due():
                batches = self.buffer.take(self.max_samples, room)
                if batches:
                    self._send(batches)
                    continue
            self._wake.clear()
            await self._sleep()

    async def _wait_for_permission(self) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), WAIT_GRACE_S)
        message = self.format.waiting_message()
        if not self.format.may_send() and self._lost is None and message is not None:
            self._once.problem("waiting", "%s", message)

    async def _sleep(self) -> None:
        timeout = self.max_latency_s
        oldest = self.buffer.oldest_unsent_at
        if oldest is not None:
            timeout = max(0.001, self.max_latency_s - (time.monotonic() - oldest))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    @property
    def inflight(self) -> int:
        return len(self._inflight)
