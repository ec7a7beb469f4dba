"""The native JSON codec: round trips, per-sample rejection, and never a foreign exception."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pw_strategies import batches, send_times

from plantwire.codec import (
    SCHEMA_VERSION,
    assemble_batch,
    decode_batch,
    encode_batch,
    encode_samples,
)
from plantwire.errors import PayloadError
from plantwire.model import AssetPath, Batch, Quality, Sample

ASSET = {"site": "binh-duong", "area": "dairy", "line": "filling", "machine": "filler"}


def frame(samples: list[Any], **overrides: Any) -> bytes:
    doc = {
        "version": SCHEMA_VERSION,
        "edge": "edge-dairy",
        "seq": 7,
        "asset": ASSET,
        "samples": samples,
    }
    doc.update(overrides)
    return orjson.dumps(doc)


@given(batches)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_valid_batches_round_trip_exactly(batch: Batch) -> None:
    decoded = decode_batch(encode_batch(batch))
    assert decoded.rejected == []
    assert decoded.batch == Batch(
        batch.edge_id, batch.seq, batch.asset, list(batch.samples), batch.sent_ns
    )
    # Types survive too: 1.0 stays a float, 1 an int, True a bool.
    for got, sent in zip(decoded.batch.samples, batch.samples, strict=True):
        assert type(got.value) is type(sent.value)


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_decode_or_raise_payload_error(payload: bytes) -> None:
    try:
        decode_batch(payload)
    except PayloadError as exc:
        reason = exc.reason
        assert reason


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@given(json_values)
def test_arbitrary_json_decodes_or_raises_payload_error(doc: Any) -> None:
    try:
        payload = orjson.dumps(doc)
    except orjson.JSONEncodeError:
        return  # integers beyond 64 bits cannot even be written as a payload by orjson
    with contextlib.suppress(PayloadError):
        decode_batch(payload)


fuzzed_sample = (
    st.dictionaries(
        st.sampled_from(["t", "m", "v", "q", "x"]),
        json_values | st.sampled_from([1, -1, 2**63, "temp", "time", "good", "bad", None, 1.5]),
        max_size=5,
    )
    | json_values
)


@given(st.lists(fuzzed_sample, max_size=30))
def test_every_sample_is_either_kept_or_reported(raw_samples: list[Any]) -> None:
    try:
        payload = frame(raw_samples)
    except orjson.JSONEncodeError:
        return
    decoded = decode_batch(payload)
    assert len(decoded.batch.samples) + len(decoded.rejected) == len(raw_samples)
    assert all(r.reason for r in decoded.rejected)
    assert sorted(r.index for r in decoded.rejected) == [r.index for r in decoded.rejected]


def test_good_samples_of_a_partly_bad_batch_are_kept() -> None:
    raw = [
        {"t": 1, "m": "product_temp", "v": 4.5},
        {"t": 1, "m": "time", "v": 1},  # reserved name
        {"t": -5, "m": "fill_pressure", "v": 2.0},  # negative timestamp
        {"t": 2, "m": "fill_pressure", "v": None},  # null with good quality
        {"t": 2, "m": "fill_pressure", "v": None, "q": "bad"},  # null with bad quality: fine
        {"t": 3, "m": "product", "v": ["milk"]},  # list value
        {"t": 3, "m": "state", "v": 1, "q": "dubious"},  # unknown quality
        {"t": 3, "m": "state", "v": 1, "extra": 0},  # unknown key
        "not a sample",
        {"t": 4, "m": "good_count", "v": 19271},
    ]
    decoded = decode_batch(frame(raw))
    assert decoded.batch.samples == [
        Sample(1, "product_temp", 4.5),
        Sample(2, "fill_pressure", None, Quality.BAD),
        Sample(4, "good_count", 19271),
    ]
    reasons = {r.index: r.reason for r in decoded.rejected}
    assert sorted(reasons) == [1, 2, 3, 5, 6, 7, 8]
    assert "reserved" in reasons[1]
    assert "'t'" in reasons[2]
    assert "null but quality is good" in reasons[3]
    assert "got a list" in reasons[5]
    assert "'q'" in reasons[6]
    assert "unknown keys in sample: 'extra'" in reasons[7]
    assert "must be an object" in reasons[8]
    assert decoded.rejected[0].raw == {"t": 1, "m": "time", "v": 1}


def test_unknown_top_level_keys_are_ignored_and_named() -> None:
    """A newer edge may add keys to the frame: the batch is read, the keys are reported (and
    counted by the gateway), so edges can be upgraded before gateways."""
    decoded = decode_batch(frame([{"t": 1, "m": "x", "v": 1.0}], zone="plant-b", extra=1))
    assert decoded.unknown_keys == ("extra", "zone")
    assert decoded.batch.samples == [Sample(1, "x", 1.0)]
    assert decode_batch(frame([], sent=5)).unknown_keys == ()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"version": 2}', "unsupported schema version 2"),
        (b'{"version": true}', "unsupported schema version True"),
        (frame([], seq=-1), "'seq'"),
        (frame([], seq="7"), "'seq'"),
        (frame([], edge="edge/1"), "edge id"),
        (frame([], edge=None), "edge id must be a string"),
        (frame([], asset={"site": "s"}), "'asset' must have exactly"),
        (frame([], asset={**ASSET, "machine": "+"}), "machine id"),
        (frame([], asset={**ASSET, "area": "alerts"}), "reserved"),
        (frame({"t": 1}), "'samples' must be a list"),  # type: ignore[arg-type]
        (frame([], sent=-1), "'sent' must be a non-negative integer"),
        (frame([], sent=2**63), "'sent' must be a non-negative integer"),
        (frame([], sent=1.5e18), "'sent' must be a non-negative integer"),
        (frame([], sent="1763712000000000000"), "'sent' must be a non-negative integer"),
        (frame([], sent=True), "'sent' must be a non-negative integer"),
        (b'{"version": 1, "samples": [NaN]}', "not JSON"),
    ],
)
def test_bad_frames_are_refused_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        decode_batch(payload)
    assert reason in info.value.reason


def test_size_limits_are_enforced_before_parsing() -> None:
    samples = [{"t": i, "m": "x", "v": i} for i in range(11)]
    with pytest.raises(PayloadError, match="more than the limit of 10"):
        decode_batch(frame(samples), max_samples=10)
    with pytest.raises(PayloadError, match="bytes, more than the limit of 100"):
        decode_batch(frame(samples), max_bytes=100)


def test_payload_is_readable_json_with_quality_only_when_not_good() -> None:
    batch = Batch(
        "edge-dairy",
        1,
        AssetPath(**ASSET),
        [Sample(5, "t1", 1.5), Sample(5, "t2", None, Quality.BAD)],
    )
    doc = orjson.loads(encode_batch(batch))
    assert doc["samples"] == [
        {"t": 5, "m": "t1", "v": 1.5},
        {"t": 5, "m": "t2", "v": None, "q": "bad"},
    ]
    assert doc["version"] == SCHEMA_VERSION


@given(batches, send_times)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_send_time_round_trips_and_assembling_from_fragments_is_the_same(
    batch: Batch, sent_ns: int | None
) -> None:
    assembled = assemble_batch(
        batch.edge_id, batch.seq, batch.asset, [encode_samples(batch.samples)], sent_ns=sent_ns
    )
    assert assembled == encode_batch(replace(batch, sent_ns=sent_ns))
    decoded = decode_batch(assembled).batch
    assert decoded.sent_ns == sent_ns
    assert ("sent" in orjson.loads(assembled)) is (sent_ns is not None)


def test_send_time_is_optional_and_says_nothing_about_sample_times() -> None:
    assert decode_batch(frame([{"t": 5, "m": "x", "v": 1}])).batch.sent_ns is None
    stamped = decode_batch(frame([{"t": 5, "m": "x", "v": 1}], sent=1_763_712_000_250_000_000))
    assert stamped.batch.sent_ns == 1_763_712_000_250_000_000
    assert stamped.batch.samples == [Sample(5, "x", 1)]
    doc = orjson.loads(encode_batch(replace(stamped.batch, seq=8)))
    assert list(doc) == ["version", "edge", "seq", "sent", "asset", "samples"]


def test_batch_validation_checks_the_send_time() -> None:
    batch = Batch("edge", 0, AssetPath(**ASSET), [], sent_ns=0)
    assert batch.validate() is batch
    with pytest.raises(ValueError, match="send time"):
        replace(batch, sent_ns=-1).validate()
