"""AsyncMqtt over MQTT 5 and 3.1.1 against real Mosquitto: a persistent session keeps what was
published while its owner was away, in both dialects (the gateway relies on it)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from plantwire.config.models import MqttConfig
from plantwire.mqtt import AsyncMqtt, Message
from plantwire.testing.servers import Mosquitto

pytestmark = pytest.mark.servers

N = 200


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_persistent_session_keeps_messages_sent_while_away(
    mosquitto: Mosquitto, protocol: str
) -> None:
    config = MqttConfig(url=f"mqtt://127.0.0.1:{mosquitto.port}", protocol=protocol)  # type: ignore[arg-type]
    run = uuid.uuid4().hex[:8]
    topic = f"test/{run}/away"

    async def scenario() -> list[bytes]:
        received: list[bytes] = []

        def keep(message: Message) -> None:
            received.append(message.payload)

        listener = AsyncMqtt(config, f"listener-{run}", clean_start=False)
        await listener.connect(session_expiry_s=600)
        await listener.subscribe(topic, qos=1)
        await listener.disconnect()

        sender = AsyncMqtt(config, f"sender-{run}")
        acked: list[int] = []
        sender.on_ack = lambda mid, ok: acked.append(mid) if ok else None
        await sender.connect()
        for i in range(N):
            sender.publish(topic, str(i).encode(), qos=1)
        while len(acked) < N:
            await asyncio.sleep(0.01)
        await sender.disconnect()

        back = AsyncMqtt(config, f"listener-{run}", clean_start=False)
        back.on_message = keep
        await back.connect(session_expiry_s=600)
        for _ in range(500):
            if len(received) >= N:
                break
            await asyncio.sleep(0.01)
        await back.disconnect()
        return received

    received = asyncio.run(scenario())
    assert received == [str(i).encode() for i in range(N)]


def test_clean_start_forgets_the_session(mosquitto: Mosquitto) -> None:
    config = MqttConfig(url=f"mqtt://127.0.0.1:{mosquitto.port}", protocol="3.1.1")
    run = uuid.uuid4().hex[:8]
    topic = f"test/{run}/clean"

    async def scenario() -> int:
        received: list[bytes] = []
        listener = AsyncMqtt(config, f"listener-{run}", clean_start=False)
        await listener.connect()
        await listener.subscribe(topic, qos=1)
        await listener.disconnect()
        sender = AsyncMqtt(config, f"sender-{run}")
        acked: list[int] = []
        sender.on_ack = lambda mid, ok: acked.append(mid)
        await sender.connect()
        sender.publish(topic, b"while away", qos=1)
        while not acked:
            await asyncio.sleep(0.01)
        await sender.disconnect()
        back = AsyncMqtt(config, f"listener-{run}", clean_start=True)
        back.on_message = lambda message: received.append(message.payload)
        await back.connect()
        await asyncio.sleep(0.5)
        await back.disconnect()
        return len(received)

    assert asyncio.run(scenario()) == 0
