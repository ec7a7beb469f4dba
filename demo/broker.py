"""The embedded broker: amqtt, in the demo's own event loop.

amqtt serves MQTT 3.1.1 only, so the demo's site file sets ``mqtt.protocol: "3.1.1"`` when it
uses it. 3.1.1 keeps what the demo relies on: QoS 1, manual acknowledgement, retained messages,
last wills and persistent sessions; it has no receive maximum, so the gateway's back-pressure
bound does not apply (the demo's rates are far below it).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

__all__ = ["EmbeddedBroker"]


class EmbeddedBroker:
    """amqtt on 127.0.0.1, anonymous, without $SYS topics, in the running event loop."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"mqtt://127.0.0.1:{port}"
        self._broker: Any = None

    async def start(self) -> None:
        from amqtt.broker import Broker  # type: ignore[import-untyped]  # only the embedded broker needs amqtt

        # amqtt logs every connection at INFO: the demo's own log lines matter more.
        logging.getLogger("amqtt").setLevel(logging.WARNING)
        logging.getLogger("transitions").setLevel(logging.WARNING)  # amqtt's state machines
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        self._broker = Broker(config)
        await self._broker.start()

    async def stop(self) -> None:
        if self._broker is not None:
            broker, self._broker = self._broker, None
            with contextlib.suppress(Exception):  # best effort: the demo is ending anyway
                await broker.shutdown()
