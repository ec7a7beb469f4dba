"""OPC UA source driver: one connection to one server, serving the machines whose tags it holds.

``mode: subscribe`` makes every tag a monitored item, split across subscriptions of at most
``max_items_per_subscription``; each notification message reaches the sink as one call per
machine. ``mode: poll`` reads all tags on a timer with batched Read requests. Tags with
``max_interval_s`` are read when the server sent nothing for them that long (a heartbeat, so
history has no holes where a value simply did not change).

Samples carry the SourceTimestamp -- the plant's time -- and the status as quality. A node the
server refuses, a Bad status or a value PlantWire cannot store gives bad-quality samples and one
log line per tag (one more when it recovers); a lost connection raises :class:`NotConnected`, and
the next ``connect()`` + ``run()`` builds every subscription again from nothing.

The notification path is the hot one (10,000 items at 1 Hz must cost well under half a core), so
the driver uses asyncua's raw subscription service: one callback per PublishResponse, one list
lookup per item by client handle, no per-item object besides the :class:`Sample`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncua import Client, ua

from edge.sources.base import NotConnected, SampleSink, SourceStats, SourceTarget
from edge.sources.opcua_security import (
    failure_reason,
    open_client,
    quiet_disconnect,
    read_property,
    resolve_nodes,
)
from plantwire.config.common import DeadbandKind
from plantwire.config.opcua import OpcuaSource
from plantwire.model import INT64_MAX, INT64_MIN, MAX_STRING_BYTES, AssetPath, Quality, Sample

__all__ = ["OpcuaSourceDriver"]

log = logging.getLogger("plantwire.edge.opcua")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_SEVERITY = 0xC0000000  # the two top bits of a StatusCode: 00 good, 01 uncertain, 1x bad
_UNCERTAIN = 0x40000000
_SAFE_STRING = MAX_STRING_BYTES // 4  # characters that fit in any UTF-8 encoding of the limit
_CHUNK = 1000  # nodes per Read request
_KEEPALIVE_S = 5.0  # a quiet subscription still answers this often
_CHECK_S = 1.0  # heartbeats and liveness are checked at most this often
# Statuses that say the node itself is refused (not that its value is bad right now).
_REFUSED = frozenset(
    {
        ua.StatusCodes.BadNodeIdUnknown,
        ua.StatusCodes.BadNodeIdInvalid,
        ua.StatusCodes.BadAttributeIdInvalid,
        ua.StatusCodes.BadNotReadable,
        ua.StatusCodes.BadUserAccessDenied,
        ua.StatusCodes.BadMonitoredItemFilterUnsupported,
        ua.StatusCodes.BadFilterNotAllowed,
    }
)

_Pairs = list[tuple["_Tag", Sample]]  # samples on their way to the sink, with their tags


@dataclass(eq=False, slots=True)
class _Tag:
    """One tag of one machine. ``handle`` is its index in the driver's tag list and the client
    handle of its monitored item, so a notification finds its tag with one list lookup."""

    handle: int
    machine: int
    asset: AssetPath
    metric: str
    node_text: str
    node: ua.NodeId
    source: OpcuaSource
    sampling_ms: float
    deadband: float | None  # absolute, asked of the server
    heartbeat_s: float | None
    every_timestamp: bool  # the StatusValueTimestamp trigger

    def __str__(self) -> str:
        return f"{self.asset} {self.metric} (node {self.node_text})"


@dataclass(eq=False, slots=True)
class _PollGroup:
    interval_s: float
    tags: list[_Tag]
    requests: list[ua.ReadParameters]
    due: float


def _make_tags(targets: Sequence[SourceTarget[OpcuaSource]]) -> list[_Tag]:
    tags: list[_Tag] = []
    for machine, target in enumerate(targets):
        config = target.config
        for tag in config.tags:
            absolute = tag.deadband_kind is DeadbandKind.ABSOLUTE and tag.deadband
            heartbeat = tag.max_interval_s if config.mode == "subscribe" else None
            sampling = tag.sampling_interval_ms
            tags.append(
                _Tag(
                    handle=len(tags),
                    machine=machine,
                    asset=target.asset,
                    metric=tag.metric,
                    node_text=tag.node,
                    node=ua.NodeId.from_string(tag.node),
                    source=config,
                    sampling_ms=config.sampling_interval_ms if sampling is None else sampling,
                    deadband=tag.deadband if absolute else None,
                    heartbeat_s=heartbeat,
                    every_timestamp=tag.trigger == "status_value_timestamp",
                )
            )
    return tags


def _read_requests(
    tags: Sequence[_Tag], nodes: Sequence[ua.NodeId | None]
) -> list[ua.ReadParameters]:
    """Read requests for the values of many tags, at most _CHUNK nodes each."""
    requests = []
    for start in range(0, len(tags), _CHUNK):
        params = ua.ReadParameters(TimestampsToReturn=ua.TimestampsToReturn.Both)
        params.NodesToRead = [
            ua.ReadValueId(NodeId=nodes[tag.handle], AttributeId=ua.AttributeIds.Value)
            for tag in tags[start : start + _CHUNK]
        ]
        requests.append(params)
    return requests


def _status_name(code: int) -> str:
    return str(ua.status_codes.get_name_and_doc(code)[0])


class OpcuaSourceDriver:
    """The :class:`edge.sources.base.Source` for one OPC UA endpoint (see the module docstring).

    Every target's config must be an ``OpcuaSource`` with the same endpoint, security and
    identity; connection settings (timeout included) come from the first."""

    def __init__(self, targets: Sequence[SourceTarget[OpcuaSource]]) -> None:
        if not targets:
            raise ValueError("an OPC UA source driver needs at least one machine")
        self.config = targets[0].config
        for target in targets:
            if target.config.connection_key() != self.config.connection_key():
                raise ValueError(
                    f"{target.asset} reaches {self.config.endpoint} with other security or "
                    "identity settings than the other machines on it; one connection has one"
                )
        self.name = f"opcua {self.config.endpoint}"
        self.stats = SourceStats()
        self.subscription_count = 0  # subscriptions of the current connection
        self._assets = [target.asset for target in targets]
        self._tags = _make_tags(targets)
        # Log-once state, kept across connections.
        self._refused: dict[int, str] = {}  # handle -> why the server refuses its node
        self._troubled: set[int] = set()  # handles whose last sample was bad
        # Per connection.
        self._client: Client | None = None
        self._nodes: list[ua.NodeId | None] = []  # by handle; None: namespace not on the server
        self._eu: dict[tuple[AssetPath, str], tuple[float, float]] = {}
        self._sink: SampleSink | None = None
        self._subscriptions: dict[int, list[float]] = {}  # id -> [last response, silence limit]
        self._last_seen: dict[int, float] = {}  # heartbeat tags: handle -> last delivery
        self._lost = asyncio.Event()
        self._lost_reason = ""
        self._failure: BaseException | None = None

    # -- connection ------------------------------------------------------------------------------
    async def connect(self) -> None:
        """Open a session, resolve ``nsu=`` namespaces and read the tags' EURange properties."""
        await self.close()
        config = self.config
        self._lost, self._lost_reason, self._failure = asyncio.Event(), "", None
        self._client = client = await open_client(
            config.endpoint,
            security=config.security,
            username=config.username,
            password=config.password.get_secret_value() if config.password else None,
            timeout_s=config.timeout_s,
            on_lost=self._on_connection_lost,
        )
        try:
            self._nodes = await resolve_nodes(client, [tag.node for tag in self._tags])
            ranges = await read_property(client, self._nodes, "EURange")
        except (OSError, ua.UaError) as exc:  # asyncua's and the socket's, translated
            await self.close()
            raise NotConnected(self._reason(exc)) from exc
        self._eu = {}
        for handle, value in ranges.items():
            low, high = getattr(value, "Low", None), getattr(value, "High", None)
            if isinstance(low, float | int) and isinstance(high, float | int) and low < high:
                self._eu[(self._tags[handle].asset, self._tags[handle].metric)] = (low, high)
        self.stats.connected = True

    async def close(self) -> None:
        """Drop the session (the server deletes its subscriptions with it); never raises."""
        client, self._client = self._client, None
        self.stats.connected = False
        self.subscription_count = 0
        self._subscriptions.clear()
        self._last_seen.clear()
        if client is not None:
            await quiet_disconnect(client, self.config.timeout_s)

    def eu_range(self, asset: AssetPath, metric: str) -> tuple[float, float] | None:
        """The EURange (low, high) of a tag's variable, when the server has one."""
        return self._eu.get((asset, metric))

    async def _on_connection_lost(self, exc: Exception) -> None:
        why = str(exc) or type(exc).__name__
        self._mark_lost(f"connection to {self.config.endpoint} lost ({why})")

    def _mark_lost(self, reason: str) -> None:
        if not self._lost.is_set():
            self._lost_reason = reason
            self._lost.set()

    def _reason(self, exc: BaseException) -> str:
        config = self.config
        return failure_reason(
            exc, config.endpoint, config.security, config.username, config.timeout_s
        )

    # -- running ---------------------------------------------------------------------------------
    async def run(self, sink: SampleSink) -> None:
        """Subscribe (and poll) and deliver until cancelled; NotConnected when the link is gone."""
        client = self._client
        if client is None:
            raise NotConnected(f"{self.name} is not connected")
        self._sink = sink
        try:
            await self._subscribe(client)
            polls = self._poll_groups()
            next_check = time.monotonic() + _CHECK_S
            while True:
                for group in polls:
                    if group.due <= time.monotonic():
                        await self._poll(client, group)
                        group.due = max(group.due + group.interval_s, time.monotonic())
                if time.monotonic() >= next_check:
                    self._check_subscriptions()
                    await self._heartbeat(client)
                    next_check = time.monotonic() + _CHECK_S
                await self._wait(min([next_check, *(g.due for g in polls)]) - time.monotonic())
        except (OSError, ua.UaError) as exc:  # asyncua's and the socket's, translated
            self._raise_if_lost()
            raise NotConnected(self._reason(exc)) from exc

    async def _wait(self, seconds: float) -> None:
        """Sleep, waking early (and raising) when the connection is found gone."""
        if seconds > 0 and not self._lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), seconds)
        self._raise_if_lost()

    def _raise_if_lost(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._lost.is_set():
            raise NotConnected(self._lost_reason)

    def _groups(self, mode: str, key: str, refused: _Pairs) -> dict[Any, list[_Tag]]:
        """The usable tags of sources in ``mode``, grouped by a source setting; tags whose
        namespace the server does not have are refused."""
        groups: dict[Any, list[_Tag]] = {}
        for tag in self._tags:
            if tag.source.mode != mode:
                continue
            if self._nodes[tag.handle] is None:
                self._refuse(tag, "its namespace URI is not on the server", refused)
            else:
                groups.setdefault(getattr(tag.source, key), []).append(tag)
        return groups

    async def _subscribe(self, client: Client) -> None:
        """Create subscriptions and monitored items from nothing, grouped by publishing interval
        and split so that none has more than its source's max_items_per_subscription."""
        refused: _Pairs = []
        for interval_ms, tags in self._groups(
            "subscribe", "publishing_interval_ms", refused
        ).items():
            size = min(tag.source.max_items_per_subscription for tag in tags)
            for start in range(0, len(tags), size):
                chunk = tags[start : start + size]
                await self._create_subscription(client, interval_ms, chunk, refused)
        self.subscription_count = len(self._subscriptions)
        self._deliver_pairs(refused)

    async def _create_subscription(
        self, client: Client, interval_ms: float, tags: list[_Tag], refused: _Pairs
    ) -> None:
        keepalive = max(1, math.ceil(_KEEPALIVE_S * 1000 / interval_ms))
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=interval_ms,
            RequestedLifetimeCount=max(3 * keepalive, math.ceil(60_000 / interval_ms)),
            RequestedMaxKeepAliveCount=keepalive,
        )
        callback = functools.partial(self._on_publish, client)
        result = await client.uaclient.create_subscription(params, callback)
        revised_keepalive = max(result.RevisedMaxKeepAliveCount, 1)
        quiet_s = max(result.RevisedPublishingInterval, interval_ms) / 1000 * revised_keepalive
        limit = 2 * max(quiet_s, _KEEPALIVE_S) + self.config.timeout_s
        self._subscriptions[result.SubscriptionId] = [time.monotonic(), limit]
        create = ua.CreateMonitoredItemsParameters(
            SubscriptionId=result.SubscriptionId,
            TimestampsToReturn=ua.TimestampsToReturn.Both,
            ItemsToCreate=[self._item_request(tag) for tag in tags],
        )
        results = await client.uaclient.create_monitored_items(create)
        now = time.monotonic()
        for tag, item in zip(tags, results, strict=True):
            if item.StatusCode.is_bad():
                self._refuse(tag, _status_name(item.StatusCode.value), refused)
                continue
            self._accepted(tag)
            if tag.heartbeat_s is not None:
                self._last_seen[tag.handle] = now

    def _item_request(self, tag: _Tag) -> ua.MonitoredItemCreateRequest:
        parameters = ua.MonitoringParameters(
            ClientHandle=tag.handle,
            SamplingInterval=tag.sampling_ms,
            QueueSize=tag.source.queue_size,
            DiscardOldest=True,
        )
        if tag.deadband is not None or tag.every_timestamp:
            # Absolute only: asyncua's server (like others) does not implement percent deadbands;
            # the runtime applies those client-side with eu_range().
            parameters.Filter = ua.DataChangeFilter(
                Trigger=ua.DataChangeTrigger.StatusValueTimestamp
                if tag.every_timestamp
                else ua.DataChangeTrigger.StatusValue,
                DeadbandType=ua.DeadbandType.None_
                if tag.deadband is None
                else ua.DeadbandType.Absolute,
                DeadbandValue=tag.deadband or 0.0,
            )
        item = ua.ReadValueId(NodeId=self._nodes[tag.handle], AttributeId=ua.AttributeIds.Value)
        return ua.MonitoredItemCreateRequest(
            ItemToMonitor=item,
            MonitoringMode=ua.MonitoringMode.Reporting,
            RequestedParameters=parameters,
        )

    def _check_subscriptions(self) -> None:
        """A subscription that sent neither data nor keep-alive for too long is dead (the
        server may have dropped it while the connection stayed up)."""
        now = time.monotonic()
        for sub_id, (last, limit) in self._subscriptions.items():
            if now - last > limit:
                raise NotConnected(f"subscription {sub_id} has been silent for {now - last:.0f} s")

    def _poll_groups(self) -> list[_PollGroup]:
        refused: _Pairs = []
        groups = self._groups("poll", "poll_interval_s", refused)
        self._deliver_pairs(refused)
        now = time.monotonic()
        return [
            _PollGroup(interval, tags, _read_requests(tags, self._nodes), now)
            for interval, tags in groups.items()
        ]

    async def _poll(self, client: Client, group: _PollGroup) -> None:
        """Read a poll group's tags (batched) and deliver; a refused tag is read no more until
        the next connection, as a refused monitored item would be."""
        if await self._read_tags(client, group.tags, group.requests):
            group.tags = [tag for tag in group.tags if tag.handle not in self._refused]
            group.requests = _read_requests(group.tags, self._nodes)

    async def _heartbeat(self, client: Client) -> None:
        """Read and deliver the heartbeat tags not reported for their max_interval_s."""
        now = time.monotonic()
        tags = self._tags
        due = [
            tags[handle]
            for handle, seen in self._last_seen.items()
            if now - seen >= (tags[handle].heartbeat_s or 0.0) - 0.05
        ]
        if due:
            refused = await self._read_tags(client, due, _read_requests(due, self._nodes), True)
            now = time.monotonic()
            for tag in due:
                self._last_seen[tag.handle] = now
            for tag in refused:
                del self._last_seen[tag.handle]

    async def _read_tags(
        self,
        client: Client,
        tags: list[_Tag],
        requests: list[ua.ReadParameters],
        server_time: bool = False,
    ) -> list[_Tag]:
        """Read tags with the given requests and deliver them; return those the server refused."""
        values: list[ua.DataValue] = []
        for request in requests:
            values.extend(await client.uaclient.read(request))
            self.stats.reads += 1
        pairs: _Pairs = []
        refused = []
        for tag, value in zip(tags, values, strict=True):
            code = value.StatusCode.value if value.StatusCode is not None else 0
            if code in _REFUSED:
                self._refuse(tag, _status_name(code), pairs)
                refused.append(tag)
            else:
                self._accepted(tag)
                pairs.append((tag, self._convert(tag, value, server_time)))
        self._deliver_pairs(pairs)
        return refused

    # -- turning notifications into samples -------------------------------------------------------
    def _on_publish(self, client: Client, result: ua.PublishResult) -> None:
        """asyncua's publish loop calls this with every PublishResponse of our subscriptions
        (a late one from a connection already closed is ignored)."""
        if client is not self._client:
            return
        try:
            self._subscriptions[result.SubscriptionId][0] = time.monotonic()
            for notification in result.NotificationMessage.NotificationData or ():
                if isinstance(notification, ua.DataChangeNotification):
                    self._on_changes(notification.MonitoredItems)
                elif isinstance(notification, ua.StatusChangeNotification):
                    status = _status_name(notification.Status.value)
                    self._mark_lost(
                        f"the server ended subscription {result.SubscriptionId} ({status})"
                    )
        except Exception as exc:  # noqa: BLE001 - asyncua would log and drop it; run() raises it
            self._failure = exc
            self._lost.set()

    def _on_changes(self, items: Sequence[ua.MonitoredItemNotification]) -> None:
        tags = self._tags
        convert = self._convert
        last_seen = self._last_seen
        by_machine: dict[int, list[Sample]] = {}
        now = time.monotonic()
        for item in items:
            tag = tags[item.ClientHandle]
            sample = convert(tag, item.Value)
            samples = by_machine.get(tag.machine)
            if samples is None:
                by_machine[tag.machine] = [sample]
            else:
                samples.append(sample)
            if tag.heartbeat_s is not None:
                last_seen[tag.handle] = now
        self.stats.reads += 1
        self._deliver(by_machine)

    def _deliver(self, by_machine: dict[int, list[Sample]]) -> None:
        sink = self._sink
        assert sink is not None
        for machine, samples in by_machine.items():
            sink(self._assets[machine], samples)
            self.stats.samples += len(samples)

    def _deliver_pairs(self, pairs: _Pairs) -> None:
        by_machine: dict[int, list[Sample]] = {}
        for tag, sample in pairs:
            by_machine.setdefault(tag.machine, []).append(sample)
        self._deliver(by_machine)

    def _convert(self, tag: _Tag, value: ua.DataValue, server_time: bool = False) -> Sample:
        """A DataValue as a Sample: source time (server time for heartbeat reads), status as
        quality, the value as float, int, bool or str -- or bad quality with None."""
        stamp = (
            value.ServerTimestamp if server_time else value.SourceTimestamp or value.ServerTimestamp
        )
        ts_ns = (stamp - _EPOCH) // _MICROSECOND * 1000 if stamp is not None else 0
        if ts_ns <= 0:  # missing, or before 1970 (a server's zero DateTime)
            ts_ns = time.time_ns()
        status = value.StatusCode
        severity = status.value & _SEVERITY if status is not None else 0
        if severity and severity != _UNCERTAIN:
            return self._bad(tag, ts_ns, f"status {_status_name(status.value)}")
        variant = value.Value
        data: Any = variant.Value if variant is not None else None
        kind = type(data)
        if kind is float:
            if data - data != 0.0:  # NaN or infinite
                return self._bad(tag, ts_ns, "value is NaN or infinite")
        elif kind is int:
            if not INT64_MIN <= data <= INT64_MAX:
                data = float(data)  # a UInt64 past 2**63: kept, rounded
        elif kind is str:
            if len(data) > _SAFE_STRING and len(data.encode()) > MAX_STRING_BYTES:
                return self._bad(tag, ts_ns, f"text longer than {MAX_STRING_BYTES} bytes")
        elif kind is not bool:
            data = _unusual(data)
            if isinstance(data, _Unsupported):
                return self._bad(tag, ts_ns, data.why)
        if tag.handle in self._troubled:
            self._troubled.discard(tag.handle)
            log.info("%s reads good values again", tag)
        return Sample(ts_ns, tag.metric, data, Quality.UNCERTAIN if severity else Quality.GOOD)

    def _bad(self, tag: _Tag, ts_ns: int, why: str) -> Sample:
        if tag.handle not in self._troubled:
            self._troubled.add(tag.handle)
            log.warning("%s: %s; its samples are bad quality until it recovers", tag, why)
        return Sample(ts_ns, tag.metric, None, Quality.BAD)

    def _refuse(self, tag: _Tag, why: str, out: _Pairs) -> None:
        """The server refuses a tag's node: one bad sample, one log line (per outage)."""
        if tag.handle not in self._refused:
            log.warning("%s is refused by the server: %s; it is bad quality until fixed", tag, why)
        self._refused[tag.handle] = why
        out.append((tag, Sample(time.time_ns(), tag.metric, None, Quality.BAD)))

    def _accepted(self, tag: _Tag) -> None:
        if self._refused.pop(tag.handle, None) is not None:
            log.info("%s is accepted by the server again", tag)


@dataclass(frozen=True, slots=True)
class _Unsupported:
    why: str


def _unusual(data: object) -> float | int | bool | str | _Unsupported:
    """A value of a subclass of a storable type (an IntEnum, ...) as that type; anything else
    (arrays, structures, byte strings, dates, no value) is unsupported."""
    if isinstance(data, bool):
        return bool(data)
    if isinstance(data, int):
        number = int(data)
        return number if INT64_MIN <= number <= INT64_MAX else float(number)
    if isinstance(data, str):
        return str(data)
    if isinstance(data, float):
        return float(data) if math.isfinite(data) else _Unsupported("value is NaN or infinite")
    what = "no value" if data is None else f"a value of type {type(data).__name__}"
    return _Unsupported(f"{what} (PlantWire stores numbers, booleans and text)")
