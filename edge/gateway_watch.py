"""Which of the site's gateways are online, from their retained service states.

An MQTT broker queues messages only for sessions it already knows. Until a gateway has
subscribed once, whatever an edge publishes is acknowledged by the broker and delivered to
nobody: the edge deletes it from its buffer and it is gone, with no sequence gap to show for it
(the soak benchmark lost an edge's first 5,040 samples that way). So an edge with
``wait_for_gateway`` sends data only while at least one gateway says ``online``; until then the
samples stay in its disk buffer.

Gateways publish ``{"status": "online"|"offline", "role": "gateway"}`` retained on
``services/<id>/state`` (offline is also their last will); edges and analytics publish on the
same topics without the gateway role and are ignored here.
"""

from __future__ import annotations

import logging

import orjson

from plantwire.topics import GATEWAY_ROLE, ROOT

__all__ = ["GatewayWatch", "gateway_state_filter"]

log = logging.getLogger("plantwire.edge.gateways")


def gateway_state_filter(site: str) -> str:
    """The topic filter for every service state of the site (gateways among them)."""
    return f"{ROOT}/{site}/services/+/state"


class GatewayWatch:
    """The set of gateways whose latest retained state says online."""

    def __init__(self, site: str) -> None:
        self.site = site
        self.online: set[str] = set()
        self._prefix = f"{ROOT}/{site}/services/"

    @property
    def any_online(self) -> bool:
        return bool(self.online)

    def reset(self) -> None:
        """A new connection: the retained states arrive again after the subscription."""
        self.online.clear()

    def update(self, topic: str, payload: bytes) -> bool:
        """Take one service state message; True if it changed whether any gateway is online."""
        if not topic.startswith(self._prefix) or not topic.endswith("/state"):
            return False
        service = topic[len(self._prefix) : -len("/state")]
        before = self.any_online
        if not payload:  # a cleared retained state: whatever it was is gone
            self.online.discard(service)
            return before != self.any_online
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return False  # not ours to judge: the gateway's pipeline counts bad service messages
        if not isinstance(body, dict) or body.get("role") != GATEWAY_ROLE:
            return False
        if body.get("status") == "online":
            if service not in self.online:
                log.info("gateway %s is online", service)
            self.online.add(service)
        else:
            if service in self.online:
                log.warning("gateway %s is offline", service)
            self.online.discard(service)
        return before != self.any_online
