"""The site file as typed models: what each key means, its unit, its default and its limits.

Models check what one key or one block can check on its own (ranges, formats, protocol limits);
relations between blocks (duplicate ids, references, overlapping shifts) are checked by
:mod:`plantwire.config.checks`, which can point at the exact line of each offender.
"""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, SecretStr, model_validator

from plantwire.codec.formats import check_edge_format
from plantwire.config.common import (
    Block,
    DeadbandKind,
    MetricName,
    Seconds,
    segment,
    split_url,
)
from plantwire.config.ingest import AnyIngestRule
from plantwire.config.modbus import (
    ByteOrder,
    DataType,
    ModbusSource,
    ModbusTag,
    RegisterTable,
    SerialSettings,
)
from plantwire.config.opcua import OpcuaSecurity, OpcuaSource, OpcuaTag
from plantwire.config.sources import AnySource
from plantwire.config.stores import AnyStore, InfluxConfig
from plantwire.names import RESERVED_AREA_IDS, check_segment

__all__ = [
    "Area",
    "Break",
    "ByteOrder",
    "DataType",
    "DeadbandKind",
    "EdgeNode",
    "GatewayConfig",
    "InfluxConfig",
    "Line",
    "Machine",
    "ModbusSource",
    "ModbusTag",
    "MqttConfig",
    "OeeSignals",
    "OpcuaSecurity",
    "OpcuaSource",
    "OpcuaTag",
    "Product",
    "RegisterTable",
    "SerialSettings",
    "Shift",
    "SiteConfig",
    "SiteInfo",
    "Source",
    "TlsFiles",
]

# The per-protocol source models live in their own modules (plantwire.config.sources lists
# them); they are named here too, as parts of the site file's schema.


def _area_id(value: str) -> str:
    check_segment(value, "area id")
    if value in RESERVED_AREA_IDS:
        raise ValueError(f"area id {value!r} is reserved ({', '.join(sorted(RESERVED_AREA_IDS))})")
    return value


SiteId = Annotated[str, segment("site id")]
AreaId = Annotated[str, AfterValidator(_area_id)]
LineId = Annotated[str, segment("line id")]
MachineId = Annotated[str, segment("machine id")]
NodeId = Annotated[str, segment("edge node id")]


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    # OSError: a folder of the zone database ("America") or a name too long for a file name.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name like Asia/Ho_Chi_Minh)"
        ) from None
    return name


class SiteInfo(Block):
    id: SiteId
    name: str = ""
    timezone: Annotated[str, AfterValidator(_check_timezone)] = "UTC"


# -- MQTT and InfluxDB ---------------------------------------------------------------------------


class TlsFiles(Block):
    """Certificate files for TLS; the CA verifies the server, cert and key identify the client."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    check_hostname: bool = True

    @model_validator(mode="after")
    def _pair(self) -> TlsFiles:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError(
                "cert_file and key_file go together (the client certificate and its key)"
            )
        return self


_MQTT_SCHEMES = {"mqtt": 1883, "mqtts": 8883}


def _mqtt_url(url: str) -> str:
    split_url(url, _MQTT_SCHEMES, "mqtt")
    return url


class MqttConfig(Block):
    """The broker every part connects to. ``mqtts://`` turns TLS on."""

    url: Annotated[str, AfterValidator(_mqtt_url)] = "mqtt://localhost:1883"
    client_id_prefix: Annotated[str, segment("client id prefix")] = "plantwire"
    # "3.1.1" for brokers without MQTT 5 (session expiry and receive maximum are then not sent).
    protocol: Literal["5", "3.1.1"] = "5"
    username: str | None = None
    password: SecretStr | None = None
    tls: TlsFiles | None = None
    qos: Literal[1, 2] = 1
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30
    session_expiry_s: Annotated[int, Field(ge=0, le=2**32 - 1)] = 7 * 86_400
    max_payload_bytes: Annotated[int, Field(ge=1024, le=256 * 1024 * 1024)] = 4 * 1024 * 1024

    @model_validator(mode="after")
    def _tls(self) -> MqttConfig:
        if self.tls is not None and not self.use_tls:
            raise ValueError("tls files are given but the url is mqtt://; use mqtts:// for TLS")
        if self.password is not None and self.username is None:
            raise ValueError("a password without a username cannot be used; add username")
        return self

    @property
    def host(self) -> str:
        return split_url(self.url, _MQTT_SCHEMES, "mqtt")[1]

    @property
    def port(self) -> int:
        return split_url(self.url, _MQTT_SCHEMES, "mqtt")[2]

    @property
    def use_tls(self) -> bool:
        return self.url.startswith("mqtts://")


