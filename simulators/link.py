"""A TCP link emulator: a user-space proxy that gives every connection through it 5G-like
behaviour (delay, jitter, a bandwidth cap, random resets, outages), for tests and the demo.

The kernel on the demo machines has no netem, so the link is emulated here. Clients connect to
``listen``; each connection is joined to a fresh connection to ``target``. Profiles and schedules
are described in :mod:`simulators.link_profiles`.

How a chunk travels, per direction of each connection: a receive task reads up to 64 KiB (less
under a bandwidth cap, about 20 ms of transmission, so delivery is smooth), and computes when it
may arrive::

    sent       = next_free = max(now, next_free) + len(chunk) * 8 / bandwidth_bps   (cap only)
    deliver_at = max(previous deliver_at, sent + sampled one-way delay)

then puts it on a bounded queue; one deliver task writes the chunks in queue order at their time.
Delivery times never decrease, so bytes keep their order however large the jitter. A full queue
stops the reading, as a full TCP window would.

Outages close the listening socket, so a new client gets a true ECONNREFUSED, and abort every open
connection (an RST, both sides); afterwards the listener is bound again on the same port. Random
resets abort one connection, both sides. A peer that resets or breaks the pipe makes the emulator
abort the other side too (that is what a reset end to end would do), and is counted, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import socket
import struct
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Self

from plantwire.lifecycle import cancel_and_wait
from simulators.link_profiles import (
    PROFILES,
    LinkProfile,
    ScheduleEvent,
    load_schedule,
    resolve_profile,
)
from simulators.link_stats import DelayStats, LinkStats

__all__ = [
    "PROFILES",
    "DelayStats",
    "LinkEmulator",
    "LinkProfile",
    "LinkStats",
    "ScheduleEvent",
    "load_schedule",
    "parse_hostport",
    "run_link",
]

log = logging.getLogger("plantwire.sim.link")

_MAX_CHUNK = 64 * 1024
_MIN_CHUNK = 1460  # one Ethernet TCP segment: smaller reads would only cost CPU
_CHUNK_SECONDS = 0.02  # under a cap, read ~20 ms of transmission at a time
_QUEUE_CHUNKS = 64  # per direction; bounds memory and gives TCP-like back-pressure
_CONNECT_TIMEOUT = 10.0
_REBIND_RETRY = 0.5
_HOSTPORT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s:\[\]]+)):(?P<port>\d{1,5})$")


@dataclass(eq=False)
class _Direction:
    """One direction of a connection: where it reads, where it writes, and its clock."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    up: bool
    delays: DelayStats
    queue: asyncio.Queue[tuple[float, bytes] | None] = field(
        default_factory=lambda: asyncio.Queue(_QUEUE_CHUNKS)
    )
    next_free: float = 0.0  # when the capped "radio" is free to send the next chunk
    last_delivery: float = 0.0


