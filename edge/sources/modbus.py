"""The Modbus source driver: TCP, RTU over a serial port, and RTU framing over TCP.

The only module of the edge that imports pymodbus. One driver owns one connection (an endpoint)
and reads the tags of every machine behind it -- several device ids on one gateway or RS-485 line
-- poll group by poll group, each group with its fewest requests (:mod:`edge.sources.coalesce`).
Requests on one connection go one at a time (serial lines cannot do otherwise), with the
configured pause between them.

Errors are sorted as the runtime expects (:mod:`edge.sources.base`): a lost transport raises
``NotConnected``; "busy" answers are retried a bounded number of times; a refused address marks
that tag's sample bad, isolates the tag so its neighbours are read without it, and is logged
once and once more on recovery.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from edge.sources.base import NotConnected, SampleSink, SourceStats, SourceTarget
from edge.sources.coalesce import PlannedTag, ReadRequest, plan_requests
from edge.sources.modbus_codec import RegisterDecodeError, tag_value
from edge.sources.plc_clock import PlcClock
from plantwire.config.modbus import ByteOrder, ModbusSource, ModbusTag, RegisterTable
from plantwire.lifecycle import cancel_and_wait
from plantwire.logs import LogOnce
from plantwire.model import Quality, Sample, Value

__all__ = ["ModbusSourceDriver"]

log = logging.getLogger("plantwire.edge.modbus")
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # it logs every frame and timeout itself

BUSY_CODES = frozenset({5, 6})  # acknowledge (still working), device busy
ILLEGAL_CODES = frozenset({1, 2, 3})  # function, address, value
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal address",
    3: "illegal value",
    4: "device failure",
    5: "acknowledge",
    6: "busy",
    10: "gateway path unavailable",
    11: "gateway target did not respond",
}
BUSY_RETRY_PAUSE_S = 0.05
# A clock tag outside these years is a PLC whose clock was never set: use the poll time instead.
PLAUSIBLE_CLOCK_NS = (946_684_800 * 10**9, 4_102_444_800 * 10**9)  # 2000 .. 2100


@dataclass(frozen=True)
class _Tag:
    target: int  # index into the driver's targets
    tag: ModbusTag
    publish: bool  # False for the clock tag: it stamps samples rather than being one
    order: ByteOrder  # the tag's, or its source's default


@dataclass
class _Group:
    interval_s: float
    tags: list[PlannedTag]
    requests: list[ReadRequest]


class _ReadFailedError(Exception):
    """A request the device refused (code) or did not answer (None)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(
            EXCEPTION_NAMES.get(code, f"exception {code}") if code is not None else "no answer"
        )
        self.code = code