# -- Shift calendar -------------------------------------------------------------------------------

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ALL_DAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _minutes(moment: time) -> int:
    return moment.hour * 60 + moment.minute


class Break(Block):
    """A planned stop inside a shift (tea, meal): not counted as planned production time."""

    name: str = "break"
    start: time
    minutes: Annotated[float, Field(gt=0, le=720)]


class Shift(Block):
    """A shift; ``end`` before ``start`` means it runs past midnight."""

    name: Annotated[str, segment("shift name")]
    start: time
    end: time
    days: list[Weekday] = Field(default_factory=lambda: list(ALL_DAYS), min_length=1)
    breaks: list[Break] = Field(default_factory=list)

    @property
    def length_min(self) -> int:
        length = (_minutes(self.end) - _minutes(self.start)) % (24 * 60)
        return length or 24 * 60

    def offset_min(self, moment: time) -> int:
        """Minutes from the shift start to a clock time (wrapping past midnight)."""
        return (_minutes(moment) - _minutes(self.start)) % (24 * 60)


# A source block, any registered protocol's (plantwire.config.sources).
Source = AnySource

# -- Assets ---------------------------------------------------------------------------------------


class OeeSignals(Block):
    """Which metrics of a machine feed OEE: its state code, part counters and energy meter."""

    state: MetricName | None = None
    good_count: MetricName | None = None
    reject_count: MetricName | None = None
    total_count: MetricName | None = None
    energy_kwh: MetricName | None = None
    product: MetricName | None = None  # the running product's id, for per-product cycle times

    def metrics(self) -> dict[str, str]:
        return {role: name for role, name in self.model_dump().items() if name is not None}


class Machine(Block):
    id: MachineId
    name: str = ""
    kind: str = "generic"
    ideal_cycle_time_s: Seconds | None = None  # default: the line's (or its product's)
    edge_node: NodeId | None = None  # default: the site's only edge node
    clock_metric: MetricName | None = None  # a PLC clock tag that stamps the samples (plant time)
    oee: OeeSignals = Field(default_factory=OeeSignals)
    # What an edge agent reads; none when the machine's data comes from ingest rules (a device
    # that publishes MQTT itself: docs/ingest.md).
    sources: list[Source] = Field(default_factory=list)

    def metric_names(self) -> list[str]:
        return [tag.metric for source in self.sources for tag in source.tags]


class Product(Block):
    id: Annotated[str, segment("product id")]
    ideal_cycle_time_s: Seconds


class Line(Block):
    id: LineId
    name: str = ""
    ideal_cycle_time_s: Seconds
    products: list[Product] = Field(default_factory=list)
    output_machine: MachineId | None = None  # whose counters are the line's output (default: last)
    machines: list[Machine] = Field(min_length=1)

    @property
    def output(self) -> Machine:
        """The machine whose parts are the line's output (its OEE is the line's OEE)."""
        for machine in self.machines:
            if machine.id == self.output_machine:
                return machine
        return self.machines[-1]


class Area(Block):
    id: AreaId
    name: str = ""
    lines: list[Line] = Field(min_length=1)


class EdgeNode(Block):
    """One edge agent process (``plantwire edge --node ID``) and its store-and-forward buffer."""

    id: NodeId
    buffer_path: Path | None = None  # default: plantwire-edge-<id>.db in the working folder
    buffer_max_mb: Annotated[float, Field(gt=0, le=1_000_000)] = 1024.0
    batch_max_samples: Annotated[int, Field(ge=1, le=100_000)] = 1000
    batch_max_latency_ms: Annotated[int, Field(ge=1, le=60_000)] = 250
    health_port: Annotated[int, Field(ge=0, le=65535)] = 9101  # 0 turns the endpoint off
    # Counters published to services/<id>/stats for the pipeline board; 0 turns them off.
    stats_interval_s: Annotated[float, Field(ge=0, le=3600)] = 10.0
    # How data goes on the wire: a name of plantwire.codec.formats.EDGE_FORMATS ("sparkplug":
    # a Sparkplug B edge node, which needs the site's sparkplug block).
    payload: Annotated[str, AfterValidator(check_edge_format)] = "native"
    # Send data only while a gateway of the site says online: before a gateway's first
    # subscription the broker acknowledges data and delivers it to nobody (docs/edge.md).
    wait_for_gateway: bool = True


