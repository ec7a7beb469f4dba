"""The Sparkplug B topic namespace (Eclipse Sparkplug 3.0, chapter 4) and the host's STATE message.

====================================================  ========================================
topic                                                 what is published there
====================================================  ========================================
``spBv1.0/<group>/NBIRTH|NDEATH|NDATA|NCMD/<node>``   an edge node's birth, death, data, commands
``spBv1.0/<group>/DBIRTH|DDEATH|DDATA|DCMD/<node>/<device>``  the same for a device behind it
``spBv1.0/STATE/<host id>``                           a host application's online state (retained)
====================================================  ========================================

An id (group, edge node, device, host) is any non-empty UTF-8 text without ``/``, ``+`` or
``#``, which MQTT reserves. That is looser than PlantWire's own names (spaces and ``$`` are
allowed), so that PlantWire can talk to any Sparkplug node; mapping ids to PlantWire's asset
tree is the host's business.

The STATE payload is JSON, ``{"online": true, "timestamp": 1763712000000}``, the timestamp in
milliseconds since the Unix epoch (UTC).
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

import orjson

from plantwire.errors import PayloadError, TopicError

__all__ = [
    "NAMESPACE",
    "STATE",
    "HostState",
    "HostStateTopic",
    "MessageType",
    "SparkplugTopic",
    "check_sparkplug_id",
    "decode_host_state",
    "encode_host_state",
    "host_state_topic",
    "parse_topic",
    "sparkplug_subscription",
    "sparkplug_topic",
]

NAMESPACE = "spBv1.0"
STATE = "STATE"
_FORBIDDEN = frozenset("/+#\x00")  # MQTT also refuses NUL in a topic name


class MessageType(StrEnum):
    """The Sparkplug verbs: N… for the edge node itself, D… for a device behind it."""

    NBIRTH = "NBIRTH"
    NDEATH = "NDEATH"
    NDATA = "NDATA"
    NCMD = "NCMD"
    DBIRTH = "DBIRTH"
    DDEATH = "DDEATH"
    DDATA = "DDATA"
    DCMD = "DCMD"

    @property
    def is_device(self) -> bool:
        """True for the device-level types, whose topic ends with a device id."""
        return self.startswith("D")


class SparkplugTopic(NamedTuple):
    """A parsed edge node or device topic."""

    group_id: str
    message_type: MessageType
    edge_node_id: str
    device_id: str | None = None

    def __str__(self) -> str:
        return sparkplug_topic(self.group_id, self.message_type, self.edge_node_id, self.device_id)


class HostStateTopic(NamedTuple):
    """A parsed ``spBv1.0/STATE/<host id>`` topic."""

    host_id: str

    def __str__(self) -> str:
        return host_state_topic(self.host_id)


class HostState(NamedTuple):
    """A host application's STATE payload."""

    online: bool
    timestamp: int


