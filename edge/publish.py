"""How an edge node's data goes on the wire: the publish formats, by the name a site file gives
them (``edge_nodes[].payload``), and what each offers the forwarder.

The :class:`~edge.forwarder.Forwarder` owns what every format needs alike -- the connection and
its backoff, the disk buffer's batches, their acknowledgements and resends, the waiting while
data may not flow. A :class:`PublishFormat` says what to publish: a connection's will and
greetings, the messages that carry a list of batches (with what must precede them: Sparkplug's
births), when data may flow, and the goodbye. The buffer stores samples the same way whatever
the format (:func:`plantwire.codec.native.encode_samples` fragments); a format turns a batch of
them into its messages.

Adding a format (docs/extending.md): a module with a class that has this protocol's members, a
``make`` function building it, and its line in :data:`PUBLISH_FORMATS`; the site file's
``payload`` accepts the names of :data:`plantwire.codec.formats.EDGE_FORMATS`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

import orjson

from edge.buffer import DiskBuffer, OutgoingBatch
from plantwire.config.models import EdgeNode, Machine, SiteConfig
from plantwire.model import AssetPath
from plantwire.mqtt import AsyncMqtt, Message
from plantwire.registry import load_entry

__all__ = [
    "PUBLISH_FORMATS",
    "FormatFactory",
    "Publication",
    "PublishFormat",
    "make_format",
    "register_format",
    "service_status",
]

# One message to publish: topic, payload, and the buffer batch it carries (None: a birth, a
# status), whose acknowledgement lets the buffer forget it.
Publication = tuple[str, bytes, OutgoingBatch | None]


class PublishFormat(Protocol):
    # Messages besides the batches a connection may have in flight (births, states).
    extra_inflight: int

    def will(self) -> tuple[str, bytes, bool]:
        """The last will: topic, payload, retained."""
        ...

    async def connected(self, client: AsyncMqtt) -> None:
        """A connection is up: subscribe and greet (states, the service's online)."""
        ...

    def message(self, message: Message) -> bool:
        """A message on a subscription; True when data may now flow (wake the forwarder)."""
        ...

    def may_send(self) -> bool:
        """Data may leave now (a gateway, or the Sparkplug host, is online)."""
        ...

    def waiting_message(self) -> str | None:
        """What to log once while data may not leave (None: nothing, the format logs it)."""
        ...

    def publications(self, batches: Sequence[OutgoingBatch]) -> list[Publication]:
        """The messages that carry these batches, in order, and whatever must go first;
        with no batches, whatever is owed anyway (a rebirth)."""
        ...

    def data_topic(self, asset: AssetPath) -> str:
        """Where a machine's data goes (for log lines)."""
        ...

    async def goodbye(self, client: AsyncMqtt) -> None:
        """A clean stop: the messages that say so (the will is not sent then)."""
        ...


FormatFactory = Callable[
    [SiteConfig, EdgeNode, DiskBuffer, Sequence[tuple[AssetPath, Machine]]], PublishFormat
]

# Each format's module and its factory, imported when a node first uses it.
PUBLISH_FORMATS: dict[str, str | FormatFactory] = {
    "native": "edge.native_format:make",
    "sparkplug": "edge.sparkplug_node:make",
}


def make_format(
    site: SiteConfig,
    node: EdgeNode,
    buffer: DiskBuffer,
    machines: Sequence[tuple[AssetPath, Machine]],
) -> PublishFormat:
    return load_entry(PUBLISH_FORMATS, node.payload)(site, node, buffer, machines)


def register_format(name: str, factory: FormatFactory) -> None:
    """Add a format at run time (a plugin, a test); its name goes to
    :func:`plantwire.codec.formats.register_edge_format`."""
    PUBLISH_FORMATS[name] = factory


def service_status(edge_id: str, status: str) -> bytes:
    """The edge's retained ``services/<id>/state`` payload (and its last will's)."""
    return orjson.dumps({"status": status, "edge": edge_id, "ts": time.time_ns()})
