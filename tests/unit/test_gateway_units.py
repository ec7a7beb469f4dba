"""Gateway parts on their own: acknowledgement order, the writer's sorting of InfluxDB answers
(with a scripted writer), the spool and back-pressure, sequence tracking, intake."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.ack import AckTracker
from gateway.intake import Intake, SequenceTracker
from gateway.spool import Spool
from gateway.writer import InfluxUnauthorizedError, Writer
from plantwire.codec import encode_batch
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
