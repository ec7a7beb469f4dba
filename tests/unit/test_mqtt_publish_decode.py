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

NO_NUL = st.text(st.characters(exclude_characters="\x00"), max_size=8)  # MQTT strings have none


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
    user=st.lists(st.tuples(NO_NUL, NO_NUL), max_size=3),
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


def fixed_header(body: bytes, first: int = 0x30) -> bytes:
    length, encoded = len(body), bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes([first, *encoded]) + body


@given(
    payload_sizes=st.lists(st.integers(0, 300), min_size=1, max_size=12),
    cuts=st.lists(st.integers(1, 64), min_size=1, max_size=40),
)
def test_packets_split_anywhere_on_the_wire_come_out_whole_and_in_order(
    payload_sizes: list[int], cuts: list[int]
) -> None:
    """The client frames packets from what each recv() brought, across any split of the bytes."""
    import socket

    from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

    from plantwire.mqtt_network import Client

    payloads = [bytes([index % 256]) * size for index, size in enumerate(payload_sizes)]
    wire = b"".join(fixed_header(publish_packet(b"a/b", 0, 0, p, [])) for p in payloads)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    client = Client(CallbackAPIVersion.VERSION2, protocol=5)
    client._sock = ours
    got: list[bytes] = []
    client.on_message = lambda c, u, message: got.append(message.payload)
    try:
        at, index = 0, 0
        while at < len(wire):
            step = cuts[index % len(cuts)]
            theirs.sendall(wire[at : at + step])
            at, index = at + step, index + 1
            while client._packet_read() == MQTTErrorCode.MQTT_ERR_SUCCESS:
                pass
    finally:
        client._sock = None
        ours.close()
        theirs.close()
    assert got == payloads


def test_a_remaining_length_of_five_bytes_is_a_protocol_error() -> None:
    import socket

    from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

    from plantwire.mqtt_network import Client

    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    client = Client(CallbackAPIVersion.VERSION2, protocol=5)
    client._sock = ours
    try:
        theirs.sendall(b"\x30\xff\xff\xff\xff\x01")
        assert client._packet_read() == MQTTErrorCode.MQTT_ERR_PROTOCOL
    finally:
        client._sock = None
        ours.close()
        theirs.close()
