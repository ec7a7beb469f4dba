"""Gateway parts on their own: acknowledgement order, the writer's sorting of InfluxDB answers
(with a scripted writer), the spool and back-pressure, sequence tracking, intake, edge clocks."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from pw_faults import fill_disk

from gateway.ack import AckTracker
from gateway.clocks import ClockWatch
from gateway.intake import Intake, SequenceTracker
from gateway.sparkplug_host import SparkplugIngest
from gateway.spool import Spool
from gateway.writer import InfluxUnauthorizedError, Writer
from plantwire.codec import encode_batch
from plantwire.codec.sparkplug import DataType, Metric, Payload, bdseq_metric, encode
from plantwire.metrics import Registry
from plantwire.model import AssetPath, Batch, Sample
from plantwire.store.influx import WriteOutcome, WriteResult
from plantwire.topics import data_topic


class FakeMessage:
    def __init__(self, mid: int, qos: int = 1) -> None:
        self.mid = mid
        self.qos = qos


def test_messages_are_acknowledged_in_arrival_order() -> None:
    acked: list[int] = []
    tracker = AckTracker(lambda message: acked.append(message.mid))
    first, second, third = (tracker.receive(FakeMessage(i)) for i in (1, 2, 3))  # type: ignore[arg-type]
    second.hold()
    tracker.release(second)  # processing done, still holding its write
    tracker.release(third)
    assert acked == []  # the first is not done yet
    tracker.release(first)
    assert acked == [1]
    tracker.release(second)
    assert acked == [1, 2, 3]


def test_deliveries_of_an_old_connection_are_never_acknowledged() -> None:
    acked: list[int] = []
    tracker = AckTracker(lambda message: acked.append(message.mid))
    old = tracker.receive(FakeMessage(7))  # type: ignore[arg-type]
    tracker.new_connection()
    tracker.release(old)
    assert acked == []


class ScriptedInflux:
    """Answers writes from a script; a line containing 'bad' makes a 400."""

    def __init__(self, script: list[WriteResult] | None = None) -> None:
        self.script = list(script or [])
        self.bodies: list[bytes] = []

    async def write(self, body: bytes) -> WriteResult:
        self.bodies.append(body)
        if self.script:
            return self.script.pop(0)
        if b"bad" in body:
            return WriteResult(
                WriteOutcome.BAD_REQUEST, 400, "unable to parse 'bad': invalid field format"
            )
        return WriteResult(WriteOutcome.OK, 204, "")


def make_writer(
    tmp_path: Path, influx: ScriptedInflux, *, max_bytes: int = 10**8
) -> tuple[Writer, list[Any], list[tuple[str, str]]]:
    released: list[Any] = []
    dead: list[tuple[str, str]] = []
    writer = Writer(
        influx,
        Spool(tmp_path / "spool.db", max_bytes=max_bytes),
        release=released.append,
        dead_line=lambda line, reason: dead.append((line, reason)),
        max_lines=4,
        max_latency_s=0.01,
        max_in_flight=2,
    )
    return writer, released, dead


def deliveries(n: int) -> list[Any]:
    tracker = AckTracker(lambda message: None)
    return [tracker.receive(FakeMessage(i)) for i in range(n)]  # type: ignore[arg-type]


def test_a_bad_request_is_split_until_only_the_bad_lines_are_dead_lettered(tmp_path: Path) -> None:
    influx = ScriptedInflux()
    writer, released, dead = make_writer(tmp_path, influx)

    async def scenario() -> None:
        for delivery in deliveries(1):
            writer.add(["ok1 f=1 1", "bad", "ok2 f=1 2", "ok3 f=1 3"], delivery)
        assert await writer.drain(5)

    asyncio.run(scenario())
    assert [line for line, _ in dead] == ["bad"]
    assert "invalid field format" in dead[0][1]
    assert writer.stats.lines_written == 3 and len(released) == 1


def test_unauthorized_stops_the_gateway(tmp_path: Path) -> None:
    influx = ScriptedInflux([WriteResult(WriteOutcome.UNAUTHORIZED, 401, "authorization failed")])
    writer, released, _ = make_writer(tmp_path, influx)

    async def scenario() -> None:
        writer.add(["m f=1 1"] * 4, deliveries(1)[0])
        with pytest.raises(InfluxUnauthorizedError, match="401"):
            await writer.run()

    asyncio.run(scenario())
    assert released == []  # not acknowledged: the broker keeps the message


def test_retry_after_is_honoured_then_the_write_goes_through(tmp_path: Path) -> None:
    influx = ScriptedInflux(
        [WriteResult(WriteOutcome.RETRY, 429, "too many requests", retry_after_s=0.3)]
    )
    writer, released, _ = make_writer(tmp_path, influx)

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        writer.add(["m f=1 1"] * 4, deliveries(1)[0])
        assert await writer.drain(5)
        return loop.time() - started

    waited = asyncio.run(scenario())
    assert waited >= 0.3  # a lower bound the Retry-After guarantees, not a timing assertion
    assert len(influx.bodies) == 2 and writer.stats.retries == 1 and len(released) == 1


def test_unreachable_influx_spools_then_replays_in_order(tmp_path: Path) -> None:
    down = WriteResult(WriteOutcome.UNREACHABLE, None, "connection refused")
    influx = ScriptedInflux([down, down])
    writer, released, _ = make_writer(tmp_path, influx)

    async def scenario() -> None:
        runner = asyncio.create_task(writer.run())
        batches = deliveries(3)
        for n, delivery in enumerate(batches):
            writer.add(
                [f"m f={n} {n}0", f"m f={n} {n}1", f"m f={n} {n}2", f"m f={n} {n}3"], delivery
            )
        await writer.drain(5)
        assert len(released) == 3  # safe on disk: acknowledged
        for _ in range(200):
            if writer.spool.batches == 0:
                break
            await asyncio.sleep(0.05)
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)

    asyncio.run(scenario())
    assert writer.spool.batches == 0 and writer.influx_up
    written = influx.bodies[2:]
    assert [body.split(b" ")[1] for body in written] == [b"f=0", b"f=1", b"f=2"]  # oldest first


def test_a_full_spool_stops_intake_until_it_drains(tmp_path: Path) -> None:
    influx = ScriptedInflux([WriteResult(WriteOutcome.UNREACHABLE, None, "down")])
    writer, _, _ = make_writer(tmp_path, influx, max_bytes=10)

    async def scenario() -> tuple[bool, bool]:
        writer.add(["m f=1 1"] * 4, deliveries(1)[0])
        await writer.drain(5)
        assert writer.spool.full
        waiting = asyncio.create_task(writer.wait_for_room())
        await asyncio.sleep(0.1)
        blocked = not waiting.done()
        runner = asyncio.create_task(writer.run())  # InfluxDB answers again: the spool drains
        await asyncio.wait_for(waiting, 5)
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        return blocked, waiting.done()

    assert asyncio.run(scenario()) == (True, True)


def test_a_spool_on_a_full_disk_refuses_clearly_and_the_writer_holds_the_batch(
    small_disk: Callable[[str], Path],
) -> None:
    """Something else took the whole disk: the spool cannot take a batch (SpoolFullError, full,
    one log line); the writer keeps the lines, the message unacknowledged, until InfluxDB
    answers again -- then they are written and released, and nothing is spooled or lost."""
    disk = small_disk("256k")
    down = WriteResult(WriteOutcome.UNREACHABLE, None, "connection refused")
    influx = ScriptedInflux([down] * 3)
    released: list[Any] = []
    writer = Writer(
        influx,
        Spool(disk / "spool.db", max_bytes=10**9),
        release=released.append,
        dead_line=lambda line, reason: None,
        max_lines=4,
        max_latency_s=0.01,
        max_in_flight=2,
    )
    fill_disk(disk)

    async def scenario() -> tuple[bool, int, int]:
        writer.add([f"m f={n} {n}" for n in range(4)], deliveries(1)[0])
        for _ in range(100):  # the first write fails, the spool refuses, the lines are held
            await asyncio.sleep(0.02)
            if writer.stats.held_lines:
                break
        held = writer.stats.held_lines
        full, waiting = writer.spool.full, len(released)
        await writer.drain(30)  # InfluxDB answers again (the script runs out): written
        return full and waiting == 0, held, len(released)

    assert asyncio.run(scenario()) == (True, 4, 1)
    assert writer.stats.held_lines == 0 and writer.stats.spooled_lines == 0
    assert writer.stats.lines_written == 4 and writer.spool.batches == 0


def test_sequence_gaps_and_duplicates_are_counted() -> None:
    tracker = SequenceTracker()
    for seq in (0, 1, 2, 5, 5, 3, 6):
        tracker.observe("edge-a", seq)
    tracker.observe("edge-b", 100)
    assert (tracker.gaps, tracker.duplicates) == (2, 2)


def test_intake_keeps_good_samples_and_dead_letters_the_rest() -> None:
    asset = AssetPath("s", "a", "l", "m")
    good = encode_batch(Batch("edge", 0, asset, [Sample(1, "x", 1.5)]))
    doc = orjson.loads(good)
    doc["samples"].append({"t": 2, "m": "x", "v": [1]})
    intake = Intake(max_payload_bytes=10_000)
    result = intake.process(data_topic(asset), orjson.dumps(doc))
    assert result.lines == ["telemetry,area=a,line=l,machine=m,site=s x=1.5 1"]
    assert [letter.kind for letter in result.dead_letters] == ["samples"]
    letter = orjson.loads(result.dead_letters[0].payload)
    assert letter["samples"][0]["reason"].startswith("value must be")
    refused = intake.process("plantwire/v1/s/a/l/other/data", good)
    assert (
        refused.lines == []
        and "came on the topic of" in orjson.loads(refused.dead_letters[0].payload)["reason"]
    )


# -- edge clocks ---------------------------------------------------------------------------------

S = 1_000_000_000  # ns
T_CONNECT = 1_763_712_000 * S  # when the gateway connected, by its clock
TOLERANCE_S = 30


def clock_logs(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if r.name == "plantwire.gateway.clocks"
    ]


def live(
    watch: ClockWatch, edge: str, offset_s: float, start_s: float, seconds: int, per_s: int = 2
) -> list[bool]:
    """An edge publishing ``per_s`` batches a second, arriving 50 ms after they were sent."""
    flags = []
    for i in range(seconds * per_s):
        received = T_CONNECT + int((start_s + i / per_s) * S)
        flags.append(watch.observe(edge, received - 50_000_000 + int(offset_s * S), received))
    return flags


def test_an_edge_clock_ahead_is_flagged_at_once_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    registry = Registry()
    watch = ClockWatch(TOLERANCE_S, registry=registry)
    watch.connected(T_CONNECT)
    assert live(watch, "edge-ahead", +300, start_s=0, seconds=10) == [True] * 20
    assert live(watch, "edge-ok", 0, start_s=0, seconds=10) == [False] * 20
    assert watch.offset_s("edge-ahead") == pytest.approx(299.95)
    assert registry.value("plantwire_gateway_edge_clock_offset_seconds", edge="edge-ahead") == (
        pytest.approx(299.95)
    )
    assert registry.value("plantwire_gateway_edge_clock_skewed", edge="edge-ahead") == 1
    assert registry.value("plantwire_gateway_edge_clock_skewed", edge="edge-ok") == 0
    assert registry.value("plantwire_gateway_clock_skewed_batches_total", edge="edge-ahead") == 20
    assert registry.value("plantwire_gateway_clock_skewed_batches_total", edge="edge-ok") == 0
    assert clock_logs(caplog) == [
        (
            "WARNING",
            (
                "edge edge-ahead: clock 299.9 s ahead of the gateway's (tolerance 30 s); its "
                "samples are stored as stamped -- check the edge's time sync (NTP/chrony)"
            ),
        )
    ]


def test_an_edge_clock_behind_is_flagged_once_the_gateway_has_been_connected_a_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    watch = ClockWatch(TOLERANCE_S, window_s=60)
    watch.connected(T_CONNECT)
    flags = live(watch, "edge-behind", -300, start_s=0, seconds=90, per_s=1)
    # For the first window what arrives may be what the broker kept: behind is not judged yet.
    assert flags[:60] == [False] * 60 and flags[60:] == [True] * 30
    assert watch.offset_s("edge-behind") == pytest.approx(-300.05)
    assert [level for level, _ in clock_logs(caplog)] == ["WARNING"]
    assert "edge edge-behind: clock 300.1 s behind the gateway's" in clock_logs(caplog)[0][1]
    # Connected long ago: an edge that starts late is judged from its first batch.
    assert live(watch, "edge-late", -300, start_s=100, seconds=1) == [True, True]


def test_network_delays_and_jitter_do_not_flag_a_good_clock() -> None:
    watch = ClockWatch(TOLERANCE_S)
    watch.connected(T_CONNECT)
    rng = random.Random(7)
    for i in range(600):  # 10 minutes, one batch a second, most delayed, some by minutes
        received = T_CONNECT + i * S
        delay = rng.choice([0.02, 0.5, 5, 20, 45, 120]) * S
        assert not watch.observe("edge", received - int(delay), received)
    assert -1 < watch.offset_s("edge") <= 0


def test_a_backlog_after_a_gateway_restart_does_not_flag_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The broker kept two hours of an edge's batches for the gateway; they arrive first, then
    the live ones -- with a short and with a long (slower than the window) drain."""
    caplog.set_level(logging.INFO)
    for drain_s in (2, 150):
        watch = ClockWatch(TOLERANCE_S, window_s=60)
        watch.connected(T_CONNECT)
        backlog = 7200  # batches, one a second while the gateway was away
        for i in range(backlog):
            received = T_CONNECT + i * drain_s * S // backlog
            sent = T_CONNECT - (backlog - i) * S
            assert not watch.observe("edge", sent, received), (drain_s, i)
        assert live(watch, "edge", 0, start_s=drain_s, seconds=120) == [False] * 240
        assert watch.offset_s("edge") == pytest.approx(-0.05)
    assert clock_logs(caplog) == []


