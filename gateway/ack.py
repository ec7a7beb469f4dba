"""Acknowledge an MQTT message only when everything it carried is safe.

Every received message becomes a :class:`Delivery` that holds one count for each thing still to
finish -- its points accepted by InfluxDB (or committed to the spool), each dead letter it caused
acknowledged by the broker. When the count reaches zero the message is done; messages are
acknowledged in the order they arrived (MQTT wants PUBACKs in order), so a done message waits
for the ones before it.

A delivery belongs to one connection: after a reconnect the broker redelivers whatever was not
acknowledged (persistent session), and acknowledging an old message id on the new connection
would acknowledge the wrong message, so old deliveries are simply dropped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from plantwire.mqtt import Message

__all__ = ["AckTracker", "Delivery"]


class Delivery:
    __slots__ = ("connection", "message", "pending")

    def __init__(self, message: Message, connection: int) -> None:
        self.message = message
        self.connection = connection
        self.pending = 1  # released by the receiver once it has handed everything on

    def hold(self) -> None:
        self.pending += 1


class AckTracker:
    def __init__(self, ack: Callable[[Message], None]) -> None:
        self._ack = ack
        self._queue: deque[Delivery] = deque()
        self.connection = 0
        self.acked = 0

    def new_connection(self) -> None:
        """Forget the deliveries of the previous connection (the broker will resend them)."""
        self.connection += 1
        self._queue.clear()

    def receive(self, message: Message) -> Delivery:
        delivery = Delivery(message, self.connection)
        self._queue.append(delivery)
        return delivery

    def release(self, delivery: Delivery) -> None:
        """One thing the delivery waited for is done; acknowledge what can be."""
        delivery.pending -= 1
        if delivery.connection != self.connection:
            return
        queue = self._queue
        while queue and queue[0].pending <= 0:
            done = queue.popleft()
            self._ack(done.message)  # a PUBACK for QoS>0; for every message, its window room
            self.acked += 1

    @property
    def unacked(self) -> int:
        return len(self._queue)