class ModbusSourceDriver:
    """Reads the tags of the machines behind one Modbus endpoint."""

    def __init__(self, targets: Sequence[SourceTarget[ModbusSource]]) -> None:
        if not targets:
            raise ValueError("a Modbus source needs at least one machine")
        self.targets = list(targets)
        self.config = targets[0].config
        for target in targets[1:]:
            if target.config.connection_key() != self.config.connection_key():
                raise ValueError(
                    f"machines share endpoint {self.config.endpoint} with different line settings"
                )
        self.name = f"modbus {self.config.endpoint}"
        self.stats = SourceStats()
        self.requests_per_cycle: dict[float, int] = {}
        self._tags: list[_Tag] = []
        self._alone: set[int] = set()
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._readers: dict[RegisterTable, Any] = {}
        self._lock = asyncio.Lock()
        self._once = LogOnce(log)
        self._clocks: dict[int, PlcClock] = defaultdict(PlcClock)  # by target
        self._groups = self._plan()

    # -- planning ---------------------------------------------------------------------------------
    def _plan(self) -> list[_Group]:
        by_interval: dict[float, list[PlannedTag]] = defaultdict(list)
        for index, target in enumerate(self.targets):
            config = target.config
            clock = next((t for t in config.tags if t.metric == target.clock_metric), None)
            intervals = set()
            for tag in config.tags:
                if tag is clock:
                    continue
                interval = config.poll_groups[config.group_of(tag)]
                intervals.add(interval)
                by_interval[interval].append(self._planned(index, tag, publish=True))
            if clock is not None:  # every group of the machine reads the clock to stamp its samples
                for interval in intervals:
                    by_interval[interval].append(self._planned(index, clock, publish=False))
        return [
            _Group(interval, tags, self._requests(tags))
            for interval, tags in sorted(by_interval.items())
        ]

    def _planned(self, target: int, tag: ModbusTag, *, publish: bool) -> PlannedTag:
        config = self.targets[target].config
        self._tags.append(_Tag(target, tag, publish, tag.order or config.byte_order))
        device = tag.device_id if tag.device_id is not None else config.device_id
        return PlannedTag(len(self._tags) - 1, tag, device)

    def _requests(self, tags: list[PlannedTag]) -> list[ReadRequest]:
        config = self.config
        return plan_requests(
            tags,
            max_registers=config.max_registers_per_read,
            max_bits=config.max_bits_per_read,
            max_gap=config.max_gap,
            alone=sorted(self._alone),
        )

    @property
    def plan(self) -> dict[float, list[ReadRequest]]:
        """The requests of each poll interval, as they are read now."""
        return {group.interval_s: group.requests for group in self._groups}

    # -- connection -------------------------------------------------------------------------------
    async def connect(self) -> None:
        config = self.config
        transport, _, address = config.endpoint.partition("://")
        # pymodbus must not reconnect or retry on its own: the runtime owns both.
        if transport == "rtu":
            serial = config.serial
            client: AsyncModbusTcpClient | AsyncModbusSerialClient = AsyncModbusSerialClient(
                address,
                framer=FramerType.RTU,
                baudrate=serial.baudrate if serial else 19200,
                parity=serial.parity if serial else "E",
                stopbits=serial.stopbits if serial else 1,
                bytesize=serial.bytesize if serial else 8,
                timeout=config.timeout_s,
                retries=0,
                reconnect_delay=0,
            )
        else:
            host, _, port = address.partition(":")
            client = AsyncModbusTcpClient(
                host,
                port=int(port or 502),
                framer=FramerType.RTU if transport == "rtu+tcp" else FramerType.SOCKET,
                timeout=config.timeout_s,
                retries=0,
                reconnect_delay=0,
            )
        try:
            connected = await client.connect()
        except (OSError, ModbusException) as exc:
            client.close()
            raise NotConnected(f"{self.name}: {exc}") from exc
        if not connected:
            client.close()
            raise NotConnected(f"{self.name}: connection refused or timed out")
        self._client = client
        self._readers = {
            RegisterTable.COIL: client.read_coils,
            RegisterTable.DISCRETE: client.read_discrete_inputs,
            RegisterTable.HOLDING: client.read_holding_registers,
            RegisterTable.INPUT: client.read_input_registers,
        }
        self.stats.connected = True

    async def close(self) -> None:
        self.stats.connected = False
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- reading ----------------------------------------------------------------------------------
    async def run(self, sink: SampleSink) -> None:
        tasks = [asyncio.create_task(self._poll_loop(group, sink)) for group in self._groups]
        try:
            await asyncio.gather(*tasks)
        finally:
            await cancel_and_wait(tasks)

    async def _poll_loop(self, group: _Group, sink: SampleSink) -> None:
        due = time.monotonic()
        while True:
            await self.poll(group.interval_s, sink)
            due += group.interval_s
            delay = due - time.monotonic()
            if delay < -group.interval_s:  # fell behind by more than a cycle: skip, don't burst
                due = time.monotonic()
                delay = 0.0
            await asyncio.sleep(max(0.0, delay))

    async def poll(self, interval_s: float, sink: SampleSink) -> None:
        """Read one cycle of a poll group and deliver its samples, machine by machine."""
        group = next(g for g in self._groups if g.interval_s == interval_s)
        polled_ns = time.time_ns()
        values: dict[int, tuple[Value, Quality]] = {}
        requests = 0
        for request in list(group.requests):
            requests += await self._read_request(request, values)
        self.requests_per_cycle[interval_s] = requests
        self._deliver(group, values, polled_ns, sink)

    async def _read_request(
        self, request: ReadRequest, values: dict[int, tuple[Value, Quality]]
    ) -> int:
        """Read one request into ``values``; returns how many requests went out."""
        try:
            words = await self._read(request)
        except _ReadFailedError as failure:
            if failure.code in ILLEGAL_CODES and len(request.tags) > 1:
                return 1 + await self._isolate(request, values)
            for planned in request.tags:
                values[planned.key] = (None, Quality.BAD)
                self._problem(planned, request, str(failure))
            return 1
        for planned in request.tags:
            offset = planned.start - request.address
            chunk = words[offset : offset + planned.tag.count]
            values[planned.key] = self._value(planned, request, chunk)
        return 1

    async def _isolate(self, request: ReadRequest, values: dict[int, tuple[Value, Quality]]) -> int:
        """A coalesced request was refused: read its tags one by one, and from now on read the
        refused ones alone (and never span their addresses), so they cannot blind neighbours.
        If every tag reads fine alone, an address between them was the problem: keep them apart."""
        sent = 0
        refused = []
        for planned in request.tags:
            single = ReadRequest(
                request.device_id, request.table, planned.start, planned.tag.count, [planned]
            )
            sent += await self._read_request(single, values)
            if values[planned.key][1] is Quality.BAD:
                refused.append(planned.key)
        self._alone.update(refused or [planned.key for planned in request.tags])
        for group in self._groups:
            group.requests = self._requests(group.tags)
        return sent

    def _value(
        self, planned: PlannedTag, request: ReadRequest, chunk: list[int]
    ) -> tuple[Value, Quality]:
        try:  # a short answer (fewer bits or registers than asked for) is a decode problem
            result = tag_value(planned.tag, self._tags[planned.key].order, chunk)
        except RegisterDecodeError as exc:
            self._problem(planned, request, str(exc))
            return None, Quality.BAD
        if self._once.bad_keys:
            self._recovered(planned)
        return result

    async def _read(self, request: ReadRequest) -> list[int]:
        client = self._client
        if client is None:
            raise NotConnected(f"{self.name}: not connected")
        read = self._readers[request.table]
        async with self._lock:
            for attempt in range(self.config.busy_retries + 1):
                if self.config.pause_s:
                    await asyncio.sleep(self.config.pause_s)
                self.stats.reads += 1
                try:
                    response = await read(
                        request.address, count=request.count, device_id=request.device_id
                    )
                except ConnectionException as exc:
                    self.stats.error("transport")
                    raise NotConnected(f"{self.name}: {exc}") from exc
                except ModbusIOException as exc:
                    if not client.connected:
                        self.stats.error("transport")
                        raise NotConnected(f"{self.name}: {exc}") from exc
                    self.stats.error("timeout")
                    raise _ReadFailedError(None) from exc
                if not response.isError():
                    return (
                        list(response.bits[: request.count])
                        if request.table.is_bit
                        else list(response.registers)
                    )
                code = int(getattr(response, "exception_code", 0))
                if code in BUSY_CODES and attempt < self.config.busy_retries:
                    self.stats.error("busy")
                    await asyncio.sleep(BUSY_RETRY_PAUSE_S * (attempt + 1))
                    continue
                self.stats.error(
                    "busy"
                    if code in BUSY_CODES
                    else "illegal"
                    if code in ILLEGAL_CODES
                    else "device"
                )
                raise _ReadFailedError(code)
        raise _ReadFailedError(None)  # unreachable: the loop returns or raises

    # -- samples ----------------------------------------------------------------------------------
    def _deliver(
        self,
        group: _Group,
        values: dict[int, tuple[Value, Quality]],
        polled_ns: int,
        sink: SampleSink,
    ) -> None:
        per_target: dict[int, list[tuple[str, Value, Quality]]] = defaultdict(list)
        stamps: dict[int, int] = {}
        for planned in group.tags:
            entry = self._tags[planned.key]
            value, quality = values.get(planned.key, (None, Quality.BAD))
            if entry.publish:
                per_target[entry.target].append((entry.tag.metric, value, quality))
            elif quality is Quality.GOOD and isinstance(value, int):
                stamps[entry.target] = value
        for target, readings in per_target.items():
            ts = self._stamp(target, stamps.get(target), polled_ns)
            samples = [Sample(ts, metric, value, quality) for metric, value, quality in readings]
            self.stats.samples += len(samples)
            sink(self.targets[target].asset, samples)

    def _stamp(self, target: int, clock_ns: int | None, polled_ns: int) -> int:
        clock_metric = self.targets[target].clock_metric
        if clock_metric is None:
            return polled_ns
        key = f"clock:{self.targets[target].asset}"
        clock = self._clocks[target]
        if clock_ns is None or not PLAUSIBLE_CLOCK_NS[0] <= clock_ns <= PLAUSIBLE_CLOCK_NS[1]:
            carried = clock.carry_on(polled_ns)
            self.stats.error("clock")
            self._once.problem(
                key,
                "%s: PLC clock %s unreadable or implausible (%s); stamping with %s",
                self.targets[target].asset,
                clock_metric,
                clock_ns,
                "poll time (it was never read)"
                if carried is None
                else f"its last reading carried on at {clock.rate():.3g}x the edge's clock",
            )
            return polled_ns if carried is None else carried
        clock.observe(clock_ns, polled_ns)
        self._once.recovered(
            key, "%s: PLC clock %s readable again", self.targets[target].asset, clock_metric
        )
        return clock_ns

    def _problem(self, planned: PlannedTag, request: ReadRequest, reason: str) -> None:
        entry = self._tags[planned.key]
        self._once.problem(
            f"tag:{planned.key}",
            "%s: %s (%s %s at %d on device %d) reads bad: %s",
            self.targets[entry.target].asset,
            planned.tag.metric,
            self.name,
            planned.tag.table,
            planned.start,
            planned.device_id,
            reason,
        )

    def _recovered(self, planned: PlannedTag) -> None:
        if self._once.is_bad(f"tag:{planned.key}"):
            entry = self._tags[planned.key]
            self._once.recovered(
                f"tag:{planned.key}",
                "%s: %s reads again",
                self.targets[entry.target].asset,
                planned.tag.metric,
            )
