"""The network side of :mod:`plantwire.mqtt`: a thread of ours that reads, writes and keeps one
paho connection alive, and stops reading while the connection's inbound window is full.

paho's own thread (``loop_start``) cannot stop reading, so a broker that ignores Receive Maximum
(Mosquitto 2.0.11 does) could push a whole backlog into memory. This thread drives paho through
its public external-loop calls (``loop_read``, ``loop_write``, ``loop_misc``) and leaves the
socket out of its ``select`` while the :class:`InboundWindow` is full: TCP then holds the rest at
the broker. Two of paho's private methods are adapted, in :class:`Client` (paho is pinned, and
this module is its adapter): the keepalive rule and the socket read.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from typing import Any

import paho.mqtt.client as paho

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


class Client(paho.Client):
    """paho's client with a keepalive rule that survives a backlog (see the module docstring),
    reading the socket in blocks: paho asks for one byte at a time for each packet's header, a
    system call per byte, which in a backlog of small messages costs more than the messages."""

    reading_paused = False
    _read_buffer = b""
    _read_at = 0

    def _check_keepalive(self) -> None:
        if self._ping_t and (self.reading_paused or self._last_bytes_received > self._ping_t):
            self._ping_t = 0.0  # alive: bytes came after our PINGREQ (its answer waits behind them)
        super()._check_keepalive()

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._read_at >= len(self._read_buffer):
            self._read_buffer = super()._sock_recv(max(bufsize, READ_BLOCK_BYTES))
            self._read_at = 0
        start = self._read_at
        self._read_at = start + bufsize
        return self._read_buffer[start : self._read_at]

    @property
    def buffered(self) -> int:
        """Bytes read from the socket that paho has not taken yet: select() cannot see them."""
        return max(0, len(self._read_buffer) - self._read_at)


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
        if reading and client.loop_read() != paho.MQTT_ERR_SUCCESS:
            return False
        if client.want_write() and client.loop_write() != paho.MQTT_ERR_SUCCESS:
            return False
        return client.loop_misc() == paho.MQTT_ERR_SUCCESS
