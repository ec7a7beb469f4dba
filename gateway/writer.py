"""The batching writer: lines from many messages into InfluxDB writes, several in flight, with
InfluxDB's answers sorted the way the best writers sort them.

* accepted: the messages behind the lines can be acknowledged;
* 400 (bad request): the batch is split in halves until the bad lines stand alone; they are
  dead-lettered with InfluxDB's reason, the rest is written;
* 413 (too large): split likewise;
* 401/403: a wrong token or password will not fix itself -- the gateway stops with a clear error
  and the broker keeps the messages;
* 429, 5xx, timeouts: retried with backoff, honouring ``Retry-After``; if InfluxDB still does not
  take them, the batch goes to the spool;
* unreachable: the batch goes to the disk spool (and so does every batch after it, to keep the
  order) until a replay task finds InfluxDB back and drains the spool, oldest first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.ack import Delivery
from gateway.spool import Spool, SpoolFullError
from plantwire.backoff import Backoff
from plantwire.logs import LogOnce
from plantwire.store.base import LineWriter
from plantwire.store.influx import WriteOutcome, WriteResult

__all__ = ["InfluxUnauthorizedError", "Writer"]

log = logging.getLogger("plantwire.gateway.writer")
RETRY_ATTEMPTS = 5
ROOM_CHECK_S = 5.0  # a full spool is measured again this often while intake waits
RETRY_MAX_WAIT_S = 30.0


class InfluxUnauthorizedError(Exception):
    """InfluxDB refused the credentials: nothing to retry, the gateway must stop."""


@dataclass
class _Batch:
    lines: list[str] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)


@dataclass
class WriterStats:
    lines_written: int = 0
    writes: int = 0
    spooled_lines: int = 0
    bad_lines: int = 0
    retries: int = 0
    held_lines: int = 0  # lines held in memory: InfluxDB down and the spool's disk full


class Writer:
    def __init__(
        self,
        influx: LineWriter,
        spool: Spool,
        *,
        release: Callable[[Delivery], None],
        dead_line: Callable[[str, str], None],
        max_lines: int,
        max_latency_s: float,
        max_in_flight: int,
        on_write: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self.influx = influx
        self.spool = spool
        self._release = release
        self._dead_line = dead_line  # (line, reason): publish a dead letter for one refused line
        self._on_write = on_write  # seconds an accepted write took (the latency histogram)
        self.max_lines = max_lines
        self.max_latency_s = max_latency_s
        self._slots = asyncio.Semaphore(max_in_flight)
        self._batch = _Batch()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self.influx_up = True
        self.fatal: str | None = None
        self.stats = WriterStats()
        self._once = LogOnce(log)
        self._room = asyncio.Event()
        self._room.set()
        self._last_done = self._busy_since = time.monotonic()  # see stalled_s

    # -- intake -----------------------------------------------------------------------------------
    def add(self, lines: list[str], delivery: Delivery) -> None:
        """Queue a message's lines; its delivery is released once they are safe."""
        delivery.hold()
        batch = self._batch
        batch.lines.extend(lines)
        batch.deliveries.append(delivery)
        if len(batch.lines) >= self.max_lines:
            self._dispatch()

    def add_own(self, lines: list[str]) -> None:
        """Queue lines the gateway produced itself (its pipeline report): nothing to acknowledge.

        Skipped while the spool is full: the cap bounds the disk whoever writes to it, and a
        report is a snapshot of counters that the next one repeats.
        """
        if self.spool.full:
            return
        self._batch.lines.extend(lines)
        if len(self._batch.lines) >= self.max_lines:
            self._dispatch()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def flush(self) -> None:
        """Send the open batch now: nothing more is coming until its messages are acknowledged
        (the gateway's window is full), so waiting for the batch latency would only idle."""
        self._dispatch()

    def stalled_s(self) -> float:
        """Seconds that writes have been waiting on InfluxDB without one completing (0 when
        nothing waits): what /healthz judges, whatever the socket says."""
        if not self._tasks and not self.spool.batches:
            return 0.0
        return time.monotonic() - max(self._last_done, self._busy_since)

    async def wait_for_room(self) -> None:
        """Back-pressure: wait while the spool is full (the broker keeps what we do not take)."""
        while self.spool.full:
            self._once.problem(
                "spool-full",
                "spool %s is full (%d bytes on disk); not taking messages until it drains",
                self.spool.path,
                self.spool.disk_bytes,
            )
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), ROOM_CHECK_S)
            self.spool.refresh()  # its disk may have room again without a replay
        self._once.recovered("spool-full", "spool has room again; taking messages")

    def _dispatch(self) -> None:
        batch, self._batch = self._batch, _Batch()
        if batch.lines:
            if not self._tasks and not self.spool.batches:
                self._busy_since = time.monotonic()
            task = asyncio.create_task(self._deliver(batch))
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            if isinstance(error, InfluxUnauthorizedError):
                self.fatal = str(error)
            else:
                log.error("a write failed unexpectedly", exc_info=error)
            self._wake.set()

    # -- writing ----------------------------------------------------------------------------------
    async def _deliver(self, batch: _Batch) -> None:
        async with self._slots:
            if self.spool.batches or not self.influx_up:
                await self._to_spool(batch.lines)
            else:
                await self._write(batch.lines, spool_on_failure=True)
        for delivery in batch.deliveries:
            self._release(delivery)

    async def _to_spool(self, lines: list[str]) -> None:
        """Spool lines; on a full disk, hold them here (intake is paused, so this is bounded by
        the window) and retry -- InfluxDB directly, then the spool -- until one takes them."""
        body = "\n".join(lines).encode()
        backoff = Backoff(0.5, 10.0)
        held = 0
        try:
            while True:
                try:
                    self.spool.push(body, len(lines))
                except SpoolFullError:
                    self.stats.held_lines += len(lines) - held
                    held = len(lines)
                    await asyncio.sleep(backoff.next_delay())
                    if await self._write(lines, spool_on_failure=False):
                        return
                    continue
                self.stats.spooled_lines += len(lines)
                self._wake.set()
                return
        finally:
            self.stats.held_lines -= held

    async def _write(self, lines: list[str], *, spool_on_failure: bool) -> bool:
        """Write lines; True when they are dealt with (written, dead-lettered or spooled)."""
        body = "\n".join(lines).encode()
        backoff = Backoff(0.2, RETRY_MAX_WAIT_S)
        for attempt in range(RETRY_ATTEMPTS):
            started = time.monotonic()
            result = await self.influx.write(body)
            outcome = result.outcome
            if outcome is WriteOutcome.OK:
                self.stats.writes += 1
                self.stats.lines_written += len(lines)
                self._last_done = time.monotonic()
                self._on_write(self._last_done - started)
                self._up()
                return True
            if outcome is WriteOutcome.UNAUTHORIZED:
                raise InfluxUnauthorizedError(
                    f"InfluxDB refused the gateway's credentials ({result.status}): "
                    f"{result.message}"
                )
            if outcome in (WriteOutcome.BAD_REQUEST, WriteOutcome.TOO_LARGE):
                self._up()
                return await self._split(lines, result)
            if outcome is WriteOutcome.UNREACHABLE:
                break
            self.stats.retries += 1
            wait = (
                result.retry_after_s if result.retry_after_s is not None else backoff.next_delay()
            )
            log.debug(
                "InfluxDB asked to retry (%s %s); attempt %d in %.1f s",
                result.status,
                result.message,
                attempt + 1,
                wait,
            )
            await asyncio.sleep(min(wait, RETRY_MAX_WAIT_S))
        self._down(result)
        if spool_on_failure:
            await self._to_spool(lines)
            return True
        return False

    async def _split(self, lines: list[str], result: WriteResult) -> bool:
        if len(lines) == 1:
            self.stats.bad_lines += 1
            reason = f"InfluxDB refused the line ({result.status}): {result.message}"
            self._dead_line(lines[0], reason)
            return True
        middle = len(lines) // 2
        first = await self._write(lines[:middle], spool_on_failure=True)
        second = await self._write(lines[middle:], spool_on_failure=True)
        return first and second

    def _up(self) -> None:
        if not self.influx_up:
            self.influx_up = True
            self._once.recovered("influx", "InfluxDB is taking writes again; replaying the spool")
            self._wake.set()

    def _down(self, result: WriteResult) -> None:
        self.influx_up = False
        self._once.problem(
            "influx",
            "InfluxDB unavailable (%s); spooling to %s",
            result.message or result.outcome,
            self.spool.path,
        )

    # -- the loop: latency flushes and spool replay -----------------------------------------------
    async def run(self) -> None:
        """Flush batches that waited long enough, and replay the spool when InfluxDB is back."""
        backoff = Backoff(0.5, 10.0)
        while self.fatal is None:
            if self._batch.lines and time.monotonic() - self._batch.started >= self.max_latency_s:
                self._dispatch()
            if self.spool.batches and not self._tasks:
                if await self._replay_one():
                    backoff.reset()
                    continue
                await asyncio.sleep(backoff.next_delay())
                continue
            self._wake.clear()
            timeout = self.max_latency_s
            if self._batch.lines:
                timeout = max(0.001, self.max_latency_s - (time.monotonic() - self._batch.started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
        raise InfluxUnauthorizedError(self.fatal)

    async def _replay_one(self) -> bool:
        head = self.spool.head()
        if head is None:
            return True
        batch_id, body, _ = head
        lines = body.decode().split("\n")
        async with self._slots:
            written = await self._write(lines, spool_on_failure=False)
        if written:
            self.spool.pop(batch_id)
            if not self.spool.full:
                self._room.set()
        return written

    async def drain(self, timeout_s: float) -> bool:
        """Write what is waiting (for a clean stop); True if nothing is left in memory."""
        self._dispatch()
        deadline = time.monotonic() + timeout_s
        while self._tasks and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return not self._tasks
