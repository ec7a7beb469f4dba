"""Dead letters go out on an MQTT connection of their own.

The message a dead letter came from is acknowledged only once the broker has the dead letter
(its PUBACK). On the gateway's subscribing connection that PUBACK would queue behind whatever
the broker is sending us -- and while the gateway's window is full it reads nothing, so it would
wait forever for an acknowledgement stuck behind the messages it is not reading. On a connection
that receives nothing, PUBACKs come back at once.

Letters wait in order until the connection is up; those published but not acknowledged when it
drops are sent again on the next one (a dead letter may arrive twice, never not at all).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from gateway.deadletters import DeadLetter
from plantwire.backoff import Backoff
from plantwire.config.models import MqttConfig
from plantwire.logs import LogOnce
from plantwire.mqtt import AsyncMqtt, MqttUnavailable

__all__ = ["DeadLetterLink"]

log = logging.getLogger("plantwire.gateway.deadletters")

Done = Callable[[], None]


class DeadLetterLink:
    def __init__(self, mqtt: MqttConfig, client_id: str) -> None:
        self.mqtt = mqtt
        self.client_id = client_id
        self.sent = 0  # acknowledged by the broker
        self.refused = 0  # refused by the broker (not authorized, say): logged, not retried
        self._waiting: deque[tuple[DeadLetter, Done | None]] = deque()
        self._in_flight: dict[int, tuple[DeadLetter, Done | None]] = {}
        self._client: AsyncMqtt | None = None
        self._once = LogOnce(log)

    @property
    def pending(self) -> int:
        """Letters not yet acknowledged by the broker."""
        return len(self._waiting) + len(self._in_flight)

    def send(self, letter: DeadLetter, done: Done | None = None) -> None:
        """Queue a letter; ``done`` runs when the broker has it."""
        self._waiting.append((letter, done))
        self._flush()

    def _flush(self) -> None:
        client = self._client
        while client is not None and client.connected and self._waiting:
            letter, done = self._waiting[0]
            try:
                mid = client.publish(letter.topic, letter.payload, qos=1)
            except MqttUnavailable:
                return  # the connection is going; run() reconnects and sends it then
            self._waiting.popleft()
            self._in_flight[mid] = (letter, done)

    def _acked(self, mid: int, ok: bool) -> None:
        entry = self._in_flight.pop(mid, None)
        if entry is None:
            return
        letter, done = entry
        if ok:
            self.sent += 1
        else:
            self.refused += 1
            self._once.problem(
                f"refused {letter.topic}",
                "the broker refused a dead letter on %s (not authorized?); the message it came "
                "from is acknowledged without it -- check the gateway user's ACL",
                letter.topic,
                level=logging.ERROR,
            )
        if done is not None:
            done()

    async def run(self) -> None:
        """Hold the connection, reconnecting with backoff; resend what was not acknowledged."""
        backoff = Backoff(0.1, 10.0)
        while True:
            lost = asyncio.Event()
            client = AsyncMqtt(self.mqtt, self.client_id)
            client.on_ack = self._acked
            client.on_lost = lambda reason, lost=lost: lost.set()  # type: ignore[misc]
            try:
                await client.connect()
            except MqttUnavailable as exc:
                self._once.problem(
                    "connect",
                    "cannot publish dead letters (%s); %d waiting, retrying",
                    exc,
                    self.pending,
                )
                client.abandon()
                await backoff.sleep()
                continue
            backoff.reset()
            self._once.recovered("connect", "dead letters flow again")
            # Unacknowledged on the last connection: first in line on this one.
            self._waiting.extendleft(reversed(list(self._in_flight.values())))
            self._in_flight.clear()
            self._client = client
            self._flush()
            try:
                await lost.wait()
            finally:
                self._client = None
                client.abandon()

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.disconnect()
