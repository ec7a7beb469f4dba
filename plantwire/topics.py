"""The MQTT topic namespace: a Unified-Namespace tree rooted at ``plantwire/v1``.

======================================================  ===========================================
topic                                                   what is published there
=====================================================  =========================================
``plantwire/v1/<site>/<area>/<line>/<machine>/data``   telemetry batches (QoS 1)
``plantwire/v1/<site>/<area>/<line>/<machine>/state``  edge birth/death of the machine (retained)
``plantwire/v1/<site>/alerts/<area>/<line>/<machine>`` analytics alerts (retained state + events)
``plantwire/v1/<site>/deadletter/<origin>``            payloads the gateway refused, with reasons
``plantwire/v1/<site>/services/<service id>/state``    gateway / analytics status (retained)
``plantwire/v1/<site>/services/<service id>/stats``    an edge agent's counters, every few seconds
=====================================================  =========================================

Every level is checked with :func:`plantwire.names.check_segment`, so a topic built here can
never contain a wildcard or an empty level.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from plantwire.errors import InvalidNameError, TopicError
from plantwire.model import AssetPath
from plantwire.names import check_segment

__all__ = [
    "GATEWAY_ROLE",
    "ROOT",
    "MachineTopic",
    "ServiceTopic",
    "TopicKind",
    "alert_topic",
    "data_subscription",
    "data_topic",
    "deadletter_topic",
    "parse_machine_topic",
    "parse_service_topic",
    "service_state_topic",
    "service_stats_topic",
    "service_subscription",
    "state_topic",
]

ROOT = "plantwire/v1"
# The "role" a gateway names in its retained service state, which edges wait for
# (edge/gateway_watch.py); edges and analytics publish states on the same topics without it.
GATEWAY_ROLE = "gateway"
_ROOT_LEVELS = ROOT.split("/")


class TopicKind(StrEnum):
    DATA = "data"
    STATE = "state"


class MachineTopic(NamedTuple):
    """A parsed machine topic: which machine, and data or state."""

    asset: AssetPath
    kind: TopicKind


def _machine_topic(asset: AssetPath, kind: TopicKind) -> str:
    asset.validate()
    return f"{ROOT}/{asset.site}/{asset.area}/{asset.line}/{asset.machine}/{kind}"


def data_topic(asset: AssetPath) -> str:
    """Telemetry topic of a machine.

    >>> data_topic(AssetPath("binh-duong", "dairy", "filling", "filler-1"))
    'plantwire/v1/binh-duong/dairy/filling/filler-1/data'
    """
    return _machine_topic(asset, TopicKind.DATA)


def state_topic(asset: AssetPath) -> str:
    """Retained birth/death topic of a machine."""
    return _machine_topic(asset, TopicKind.STATE)


def data_subscription(site: str | None = None, shared_group: str | None = None) -> str:
    """Topic filter for all telemetry of one site (or every site), optionally shared.

    >>> data_subscription("binh-duong", shared_group="gateways")
    '$share/gateways/plantwire/v1/binh-duong/+/+/+/data'
    """
    site_level = check_segment(site, "site id") if site is not None else "+"
    topic_filter = f"{ROOT}/{site_level}/+/+/+/{TopicKind.DATA}"
    if shared_group is not None:
        topic_filter = (
            f"$share/{check_segment(shared_group, 'shared subscription group')}/{topic_filter}"
        )
    return topic_filter


def alert_topic(asset: AssetPath) -> str:
    """Where analytics publishes alerts about a machine."""
    asset.validate()
    return f"{ROOT}/{asset.site}/alerts/{asset.area}/{asset.line}/{asset.machine}"


def deadletter_topic(site: str, origin: str) -> str:
    """Where the gateway republishes a refused payload (origin: the edge id, or 'unknown')."""
    return f"{ROOT}/{check_segment(site, 'site id')}/deadletter/{check_segment(origin, 'origin')}"


def service_state_topic(site: str, service_id: str) -> str:
    """Retained status of a gateway or analytics instance."""
    return (
        f"{ROOT}/{check_segment(site, 'site id')}/services/"
        f"{check_segment(service_id, 'service id')}/state"
    )


def service_stats_topic(site: str, service_id: str) -> str:
    """An edge agent's periodic counters (QoS 0: a snapshot, the next one follows)."""
    return (
        f"{ROOT}/{check_segment(site, 'site id')}/services/"
        f"{check_segment(service_id, 'service id')}/stats"
    )


def service_subscription(site: str, shared_group: str | None = None) -> str:
    """Topic filter for every service's state and stats of one site, optionally shared.

    >>> service_subscription("binh-duong")
    'plantwire/v1/binh-duong/services/+/+'
    """
    topic_filter = f"{ROOT}/{check_segment(site, 'site id')}/services/+/+"
    if shared_group is not None:
        topic_filter = (
            f"$share/{check_segment(shared_group, 'shared subscription group')}/{topic_filter}"
        )
    return topic_filter


class ServiceTopic(NamedTuple):
    site: str
    service: str
    kind: str  # "state" or "stats"


def parse_service_topic(topic: str) -> ServiceTopic | None:
    """The site, service id and kind of a service topic; None for any other topic.

    >>> parse_service_topic("plantwire/v1/bd/services/edge-dairy/stats")
    ServiceTopic(site='bd', service='edge-dairy', kind='stats')
    """
    levels = topic.split("/")
    if (
        len(levels) != 6
        or levels[:2] != _ROOT_LEVELS
        or levels[3] != "services"
        or levels[5] not in ("state", "stats")
    ):
        return None
    try:
        check_segment(levels[2], "site id")
        check_segment(levels[4], "service id")
    except InvalidNameError:
        return None
    return ServiceTopic(levels[2], levels[4], levels[5])


def parse_machine_topic(topic: str) -> MachineTopic:
    """Parse a machine data or state topic; raise TopicError for anything else.

    >>> parse_machine_topic("plantwire/v1/binh-duong/snacks/packing/bagger-2/data").asset.machine
    'bagger-2'
    >>> parse_machine_topic("plantwire/v1/binh-duong/snacks/packing/data")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    plantwire.errors.TopicError: topic 'plantwire/v1/binh-duong/snacks/packing/data' is not ...
    """
    levels = topic.split("/")
    if (
        len(levels) != 7
        or levels[:2] != _ROOT_LEVELS
        or levels[6] not in TopicKind.__members__.values()
    ):
        raise TopicError(f"topic {topic!r} is not {ROOT}/<site>/<area>/<line>/<machine>/data|state")
    try:
        asset = AssetPath(levels[2], levels[3], levels[4], levels[5]).validate()
    except InvalidNameError as exc:
        raise TopicError(f"topic {topic!r}: {exc}") from exc
    return MachineTopic(asset, TopicKind(levels[6]))
