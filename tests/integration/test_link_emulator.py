"""The link emulator on real sockets: a small echo server or sink on 127.0.0.1 behind it.

Time is only asserted where physics guarantees it (a delay or a bandwidth cap cannot make things
faster); upper bounds on wall time are generous, because CI machines are slow and shared.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from simulators.link import (
    PROFILES,
    LinkEmulator,
    LinkProfile,
    ScheduleEvent,
    load_schedule,
    parse_hostport,
    run_link,
)

LOCAL = "127.0.0.1"
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def run(scenario: Coroutine[Any, Any, None], timeout: float = 20.0) -> None:
    """Run one scenario on a fresh event loop; a hang fails the test instead of the suite."""
    asyncio.run(asyncio.wait_for(scenario, timeout))


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[int]:
    """A server on a free port running ``handler`` per connection; yields the port.

    Handler tasks are our own, and cancelled and awaited on the way out, so no test leaves a
    task or a socket behind for the next one.
    """
    tasks: set[asyncio.Task[None]] = set()

    def start(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(guarded(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except ConnectionError:
            pass  # the emulator resets connections on purpose in several tests
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(start, LOCAL, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.write_eof()  # answer a half-close with one, so the client sees the end
    await writer.drain()


def echo_server() -> AbstractAsyncContextManager[int]:
    return serve(echo)


class Sink:
    """A server handler that counts what it receives and says when ``expected`` bytes came."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.received = 0
        self.done = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            self.received += len(data)
            if self.received >= self.expected:
                self.done.set()


async def connect(port: int) -> Streams:
    return await asyncio.open_connection(LOCAL, port)


async def roundtrip(streams: Streams, line: bytes) -> bytes:
    reader, writer = streams
    writer.write(line)
    await writer.drain()
    return await reader.readline()


async def reset_by_peer(reader: asyncio.StreamReader) -> bool:
    """True once the other side resets the connection (an orderly end or data is False)."""
    try:
        await reader.read(1)
    except ConnectionResetError:
        return True
    return False


def link_tasks() -> list[asyncio.Task[Any]]:
    """Tasks of the emulator still alive: after stop() there must be none."""
    owners = ("LinkEmulator.", "_Connection.")
    return [
        t
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "__qualname__", "").startswith(owners)
    ]


def test_ideal_link_passes_bytes_unchanged_and_in_order() -> None:
    payload = random.Random(1).randbytes(2_000_000)

    async def scenario() -> None:
        async with echo_server() as port, LinkEmulator((LOCAL, 0), (LOCAL, port)) as link:
            reader, writer = await connect(link.port)

            async def send() -> None:
                for start in range(0, len(payload), 7919):  # a prime: writes straddle reads
                    writer.write(payload[start : start + 7919])
                    await writer.drain()
                writer.write_eof()  # the half-close must travel through and back

            sender = asyncio.create_task(send())
            received = await reader.read(-1)
            await sender
            writer.close()
        assert received == payload
        assert link.stats.bytes_up == link.stats.bytes_down == len(payload)
        assert link.stats.accepted == 1 and link.stats.peer_errors == 0
        assert link_tasks() == []

    run(scenario())


def test_added_delay_stays_within_the_profile() -> None:
    profile = LinkProfile("test-50ms", latency_ms=50, jitter_ms=5)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with (
            echo_server() as port,
            LinkEmulator((LOCAL, 0), (LOCAL, port), profile, seed=11) as link,
        ):
            streams = await connect(link.port)
            rtts = []
            for number in range(20):
                started = loop.time()
                assert await roundtrip(streams, b"ping %02d\n" % number) == b"ping %02d\n" % number
                rtts.append(loop.time() - started)
            streams[1].close()
        # Each direction adds ~50 ms, so a round trip is ~100 ms (jitter ±7 ms for both).
        assert all(0.080 <= rtt <= 0.250 for rtt in rtts), rtts
        assert 0.090 <= sum(rtts) / len(rtts) <= 0.140, rtts
        for delays in (link.stats.delays_up, link.stats.delays_down):
            assert delays.count >= 20
            assert all(0 <= delay <= 0.050 + 6 * 0.005 for delay in delays.recent)
            assert 0.045 <= delays.mean <= 0.055

    run(scenario())


