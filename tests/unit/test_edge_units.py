"""Edge building blocks on their own: register decoding, request coalescing, report by exception,
the disk buffer, the forwarder's send time and backoff."""

from __future__ import annotations

import contextlib
import math
import struct
import time
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pw_mqtt import RecordingClient

from edge.buffer import DiskBuffer
from edge.forwarder import Forwarder
from edge.gateway_watch import GatewayWatch
from edge.native_format import NativeFormat
from edge.rbe import ReportByException, TagPolicy
from edge.sources.coalesce import PlannedTag, plan_requests
from edge.sources.modbus_codec import RegisterDecodeError, decode_registers, tag_value
from plantwire.backoff import Backoff
from plantwire.codec import decode_batch
from plantwire.config.models import ByteOrder, DataType, DeadbandKind, ModbusTag, MqttConfig
from plantwire.model import AssetPath, Quality, Sample

ORDERS = list(ByteOrder)
FORMATS = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "uint64": "Q",
    "float32": "f",
    "float64": "d",
}


def encode(value: float | int, kind: str, order: ByteOrder) -> list[int]:
    """An independent encoder: pack big-endian, then apply the byte order to the words."""
    raw = struct.pack(">" + FORMATS[kind], value)
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    if order in (ByteOrder.BADC, ByteOrder.DCBA):
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    if order in (ByteOrder.CDAB, ByteOrder.DCBA):
        words.reverse()
    return words


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("int16", -1234),
        ("uint16", 65000),
        ("int32", -123456789),
        ("uint32", 4_000_000_000),
        ("int64", -(2**62) - 5),
        ("uint64", 2**63 + 17),
        ("float32", 12.5),
        ("float64", -1e-300),
    ],
)
def test_every_type_in_every_order_decodes(kind: str, value: float, order: ByteOrder) -> None:
    assert decode_registers(encode(value, kind, order), DataType(kind), order) == value


@given(
    st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=8),
    st.sampled_from(list(DataType)),
    st.sampled_from(ORDERS),
)
def test_decoding_any_registers_gives_a_value_or_a_decode_problem(
    registers: list[int], kind: DataType, order: ByteOrder
) -> None:
    if kind is DataType.BIT:
        return
    with contextlib.suppress(RegisterDecodeError):
        decode_registers(registers, kind, order)


def tag(**fields: object) -> ModbusTag:
    return ModbusTag.model_validate({"metric": "m", "table": "input", "address": 0, **fields})


def test_scale_offset_nan_and_huge_unsigned() -> None:
    assert tag_value(tag(type="int16", scale=0.1, offset=-40), ByteOrder.ABCD, [625]) == (
        pytest.approx(22.5),
        Quality.GOOD,
    )
    assert tag_value(tag(type="uint16"), ByteOrder.ABCD, [7]) == (7, Quality.GOOD)
    assert tag_value(
        tag(type="float32"), ByteOrder.ABCD, encode(math.nan, "float32", ByteOrder.ABCD)
    ) == (None, Quality.BAD)
    value, quality = tag_value(
        tag(type="uint64"), ByteOrder.ABCD, encode(2**64 - 1, "uint64", ByteOrder.ABCD)
    )
    assert isinstance(value, float) and quality is Quality.UNCERTAIN
    text = [int.from_bytes(b"ab", "big"), int.from_bytes(b"c\0", "big"), 0]
    assert tag_value(tag(type="string", length=3), ByteOrder.ABCD, text) == ("abc", Quality.GOOD)
    assert tag_value(
        tag(type="string", length=3),
        ByteOrder.BADC,
        [int.from_bytes(b"ba", "big"), int.from_bytes(b"\0c", "big"), 0],
    ) == ("abc", Quality.GOOD)


def planned(
    key: int,
    address: int,
    kind: str = "uint16",
    table: str = "input",
    device: int = 1,
    **extra: object,
) -> PlannedTag:
    return PlannedTag(
        key,
        ModbusTag.model_validate(
            {"metric": f"t{key}", "table": table, "address": address, "type": kind, **extra}
        ),
        device,
    )


def test_coalescing_packs_tables_and_devices_apart() -> None:
    tags = [
        planned(0, 0),
        planned(1, 1, "float32"),
        planned(2, 10, "uint32"),
        planned(3, 0, table="holding"),
        planned(4, 0, "bit", table="coil"),
        planned(5, 3, "bit", table="coil"),
        planned(6, 0, device=2),
    ]
    requests = plan_requests(tags, max_registers=125, max_bits=2000, max_gap=16)
    assert sorted((r.device_id, str(r.table), r.address, r.count) for r in requests) == [
        (1, "coil", 0, 4),
        (1, "holding", 0, 1),
        (1, "input", 0, 12),
        (2, "input", 0, 1),
    ]