class GatewayConfig(Block):
    """The gateway: MQTT telemetry in, InfluxDB out. Several gateways with the same
    ``shared_group`` split the site's messages between them (MQTT 5 shared subscription)."""

    shared_group: Annotated[str, segment("shared subscription group")] | None = None
    spool_path: Path | None = None  # default: plantwire-gateway-<id>.db in the working folder
    spool_max_mb: Annotated[float, Field(gt=0, le=1_000_000)] = 2048.0
    batch_max_lines: Annotated[int, Field(ge=1, le=100_000)] = 5000
    batch_max_latency_ms: Annotated[int, Field(ge=1, le=60_000)] = 200
    max_writes_in_flight: Annotated[int, Field(ge=1, le=64)] = 4
    # At most this many messages and this many payload MB received and not yet acknowledged:
    # the gateway stops reading from the broker at either bound, whatever the broker honours.
    receive_maximum: Annotated[int, Field(ge=1, le=65_535)] = 1000
    inflight_max_mb: Annotated[float, Field(ge=1, le=65_536)] = 64.0
    # A refused payload larger than this is dead-lettered truncated, with its length and hash.
    dead_letter_max_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 64 * 1024
    # /healthz says degraded when writes wait this long without one completing.
    write_stall_s: Annotated[float, Field(ge=1, le=3600)] = 20.0
    health_port: Annotated[int, Field(ge=0, le=65535)] = 9102  # 0 turns the endpoint off
    # Its own counters written to the ``pipeline`` measurement; 0 turns the report off.
    pipeline_interval_s: Annotated[float, Field(ge=0, le=3600)] = 10.0
    # An edge whose clock is further than this from the gateway's is flagged (docs/gateway.md).
    clock_tolerance_s: Annotated[float, Field(gt=0, le=86_400)] = 30.0


class AnalyticsConfig(Block):
    """The OEE rules and the analytics service's timing."""

    small_stop_threshold_s: Seconds = (
        120.0  # shorter stops are performance loss, longer ones availability
    )
    startup_s: Annotated[float, Field(ge=0, le=86_400)] = (
        300.0  # rejects this soon after a restart are start-up rejects
    )
    max_gap_s: Seconds = (
        60.0  # a state sample holds this long at most; after that the state is unknown
    )
    interval_s: Seconds = 60.0  # how often the current shift is recomputed
    finalize_after_s: Annotated[float, Field(ge=0, le=86_400)] = (
        120.0  # wait for late data before a shift's final figures
    )
    health_port: Annotated[int, Field(ge=0, le=65535)] = 9103  # 0 turns the endpoint off
    registry_path: Path = Path("plantwire-models")  # anomaly models (plantwire train / models)


class SparkplugConfig(Block):
    """Sparkplug B on this site: the group its edge nodes publish in, and the primary host
    application (the gateway) whose STATE they wait for before their births."""

    group_id: Annotated[str, segment("Sparkplug group id")] | None = None  # default: site id
    host_id: Annotated[str, segment("Sparkplug host id")] = "plantwire"
    # The gateway acts as the host application: it ingests spBv1.0/<group>/#.
    host: bool = True
    # Edge nodes publish births and data only while the host's STATE says online.
    wait_for_host: bool = True


class SiteConfig(Block):
    """A whole site: what it is, where its broker and database are, its shifts and assets."""

    version: Literal[1] = 1
    site: SiteInfo
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    store: AnyStore | None = None  # where the time series go (plantwire.config.stores)
    sparkplug: SparkplugConfig | None = None  # Sparkplug B beside the native format
    ingest: list[AnyIngestRule] = Field(default_factory=list)  # the plant's own MQTT data
    shifts: list[Shift] = Field(default_factory=list)
    edge_nodes: list[EdgeNode] = Field(default_factory=lambda: [EdgeNode(id="edge")], min_length=1)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    analytics: AnalyticsConfig = Field(default_factory=AnalyticsConfig)
    areas: list[Area] = Field(min_length=1)

    @model_validator(mode="after")
    def _sparkplug_block(self) -> SiteConfig:
        sparkplug_nodes = [n.id for n in self.edge_nodes if n.payload == "sparkplug"]
        if sparkplug_nodes and self.sparkplug is None:
            raise ValueError(
                f"edge node(s) {', '.join(sparkplug_nodes)} publish Sparkplug B "
                "but the site has no sparkplug block"
            )
        return self

    @property
    def sparkplug_group(self) -> str:
        """The Sparkplug group id: the sparkplug block's, or the site id."""
        block = self.sparkplug
        return (block.group_id if block else None) or self.site.id

    def machines(self) -> list[tuple[Area, Line, Machine]]:
        return [
            (area, line, machine)
            for area in self.areas
            for line in area.lines
            for machine in line.machines
        ]

    def edge_node_of(self, machine: Machine) -> str:
        return machine.edge_node or self.edge_nodes[0].id