def test_bandwidth_cap_limits_throughput() -> None:
    size = 200_000  # 1.6 Mbit at 800 kbit/s: at least 2 s on the link
    profile = LinkProfile("test-800k", bandwidth_kbps=800)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        sink = Sink(size)
        async with (
            serve(sink.handle) as port,
            LinkEmulator((LOCAL, 0), (LOCAL, port), profile) as link,
        ):
            _reader, writer = await connect(link.port)
            started = loop.time()
            for _ in range(size // 10_000):
                writer.write(bytes(10_000))
                await writer.drain()
            await sink.done.wait()
            elapsed = loop.time() - started
            writer.close()
        assert 1.6 <= elapsed <= 10.0, elapsed
        assert sink.received == link.stats.bytes_up == size

    run(scenario())


def test_outage_drops_refuses_and_then_restores(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="plantwire.sim.link")

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with echo_server() as port, LinkEmulator((LOCAL, 0), (LOCAL, port)) as link:
            before = await connect(link.port)
            assert await roundtrip(before, b"before\n") == b"before\n"

            started = loop.time()
            await link.outage(1.0)
            assert link.in_outage
            assert await reset_by_peer(before[0])
            before[1].close()
            with pytest.raises(ConnectionRefusedError):
                await connect(link.port)

            await link.wait_online()
            assert not link.in_outage
            assert loop.time() - started >= 0.95
            after = await connect(link.port)
            assert await roundtrip(after, b"after\n") == b"after\n"
            after[1].close()
        assert link.stats.outages == 1 and link.stats.dropped_by_outage == 1
        assert link.stats.accepted == 2
        assert link_tasks() == []

    run(scenario())
    logged = [r.getMessage() for r in caplog.records if r.name == "plantwire.sim.link"]
    outage_lines = [line for line in logged if "outage" in line]
    assert len(outage_lines) == 2, outage_lines  # one when it starts, one when it ends


def test_a_second_outage_call_extends_the_first() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with echo_server() as port, LinkEmulator((LOCAL, 0), (LOCAL, port)) as link:
            started = loop.time()
            await link.outage(0.2)
            await link.outage(0.6)
            await link.wait_online()
            assert loop.time() - started >= 0.55
        assert link.stats.outages == 1

    run(scenario())


def test_schedule_switches_profile_and_runs_an_outage() -> None:
    events = [ScheduleEvent(at=0.2, outage=0.5), ScheduleEvent(at=0.1, profile=PROFILES["lte"])]

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with echo_server() as port, LinkEmulator((LOCAL, 0), (LOCAL, port)) as link:
            streams = await connect(link.port)
            assert await roundtrip(streams, b"hello\n") == b"hello\n"
            started = loop.time()
            await link.run_schedule(events)  # ends once the last event has been applied
            assert loop.time() - started >= 0.19
            assert link.in_outage and link.profile.name == "lte"
            assert await reset_by_peer(streams[0])
            streams[1].close()
            await link.wait_online()
            assert loop.time() - started >= 0.65
        stats = link.stats
        assert (stats.profile_changes, stats.outages, stats.dropped_by_outage) == (1, 1, 1)

    run(scenario())


def test_load_schedule_reads_offsets_and_durations(tmp_path: Path) -> None:
    path = tmp_path / "schedule.yaml"
    path.write_text(
        "- {at: 1m, profile: lte-degraded}\n"
        "- {at: 0.2, outage: 500ms}\n"
        "- at: 1h30m\n"
        "  outage: 90s\n"
    )
    assert load_schedule(path) == [
        ScheduleEvent(at=0.2, outage=0.5),
        ScheduleEvent(at=60.0, profile=PROFILES["lte-degraded"]),
        ScheduleEvent(at=5400.0, outage=90.0),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- {at: soon, outage: 5}\n", r"schedule\.yaml:1:\d+: \[0\]\.at: .*'soon'"),
        ("- {at: 5, profile: 6g}\n", r"unknown link profile '6g'; known: ideal, 5g-urllc"),
        ("- {at: 5}\n", "exactly one of 'outage' or 'profile'"),
        ("- {at: 5, outage: 0}\n", "'outage' must last more than 0 s"),
        ("- {at: 5, outage: 2, profile: lte}\n", "exactly one of"),
        ("- {at: 5, outage: 2, when: now}\n", r"unknown key\(s\) \['when'\]"),
        ("- {at: -3, outage: 2}\n", ">= 0"),
        ("at: 5\noutage: 2\n", "a schedule is a list of events"),
        ("- [at, 5]\n", "an event is a mapping"),
        ("- {at: 5, outage: [\n", "YAML syntax"),
        ("", "empty"),
    ],
)
def test_bad_schedule_file_names_the_file_and_the_problem(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "schedule.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=expected) as caught:
        load_schedule(path)
    assert str(path) in str(caught.value)


def test_every_bad_event_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "schedule.yaml"
    path.write_text("- {at: 1, outage: 2}\n- {at: x, outage: 2}\n- {at: 3, profile: 6g}\n")
    with pytest.raises(ValueError, match=r"(?s):2:.*'x'.*:3:.*'6g'"):
        load_schedule(path)


def test_random_resets_are_counted_and_the_link_keeps_serving() -> None:
    flaky = LinkProfile("flaky", loss_reset_per_min=1200)  # a connection lives ~50 ms

    async def scenario() -> None:
        async with (
            echo_server() as port,
            LinkEmulator((LOCAL, 0), (LOCAL, port), flaky, seed=7) as link,
        ):
            for _ in range(5):
                reader, writer = await connect(link.port)
                assert await reset_by_peer(reader)
                writer.close()
            assert link.stats.reset_random == 5
            link.set_profile("ideal")
            streams = await connect(link.port)
            assert await roundtrip(streams, b"still here\n") == b"still here\n"
            streams[1].close()
        assert link.stats.accepted == 6 and link.stats.reset_random == 5
        assert link_tasks() == []

    run(scenario())


def test_order_and_integrity_survive_large_jitter() -> None:
    jittery = LinkProfile("jittery", latency_ms=5, jitter_ms=20)
    lines = [b"%05d\n" % number for number in range(300)]

    async def scenario() -> None:
        async with (
            echo_server() as port,
            LinkEmulator((LOCAL, 0), (LOCAL, port), jittery, seed=3) as link,
        ):
            reader, writer = await connect(link.port)

            async def send() -> None:
                for line in lines:
                    writer.write(line)
                    await writer.drain()
                    await asyncio.sleep(0.001)  # separate chunks, so each gets its own delay

            sender = asyncio.create_task(send())
            received = [await reader.readline() for _ in lines]
            await sender
            writer.close()
        assert received == lines
        delays = link.stats.delays_up
        # Enough chunks with spread-out delays that a reordering link would have shown it.
        assert delays.count >= 50 and delays.maximum - delays.minimum > 0.020

    run(scenario())


def test_a_peer_reset_mid_stream_is_counted_and_the_link_serves_on() -> None:
    async def scenario() -> None:
        target_reset = asyncio.Event()

        async def echo_noting_reset(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            try:
                await echo(reader, writer)
            except ConnectionResetError:
                target_reset.set()

        async with (
            serve(echo_noting_reset) as port,
            LinkEmulator((LOCAL, 0), (LOCAL, port), "5g-urllc") as link,
        ):
            client = await connect(link.port)
            assert await roundtrip(client, b"hi\n") == b"hi\n"
            sock = client[1].get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client[1].transport.abort()  # the client side RSTs mid-conversation
            await target_reset.wait()  # and the emulator passes the reset on
            assert link.stats.peer_errors == 1
            streams = await connect(link.port)
            assert await roundtrip(streams, b"next\n") == b"next\n"
            streams[1].close()
        assert link_tasks() == []

    run(scenario())


def test_stop_during_an_outage_leaves_nothing_running() -> None:
    async def scenario() -> None:
        async with echo_server() as port, LinkEmulator((LOCAL, 0), (LOCAL, port)) as link:
            streams = await connect(link.port)
            assert await roundtrip(streams, b"x\n") == b"x\n"
            await link.outage(30)
        assert link_tasks() == []
        assert await reset_by_peer(streams[0])
        streams[1].close()

    run(scenario())


class LogSeen(logging.Handler):
    """An event set when a record containing ``text`` is logged: something to await."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.messages: list[str] = []
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in (message := record.getMessage()):
            self.messages.append(message)
            self.seen.set()


def test_run_link_logs_a_start_line_and_stops_when_cancelled(tmp_path: Path) -> None:
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text("- {at: 1h, outage: 1m}\n")
    logger = logging.getLogger("plantwire.sim.link")

    async def scenario() -> None:
        started = LogSeen("link emulator on")
        logger.addHandler(started)
        logger.setLevel(logging.INFO)
        try:
            task = asyncio.create_task(run_link(f"{LOCAL}:0", f"{LOCAL}:1", "lte", str(schedule)))
            await started.seen.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            logger.removeHandler(started)
            logger.setLevel(logging.NOTSET)
        assert link_tasks() == []
        assert "profile lte (45 ms ±15" in started.messages[0]
        assert "(1 events)" in started.messages[0]

    run(scenario(), timeout=5)


def test_run_link_refuses_a_bad_address() -> None:
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        asyncio.run(run_link("localhost", f"{LOCAL}:1883", "ideal"))


def test_unreachable_target_resets_the_client_and_is_counted() -> None:
    async def scenario() -> None:
        server = await asyncio.start_server(lambda r, w: None, LOCAL, 0)
        dead_port = server.sockets[0].getsockname()[1]
        server.close()  # nothing listens there now
        async with LinkEmulator((LOCAL, 0), (LOCAL, dead_port)) as link:
            reader, writer = await connect(link.port)
            assert await reset_by_peer(reader)
            writer.close()
        assert link.stats.target_failures == 1 and link.stats.accepted == 0

    run(scenario())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:1883", ("127.0.0.1", 1883)),
        ("[::1]:0", ("::1", 0)),
        ("broker:8883", ("broker", 8883)),
    ],
)
def test_parse_hostport(text: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(text) == expected


@pytest.mark.parametrize("text", ["1883", "host:", "host:99999", ":1883", "a b:1", "::1:1883"])
def test_parse_hostport_refuses_bad_input(text: str) -> None:
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        parse_hostport(text)


def test_unknown_profile_and_bad_figures_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown link profile 'wifi7'"):
        LinkEmulator((LOCAL, 0), (LOCAL, 1), "wifi7")
    with pytest.raises(ValueError, match="jitter_ms must be >= 0"):
        LinkProfile("bad", jitter_ms=-1)
    with pytest.raises(ValueError, match="bandwidth_kbps must be > 0"):
        LinkProfile("bad", bandwidth_kbps=0)