def test_a_backlog_then_a_clock_really_behind_is_flagged_after_the_backlog() -> None:
    watch = ClockWatch(TOLERANCE_S, window_s=60)
    watch.connected(T_CONNECT)
    for i in range(3600):  # an hour of backlog in 5 s
        watch.observe("edge", T_CONNECT - (3600 - i) * S, T_CONNECT + i * 5 * S // 3600)
    flags = live(watch, "edge", -300, start_s=5, seconds=120, per_s=1)
    assert not any(flags[:55]) and all(flags[66:])  # judged once the backlog left the window


def test_a_fixed_clock_recovers_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    watch = ClockWatch(TOLERANCE_S, window_s=60)
    watch.connected(T_CONNECT - 3600 * S)
    assert all(live(watch, "ahead", +300, start_s=0, seconds=10))
    assert all(live(watch, "behind", -300, start_s=0, seconds=10))
    # NTP fixes both. Behind recovers at once (the largest offset is the good one); ahead when
    # its last wrong batch leaves the window.
    fixed_ahead = live(watch, "ahead", 0, start_s=10, seconds=120)
    fixed_behind = live(watch, "behind", 0, start_s=10, seconds=120)
    assert fixed_behind == [False] * 240
    assert all(fixed_ahead[:100]) and not any(fixed_ahead[120:])
    assert watch.edges["ahead"].skewed_batches == 20 + fixed_ahead.count(True)
    logs = clock_logs(caplog)
    assert [level for level, _ in logs] == ["WARNING", "WARNING", "INFO", "INFO"]
    assert sorted(message for _, message in logs[2:]) == [
        "edge ahead: clock back within 30 s of the gateway's (offset -0.1 s)",
        "edge behind: clock back within 30 s of the gateway's (offset -0.1 s)",
    ]
    live(watch, "ahead", +300, start_s=200, seconds=1)  # wrong again: logged again
    assert len(clock_logs(caplog)) == 5


def test_clock_report_has_each_edge_heard_from_since_the_last() -> None:
    watch = ClockWatch(TOLERANCE_S)
    watch.connected(T_CONNECT)
    live(watch, "a", +300, start_s=0, seconds=1)
    live(watch, "b", 0, start_s=0, seconds=1)
    report = watch.report()
    assert report == {
        "a": {"clock_offset_s": pytest.approx(299.95), "clock_skewed": 1.0},
        "b": {"clock_offset_s": pytest.approx(-0.05), "clock_skewed": 0.0},
    }
    assert watch.report() == {}
    live(watch, "b", 0, start_s=1, seconds=1)
    assert list(watch.report()) == ["b"]


def test_intake_passes_on_the_edge_send_time() -> None:
    asset = AssetPath("s", "a", "l", "m")
    intake = Intake(max_payload_bytes=10_000)
    stamped = Batch("edge", 0, asset, [Sample(1, "x", 1.5)], sent_ns=T_CONNECT)
    result = intake.process(data_topic(asset), encode_batch(stamped))
    assert (result.edge, result.sent_ns) == ("edge", T_CONNECT)
    old = intake.process(data_topic(asset), encode_batch(Batch("edge", 1, asset, [])))
    assert (old.edge, old.sent_ns) == ("edge", None)


def test_sparkplug_payload_timestamp_is_the_send_time() -> None:
    ingest = SparkplugIngest("s", max_payload_bytes=10_000)
    birth = Payload(
        timestamp=T_CONNECT // 1_000_000,
        seq=0,
        metrics=(bdseq_metric(0), Metric(name="x", alias=1, datatype=DataType.Double, value=1.0)),
    )
    result = ingest.process("spBv1.0/g/NBIRTH/node-1", encode(birth))
    assert (result.processed.edge, result.processed.sent_ns) == ("node-1", T_CONNECT)
    untimed = Payload(seq=1, metrics=(Metric(alias=1, datatype=DataType.Double, value=2.0),))
    result = ingest.process("spBv1.0/g/NDATA/node-1", encode(untimed))
    assert result.processed.sent_ns is None and result.processed.samples == 1


def test_a_gateway_clock_stepping_back_does_not_freeze_the_window() -> None:
    watch = ClockWatch(TOLERANCE_S, window_s=60)
    watch.connected(T_CONNECT - 3600 * S)
    live(watch, "edge", +300, start_s=0, seconds=2)
    assert live(watch, "edge", 0, start_s=-3600, seconds=2) == [False] * 4  # NTP set it back 1 h
    assert watch.offset_s("edge") == pytest.approx(-0.05)
