"""The forwarder: drains the disk buffer into MQTT, batch by batch, and forgets a batch only when
the broker has acknowledged it.

On every (re)connection it first publishes the retained birth of each machine and of the edge,
then resends the batches that were in flight (same sequence numbers, in order), then forms new
batches from the oldest unsent samples -- so a backlog drains in order while new data keeps
joining its end. A batch is formed when a machine has ``max_samples`` waiting or the oldest has
waited ``max_latency_s``. At most ``max_inflight`` batches are unacknowledged at a time.

With ``wait_for_gateway`` no data leaves while no gateway of the site says online (see
``edge.gateway_watch``): the broker would acknowledge it and deliver it to nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

import orjson

from edge.buffer import DiskBuffer, OutgoingBatch
from edge.gateway_watch import GatewayWatch, gateway_state_filter
from plantwire.backoff import Backoff
from plantwire.config.models import MqttConfig
from plantwire.logs import LogOnce
from plantwire.model import AssetPath
from plantwire.mqtt import AsyncMqtt, Message, MqttUnavailable
from plantwire.topics import data_topic, service_state_topic, service_stats_topic, state_topic

__all__ = ["Forwarder"]

log = logging.getLogger("plantwire.edge.forwarder")

GATEWAY_GRACE_S = 2.0


class Forwarder:
    def __init__(
        self,
        buffer: DiskBuffer,
        mqtt: MqttConfig,
        *,
        edge_id: str,
        site: str,
        assets: Sequence[AssetPath],
        max_samples: int,
        max_latency_s: float,
        max_inflight: int = 32,
        wait_for_gateway: bool = False,
    ) -> None:
        self.buffer = buffer
        self.mqtt_config = mqtt
        self.edge_id = edge_id
        self.site = site
        self.assets = list(assets)
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
        self.wait_for_gateway = wait_for_gateway
        self.gateways = GatewayWatch(site)
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
            max_inflight=self.max_inflight + len(self.assets) + 2,
        )
        client.on_ack = self._acked
        client.on_lost = self._connection_lost
        client.on_message = self._message
        self._lost = None
        self.gateways.reset()
        will = (service_state_topic(self.site, self.edge_id), self._status("offline"))
        await client.connect(will=will, timeout_s=10.0)
        self._client = client
        self.connected = True
        self.connects += 1
        self._once.recovered("broker", "MQTT broker %s connected", self.mqtt_config.url)
        client.publish(
            service_state_topic(self.site, self.edge_id), self._status("online"), retain=True
        )
        for asset in self.assets:
            client.publish(state_topic(asset), self._status("online"), retain=True)
        if self.wait_for_gateway:
            # The gateways' retained states arrive right after this subscription.
            await client.subscribe(gateway_state_filter(self.site), qos=1)
        # What was in flight when the last connection (or process) ended goes first, in order.
        self._resend = True
        self._wake.set()

    def _message(self, message: Message) -> None:
        try:
            if self.gateways.update(message.topic, bytes(message.payload)):
                self._wake.set()
        except Exception:  # an unexpected message must never stop delivery
            log.exception("cannot handle a message on %s", message.topic)

    @property
    def may_send(self) -> bool:
        """Data may leave: a gateway is online, or the edge does not wait for one."""
        return self.gateways.any_online or not self.wait_for_gateway

    def _status(self, status: str) -> bytes:
        return orjson.dumps({"status": status, "edge": self.edge_id, "ts": time.time_ns()})

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
        """Say goodbye: machines and edge offline (retained), then disconnect."""
        client = self._client
        if client is not None and client.connected:
            for asset in self.assets:
                client.publish(state_topic(asset), self._status("offline"), retain=True)
            client.publish(
                service_state_topic(self.site, self.edge_id), self._status("offline"), retain=True
            )
            await asyncio.sleep(0.2)  # let the goodbyes leave before the socket closes
            await client.disconnect()
        self._client = None
        self.connected = False

    # -- publishing -------------------------------------------------------------------------------
    def _send(self, batch: OutgoingBatch) -> None:
        client = self._client
        assert client is not None
        # Stamped now, not when read or buffered: the gateway compares this with its own clock.
        payload = batch.encode(sent_ns=time.time_ns())
        mid = client.publish(self._data_topic(batch.asset), payload, qos=self.mqtt_config.qos)
        self._inflight[mid] = batch

    def _data_topic(self, asset: AssetPath) -> str:
        return data_topic(asset)

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
                self._data_topic(batch.asset),
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
            if not self.may_send:
                # The retained states follow the subscription within moments: only a wait longer
                # than that is worth a log line.
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), GATEWAY_GRACE_S)
                if not self.may_send and self._lost is None:
                    self._once.problem(
                        "gateway",
                        "no gateway of site %s is online; data stays in the buffer until one is",
                        self.site,
                    )
                continue
            self._once.recovered("gateway", "a gateway is online; sending")
            if self._resend:
                self._resend = False
                for batch in self.buffer.in_flight():
                    self._send(batch)
            room = self.max_inflight - len(self._inflight)
            if room > 0 and self._due():
                batches = self.buffer.take(self.max_samples, room)
                for batch in batches:
                    self._send(batch)
                if batches:
                    continue
            self._wake.clear()
            timeout = self.max_latency_s
            if self.buffer.oldest_unsent_at is not None:
                timeout = max(
                    0.001, self.max_latency_s - (time.monotonic() - self.buffer.oldest_unsent_at)
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    @property
    def inflight(self) -> int:
        return len(self._inflight)
