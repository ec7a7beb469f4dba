"""The edge agent as a Sparkplug B (3.0) edge node: the forwarder's store and forward, with
Sparkplug's session on top.

* Every machine is a device ``"<area>:<line>:<machine>"`` of the edge node (the PlantWire edge
  node id) in the site's Sparkplug group.
* The CONNECT carries the NDEATH as will (QoS 1, not retained) with a bdSeq that grows by one
  on every successful connection, kept in ``<buffer>.bdseq`` across restarts.
* Nothing is published until the primary host's STATE says online (unless ``wait_for_host`` is
  off); then the births (NBIRTH, one DBIRTH per device) go out, then the batches left in flight,
  then new data. When the host goes offline new data stays in the disk buffer; when it comes
  back, the births go out again first.
* Each buffer batch becomes one DDATA of its device, metrics by alias, at the site's QoS (1, not
  Sparkplug's 0: a batch leaves the buffer only when the broker has acknowledged it). A batch
  with a new metric or a changed datatype is preceded by a full rebirth, as is an NCMD
  ``Node Control/Rebirth``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from edge.buffer import DiskBuffer, OutgoingBatch
from edge.forwarder import Forwarder
from edge.sparkplug_catalog import (
    BdSeqFile,
    MetricCatalog,
    SeqCounter,
    device_id,
    machine_datatypes,
)
from plantwire.codec.native import decode_batch
from plantwire.codec.sparkplug import (
    REBIRTH_METRIC_NAME,
    Payload,
    bdseq_metric,
    decode,
    describe,
    encode,
    rebirth_metric,
)
from plantwire.config.models import Machine, MqttConfig, SparkplugConfig
from plantwire.errors import PayloadError
from plantwire.model import AssetPath, Sample
from plantwire.mqtt import AsyncMqtt, Message, MqttUnavailable
from plantwire.sparkplug_topics import (
    MessageType,
    decode_host_state,
    host_state_topic,
    sparkplug_topic,
)
from plantwire.topics import service_state_topic

__all__ = ["SparkplugNode"]

log = logging.getLogger("plantwire.edge.sparkplug")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class SparkplugNode(Forwarder):
    """A :class:`~edge.forwarder.Forwarder` that speaks Sparkplug B instead of native JSON."""

    def __init__(
        self,
        buffer: DiskBuffer,
        mqtt: MqttConfig,
        sparkplug: SparkplugConfig,
        *,
        edge_id: str,
        site: str,
        group_id: str,
        machines: Sequence[tuple[AssetPath, Machine]],
        max_samples: int,
        max_latency_s: float,
        max_inflight: int = 32,
        bdseq_path: Path | None = None,
    ) -> None:
        super().__init__(
            buffer,
            mqtt,
            edge_id=edge_id,
            site=site,
            assets=[asset for asset, _ in machines],
            max_samples=max_samples,
            max_latency_s=max_latency_s,
            max_inflight=max_inflight,
        )
        self.group_id = group_id
        self.host_id = sparkplug.host_id
        self.wait_for_host = sparkplug.wait_for_host
        self.catalog = MetricCatalog()
        for asset, machine in machines:
            self.catalog.add_device(device_id(asset), machine_datatypes(machine))
        self.bdseq_file = BdSeqFile(
            bdseq_path or buffer.path.with_name(buffer.path.name + ".bdseq")
        )
        self.bdseq = self.bdseq_file.upcoming  # of the current (or next) connection
        self.seq = SeqCounter()
        self.host_online = False
        self.births_published = 0
        self.rebirths_requested = 0
        self.commands_malformed = 0
        self.batches_undecodable = 0
        self._need_births = True
        self._resend = False  # batches left in flight by an earlier connection: after the births
        self._host_timestamp = -1

    # -- topics -----------------------------------------------------------------------------------
    def _topic(self, kind: MessageType, device: str | None = None) -> str:
        return sparkplug_topic(self.group_id, kind, self.edge_id, device)

    def _may_publish(self) -> bool:
        return self.host_online or not self.wait_for_host

    # -- connection lifecycle ---------------------------------------------------------------------
    def _ndeath(self) -> bytes:
        return encode(Payload(timestamp=_now_ms(), metrics=(bdseq_metric(self.bdseq),)))

    async def _connect(self) -> None:
        client = AsyncMqtt(
            self.mqtt_config,
            self._client_id(),
            max_inflight=self.max_inflight + len(self.catalog.devices) + 4,
        )
        client.on_ack = self._acked
        client.on_lost = self._connection_lost
        client.on_message = self._message
        self._lost = None
        self.host_online = False
        self._host_timestamp = -1
        self.bdseq = self.bdseq_file.upcoming
        will = (self._topic(MessageType.NDEATH), self._ndeath())
        await client.connect(will=will, will_retain=False, timeout_s=10.0)
        self.bdseq_file.commit(self.bdseq)
        self._client = client
        self.connected = True
        self.connects += 1
        self._once.recovered("broker", "MQTT broker %s connected", self.mqtt_config.url)
        log.info(
            "sparkplug edge node %s/%s connected, bdSeq %d", self.group_id, self.edge_id, self.bdseq
        )
        client.publish(
            service_state_topic(self.site, self.edge_id), self._status("online"), retain=True
        )
        await client.subscribe(self._topic(MessageType.NCMD), qos=1)
        # The retained STATE arrives right after this subscription.
        await client.subscribe(host_state_topic(self.host_id), qos=1)
        self._need_births = True
        self._resend = True
        self._wake.set()

    async def stop(self) -> None:
        """Say goodbye: NDEATH (same bdSeq as the will) and the edge's service state offline."""
        client = self._client
        if client is not None and client.connected:
            with contextlib.suppress(MqttUnavailable):
                client.publish(self._topic(MessageType.NDEATH), self._ndeath(), qos=1)
                client.publish(
                    service_state_topic(self.site, self.edge_id),
                    self._status("offline"),
                    retain=True,
                )
            await asyncio.sleep(0.2)  # let the goodbyes leave before the socket closes
            await client.disconnect()
        self._client = None
        self.connected = False

    # -- incoming: STATE and NCMD -----------------------------------------------------------------
    def _message(self, message: Message) -> None:
        try:
            if message.topic == self._topic(MessageType.NCMD):
                self._command(bytes(message.payload))
            elif message.topic == host_state_topic(self.host_id):
                self._host_state(bytes(message.payload))
        except Exception:  # an unexpected message must never stop the node
            log.exception("cannot handle a message on %s", message.topic)

    def _host_state(self, payload: bytes) -> None:
        try:
            state = decode_host_state(payload)
        except PayloadError as exc:
            self.commands_malformed += 1
            log.warning("ignored a malformed STATE from host %s: %s", self.host_id, exc)
            return
        if state.timestamp < self._host_timestamp:
            return  # an older STATE than the one acted on (Sparkplug 3.0 orders them by time)
        self._host_timestamp = state.timestamp
        if state.online == self.host_online:
            return
        self.host_online = state.online
        if state.online:
            log.info("host %s is online: publishing births", self.host_id)
            self._need_births = True
            self._wake.set()
        else:
            log.warning("host %s is offline: new data stays in the buffer", self.host_id)

    def _command(self, payload: bytes) -> None:
        try:
            metrics = decode(payload).metrics
        except PayloadError as exc:
            self.commands_malformed += 1
            log.warning("ignored a malformed NCMD: %s", exc)
            return
        for metric in metrics:
            if metric.name == REBIRTH_METRIC_NAME and metric.value is True:
                self.rebirths_requested += 1
                log.info("NCMD %s: rebirth requested", REBIRTH_METRIC_NAME)
                self._need_births = True
                self._wake.set()
            else:
                log.info("ignored NCMD metric %s", metric.label)

    # -- births -----------------------------------------------------------------------------------
    def _publish(self, topic: str, payload: Payload) -> int:
        client = self._client
        assert client is not None
        # At the data's QoS, not Sparkplug's 0, so births never overtake queued DDATA.
        return client.publish(topic, encode(payload), qos=self.mqtt_config.qos)

    def _publish_births(self) -> None:
        """NBIRTH (seq 0) then every device's DBIRTH."""
        now = _now_ms()
        node_metrics = (bdseq_metric(self.bdseq, timestamp=now), rebirth_metric(timestamp=now))
        self._publish(
            self._topic(MessageType.NBIRTH),
            Payload(timestamp=now, seq=self.seq.birth(), metrics=node_metrics),
        )
        for device in self.catalog.devices:
            payload = Payload(
                timestamp=now,
                seq=self.seq.next(),
                metrics=self.catalog.birth_metrics(device, now),
            )
            self._publish(self._topic(MessageType.DBIRTH, device), payload)
        self.births_published += 1
        self._need_births = False
        log.info("births published: bdSeq %d, %d devices", self.bdseq, len(self.catalog.devices))

    # -- data -------------------------------------------------------------------------------------
    def _samples(self, batch: OutgoingBatch) -> list[Sample] | None:
        try:
            decoded = decode_batch(batch.payload)
        except PayloadError:
            # Our own buffer wrote it: a bug. Keeping it would block the queue forever.
            self.batches_undecodable += 1
            log.exception("dropped undecodable buffer batch %d for %s", batch.seq, batch.asset)
            self.buffer.ack(batch.seq)
            return None
        return list(decoded.batch.samples)

    def _send_batches(self, batches: Sequence[OutgoingBatch]) -> None:
        """One DDATA per batch, after one rebirth if the births no longer describe them."""
        ready: list[tuple[OutgoingBatch, str, list[Sample]]] = []
        changed = False
        for batch in batches:
            samples = self._samples(batch)
            if samples is None:
                continue
            device = device_id(batch.asset)
            changed |= self.catalog.learn(device, samples)
            ready.append((batch, device, samples))
        if changed or self._need_births:
            if changed:
                log.info("new metrics or datatypes: rebirth before the data")
            self._publish_births()
        for batch, device, samples in ready:
            self._send_ddata(batch, device, samples)

    def _send_ddata(self, batch: OutgoingBatch, device: str, samples: list[Sample]) -> None:
        payload = Payload(
            timestamp=_now_ms(),
            seq=self.seq.next(),
            metrics=self.catalog.data_metrics(device, samples),
        )
        mid = self._publish(self._topic(MessageType.DDATA, device), payload)
        self._inflight[mid] = batch
        self.catalog.remember(device, samples)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("DDATA %s: %s", device, describe(payload))

    def _send(self, batch: OutgoingBatch) -> None:
        self._send_batches([batch])

    async def _pump(self) -> None:
        while True:
            if self._lost is not None:
                raise MqttUnavailable(self._lost)
            if self._may_publish():
                if self._need_births:
                    self._publish_births()
                if self._resend:
                    self._resend = False
                    # What was in flight when the last connection (or process) ended, in order.
                    self._send_batches(self.buffer.in_flight())
                room = self.max_inflight - len(self._inflight)
                if room > 0 and self._due():
                    batches = self.buffer.take(self.max_samples, room)
                    self._send_batches(batches)
                    if batches:
                        continue
            self._wake.clear()
            await self._sleep()

    async def _sleep(self) -> None:
        timeout = self.max_latency_s
        oldest = self.buffer.oldest_unsent_at
        if oldest is not None and self._may_publish():
            timeout = max(0.001, self.max_latency_s - (time.monotonic() - oldest))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    def _data_topic(self, asset: AssetPath) -> str:
        return self._topic(MessageType.DDATA, device_id(asset))
