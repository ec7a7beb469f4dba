"""PlantWire's own format (``payload: native``): each buffer batch one JSON batch on its
machine's data topic (docs/payload.md), retained online/offline states for the edge and its
machines, and -- with ``wait_for_gateway`` -- no data while no gateway of the site says online
(:mod:`edge.gateway_watch`: the broker would acknowledge it and deliver it to nobody)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from edge.buffer import DiskBuffer, OutgoingBatch
from edge.gateway_watch import GatewayWatch, gateway_state_filter
from edge.publish import Publication, service_status
from plantwire.config.models import EdgeNode, Machine, SiteConfig
from plantwire.model import AssetPath
from plantwire.mqtt import AsyncMqtt, Message
from plantwire.topics import data_topic, service_state_topic, state_topic

__all__ = ["NativeFormat", "make"]


class NativeFormat:
    def __init__(
        self, *, edge_id: str, site: str, assets: Sequence[AssetPath], wait_for_gateway: bool
    ) -> None:
        self.edge_id = edge_id
        self.site = site
        self.assets = list(assets)
        self.wait_for_gateway = wait_for_gateway
        self.gateways = GatewayWatch(site)
        self.extra_inflight = len(self.assets) + 2  # machine states and the edge's own

    def will(self) -> tuple[str, bytes, bool]:
        return (
            service_state_topic(self.site, self.edge_id),
            service_status(self.edge_id, "offline"),
            True,
        )

    async def connected(self, client: AsyncMqtt) -> None:
        self.gateways.reset()
        online = service_status(self.edge_id, "online")
        client.publish(service_state_topic(self.site, self.edge_id), online, retain=True)
        for asset in self.assets:
            client.publish(state_topic(asset), online, retain=True)
        if self.wait_for_gateway:
            # The gateways' retained states arrive right after this subscription.
            await client.subscribe(gateway_state_filter(self.site), qos=1)

    def message(self, message: Message) -> bool:
        return self.gateways.update(message.topic, bytes(message.payload))

    def may_send(self) -> bool:
        return self.gateways.any_online or not self.wait_for_gateway

    def waiting_message(self) -> str | None:
        return f"no gateway of site {self.site} is online; data stays in the buffer until one is"

    def publications(self, batches: Sequence[OutgoingBatch]) -> list[Publication]:
        # Stamped now, not when read or buffered: the gateway compares this with its own clock.
        sent_ns = time.time_ns()
        return [(data_topic(b.asset), b.encode(sent_ns=sent_ns), b) for b in batches]

    def data_topic(self, asset: AssetPath) -> str:
        return data_topic(asset)

    async def goodbye(self, client: AsyncMqtt) -> None:
        offline = service_status(self.edge_id, "offline")
        for asset in self.assets:
            client.publish(state_topic(asset), offline, retain=True)
        client.publish(service_state_topic(self.site, self.edge_id), offline, retain=True)


def make(
    site: SiteConfig,
    node: EdgeNode,
    buffer: DiskBuffer,
    machines: Sequence[tuple[AssetPath, Machine]],
) -> NativeFormat:
    return NativeFormat(
        edge_id=node.id,
        site=site.site.id,
        assets=[asset for asset, _ in machines],
        wait_for_gateway=node.wait_for_gateway,
    )
