"""The edge agent as a Sparkplug B (3.0) edge node (``payload: sparkplug``): a publish format
(:mod:`edge.publish`) for the forwarder's store and forward, with Sparkplug's session on top.

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

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from edge.buffer import DiskBuffer, OutgoingBatch
from edge.publish import Publication, service_status
from edge.sparkplug_catalog import (
    BdSeqFile,
    MetricCatalog,
    SeqCounter,
    device_id,
    machine_datatypes,
)
from plantwire.codec.native import decode_fragments
from plantwire.codec.sparkplug import (
    REBIRTH_METRIC_NAME,
    Payload,
    bdseq_metric,
    decode,
    describe,
    encode,
    rebirth_metric,
)
from plantwire.config.models import EdgeNode, Machine, SiteConfig, SparkplugConfig
from plantwire.errors import PayloadError
from plantwire.model import AssetPath, Sample
from plantwire.mqtt import AsyncMqtt, Message
from plantwire.sparkplug_topics import (
    MessageType,
    decode_host_state,
    host_state_topic,
    sparkplug_topic,
)
from plantwire.topics import service_state_topic

__all__ = ["SparkplugNode", "make"]

log = logging.getLogger("plantwire.edge.sparkplug")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class SparkplugNode:
    """The Sparkplug B session of an edge node, as a publish format."""

    def __init__(
        self,
        buffer: DiskBuffer,
        sparkplug: SparkplugConfig,
        *,
        edge_id: str,
        site: str,
        group_id: str,
        machines: Sequence[tuple[AssetPath, Machine]],
        bdseq_path: Path | None = None,
    ) -> None:
        self.buffer = buffer
        self.edge_id = edge_id
        self.site = site
        self.group_id = group_id
        self.host_id = sparkplug.host_id
        self.wait_for_host = sparkplug.wait_for_host
        self.catalog = MetricCatalog()
        for asset, machine in machines:
            self.catalog.add_device(device_id(asset), machine_datatypes(machine))
        self.extra_inflight = len(self.catalog.devices) + 4  # births and the edge's state
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
        self._host_timestamp = -1

    # -- topics -----------------------------------------------------------------------------------
    def _topic(self, kind: MessageType, device: str | None = None) -> str:
        return sparkplug_topic(self.group_id, kind, self.edge_id, device)

    def data_topic(self, asset: AssetPath) -> str:
        return self._topic(MessageType.DDATA, device_id(asset))

    def may_send(self) -> bool:
        return self.host_online or not self.wait_for_host

    def waiting_message(self) -> str | None:
        return None  # the host's STATE is logged as it changes

    # -- connection lifecycle ---------------------------------------------------------------------
    def _ndeath(self) -> bytes:
        return encode(Payload(timestamp=_now_ms(), metrics=(bdseq_metric(self.bdseq),)))

    def will(self) -> tuple[str, bytes, bool]:
        self.host_online = False
        self._host_timestamp = -1
        self.bdseq = self.bdseq_file.upcoming
        return self._topic(MessageType.NDEATH), self._ndeath(), False  # never retained

    async def connected(self, client: AsyncMqtt) -> None:
        self.bdseq_file.commit(self.bdseq)
        log.info(
            "sparkplug edge node %s/%s connected, bdSeq %d", self.group_id, self.edge_id, self.bdseq
        )
        client.publish(
            service_state_topic(self.site, self.edge_id),
            service_status(self.edge_id, "online"),
            retain=True,
        )
        await client.subscribe(self._topic(MessageType.NCMD), qos=1)
        # The retained STATE arrives right after this subscription.
        await client.subscribe(host_state_topic(self.host_id), qos=1)
        self._need_births = True

    async def goodbye(self, client: AsyncMqtt) -> None:
        """NDEATH (same bdSeq as the will) and the edge's service state offline."""
        client.publish(self._topic(MessageType.NDEATH), self._ndeath(), qos=1)
        client.publish(
            service_state_topic(self.site, self.edge_id),
            service_status(self.edge_id, "offline"),
            retain=True,
        )

    # -- incoming: STATE and NCMD -----------------------------------------------------------------
    def message(self, message: Message) -> bool:
        if message.topic == self._topic(MessageType.NCMD):
            self._command(bytes(message.payload))
        elif message.topic == host_state_topic(self.host_id):
            self._host_state(bytes(message.payload))
        return self._need_births and self.may_send()

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
            else:
                log.info("ignored NCMD metric %s", metric.label)

    # -- births and data ---------------------------------------------------------------------------
    def _births(self) -> list[Publication]:
        """NBIRTH (seq 0) then every device's DBIRTH."""
        now = _now_ms()
        node_metrics = (bdseq_metric(self.bdseq, timestamp=now), rebirth_metric(timestamp=now))
        births: list[Publication] = [
            (
                self._topic(MessageType.NBIRTH),
                encode(Payload(timestamp=now, seq=self.seq.birth(), metrics=node_metrics)),
                None,
            )
        ]
        for device in self.catalog.devices:
            payload = Payload(
                timestamp=now,
                seq=self.seq.next(),
                metrics=self.catalog.birth_metrics(device, now),
            )
            births.append((self._topic(MessageType.DBIRTH, device), encode(payload), None))
        self.births_published += 1
        self._need_births = False
        log.info("births published: bdSeq %d, %d devices", self.bdseq, len(self.catalog.devices))
        return births

    def _samples(self, batch: OutgoingBatch) -> list[Sample] | None:
        try:
            return decode_fragments(batch.fragments)
        except PayloadError:
            # Our own buffer wrote it: a bug. Keeping it would block the queue forever.
            self.batches_undecodable += 1
            log.exception("dropped undecodable buffer batch %d for %s", batch.seq, batch.asset)
            self.buffer.ack(batch.seq)
            return None

    def publications(self, batches: Sequence[OutgoingBatch]) -> list[Publication]:
        """One DDATA per batch (births first if owed, or if the births no longer describe the
        batches: a new metric or datatype). Births and data go at the data's QoS, not
        Sparkplug's 0, so births never overtake queued DDATA."""
        ready: list[tuple[OutgoingBatch, str, list[Sample]]] = []
        changed = False
        for batch in batches:
            samples = self._samples(batch)
            if samples is None:
                continue
            device = device_id(batch.asset)
            changed |= self.catalog.learn(device, samples)
            ready.append((batch, device, samples))
        out: list[Publication] = []
        if changed or self._need_births:
            if changed:
                log.info("new metrics or datatypes: rebirth before the data")
            out += self._births()
        for batch, device, samples in ready:
            payload = Payload(
                timestamp=_now_ms(),
                seq=self.seq.next(),
                metrics=self.catalog.data_metrics(device, samples),
            )
            out.append((self._topic(MessageType.DDATA, device), encode(payload), batch))
            self.catalog.remember(device, samples)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("DDATA %s: %s", device, describe(payload))
        return out


def make(
    site: SiteConfig,
    node: EdgeNode,
    buffer: DiskBuffer,
    machines: Sequence[tuple[AssetPath, Machine]],
) -> SparkplugNode:
    if site.sparkplug is None:
        raise ValueError(
            f"edge node {node.id} publishes Sparkplug B but the site has no sparkplug block"
        )
    return SparkplugNode(
        buffer,
        site.sparkplug,
        edge_id=node.id,
        site=site.site.id,
        group_id=site.sparkplug_group,
        machines=machines,
    )