def test_coalescing_respects_gap_cap_and_request_size() -> None:
    tags = [planned(0, 0), planned(1, 20), planned(2, 130)]
    assert [
        (r.address, r.count)
        for r in plan_requests(tags, max_registers=125, max_bits=2000, max_gap=16)
    ] == [(0, 1), (20, 1), (130, 1)]
    assert [
        (r.address, r.count)
        for r in plan_requests(tags, max_registers=125, max_bits=2000, max_gap=50)
    ] == [(0, 21), (130, 1)]
    assert [
        (r.address, r.count)
        for r in plan_requests(tags, max_registers=10, max_bits=2000, max_gap=50)
    ] == [(0, 1), (20, 1), (130, 1)]


def test_refused_tags_are_read_alone_and_never_spanned() -> None:
    tags = [planned(0, 0), planned(1, 5), planned(2, 10)]
    requests = plan_requests(tags, max_registers=125, max_bits=2000, max_gap=16, alone=[1])
    assert sorted((r.address, r.count) for r in requests) == [(0, 1), (5, 1), (10, 1)]


@given(
    st.lists(
        st.tuples(st.integers(0, 400), st.sampled_from(["uint16", "uint32", "float64"])),
        min_size=1,
        max_size=40,
    ),
    st.integers(0, 30),
    st.integers(4, 125),
)
def test_coalescing_reads_every_tag_within_limits_with_the_fewest_requests(
    specs: list[tuple[int, str]], gap: int, limit: int
) -> None:
    tags = [planned(i, address, kind) for i, (address, kind) in enumerate(specs)]
    requests = plan_requests(tags, max_registers=limit, max_bits=2000, max_gap=gap)
    covered = {p.key for r in requests for p in r.tags}
    assert covered == set(range(len(tags)))
    for r in requests:
        assert r.count <= max(limit, *(p.tag.count for p in r.tags))
        assert all(r.address <= p.start and p.end <= r.address + r.count for p in r.tags)
    # Optimality, checked by dynamic programming over every way to cut the sorted tags into runs.
    ordered = sorted(tags, key=lambda p: (p.start, p.end))

    def valid(run: list[PlannedTag]) -> bool:
        end = run[0].end
        for p in run[1:]:
            if p.start - end > gap:
                return False
            end = max(end, p.end)
        return len(run) == 1 or end - run[0].start <= limit

    best = [0] + [len(ordered) + 1] * len(ordered)
    for i in range(1, len(ordered) + 1):
        best[i] = min(best[j] + 1 for j in range(i) if valid(ordered[j:i]))
    assert len(requests) == best[-1]


A = AssetPath("s", "a", "l", "m")


def test_report_by_exception_deadband_heartbeat_and_quality() -> None:
    rbe = ReportByException(
        {
            (A, "t"): TagPolicy(deadband=0.5, max_interval_s=10),
            (A, "p"): TagPolicy(deadband=10, kind=DeadbandKind.PERCENT, eu_range=(0, 200)),
        }
    )
    s = 10**9
    sent = [
        rbe.filter(A, [Sample(i * s, "t", v)])
        for i, v in enumerate([20.0, 20.2, 20.4, 20.6, 20.7, 21.2])
    ]
    assert [len(x) for x in sent] == [1, 0, 0, 1, 0, 1]
    assert (
        len(rbe.filter(A, [Sample(17 * s, "t", 21.2)])) == 1
    )  # heartbeat: 11 s after the last one
    assert len(rbe.filter(A, [Sample(18 * s, "t", None, Quality.BAD)])) == 1  # quality change
    assert [
        len(rbe.filter(A, [Sample(i * s, "p", v)])) for i, v in enumerate([100.0, 115.0, 121.0])
    ] == [1, 0, 1]  # 10 % of 200
    assert (
        len(rbe.filter(A, [Sample(0, "other", 1.0), Sample(0, "other", 1.0)])) == 2
    )  # no policy: everything
    assert rbe.suppressed == 4


