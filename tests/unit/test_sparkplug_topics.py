"""Sparkplug B topics and the host application's STATE message."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plantwire.errors import PayloadError, TopicError
from plantwire.sparkplug_topics import (
    HostState,
    HostStateTopic,
    MessageType,
    SparkplugTopic,
    check_sparkplug_id,
    decode_host_state,
    encode_host_state,
    host_state_topic,
    parse_topic,
    sparkplug_subscription,
    sparkplug_topic,
)

NODE_TYPES = [t for t in MessageType if not t.is_device]
DEVICE_TYPES = [t for t in MessageType if t.is_device]


def test_node_and_device_message_types() -> None:
    assert [str(t) for t in NODE_TYPES] == ["NBIRTH", "NDEATH", "NDATA", "NCMD"]
    assert [str(t) for t in DEVICE_TYPES] == ["DBIRTH", "DDEATH", "DDATA", "DCMD"]


@pytest.mark.parametrize(
    ("topic", "parsed"),
    [
        (
            "spBv1.0/Sparkplug B Devices/NBIRTH/Raspberry Pi",
            SparkplugTopic("Sparkplug B Devices", MessageType.NBIRTH, "Raspberry Pi"),
        ),
        (
            "spBv1.0/bottling/DDATA/edge-1/filler-2",
            SparkplugTopic("bottling", MessageType.DDATA, "edge-1", "filler-2"),
        ),
        ("spBv1.0/bottling/NCMD/$edge", SparkplugTopic("bottling", MessageType.NCMD, "$edge")),
        ("spBv1.0/STATE/scada-1", HostStateTopic("scada-1")),
    ],
)
def test_topics_parse_and_format(topic: str, parsed: SparkplugTopic | HostStateTopic) -> None:
    assert parse_topic(topic) == parsed
    assert str(parsed) == topic


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("plantwire/v1/a/b/c/d/data", "not in the spBv1.0 namespace"),
        ("spBv1.0/g/NBIRTH", "is not spBv1.0/<group>/<type>/<edge node>"),
        ("spBv1.0/g/NDATA/n/d/extra", "is not spBv1.0/<group>/<type>/<edge node>"),
        ("spBv1.0/g/NSTATUS/n", "'NSTATUS' is not a Sparkplug message type"),
        ("spBv1.0/g/ndata/n", "'ndata' is not a Sparkplug message type"),
        ("spBv1.0/g/DDATA/n", "DDATA topics end with a device id"),
        ("spBv1.0/g/NDATA/n/d", "NDATA topics have no device id"),
        ("spBv1.0//NDATA/n", "group id is empty"),
        ("spBv1.0/g/NDATA/", "edge node id is empty"),
        ("spBv1.0/g/DDATA/n/", "device id is empty"),
        ("spBv1.0/g+/NDATA/n", "group id 'g\\+' contains '\\+'"),
        ("spBv1.0/g/NDATA/n#", "edge node id 'n#' contains '#'"),
        ("spBv1.0/STATE/", "host id is empty"),
    ],
)
def test_malformed_topics_are_refused(topic: str, reason: str) -> None:
    with pytest.raises(TopicError, match=reason):
        parse_topic(topic)


def test_formatting_checks_ids_and_device_presence() -> None:
    with pytest.raises(TopicError, match="DBIRTH topics need a device id"):
        sparkplug_topic("g", MessageType.DBIRTH, "n")
    with pytest.raises(TopicError, match="NBIRTH topics have no device id"):
        sparkplug_topic("g", MessageType.NBIRTH, "n", "d")
    with pytest.raises(TopicError, match="edge node id 'a/b' contains '/'"):
        sparkplug_topic("g", MessageType.NDATA, "a/b")
    with pytest.raises(TopicError, match="'XDATA' is not a Sparkplug message type"):
        sparkplug_topic("g", "XDATA", "n")  # type: ignore[arg-type]
    with pytest.raises(TopicError, match="not valid UTF-8"):
        host_state_topic("\ud800")
    with pytest.raises(TopicError, match="must be a string"):
        check_sparkplug_id(7, "group id")
    with pytest.raises(TopicError, match="contains '\\\\x00'"):
        check_sparkplug_id("a\x00b", "group id")
    assert sparkplug_topic("g", "NDATA", "n") == "spBv1.0/g/NDATA/n"  # type: ignore[arg-type]


def test_subscriptions() -> None:
    assert sparkplug_subscription() == "spBv1.0/+/#"
    assert sparkplug_subscription("bottling") == "spBv1.0/bottling/#"
    with pytest.raises(TopicError):
        sparkplug_subscription("a/b")


ids = st.text(st.characters(codec="utf-8", exclude_characters="/+#\x00"), min_size=1, max_size=20)


@given(ids, st.sampled_from(list(MessageType)), ids, ids)
def test_any_valid_ids_round_trip(group: str, kind: MessageType, node: str, device: str) -> None:
    topic = SparkplugTopic(group, kind, node, device if kind.is_device else None)
    assert parse_topic(str(topic)) == topic


@given(st.text(max_size=60))
def test_any_text_parses_or_raises_topic_error(topic: str) -> None:
    try:
        parse_topic(topic)
    except TopicError as exc:
        message = str(exc)
        assert message


def test_host_state_payload() -> None:
    data = encode_host_state(True, 1_763_712_000_000)
    assert data == b'{"online":true,"timestamp":1763712000000}'
    assert decode_host_state(data) == HostState(True, 1_763_712_000_000)
    # Other keys are tolerated: a later revision may add some.
    assert decode_host_state(b'{"timestamp": 5, "online": false, "x": 1}') == HostState(False, 5)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"ONLINE", "not JSON"),  # the Sparkplug 2.2 STATE payload
        (b"[true, 1]", "must be a JSON object"),
        (b'{"online": 1, "timestamp": 5}', "'online' must be true or false"),
        (b'{"online": true}', "'timestamp' must be a non-negative integer"),
        (b'{"online": true, "timestamp": -1}', "'timestamp' must be a non-negative integer"),
        (b'{"online": true, "timestamp": 1.5}', "'timestamp' must be a non-negative integer"),
    ],
)
def test_bad_host_state_payloads_are_refused(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        decode_host_state(payload)


def test_host_state_encoding_checks_its_arguments() -> None:
    with pytest.raises(PayloadError, match="'online' must be a boolean"):
        encode_host_state(1, 5)  # type: ignore[arg-type]
    with pytest.raises(PayloadError, match="'timestamp' must be a non-negative integer"):
        encode_host_state(True, -5)


@given(st.binary(max_size=60))
def test_any_state_bytes_decode_or_raise_payload_error(payload: bytes) -> None:
    try:
        decode_host_state(payload)
    except PayloadError as exc:
        reason = exc.reason
        assert reason
