"""Our MQTT 5 PUBLISH decoder (plantwire/mqtt_network.py) against paho's own, as the oracle."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from plantwire.mqtt_network import decode_publish


def publish_packet(
    topic: bytes, qos: int, mid: int, payload: bytes, user: list[tuple[str, str]]
) -> bytes:
    """A PUBLISH packet after its fixed header, as a broker sends it."""
    properties = Properties(PacketTypes.PUBLISH)
    if user:
        properties.UserProperty = user
    packet = len(topic).to_bytes(2, "big") + topic
    if qos:
        packet += mid.to_bytes(2, "big")
    return packet + properties.pack() + payload


@given(
    topic=st.text(min_size=1, max_size=40).map(str.encode),
    qos=st.sampled_from([0, 1]),
    mid=st.integers(1, 65535),
    payload=st.binary(max_size=200),
    user=st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=3),
    dup=st.booleans(),
    retain=st.booleans(),
)
def test_it_reads_what_paho_reads(
    topic: bytes,
    qos: int,
    mid: int,
    payload: bytes,
    user: list[tuple[str, str]],
    dup: bool,
    retain: bool,
) -> None:
    header = 0x30 | (dup << 3) | (qos << 1) | retain
    packet = publish_packet(topic, qos, mid, payload, user)
    ours = decode_publish(header, packet)
    theirs = _packet.decode_publish(header, packet, MQTTProtocolVersion.MQTTv5)
    assert (ours.topic, ours.qos, ours.mid, ours.payload) == (
        theirs.topic.decode(),
        theirs.qos,
        theirs.mid,
        theirs.payload,
    )
    assert (ours.dup, ours.retain) == (dup, retain)
    if user:
        assert ours.properties is not None and ours.properties.UserProperty == user
    else:
        assert ours.properties is None  # none read: no properties object built


@pytest.mark.parametrize("packet", [b"", b"\x00", b"\x00\x05ab", b"\x00\x01a\x00\x07"])
def test_a_truncated_packet_is_malformed(packet: bytes) -> None:
    with pytest.raises(MalformedPacket):
        decode_publish(0x32, packet)
