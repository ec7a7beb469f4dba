"""The gateway as a Sparkplug B host application: from ``spBv1.0/<group>/...`` messages to the
same telemetry lines as the native format.

Per edge node it keeps the session the births describe: the ``bdSeq`` of the current connection,
the last ``seq``, and for the node and each device the metric names and datatypes behind each
alias. DATA messages are resolved through those maps. A gap in ``seq`` or an alias no birth
declared asks the node for a rebirth (``NCMD Node Control/Rebirth``); metrics that cannot be
resolved are dead-lettered with the reason, never guessed. An NDEATH whose ``bdSeq`` matches the
current session (a late will of an older connection does not) marks every metric of the node and
its devices stale: a ``<metric>__quality = "stale"`` field at the time of death.

The alias maps are saved to a small JSON file at every birth: after a restart the gateway can
still resolve the DATA messages its persistent session kept for it, before the rebirths arrive.

Assets: a device id written ``area:line:machine`` (how PlantWire's own edge nodes name their
devices) is that machine of this site; any other device is machine ``<device>`` on line
``<edge node>`` in area ``<group>``; node-level metrics are machine ``node``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from gateway.deadletters import DeadLetter, dead_letter
from gateway.intake import Processed
from plantwire.codec.sparkplug import (
    BDSEQ_METRIC_NAME,
    DataType,
    Metric,
    NotStorable,
    Payload,
    decode,
    next_seq,
    to_plantwire_value,
)
from plantwire.errors import InvalidNameError, PayloadError, TopicError
from plantwire.lineprotocol import TELEMETRY_MEASUREMENT, LineEncoder, batch_lines
from plantwire.model import AssetPath, Batch, Sample, sample_problem
from plantwire.names import QUALITY_SUFFIX
from plantwire.sparkplug_topics import MessageType, SparkplugTopic, parse_topic

__all__ = ["SparkplugIngest", "SparkplugResult", "sparkplug_asset"]

log = logging.getLogger("plantwire.gateway.sparkplug")

NODE_MACHINE = "node"
STALE = "stale"
REBIRTH_EVERY_S = 5.0  # at most one rebirth request per node in this time
NS_PER_MS = 1_000_000
_BOOKKEEPING = (BDSEQ_METRIC_NAME, "Node Control/")


@dataclass
class SparkplugResult:
    processed: Processed
    rebirth: str | None = None  # the edge node to ask for a rebirth


@dataclass
class _Aliases:
    """One node's or device's metrics: alias -> name, and name/alias -> datatype."""

    names: dict[int, str] = field(default_factory=dict)
    datatypes: dict[int | str, DataType] = field(default_factory=dict)

    def learn(self, metrics: tuple[Metric, ...]) -> None:
        self.names.clear()
        self.datatypes.clear()
        for metric in metrics:
            if metric.name is None:
                continue
            self.datatypes[metric.name] = metric.datatype
            if metric.alias is not None:
                self.names[metric.alias] = metric.name
                self.datatypes[metric.alias] = metric.datatype


@dataclass
class _Node:
    bdseq: int | None = None
    seq: int | None = None
    online: bool = False
    devices: dict[str, _Aliases] = field(default_factory=dict)  # "" is the node itself
    last_rebirth_request: float = -1e9


def sparkplug_asset(site: str, group: str, edge_node: str, device: str | None) -> AssetPath:
    """Where a Sparkplug node's or device's metrics are stored (see the module docstring)."""
    if device is not None:
        parts = device.split(":")
        if len(parts) == 3:
            with contextlib.suppress(InvalidNameError):
                return AssetPath(site, *parts).validate()
    return AssetPath(site, group, edge_node, device or NODE_MACHINE).validate()


class SparkplugIngest:
    def __init__(
        self, site: str, *, max_payload_bytes: int, state_path: Path | None = None
    ) -> None:
        self.site = site
        self.max_payload_bytes = max_payload_bytes
        self.state_path = state_path
        self.encoder = LineEncoder()
        self.nodes: dict[tuple[str, str], _Node] = {}  # (group, edge node)
        self.births = 0
        self.deaths = 0
        self.seq_gaps = 0
        self.unknown_aliases = 0
        self.rebirths_requested = 0
        self._load()

    # -- the alias maps on disk -------------------------------------------------------------------
    def _load(self) -> None:
        if self.state_path is None or not self.state_path.exists():
            return
        try:
            saved = json.loads(self.state_path.read_text())
            for key, node in saved.items():
                group, edge = key.split("/", 1)
                state = _Node(bdseq=node["bdseq"])
                for device, metrics in node["devices"].items():
                    aliases = _Aliases()
                    for name, alias, datatype in metrics:
                        aliases.datatypes[name] = DataType(datatype)
                        if alias is not None:
                            aliases.names[alias] = name
                            aliases.datatypes[alias] = DataType(datatype)
                    state.devices[device] = aliases
                self.nodes[(group, edge)] = state
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning(
                "Sparkplug alias maps in %s not loaded (%s); waiting for births",
                self.state_path,
                exc,
            )
            self.nodes.clear()

    def _save(self) -> None:
        if self.state_path is None:
            return
        data = {
            f"{group}/{edge}": {
                "bdseq": node.bdseq,
                "devices": {
                    device: [
                        [name, alias, int(aliases.datatypes[name])]
                        for name, alias in _named(aliases)
                    ]
                    for device, aliases in node.devices.items()
                },
            }
            for (group, edge), node in self.nodes.items()
        }
        temporary = self.state_path.with_suffix(".tmp")
        try:
            temporary.write_text(json.dumps(data))
            os.replace(temporary, self.state_path)
        except OSError as exc:
            log.warning("Sparkplug alias maps not saved to %s: %s", self.state_path, exc)

    # -- messages ---------------------------------------------------------------------------------
    def process(self, topic: str, payload: bytes | bytearray) -> SparkplugResult:  # noqa: PLR0911 - one per verb
        """Ingest one message; say which edge node (if any) to ask for a rebirth."""
        payload = bytes(payload)
        try:
            where = parse_topic(topic)
        except TopicError as exc:
            return self._refused(topic, "topic", str(exc), payload, origin="unknown")
        if not isinstance(where, SparkplugTopic):
            return SparkplugResult(Processed())  # a host's STATE: not telemetry
        kind = where.message_type
        if kind in (MessageType.NCMD, MessageType.DCMD):
            return SparkplugResult(Processed())  # commands to edge nodes, ours among them
        node = self.nodes.setdefault((where.group_id, where.edge_node_id), _Node())
        device = where.device_id or ""
        known = node.devices.get(device)
        try:
            message = decode(
                payload,
                max_bytes=self.max_payload_bytes,
                known_datatypes=known.datatypes if known is not None else None,
            )
        except PayloadError as exc:
            result = self._refused(topic, "payload", exc.reason, payload, where.edge_node_id)
            if "datatype" in exc.reason:  # a DATA message whose birth we never saw
                result.rebirth = self._rebirth(where, node, "a metric without a known datatype")
            return result
        if kind is MessageType.NDEATH:
            return self._death(where, node, message, payload)
        if kind is MessageType.DDEATH:
            return self._device_death(where, node, message)
        rebirth = self._check_seq(where, node, kind, message)
        if kind in (MessageType.NBIRTH, MessageType.DBIRTH):
            self._birth(where, node, device, message)
            known = node.devices[device]
        result = self._data(where, message, known)
        if result.rebirth is None:
            result.rebirth = rebirth
        if message.timestamp:  # a birth's or data's publication time (0: not set)
            result.processed.edge = where.edge_node_id
            result.processed.sent_ns = message.timestamp * NS_PER_MS
        return result

    def _check_seq(
        self, where: SparkplugTopic, node: _Node, kind: MessageType, message: Payload
    ) -> str | None:
        """Track ``seq``; a gap asks for a rebirth (the data itself is still taken)."""
        seq = message.seq
        if kind is MessageType.NBIRTH:
            node.seq = seq
            return None
        expected = None if node.seq is None else next_seq(node.seq)
        if seq is not None:
            node.seq = seq
        if expected is not None and seq is not None and seq != expected:
            self.seq_gaps += 1
            log.warning(
                "Sparkplug %s/%s: seq %d where %d was due; asking for a rebirth",
                where.group_id,
                where.edge_node_id,
                seq,
                expected,
            )
            return self._rebirth(where, node, f"seq gap ({expected} expected, {seq} came)")
        return None

    def _birth(self, where: SparkplugTopic, node: _Node, device: str, message: Payload) -> None:
        self.births += 1
        if where.message_type is MessageType.NBIRTH:
            bdseq = next((m.value for m in message.metrics if m.name == BDSEQ_METRIC_NAME), None)
            node.bdseq = bdseq if isinstance(bdseq, int) else None
            node.devices.clear()  # a new session: its devices are born again after it
        node.online = True
        node.devices.setdefault(device, _Aliases()).learn(message.metrics)
        self._save()

    def _data(
        self, where: SparkplugTopic, message: Payload, known: _Aliases | None
    ) -> SparkplugResult:
        asset = sparkplug_asset(self.site, where.group_id, where.edge_node_id, where.device_id)
        result = SparkplugResult(Processed())
        now_ms = time.time_ns() // NS_PER_MS
        samples: list[Sample] = []
        refused: list[dict[str, object]] = []
        unknown: list[int] = []
        for metric in message.metrics:
            name = metric.name
            if name is None and metric.alias is not None and known is not None:
                name = known.names.get(metric.alias)
            if name is None:
                unknown.append(metric.alias if metric.alias is not None else -1)
                continue
            if name.startswith(_BOOKKEEPING):
                continue  # session bookkeeping, not telemetry
            value = to_plantwire_value(metric)
            if isinstance(value, NotStorable):
                refused.append({"metric": name, "reason": value.reason})
                continue
            ms = metric.timestamp or message.timestamp or now_ms
            sample = Sample(ms * NS_PER_MS, name, value.value, value.quality)
            problem = sample_problem(sample)
            if problem is not None:
                refused.append({"metric": name, "reason": problem})
                continue
            samples.append(sample)
        result.processed.samples = len(samples)
        result.processed.rejected = len(refused) + len(unknown)
        if unknown:
            self.unknown_aliases += len(unknown)
            refused.append({"aliases": unknown, "reason": "alias declared by no birth"})
            result.rebirth = self._rebirth(
                where, self.nodes[(where.group_id, where.edge_node_id)], "an unknown alias"
            )
        if refused:
            result.processed.dead_letters.append(
                dead_letter(
                    self.site,
                    where.edge_node_id,
                    "samples",
                    f"{result.processed.rejected} Sparkplug metrics not stored",
                    str(where),
                    seq=message.seq,
                    metrics=refused,
                )
            )
        if samples:
            batch = Batch(where.edge_node_id, message.seq or 0, asset, samples)
            result.processed.lines = batch_lines(self.encoder, batch)
        return result

    def _death(
        self, where: SparkplugTopic, node: _Node, message: Payload, payload: bytes
    ) -> SparkplugResult:
        bdseq = next((m.value for m in message.metrics if m.name == BDSEQ_METRIC_NAME), None)
        if node.bdseq is not None and bdseq != node.bdseq:
            log.info(
                "Sparkplug %s/%s: NDEATH of an older session (bdSeq %s, now %s) ignored",
                where.group_id,
                where.edge_node_id,
                bdseq,
                node.bdseq,
            )
            return SparkplugResult(Processed())
        self.deaths += 1
        node.online = False
        node.seq = None
        log.warning(
            "Sparkplug %s/%s: edge node died; its metrics are stale",
            where.group_id,
            where.edge_node_id,
        )
        lines: list[str] = []
        for device in node.devices:
            lines += self._stale(where, device or None, node.devices[device], message)
        return SparkplugResult(Processed(lines=lines))

    def _device_death(
        self, where: SparkplugTopic, node: _Node, message: Payload
    ) -> SparkplugResult:
        device = where.device_id or ""
        known = node.devices.get(device)
        lines = [] if known is None else self._stale(where, where.device_id, known, message)
        self._check_seq(where, node, where.message_type, message)
        return SparkplugResult(Processed(lines=lines))

    def _stale(
        self, where: SparkplugTopic, device: str | None, aliases: _Aliases, message: Payload
    ) -> list[str]:
        names = [name for name, _ in _named(aliases) if not name.startswith(_BOOKKEEPING)]
        if not names:
            return []
        asset = sparkplug_asset(self.site, where.group_id, where.edge_node_id, device)
        ms = message.timestamp or time.time_ns() // NS_PER_MS
        fields: dict[str, str] = {name + QUALITY_SUFFIX: STALE for name in names}
        series = self.encoder.series(
            TELEMETRY_MEASUREMENT,
            {"site": asset.site, "area": asset.area, "line": asset.line, "machine": asset.machine},
        )
        return self.encoder.rows([(series, fields, ms * NS_PER_MS)])

    def _rebirth(self, where: SparkplugTopic, node: _Node, why: str) -> str | None:
        now = time.monotonic()
        if now - node.last_rebirth_request < REBIRTH_EVERY_S:
            return None
        node.last_rebirth_request = now
        self.rebirths_requested += 1
        log.info("Sparkplug %s/%s: rebirth requested (%s)", where.group_id, where.edge_node_id, why)
        return where.edge_node_id

    def _refused(
        self, topic: str, kind: str, reason: str, payload: bytes, origin: str
    ) -> SparkplugResult:
        letter: DeadLetter = dead_letter(
            self.site,
            origin,
            kind,
            reason,
            topic,
            payload_bytes=len(payload),
            payload_sha256=hashlib.sha256(payload).hexdigest(),
        )
        return SparkplugResult(Processed(dead_letters=[letter]))


def _named(aliases: _Aliases) -> list[tuple[str, int | None]]:
    """(name, alias) of every metric a birth declared."""
    by_name: dict[str, int | None] = {
        key: None for key in aliases.datatypes if isinstance(key, str)
    }
    by_name.update({name: alias for alias, name in aliases.names.items()})
    return list(by_name.items())
