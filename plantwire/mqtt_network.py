"""The network side of :mod:`plantwire.mqtt`: a thread of ours that reads, writes and keeps one
paho connection alive, and stops reading while the connection's inbound window is full.

paho's own thread (``loop_start``) cannot stop reading, so a broker that ignores Receive Maximum
(Mosquitto 2.0.11 does) could push a whole backlog into memory. This thread drives paho through
its public external-loop calls (``loop_read``, ``loop_write``, ``loop_misc``) and leaves the
socket out of its ``select`` while the :class:`InboundWindow` is full: TCP then holds the rest at
the broker. Four of paho's private methods are adapted, in :class:`Client` (paho is pinned, and
this module is its adapter): the keepalive rule, the packet read (whole packets framed from
64 KiB reads), the PUBLISH decoding and the dispatch to ``on_message`` -- the last three because
paho's own cost more per small message than everything else the gateway does with it
(docs/benchmarks.md, "The MQTT library's ceiling"). Every other packet is paho's to handle.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

__all__ = ["BACKLOG_AFTER_S", "Client", "InboundWindow", "NetworkLoop"]

# A message read after the socket has had data waiting this long comes from a backlog.
BACKLOG_AFTER_S = 1.0


class InboundWindow:
    """What the broker has pushed to us and we have not finished with: at most ``max_messages``
    messages and ``max_bytes`` payload bytes (``None``: no limit).

    ``admit`` runs in the network thread for every received message, ``release`` in the event
    loop's thread when the message is done; the network thread stops reading while the window is
    full. A message is admitted whole, so the window can pass its byte limit by one message.
    """

    def __init__(self, max_messages: int | None = None, max_bytes: int | None = None) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.messages = 0
        self.bytes = 0
        self.peak_messages = 0
        self.peak_bytes = 0
        self.pauses = 0  # messages that filled the window (reading stopped after each)
        self.received_bytes = 0  # payload bytes admitted since start
        self._lock = threading.Lock()

    @property
    def full(self) -> bool:
        return (self.max_messages is not None and self.messages >= self.max_messages) or (
            self.max_bytes is not None and self.bytes >= self.max_bytes
        )

    @property
    def half_full(self) -> bool:
        """Past half of either limit: messages are coming faster than they are finished (a broker
        that keeps to Receive Maximum holds the rest of a backlog itself)."""
        return (self.max_messages is not None and 2 * self.messages > self.max_messages) or (
            self.max_bytes is not None and 2 * self.bytes > self.max_bytes
        )

    def admit(self, size: int) -> None:
        with self._lock:
            self.messages += 1
            self.bytes += size
            self.received_bytes += size
            self.peak_messages = max(self.peak_messages, self.messages)
            self.peak_bytes = max(self.peak_bytes, self.bytes)
            if self.full:
                self.pauses += 1

    def release(self, size: int) -> bool:
        """One message is done; True when this reopened a full window (wake the reader)."""
        with self._lock:
            was_full = self.full
            self.messages -= 1
            self.bytes -= size
            return was_full and not self.full

    def reset(self) -> None:
        """A new connection: what the old one delivered will come again."""
        with self._lock:
            self.messages = self.bytes = 0


# What one recv() asks for: a burst of small messages in one system call.
READ_BLOCK_BYTES = 64 * 1024
# Packets taken from what one recv() brought before looking at the socket again (paho reads one
# per call; a select() per small message cost as much as the message).
PACKETS_PER_TURN = 256


_NO_DELIVERY = paho.MQTTMessageInfo(0)  # what a received message has for paho's delivery record


def decode_publish(header: int, packet: bytes) -> paho.MQTTMessage:
    """An MQTT 5 PUBLISH packet (QoS 0 or 1) as paho's message; its properties are read only when
    there are some (paho builds a properties object, about 15 µs, for every message).

    >>> message = decode_publish(0x32, b"\\x00\\x03a/b\\x00\\x07\\x0021.5")
    >>> message.topic, message.qos, message.mid, message.payload, message.properties
    ('a/b', 1, 7, b'21.5', None)
    """
    qos = (header & 0x06) >> 1
    at = 2 + int.from_bytes(packet[:2], "big")
    topic = packet[2:at]
    if qos:
        mid = int.from_bytes(packet[at : at + 2], "big")
        at += 2
    else:
        mid = 0
    if at >= len(packet):
        raise MalformedPacket("PUBLISH shorter than its topic, packet id and properties")
    properties = None
    if packet[at]:  # a properties length other than 0 (its first byte is 0 only for none)
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        _, used = properties.unpack(packet[at:])  # type: ignore[no-untyped-call]
        at += used
    else:
        at += 1
    # Every slot set here, without paho's __init__: it makes a delivery record with a lock and a
    # condition for each message, used only for messages we publish.
    message = paho.MQTTMessage.__new__(paho.MQTTMessage)
    message.timestamp = 0.0
    message.state = paho.mqtt_ms_invalid
    message.mid = mid
    message._topic = topic  # the slot paho's topic property reads
    message.info = _NO_DELIVERY
    message.dup = bool(header & 0x08)
    message.qos = qos
    message.retain = bool(header & 0x01)
    message.properties = properties
    message.payload = packet[at:]
    return message


def frame(buffer: bytes, at: int) -> tuple[int, int, int] | int:
    """The packet at ``at``: (its first byte, where its body starts, where it ends), or, while
    it is not all there, how many more bytes it needs at least. A remaining length of more than
    four bytes is malformed.

    >>> frame(b"\\x30\\x03abc\\x40", 0), frame(b"\\x30\\x03ab", 0), frame(b"\\x30\\x83", 0)
    ((48, 2, 5), 1, 1)
    """
    length, multiplier, index = 0, 1, at + 1
    while True:
        if index >= len(buffer):
            return 1
        byte = buffer[index]
        length += (byte & 0x7F) * multiplier
        index += 1
        if not byte & 0x80:
            break
        if index - at > 4:
            raise MalformedPacket("remaining length longer than four bytes")
        multiplier *= 128
    end = index + length
    return (buffer[at], index, end) if end <= len(buffer) else end - len(buffer)


class Client(paho.Client):
    """paho's client with a keepalive rule that survives a backlog (see the module docstring),
    reading the socket in blocks and framing packets from them itself (paho asks for one byte at
    a time for each packet's header, a system call per byte, which in a backlog of small
    messages costs more than the messages) and decoding MQTT 5 PUBLISH packets itself (paho
    builds a properties object for each)."""

    reading_paused = False
    _read_buffer = b""  # bytes read from the socket; those before _read_at are handled
    _read_at = 0
    _read_sock: object = None  # the connection the buffer came from

    def _check_keepalive(self) -> None:
        if self._ping_t and (self.reading_paused or self._last_bytes_received > self._ping_t):
            self._ping_t = 0.0  # alive: bytes came after our PINGREQ (its answer waits behind them)
        super()._check_keepalive()

    def _packet_read(self) -> MQTTErrorCode:
        """Read one whole packet and have paho handle it (paho's own reads the fixed header a
        byte at a time, a system call per byte, and keeps per-byte state for every packet)."""
        if self._read_sock is not self._sock:  # a new connection: nothing of the old one counts
            self._read_sock, self._read_buffer, self._read_at = self._sock, b"", 0
        try:
            return self._read_one()
        except MalformedPacket as exc:
            self._easy_log(paho.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            return MQTTErrorCode.MQTT_ERR_PROTOCOL

    def _read_one(self) -> MQTTErrorCode:
        framed = frame(self._read_buffer, self._read_at)
        while not isinstance(framed, tuple):
            try:
                data = self._sock_recv(max(READ_BLOCK_BYTES, framed))
            except BlockingIOError:
                return MQTTErrorCode.MQTT_ERR_AGAIN
            except OSError as err:
                self._easy_log(paho.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            if not data:
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            self._read_buffer = self._read_buffer[self._read_at :] + data
            self._read_at = 0
            with self._msgtime_mutex:
                self._last_bytes_received = time.monotonic()
            framed = frame(self._read_buffer, 0)
        command, start, end = framed
        self._read_at = end
        self._in_packet = {
            "command": command,
            "have_remaining": 1,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": end - start,
            # bytes, not paho's bytearray: its decoders take either, and it saves a copy
            "packet": self._read_buffer[start:end],  # type: ignore[typeddict-item]
            "to_process": 0,
            "pos": 0,
        }
        return self._packet_handle()

    def _handle_publish(self) -> MQTTErrorCode:
        command = self._in_packet["command"]
        if self._protocol != paho.MQTTv5 or (command & 0x06) >> 1 == 2:
            return super()._handle_publish()  # 3.1.1 and QoS 2: paho's own way
        message = decode_publish(command, bytes(self._in_packet["packet"]))
        message.timestamp = time.monotonic()  # as paho stamps it
        self._handle_on_message(message)
        if message.qos == 0 or self._manual_ack:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return self._send_puback(message.mid)

    def _handle_on_message(self, message: paho.MQTTMessage) -> None:
        """paho's dispatch without its per-topic callback lookup when there are no per-topic
        callbacks (we add none): straight to ``on_message``, errors handled as paho does."""
        if self._on_message_filtered._root._children:  # per-topic callbacks: paho's way
            super()._handle_on_message(message)
            return
        on_message = self.on_message
        if on_message is None:
            return
        with self._in_callback_mutex:
            try:
                on_message(self, self._userdata, message)
            except Exception as err:
                self._easy_log(paho.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise

    @property
    def buffered(self) -> bool:
        """A whole packet is waiting in what was read: select() cannot see it."""
        try:
            return isinstance(frame(self._read_buffer, self._read_at), tuple)
        except MalformedPacket:
            return True  # the next read says so


def _tls_pending(sock: Any) -> int:
    """Bytes TLS has decrypted but we have not read: select() cannot see them."""
    pending = getattr(sock, "pending", None)
    return int(pending()) if pending is not None else 0


class NetworkLoop(threading.Thread):
    """Reads, writes and keeps the connection alive for one paho client, until it closes."""

    def __init__(self, client: Client, window: InboundWindow, name: str) -> None:
        super().__init__(name=f"mqtt-{name}", daemon=True)
        self.client = client
        self.window = window
        self._stopping = False
        # Set before the thread looks at what there is to do and may sleep, cleared when it
        # wakes: a wake() while it is clear is not needed, the thread will look again anyway.
        self._idle = True
        # When the socket last had nothing to read: a message read long after that came from
        # a backlog (the broker had more for us than we could take), however prompt it looks.
        self.caught_up_at = time.monotonic()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # paho calls this when it has something to send; without it, paho would write from
        # whatever thread published.
        client.on_socket_register_write = lambda *args: self.wake()

    def wake(self) -> None:
        """Have the thread look again at what to read and write (a system call: only when it
        may be asleep in select)."""
        if self._idle:
            # One byte is enough until the thread has looked again (it sets _idle before it
            # looks): acknowledging a write's thousand messages must not send a thousand bytes.
            self._idle = False
            with contextlib.suppress(OSError):
                self._wake_w.send(b"\0")

    def stop(self) -> None:
        self._stopping = True
        self.wake()
        if threading.current_thread() is not self:
            self.join(timeout=10)

    def run(self) -> None:
        try:
            while not self._stopping and self._turn():
                pass
        finally:
            self._wake_r.close()
            self._wake_w.close()

    def _turn(self) -> bool:
        """One select() and what it found; False when the connection is gone."""
        client = self.client
        sock = client.socket()
        if sock is None:
            return False
        self._idle = True
        paused = client.reading_paused = self.window.full
        pending = 0 if paused else client.buffered or _tls_pending(sock)
        readers = [self._wake_r] if paused else [sock, self._wake_r]
        writers = [sock] if client.want_write() else []
        try:
            readable, _, _ = select.select(readers, writers, [], 0.0 if pending else 1.0)
        except (OSError, ValueError, TypeError):  # closed under us (disconnect, abandon)
            return False
        finally:
            self._idle = False
        if self._wake_r in readable:
            with contextlib.suppress(OSError):
                self._wake_r.recv(4096)
        if not paused and not pending and sock not in readable:
            self.caught_up_at = time.monotonic()
        reading = not paused and (sock in readable or pending)
        for _ in range(PACKETS_PER_TURN if reading else 0):
            if client.loop_read() != paho.MQTT_ERR_SUCCESS:
                return False
            if not client.buffered or self.window.full:
                break
        if client.want_write() and client.loop_write() != paho.MQTT_ERR_SUCCESS:
            return False
        return client.loop_misc() == paho.MQTT_ERR_SUCCESS
