"""Which decoder reads a message: a table of routes keyed by MQTT topic filter.

Each payload format the gateway understands is a :class:`Route` -- the topic filter its messages
arrive on, the decoder that turns one message into line-protocol lines (or dead letters), and
whether a gateway group may split its messages (a shared subscription). The gateway subscribes
to the routes' filters and hands each message to the first route whose filter matches its topic
(the site file's checks refuse ingest rules whose filters overlap, so "first" never decides);
a message no route matches (a broker delivering outside our filters) is dead-lettered, never
dropped. Adding a format on the gateway side is one route (docs/extending.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from gateway.deadletters import dead_letter
from gateway.ingest.decoder import IngestDecoder, rule_name
from gateway.intake import Intake, Processed
from gateway.sparkplug_host import SparkplugIngest
from plantwire.config.models import SiteConfig
from plantwire.logs import LogOnce
from plantwire.names import check_segment
from plantwire.sparkplug_topics import sparkplug_subscription
from plantwire.topics import data_subscription

__all__ = ["Decode", "Route", "Routes", "site_routes", "topic_matches"]

log = logging.getLogger("plantwire.gateway.routes")

# One message (topic, payload) -> what to write, what to refuse.
Decode = Callable[[str, bytes], Processed]
# Topics remembered with their route; more distinct topics than this start the memory afresh
# (a flood of foreign topics must not grow it without bound).
TOPIC_MEMORY = 10_000


@dataclass(frozen=True)
class Route:
    format: str  # the payload format's name, for counters and log lines
    topic_filter: str  # an MQTT filter without $share: what to subscribe to and match
    decode: Decode
    # False: every message must reach one gateway in order (Sparkplug's seq and aliases are per
    # edge node), so the filter is never shared with a gateway group.
    shareable: bool = True
    qos: int = 1  # what to subscribe with (an ingest rule may say 0 or 2)

    def subscription(self, shared_group: str | None) -> str:
        if shared_group is None or not self.shareable:
            return self.topic_filter
        group = check_segment(shared_group, "shared subscription group")
        return f"$share/{group}/{self.topic_filter}"


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT's matching of a topic against a filter (``+`` one level, ``#`` the rest).

    >>> topic_matches("plantwire/v1/+/+/+/+/data", "plantwire/v1/bd/a/l/m/data")
    True
    >>> topic_matches("spBv1.0/bd/#", "spBv1.0/bd")
    True
    >>> topic_matches("spBv1.0/bd/#", "spBv1.0/other/NDATA/e")
    False
    """
    levels = topic.split("/")
    for index, wanted in enumerate(topic_filter.split("/")):
        if wanted == "#":
            return True
        if index >= len(levels) or wanted not in ("+", levels[index]):
            return False
    return len(levels) == len(topic_filter.split("/"))


class Routes:
    """The routes of one gateway, in the order they are tried."""

    def __init__(self, site: str, routes: Sequence[Route], *, dead_letter_max_bytes: int) -> None:
        self.site = site
        self.routes = list(routes)
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self.unrouted = 0
        self._by_topic: dict[str, Route | None] = {}
        self._once = LogOnce(log)  # once per topic (and a bounded memory of topics)

    def __iter__(self) -> Iterator[Route]:
        return iter(self.routes)

    def route_for(self, topic: str) -> Route | None:
        if topic not in self._by_topic:
            if len(self._by_topic) >= TOPIC_MEMORY:
                self._by_topic.clear()
            self._by_topic[topic] = next(
                (r for r in self.routes if topic_matches(r.topic_filter, topic)), None
            )
        return self._by_topic[topic]

    def ingest_decoders(self) -> list[IngestDecoder]:
        return [r.decode for r in self.routes if isinstance(r.decode, IngestDecoder)]

    def decode(self, topic: str, payload: bytes) -> Processed:
        route = self.route_for(topic)
        if route is not None:
            return route.decode(topic, payload)
        self.unrouted += 1
        self._once.problem(
            f"unrouted:{topic}", "a message on %s, which no payload format reads: dead-lettered",
            topic,
        )  # fmt: skip
        reason = "no payload format is configured for this topic"
        letter = dead_letter(
            self.site, "unknown", "route", reason, topic, max_bytes=self.dead_letter_max_bytes,
            length=len(payload),
        )  # fmt: skip
        return Processed(dead_letters=[letter])


def site_routes(
    site: SiteConfig,
    intake: Intake,
    sparkplug: SparkplugIngest | None,
    on_rebirth: Callable[[str], None],
) -> Routes:
    """The site's routes: PlantWire's native batches, Sparkplug B when the gateway is the site's
    Sparkplug host, and one route per ingest rule."""
    routes = [Route("native", data_subscription(site.site.id), intake.process)]
    if sparkplug is not None:
        decode = _sparkplug_decoder(sparkplug, on_rebirth)
        spb_filter = sparkplug_subscription(site.sparkplug_group)
        routes.append(Route("sparkplug", spb_filter, decode, shareable=False))
    for index, rule in enumerate(site.ingest):  # the plant's own MQTT data (docs/ingest.md)
        decoder = IngestDecoder(
            rule, rule_name(rule, index), site=site.site.id, encoder=intake.encoder,
            max_payload_bytes=site.mqtt.max_payload_bytes,
            dead_letter_max_bytes=site.gateway.dead_letter_max_bytes,
        )  # fmt: skip
        route = Route(f"ingest:{decoder.name}", decoder.pattern.filter, decoder, qos=rule.qos)
        routes.append(route)
    return Routes(site.site.id, routes, dead_letter_max_bytes=site.gateway.dead_letter_max_bytes)


def _sparkplug_decoder(sparkplug: SparkplugIngest, on_rebirth: Callable[[str], None]) -> Decode:
    def decode(topic: str, payload: bytes) -> Processed:
        result = sparkplug.process(topic, payload)
        if result.rebirth is not None:  # the host's NCMD goes out on its own connection
            on_rebirth(result.rebirth)
        return result.processed

    return decode