def check_sparkplug_id(value: object, what: str = "id") -> str:
    """Refuse an id that cannot be a Sparkplug topic level; return it otherwise.

    >>> check_sparkplug_id("Line 4 Fillers", "group id")
    'Line 4 Fillers'
    >>> check_sparkplug_id("press/2", "edge node id")
    Traceback (most recent call last):
    ...
    plantwire.errors.TopicError: edge node id 'press/2' contains '/', which Sparkplug forbids
    """
    if not isinstance(value, str):
        raise TopicError(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise TopicError(f"{what} is empty")
    bad = next((char for char in value if char in _FORBIDDEN), None)
    if bad is not None:
        raise TopicError(f"{what} {value!r} contains {bad!r}, which Sparkplug forbids")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise TopicError(f"{what} {value!r} is not valid UTF-8") from None
    return value


def sparkplug_topic(
    group_id: str, message_type: MessageType, edge_node_id: str, device_id: str | None = None
) -> str:
    """The topic of an edge node message, or of a device message when ``device_id`` is given.

    >>> sparkplug_topic("bottling", MessageType.DDATA, "edge-1", "filler-2")
    'spBv1.0/bottling/DDATA/edge-1/filler-2'
    """
    kind = _message_type(message_type)
    levels = [
        NAMESPACE,
        check_sparkplug_id(group_id, "group id"),
        kind,
        check_sparkplug_id(edge_node_id, "edge node id"),
    ]
    if kind.is_device:
        if device_id is None:
            raise TopicError(f"{kind} topics need a device id")
        levels.append(check_sparkplug_id(device_id, "device id"))
    elif device_id is not None:
        raise TopicError(f"{kind} topics have no device id, got {device_id!r}")
    return "/".join(levels)


def _message_type(value: str) -> MessageType:
    try:
        return MessageType(value)
    except ValueError:
        raise TopicError(
            f"{value!r} is not a Sparkplug message type ({', '.join(MessageType)})"
        ) from None


def host_state_topic(host_id: str) -> str:
    """Where a host application publishes its retained online state.

    >>> host_state_topic("plantwire-gateway")
    'spBv1.0/STATE/plantwire-gateway'
    """
    return f"{NAMESPACE}/{STATE}/{check_sparkplug_id(host_id, 'host id')}"


def sparkplug_subscription(group_id: str | None = None) -> str:
    """Topic filter for every edge node and device message of one group, or of every group.

    The host subscribes to its own STATE topic separately.

    >>> sparkplug_subscription("bottling")
    'spBv1.0/bottling/#'
    """
    if group_id is None:
        return f"{NAMESPACE}/+/#"
    return f"{NAMESPACE}/{check_sparkplug_id(group_id, 'group id')}/#"


def parse_topic(topic: str) -> SparkplugTopic | HostStateTopic:
    """Parse any Sparkplug B topic; raise TopicError for anything else.

    >>> parse_topic("spBv1.0/bottling/NBIRTH/edge-1")
    SparkplugTopic(group_id='bottling', message_type=<MessageType.NBIRTH: 'NBIRTH'>, \
edge_node_id='edge-1', device_id=None)
    >>> parse_topic("spBv1.0/STATE/scada-1")
    HostStateTopic(host_id='scada-1')
    """
    levels = topic.split("/")
    if levels[0] != NAMESPACE:
        raise TopicError(f"topic {topic!r} is not in the {NAMESPACE} namespace")
    if len(levels) == 3 and levels[1] == STATE:
        return HostStateTopic(_level(topic, levels[2], "host id"))
    if len(levels) not in (4, 5):
        raise TopicError(
            f"topic {topic!r} is not {NAMESPACE}/<group>/<type>/<edge node>[/<device>] "
            f"or {NAMESPACE}/{STATE}/<host id>"
        )
    try:
        kind = _message_type(levels[2])
    except TopicError as exc:
        raise TopicError(f"topic {topic!r}: {exc}") from None
    if kind.is_device != (len(levels) == 5):
        needs = "end with a device id" if kind.is_device else "have no device id"
        raise TopicError(f"topic {topic!r}: {kind} topics {needs}")
    return SparkplugTopic(
        _level(topic, levels[1], "group id"),
        kind,
        _level(topic, levels[3], "edge node id"),
        _level(topic, levels[4], "device id") if kind.is_device else None,
    )


def _level(topic: str, value: str, what: str) -> str:
    try:
        return check_sparkplug_id(value, what)
    except TopicError as exc:
        raise TopicError(f"topic {topic!r}: {exc}") from None


def encode_host_state(online: bool, timestamp: int) -> bytes:
    """The retained STATE payload of a host application (timestamp in ms, UTC).

    >>> encode_host_state(True, 1763712000000)
    b'{"online":true,"timestamp":1763712000000}'
    """
    if type(online) is not bool:
        raise PayloadError(f"'online' must be a boolean, got {online!r}")
    if type(timestamp) is not int or not 0 <= timestamp < 2**63:
        raise PayloadError(f"'timestamp' must be a non-negative integer of ms, got {timestamp!r}")
    return orjson.dumps({"online": online, "timestamp": timestamp})


def decode_host_state(payload: bytes) -> HostState:
    """Read a STATE payload; raise PayloadError unless it is the 3.0 JSON object.

    >>> decode_host_state(b'{"online": false, "timestamp": 1763712000000}')
    HostState(online=False, timestamp=1763712000000)
    """
    try:
        doc = orjson.loads(payload)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise PayloadError(f"STATE payload is not JSON: {exc}") from None
    if type(doc) is not dict:
        raise PayloadError("STATE payload must be a JSON object with 'online' and 'timestamp'")
    online, timestamp = doc.get("online"), doc.get("timestamp")
    if type(online) is not bool:
        raise PayloadError(f"STATE 'online' must be true or false, got {online!r}")
    if type(timestamp) is not int or timestamp < 0:
        raise PayloadError(f"STATE 'timestamp' must be a non-negative integer, got {timestamp!r}")
    return HostState(online, timestamp)