class _Connection:
    """A client joined to the target: two directions, a receive and a deliver task each."""

    def __init__(
        self,
        link: LinkEmulator,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        target: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self._link = link
        self._directions = (
            _Direction(client[0], target[1], True, link.stats.delays_up),
            _Direction(target[0], client[1], False, link.stats.delays_down),
        )
        self._writers = (client[1], target[1])
        self._tasks: list[asyncio.Task[None]] = []
        self.reset_timer: asyncio.TimerHandle | None = None
        self.closed = False

    async def run(self) -> None:
        """Pump both directions until both ended, the connection is aborted, or cancelled."""
        for direction in self._directions:
            self._tasks.append(asyncio.create_task(self._receive(direction)))
            self._tasks.append(asyncio.create_task(self._deliver(direction)))
        try:
            # A pump that raised is a bug (connection errors are handled inside): stop the rest.
            await asyncio.wait(self._tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            if all(task.done() for task in self._tasks):
                self.close()
            else:
                self.abort()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._log_bugs()

    def abort(self) -> None:
        """RST both sides and stop the pumps (an outage, a random reset, a failed peer)."""
        if self.closed:
            return
        self._finish()
        for writer in self._writers:
            _reset(writer)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()

    def close(self) -> None:
        """Close both sides gracefully: both directions have delivered their end of stream."""
        if not self.closed:
            self._finish()
            for writer in self._writers:
                writer.close()

    def _finish(self) -> None:
        self.closed = True
        if self.reset_timer is not None:
            self.reset_timer.cancel()

    async def _receive(self, direction: _Direction) -> None:
        try:
            while chunk := await direction.reader.read(self._link.chunk_limit()):
                deliver_at = self._link.delivery_time(direction, len(chunk))
                await direction.queue.put((deliver_at, chunk))
        except OSError:  # reset, broken pipe and the like: count and close, never raise
            self._peer_failed()
            return
        await direction.queue.put(None)  # the end of stream travels behind the data

    async def _deliver(self, direction: _Direction) -> None:
        loop = asyncio.get_running_loop()
        writer = direction.writer
        try:
            while (item := await direction.queue.get()) is not None:
                deliver_at, chunk = item
                if (wait := deliver_at - loop.time()) > 0:
                    await asyncio.sleep(wait)
                writer.write(chunk)
                await writer.drain()
                self._link.count_delivered(direction, len(chunk))
            if not self.closed and writer.can_write_eof():
                writer.write_eof()  # pass a half-close on: the peer may still answer
        except OSError:  # write_eof can also fail with ENOTCONN, which is no ConnectionError
            self._peer_failed()

    def _peer_failed(self) -> None:
        if not self.closed:  # our own abort makes reads end too; that is not a peer failure
            self._link.stats.peer_errors += 1
            self.abort()

    def _log_bugs(self) -> None:
        # Anything but a connection error here is a bug; log it rather than lose it silently.
        for task in self._tasks:
            if not task.cancelled() and (exc := task.exception()) is not None:
                log.error("link pump failed", exc_info=exc)


class LinkEmulator:
    """A TCP proxy from ``listen`` to ``target`` that behaves like the link of a profile.

    Use ``async with LinkEmulator(...) as link:`` or :meth:`start` and :meth:`stop`.
    ``seed`` makes delays and resets repeatable (given the same traffic).
    """

    def __init__(
        self,
        listen: tuple[str, int],
        target: tuple[str, int],
        profile: LinkProfile | str = "ideal",
        *,
        seed: int | None = None,
    ) -> None:
        self._listen = listen
        self._target = target
        self._profile = resolve_profile(profile)
        # Not for security: a seeded generator makes emulated delays repeatable in tests.
        self._rng = random.Random(seed)
        self.stats = LinkStats()
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # schedules and outage restores
        self._outage_task: asyncio.Task[None] | None = None
        self._outage_until = 0.0
        self._outage_cut = asyncio.Event()  # end_outage(): restore now
        self._stopping = False
        self._target_down = False

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The port clients connect to (the one picked when ``listen`` asked for port 0)."""
        return self._listen[1]

    @property
    def profile(self) -> LinkProfile:
        return self._profile

    @property
    def in_outage(self) -> bool:
        """True from the start of an outage until the listener accepts again."""
        return self._outage_task is not None and not self._outage_task.done()

    async def start(self) -> None:
        """Bind the listener; with port 0 a free port is picked and kept for later rebinding."""
        if self._server is not None:
            raise RuntimeError("the link emulator is already started")
        self._stopping = False
        self._server = await self._bind()
        self._listen = (self._listen[0], self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Close the listener and every connection, and cancel and await every task."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
            self._server = None
        for connection in list(self._connections):
            connection.abort()
        await cancel_and_wait([*self._handlers, *self._tasks])

    def set_profile(self, profile: LinkProfile | str) -> None:
        """Switch profile; it applies to chunks read from now on and to reset timers."""
        new = resolve_profile(profile)
        log.info("link profile %s -> %s", self._profile.name, new.describe())
        self._profile = new
        self.stats.profile_changes += 1
        for connection in self._connections:
            self._arm_reset(connection)  # resets are memoryless: drawing anew is exact

    async def outage(self, seconds: float) -> None:
        """Start an outage of ``seconds`` (or extend the running one) and return at once."""
        if self._server is None and not self.in_outage:
            raise RuntimeError("start the link emulator before an outage")
        if seconds <= 0:
            raise ValueError(f"an outage lasts more than 0 s, not {seconds}")
        until = asyncio.get_running_loop().time() + seconds
        if self.in_outage:
            if until > self._outage_until:
                self._outage_until = until
                log.info("link outage extended: down for %.1f s more", seconds)
            return
        self._outage_until = until
        self.stats.outages += 1
        connections = list(self._connections)
        log.warning(
            "link outage: down for %.1f s, dropping %d connection(s)", seconds, len(connections)
        )
        assert self._server is not None
        self._server.close()  # new clients now get "connection refused" from the kernel
        self._server = None
        for connection in connections:
            self.stats.dropped_by_outage += 1
            connection.abort()
        self._outage_task = self._track(self._restore_after_outage())

    def end_outage(self) -> None:
        """End the running outage now (a test that waits for something, not for a time)."""
        if self.in_outage:
            self._outage_until = 0.0
            self._outage_cut.set()

    async def wait_online(self) -> None:
        """Return once no outage is running (at once if none is)."""
        if self._outage_task is not None:
            await asyncio.shield(self._outage_task)

    def run_schedule(self, events: list[ScheduleEvent]) -> asyncio.Task[None]:
        """Apply ``events`` at their offsets from now; the task ends after the last one."""
        return self._track(self._play(sorted(events, key=lambda event: event.at)))

    # The pumps of a connection call these three.

    def chunk_limit(self) -> int:
        bandwidth = self._profile.bandwidth_bps
        if bandwidth is None:
            return _MAX_CHUNK
        return max(_MIN_CHUNK, min(_MAX_CHUNK, int(bandwidth / 8 * _CHUNK_SECONDS)))

    def delivery_time(self, direction: _Direction, size: int) -> float:
        """When a chunk read now may be written out (loop time); records the sampled delay."""
        profile = self._profile
        sent = asyncio.get_running_loop().time()
        if profile.bandwidth_bps is not None:
            direction.next_free = max(sent, direction.next_free) + size * 8 / profile.bandwidth_bps
            sent = direction.next_free
        delay = self._sample_delay(profile)
        direction.delays.record(delay)
        direction.last_delivery = max(direction.last_delivery, sent + delay)
        return direction.last_delivery

    def count_delivered(self, direction: _Direction, size: int) -> None:
        if direction.up:
            self.stats.bytes_up += size
        else:
            self.stats.bytes_down += size

    def _sample_delay(self, profile: LinkProfile) -> float:
        if profile.jitter_ms == 0:
            return profile.latency_ms / 1000
        return max(0.0, self._rng.gauss(profile.latency_ms, profile.jitter_ms)) / 1000

    async def _bind(self) -> asyncio.Server:
        return await asyncio.start_server(self._on_client, *self._listen)

    def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback that starts our own task: asyncio 3.11 logs an error when it cancels
        # a coroutine callback's task, and a task made here is tracked before it can be lost.
        if self._stopping:  # accepted by the kernel just before stop() closed the listener
            _reset(writer)
            return
        task = asyncio.create_task(self._serve(reader, writer))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Join one client to the target; every way out leaves the client's socket closed."""
        try:
            if self._refusing():
                self.stats.refused += 1
                return
            target = await self._connect_target()
            if target is None:
                self.stats.target_failures += 1
                return
            if self._refusing():  # the link went down while we were connecting
                self.stats.dropped_by_outage += 1
                _reset(target[1])
                return
            await self._run_connection(_Connection(self, (reader, writer), target))
        finally:
            if not writer.transport.is_closing():  # refused, or cancelled before joining
                _reset(writer)

    async def _run_connection(self, connection: _Connection) -> None:
        self.stats.accepted += 1
        self._connections.add(connection)
        self._arm_reset(connection)
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)

    def _refusing(self) -> bool:
        return self._stopping or self.in_outage

    async def _connect_target(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT):
                streams = await asyncio.open_connection(*self._target)
        except OSError as exc:  # refused, unreachable or timed out (TimeoutError is an OSError)
            if not self._target_down:
                self._target_down = True
                log.warning("link target %s:%d unreachable: %s", *self._target, exc)
            return None
        if self._target_down:
            self._target_down = False
            log.info("link target %s:%d reachable again", *self._target)
        return streams

    def _arm_reset(self, connection: _Connection) -> None:
        if connection.reset_timer is not None:
            connection.reset_timer.cancel()
            connection.reset_timer = None
        rate_per_s = self._profile.loss_reset_per_min / 60
        if rate_per_s > 0 and not connection.closed:
            after = self._rng.expovariate(rate_per_s)
            loop = asyncio.get_running_loop()
            connection.reset_timer = loop.call_later(after, self._random_reset, connection)

    def _random_reset(self, connection: _Connection) -> None:
        if not connection.closed:
            self.stats.reset_random += 1
            connection.abort()

    async def _restore_after_outage(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._outage_cut.clear()
        while (remaining := self._outage_until - loop.time()) > 0:
            # Loop: a second outage() may have extended it; end_outage() cuts it short.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outage_cut.wait(), remaining)
        warned = False
        while self._server is None:
            try:
                self._server = await self._bind()
            except OSError as exc:  # someone took the port meanwhile; keep trying, warn once
                if not warned:
                    warned = True
                    log.warning(
                        "link cannot listen on %s:%d again: %s; retrying", *self._listen, exc
                    )
                await asyncio.sleep(_REBIND_RETRY)
        log.warning("link outage over after %.1f s; accepting connections", loop.time() - started)

    async def _play(self, events: list[ScheduleEvent]) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for event in events:
            if (wait := start + event.at - loop.time()) > 0:
                await asyncio.sleep(wait)
            if event.outage is not None:
                await self.outage(event.outage)
            elif event.profile is not None:
                self.set_profile(event.profile)

    def _track(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST, as a dropped link does, not with an orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None and not writer.transport.is_closing():
        # Linger on, timeout 0: close() then discards unsent data and sends RST. A socket the
        # peer already broke may refuse the option; it is closed below all the same.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def parse_hostport(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (``"[::1]:1883"`` for IPv6) -> ``(host, port)``; ValueError if bad.

    >>> parse_hostport("127.0.0.1:1883"), parse_hostport("[::1]:0")
    (('127.0.0.1', 1883), ('::1', 0))
    """
    match = _HOSTPORT.match(text.strip())
    port = int(match["port"]) if match else -1
    if match is None or port > 65535:
        raise ValueError(
            f"expected HOST:PORT with a port 0-65535, like 127.0.0.1:1883 or [::1]:1883,"
            f" not {text!r}"
        )
    return match["v6"] or match["host"], port


async def run_link(
    listen: str,
    target: str,
    profile: str,
    schedule: str | None = None,
    *,
    seed: int | None = None,
) -> None:
    """Run a link emulator from ``listen`` to ``target`` (``"HOST:PORT"``) until cancelled."""
    listen_at, target_at = parse_hostport(listen), parse_hostport(target)
    events = load_schedule(schedule) if schedule is not None else []
    async with LinkEmulator(listen_at, target_at, profile, seed=seed) as link:
        plan = f", schedule {schedule} ({len(events)} events)" if schedule else ""
        where = f"{listen_at[0]}:{link.port} -> {target_at[0]}:{target_at[1]}"
        log.info("link emulator on %s, profile %s%s", where, link.profile.describe(), plan)
        if events:
            link.run_schedule(events)
        await asyncio.Event().wait()  # serve until cancelled; stop() runs on the way out