def test_disk_buffer_survives_a_restart_and_keeps_order(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    buffer = DiskBuffer(path, "edge-1", max_bytes=10**8)
    for i in range(30):
        buffer.append(A, [Sample(i, "x", float(i))])
    buffer.flush()
    first = buffer.take(max_samples=10, max_batches=2)
    assert [b.seq for b in first] == [0, 1]
    buffer.ack(0)
    buffer.flush()
    del buffer  # no close: as after kill -9
    again = DiskBuffer(path, "edge-1", max_bytes=10**8)
    assert [b.seq for b in again.in_flight()] == [1]
    assert again.samples == 20 and again.unsent_samples == 10
    rest = again.take(max_samples=100, max_batches=5)
    assert [b.seq for b in rest] == [2]
    values = [s.value for b in [*again.in_flight()] for s in decode_batch(b.payload).batch.samples]
    assert values == [float(i) for i in range(10, 30)]


def test_disk_buffer_drops_the_oldest_when_full(tmp_path: Path) -> None:
    buffer = DiskBuffer(tmp_path / "edge.db", "edge-1", max_bytes=2000)
    for i in range(200):
        buffer.append(A, [Sample(i, "x", float(i))])
        buffer.flush()
    assert buffer.bytes <= 2000
    assert buffer.dropped_samples == 200 - buffer.samples
    kept = [s.ts_ns for b in buffer.take(1000, 10) for s in decode_batch(b.payload).batch.samples]
    assert kept == list(range(200 - len(kept), 200))  # the newest survive


def test_every_batch_is_stamped_with_the_wall_clock_when_it_is_published(tmp_path: Path) -> None:
    buffer = DiskBuffer(tmp_path / "edge.db", "edge-1", max_bytes=10**8)
    buffer.append(A, [Sample(5, "x", 1.0)])  # a sample time that has nothing to do with now
    buffer.flush()
    native = NativeFormat(edge_id="edge-1", site=A.site, assets=[A], wait_for_gateway=False)
    forwarder = Forwarder(
        buffer, MqttConfig(), native, edge_id="edge-1", site=A.site, max_samples=10,
        max_latency_s=0.1,
    )  # fmt: skip
    client = RecordingClient()
    forwarder._client = client  # type: ignore[assignment]
    (batch,) = buffer.take(10, 1)
    before = time.time_ns()
    forwarder._send([batch])
    time.sleep(0.01)
    middle = time.time_ns()
    forwarder._send(buffer.in_flight()[:1])  # resent after a reconnection: stamped afresh
    after = time.time_ns()
    first, again = (decode_batch(payload).batch for _, payload in client.published)
    assert first.sent_ns is not None and again.sent_ns is not None
    assert before <= first.sent_ns <= middle <= again.sent_ns <= after
    assert first.samples == again.samples == [Sample(5, "x", 1.0)]
    assert decode_batch(batch.payload).batch.sent_ns is None  # the stored form has no send time


def test_backoff_grows_with_jitter_and_caps() -> None:
    backoff = Backoff(0.1, 2.0)
    delays = [backoff.next_delay() for _ in range(8)]
    assert 0.05 <= delays[0] <= 0.1
    assert all(d <= 2.0 for d in delays) and delays[-1] >= 1.0
    backoff.reset()
    assert backoff.next_delay() <= 0.1


def test_the_gateway_watch_follows_gateways_and_ignores_other_services() -> None:
    watch = GatewayWatch("bd")
    state = "plantwire/v1/bd/services/{}/state"
    edge_online = orjson.dumps({"status": "online", "edge": "edge-1", "ts": 1})
    assert not watch.update(state.format("edge-1"), edge_online)  # an edge is not a gateway
    assert not watch.update(state.format("gw-x"), b"not json")
    assert not watch.update(state.format("gw-x"), b"[1, 2]")
    online = orjson.dumps({"status": "online", "role": "gateway"})
    offline = orjson.dumps({"status": "offline", "role": "gateway"})
    assert not watch.update("plantwire/v1/other/services/gw-1/state", online)  # another site
    assert not watch.update("plantwire/v1/bd/services/gw-1/stats", online)
    assert not watch.any_online
    assert watch.update(state.format("gw-1"), online)
    assert not watch.update(state.format("gw-2"), online)  # still online: no change
    assert not watch.update(state.format("gw-1"), offline)  # gw-2 is still online
    assert watch.online == {"gw-2"}
    assert watch.update(state.format("gw-2"), b"")  # a cleared retained state: not online
    assert not watch.any_online
    watch.update(state.format("gw-1"), online)
    watch.reset()  # a new connection: the retained states come again
    assert not watch.any_online
