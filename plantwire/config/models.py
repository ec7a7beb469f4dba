"""The site file as typed models: what each key means, its unit, its default and its limits.

Models check what one key or one block can check on its own (ranges, formats, protocol limits);
relations between blocks (duplicate ids, references, overlapping shifts) are checked by
:mod:`plantwire.config.checks`, which can point at the exact line of each offender.
"""

from __future__ import annotations

import re
from datetime import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, model_validator

from plantwire.names import RESERVED_AREA_IDS, check_metric_name, check_segment

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

MODBUS_MAX_REGISTERS = 125  # per read request (Modbus application protocol, FC 3/4)
MODBUS_MAX_BITS = 2000  # per read request (FC 1/2)


class _Block(BaseModel):
    """Every block refuses unknown keys: a typo must not silently become a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _segment(what: str) -> AfterValidator:
    return AfterValidator(lambda value: check_segment(value, what))


def _area_id(value: str) -> str:
    check_segment(value, "area id")
    if value in RESERVED_AREA_IDS:
        raise ValueError(f"area id {value!r} is reserved ({', '.join(sorted(RESERVED_AREA_IDS))})")
    return value


SiteId = Annotated[str, _segment("site id")]
AreaId = Annotated[str, AfterValidator(_area_id)]
LineId = Annotated[str, _segment("line id")]
MachineId = Annotated[str, _segment("machine id")]
NodeId = Annotated[str, _segment("edge node id")]
MetricName = Annotated[str, AfterValidator(check_metric_name)]
GroupName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Seconds = Annotated[float, Field(gt=0, le=86_400)]
Unit = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[^\x00-\x1f\x7f]+$")]


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    # OSError: a folder of the zone database ("America") or a name too long for a file name.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name like Asia/Ho_Chi_Minh)"
        ) from None
    return name


class SiteInfo(_Block):
    id: SiteId
    name: str = ""
    timezone: Annotated[str, AfterValidator(_check_timezone)] = "UTC"


# -- MQTT and InfluxDB ---------------------------------------------------------------------------


class TlsFiles(_Block):
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


def _split_url(url: str, schemes: dict[str, int], what: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise ValueError(
            f"{what} url must start with {' or '.join(s + '://' for s in schemes)}, got {url!r}"
        )
    if not parts.hostname:
        raise ValueError(f"{what} url {url!r} has no host")
    if parts.password is not None:
        raise ValueError(
            f"{what} url must not carry a password; use the password key with ${{ENV_VAR}}"
        )
    try:
        port = parts.port or schemes[parts.scheme]
    except ValueError:
        raise ValueError(f"{what} url {url!r} has an invalid port") from None
    return parts.scheme, parts.hostname, port


_MQTT_SCHEMES = {"mqtt": 1883, "mqtts": 8883}
_HTTP_SCHEMES = {"http": 8086, "https": 8086}


def _mqtt_url(url: str) -> str:
    _split_url(url, _MQTT_SCHEMES, "mqtt")
    return url


def _influx_url(url: str) -> str:
    _split_url(url, _HTTP_SCHEMES, "influxdb")
    return url


class MqttConfig(_Block):
    """The broker every part connects to. ``mqtts://`` turns TLS on."""

    url: Annotated[str, AfterValidator(_mqtt_url)] = "mqtt://localhost:1883"
    client_id_prefix: Annotated[str, _segment("client id prefix")] = "plantwire"
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
        return _split_url(self.url, _MQTT_SCHEMES, "mqtt")[1]

    @property
    def port(self) -> int:
        return _split_url(self.url, _MQTT_SCHEMES, "mqtt")[2]

    @property
    def use_tls(self) -> bool:
        return self.url.startswith("mqtts://")


class InfluxConfig(_Block):
    """Where telemetry is written. ``api: v1`` is InfluxDB 1.x (``/write``, database and
    retention policy); ``api: v2`` is InfluxDB 2.x/3.x through influxdb-client (org, bucket, token).
    """

    url: Annotated[str, AfterValidator(_influx_url)] = "http://localhost:8086"
    api: Literal["v1", "v2"] = "v1"
    database: str | None = None
    retention_policy: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    org: str | None = None
    bucket: str | None = None
    token: SecretStr | None = None
    timeout_s: Seconds = 10.0

    @model_validator(mode="after")
    def _api(self) -> InfluxConfig:
        if self.api == "v1":
            if not self.database:
                raise ValueError("api v1 needs a database (and optionally retention_policy)")
            if self.org or self.bucket or self.token:
                raise ValueError("org, bucket and token belong to api v2; with api v1 use database")
        else:
            missing = [key for key in ("org", "bucket", "token") if not getattr(self, key)]
            if missing:
                raise ValueError(
                    f"api v2 needs {', '.join(missing)} "
                    "(the token as ${ENV_VAR} or token_file: PATH)"
                )
            if self.database or self.retention_policy:
                raise ValueError(
                    "database and retention_policy belong to api v1; with api v2 use bucket"
                )
        return self


# -- Shift calendar -------------------------------------------------------------------------------

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ALL_DAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _minutes(moment: time) -> int:
    return moment.hour * 60 + moment.minute


class Break(_Block):
    """A planned stop inside a shift (tea, meal): not counted as planned production time."""

    name: str = "break"
    start: time
    minutes: Annotated[float, Field(gt=0, le=720)]


class Shift(_Block):
    """A shift; ``end`` before ``start`` means it runs past midnight."""

    name: Annotated[str, _segment("shift name")]
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


# -- Modbus ---------------------------------------------------------------------------------------


class RegisterTable(StrEnum):
    COIL = "coil"  # FC 1, read/write bits
    DISCRETE = "discrete"  # FC 2, read-only bits
    INPUT = "input"  # FC 4, read-only 16-bit registers
    HOLDING = "holding"  # FC 3, read/write 16-bit registers

    @property
    def is_bit(self) -> bool:
        return self in (RegisterTable.COIL, RegisterTable.DISCRETE)


class DataType(StrEnum):
    BIT = "bit"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"

    @property
    def registers(self) -> int:
        """16-bit registers one value occupies (strings give their own length)."""
        return _TYPE_REGISTERS[self]

    @property
    def struct_code(self) -> str:
        """The :mod:`struct` code of a numeric type (big-endian once the byte order is undone)."""
        return _STRUCT_CODES[self]


_STRUCT_CODES = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "uint64": "Q",
    "float32": "f",
    "float64": "d",
}
_TYPE_REGISTERS = {
    DataType.BIT: 1,
    DataType.INT16: 1,
    DataType.UINT16: 1,
    DataType.INT32: 2,
    DataType.UINT32: 2,
    DataType.FLOAT32: 2,
    DataType.INT64: 4,
    DataType.UINT64: 4,
    DataType.FLOAT64: 4,
    DataType.STRING: 0,
}


class ByteOrder(StrEnum):
    """Order of the bytes of a multi-register value, A being the most significant byte.

    ABCD is big-endian (the Modbus default), CDAB swaps words, BADC swaps bytes within words,
    DCBA is little-endian.
    """

    ABCD = "ABCD"
    CDAB = "CDAB"
    BADC = "BADC"
    DCBA = "DCBA"


class DeadbandKind(StrEnum):
    ABSOLUTE = "absolute"
    PERCENT = "percent"


class _Reporting(_Block):
    """Report by exception: send a value only when it moved more than ``deadband`` since the
    last one sent, or when ``max_interval_s`` passed without sending (the heartbeat that keeps
    the history free of holes)."""

    deadband: Annotated[float, Field(ge=0)] | None = None
    max_interval_s: Seconds | None = None


class ModbusTag(_Reporting):
    metric: MetricName
    table: RegisterTable
    address: Annotated[int, Field(ge=0, le=65535)]
    type: DataType | None = None  # default: bit for coil/discrete, uint16 for registers
    order: ByteOrder | None = None  # default: the source's byte_order
    length: Annotated[int, Field(ge=1, le=MODBUS_MAX_REGISTERS)] | None = (
        None  # strings, in registers
    )
    scale: float = 1.0
    offset: float = 0.0
    unit: Unit | None = None
    group: GroupName | None = None  # default: the source's first poll group
    device_id: Annotated[int, Field(ge=0, le=255)] | None = None  # default: the source's device_id

    @property
    def data_type(self) -> DataType:
        if self.type is not None:
            return self.type
        return DataType.BIT if self.table.is_bit else DataType.UINT16

    @property
    def count(self) -> int:
        """Registers (or bits) this tag reads."""
        if self.data_type is DataType.STRING:
            return self.length or 0
        return self.data_type.registers

    @model_validator(mode="after")
    def _shape(self) -> ModbusTag:
        kind = self.data_type
        if self.table.is_bit and kind is not DataType.BIT:
            raise ValueError(f"{self.table} holds single bits; type must be bit, not {kind}")
        if not self.table.is_bit and kind is DataType.BIT:
            raise ValueError(
                f"{self.table} registers are 16-bit words; use a coil or discrete table for bits"
            )
        if kind is DataType.STRING and self.length is None:
            raise ValueError("a string tag needs length (in 16-bit registers, 2 characters each)")
        if kind is not DataType.STRING and self.length is not None:
            raise ValueError("length applies to string tags only")
        if kind in (DataType.BIT, DataType.STRING) and (self.scale != 1.0 or self.offset != 0.0):
            raise ValueError(f"scale and offset apply to numbers, not {kind}")
        if self.address + self.count - 1 > 65535:
            raise ValueError(
                f"address {self.address} + {self.count} registers runs past the last address 65535"
            )
        return self


class SerialSettings(_Block):
    """Line settings for Modbus RTU over a serial port."""

    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 19200
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


_MODBUS_URL = re.compile(r"^(tcp|rtu\+tcp)://[^/:\s]+(:\d{1,5})?$|^rtu://(/\S+)$")


def _modbus_endpoint(endpoint: str) -> str:
    if not _MODBUS_URL.match(endpoint):
        raise ValueError(
            f"endpoint {endpoint!r} must be tcp://HOST[:PORT], rtu+tcp://HOST[:PORT] or rtu:///dev/SERIALPORT"
        )
    return endpoint


class ModbusSource(_Block):
    """A Modbus device (or gateway): TCP, RTU over serial, or RTU framing over TCP.

    ``endpoint`` is ``tcp://HOST[:PORT]``, ``rtu+tcp://HOST[:PORT]`` or ``rtu:///dev/ttyUSB0``.
    Tags in one poll group are read together, with the fewest requests the protocol allows.
    """

    protocol: Literal["modbus"]
    endpoint: Annotated[str, AfterValidator(_modbus_endpoint)]
    device_id: Annotated[int, Field(ge=0, le=255)] = 1
    serial: SerialSettings | None = None
    byte_order: ByteOrder = ByteOrder.ABCD
    timeout_s: Seconds = 1.0
    pause_s: Annotated[float, Field(ge=0, le=10)] = 0.0
    busy_retries: Annotated[int, Field(ge=0, le=10)] = 3
    max_gap: Annotated[int, Field(ge=0, le=MODBUS_MAX_REGISTERS)] = 16
    max_registers_per_read: Annotated[int, Field(ge=1, le=MODBUS_MAX_REGISTERS)] = (
        MODBUS_MAX_REGISTERS
    )
    max_bits_per_read: Annotated[int, Field(ge=1, le=MODBUS_MAX_BITS)] = MODBUS_MAX_BITS
    poll_groups: dict[GroupName, Seconds] = Field(
        default_factory=lambda: {"default": 1.0}, min_length=1
    )
    tags: list[ModbusTag] = Field(min_length=1)

    @model_validator(mode="after")
    def _serial_and_sizes(self) -> ModbusSource:
        if self.serial is not None and not self.endpoint.startswith("rtu://"):
            raise ValueError("serial settings apply to rtu:// endpoints only")
        for tag in self.tags:
            if tag.count > self.max_registers_per_read and not tag.table.is_bit:
                raise ValueError(
                    f"tag {tag.metric!r} spans {tag.count} registers, more than one read "
                    f"may return ({self.max_registers_per_read})"
                )
        return self

    def group_of(self, tag: ModbusTag) -> str:
        """The poll group a tag is read in."""
        return tag.group or next(iter(self.poll_groups))

    @property
    def transport(self) -> Literal["tcp", "rtu", "rtu+tcp"]:
        return self.endpoint.split("://", 1)[0]  # type: ignore[return-value]


# -- OPC UA ---------------------------------------------------------------------------------------

_NODE_ID = re.compile(
    r"^(ns=\d+;)?(i=\d+|s=.+|g=[0-9a-fA-F-]{36}|b=[A-Za-z0-9+/=]+)$|^nsu=[^;]+;(i|s|g|b)=.+$"
)


def _check_node_id(value: str) -> str:
    if not _NODE_ID.match(value):
        raise ValueError(
            f"node {value!r} is not an OPC UA NodeId like 'ns=2;s=Filler.Temp' or 'ns=3;i=1042'"
        )
    return value


class OpcuaTag(_Reporting):
    metric: MetricName
    node: Annotated[str, AfterValidator(_check_node_id)]
    unit: Unit | None = None
    deadband_kind: DeadbandKind = DeadbandKind.ABSOLUTE
    sampling_interval_ms: Annotated[float, Field(ge=0, le=3_600_000)] | None = None
    # status_value_timestamp: every new source timestamp is reported, changed value or not
    trigger: Literal["status_value", "status_value_timestamp"] = "status_value"


class OpcuaSecurity(_Block):
    """Message security. Sign and SignAndEncrypt need the client's certificate and key and at
    least one trusted server certificate (a file, or a folder of them)."""

    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    policy: Literal["Basic256Sha256"] = "Basic256Sha256"
    cert_file: Path | None = None
    key_file: Path | None = None
    trust: list[Path] = Field(default_factory=list)

    @model_validator(mode="after")
    def _files(self) -> OpcuaSecurity:
        if self.mode != "None":
            if self.cert_file is None or self.key_file is None:
                raise ValueError(f"security mode {self.mode} needs cert_file and key_file")
            if not self.trust:
                raise ValueError(
                    f"security mode {self.mode} needs trust: the server certificate(s) to accept"
                )
        return self


class OpcuaSource(_Block):
    """An OPC UA server. ``mode: subscribe`` uses monitored items; ``poll`` reads on a timer for
    servers whose subscriptions are unreliable."""

    protocol: Literal["opcua"]
    endpoint: Annotated[str, Field(pattern=r"^opc\.tcp://[^/\s]+(/\S*)?$")]
    security: OpcuaSecurity = Field(default_factory=OpcuaSecurity)
    username: str | None = None
    password: SecretStr | None = None
    mode: Literal["subscribe", "poll"] = "subscribe"
    publishing_interval_ms: Annotated[float, Field(gt=0, le=3_600_000)] = 1000.0
    sampling_interval_ms: Annotated[float, Field(ge=0, le=3_600_000)] = 500.0
    poll_interval_s: Seconds = 1.0
    queue_size: Annotated[int, Field(ge=1, le=10_000)] = 10
    max_items_per_subscription: Annotated[int, Field(ge=1, le=100_000)] = 1000
    timeout_s: Seconds = 5.0
    tags: list[OpcuaTag] = Field(min_length=1)

    @model_validator(mode="after")
    def _identity(self) -> OpcuaSource:
        if self.password is not None and self.username is None:
            raise ValueError("a password without a username cannot be used; add username")
        return self


Source = Annotated[ModbusSource | OpcuaSource, Field(discriminator="protocol")]

# -- Assets ---------------------------------------------------------------------------------------


class OeeSignals(_Block):
    """Which metrics of a machine feed OEE: its state code, part counters and energy meter."""

    state: MetricName | None = None
    good_count: MetricName | None = None
    reject_count: MetricName | None = None
    total_count: MetricName | None = None
    energy_kwh: MetricName | None = None
    product: MetricName | None = None  # the running product's id, for per-product cycle times

    def metrics(self) -> dict[str, str]:
        return {role: name for role, name in self.model_dump().items() if name is not None}


class Machine(_Block):
    id: MachineId
    name: str = ""
    kind: str = "generic"
    ideal_cycle_time_s: Seconds | None = None  # default: the line's (or its product's)
    edge_node: NodeId | None = None  # default: the site's only edge node
    clock_metric: MetricName | None = None  # a PLC clock tag that stamps the samples (plant time)
    oee: OeeSignals = Field(default_factory=OeeSignals)
    sources: list[Source] = Field(min_length=1)

    def metric_names(self) -> list[str]:
        return [tag.metric for source in self.sources for tag in source.tags]


class Product(_Block):
    id: Annotated[str, _segment("product id")]
    ideal_cycle_time_s: Seconds


class Line(_Block):
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


class Area(_Block):
    id: AreaId
    name: str = ""
    lines: list[Line] = Field(min_length=1)


class EdgeNode(_Block):
    """One edge agent process (``plantwire edge --node ID``) and its store-and-forward buffer."""

    id: NodeId
    buffer_path: Path | None = None  # default: plantwire-edge-<id>.db in the working folder
    buffer_max_mb: Annotated[float, Field(gt=0, le=1_000_000)] = 1024.0
    batch_max_samples: Annotated[int, Field(ge=1, le=100_000)] = 1000
    batch_max_latency_ms: Annotated[int, Field(ge=1, le=60_000)] = 250
    health_port: Annotated[int, Field(ge=0, le=65535)] = 9101  # 0 turns the endpoint off
    # Counters published to services/<id>/stats for the pipeline board; 0 turns them off.
    stats_interval_s: Annotated[float, Field(ge=0, le=3600)] = 10.0
    # "sparkplug": publish as a Sparkplug B edge node (needs the site's sparkplug block).
    payload: Literal["native", "sparkplug"] = "native"
    # Send data only while a gateway of the site says online: before a gateway's first
    # subscription the broker acknowledges data and delivers it to nobody (docs/edge.md).
    wait_for_gateway: bool = True


class GatewayConfig(_Block):
    """The gateway: MQTT telemetry in, InfluxDB out. Several gateways with the same
    ``shared_group`` split the site's messages between them (MQTT 5 shared subscription)."""

    shared_group: Annotated[str, _segment("shared subscription group")] | None = None
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


class AnalyticsConfig(_Block):
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


class SparkplugConfig(_Block):
    """Sparkplug B on this site: the group its edge nodes publish in, and the primary host
    application (the gateway) whose STATE they wait for before their births."""

    group_id: Annotated[str, _segment("Sparkplug group id")] | None = None  # default: site id
    host_id: Annotated[str, _segment("Sparkplug host id")] = "plantwire"
    # The gateway acts as the host application: it ingests spBv1.0/<group>/#.
    host: bool = True
    # Edge nodes publish births and data only while the host's STATE says online.
    wait_for_host: bool = True


class SqliteConfig(_Block):
    """The embedded store: one SQLite file, for a demo or a small site without InfluxDB."""

    path: Path = Path("plantwire-store.db")


class SiteConfig(_Block):
    """A whole site: what it is, where its broker and database are, its shifts and assets."""

    version: Literal[1] = 1
    site: SiteInfo
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    influxdb: InfluxConfig | None = None
    sqlite: SqliteConfig | None = None  # the embedded store, when there is no influxdb block
    sparkplug: SparkplugConfig | None = None  # Sparkplug B beside the native format
    shifts: list[Shift] = Field(default_factory=list)
    edge_nodes: list[EdgeNode] = Field(default_factory=lambda: [EdgeNode(id="edge")], min_length=1)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    analytics: AnalyticsConfig = Field(default_factory=AnalyticsConfig)
    areas: list[Area] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_store(self) -> SiteConfig:
        if self.influxdb is not None and self.sqlite is not None:
            raise ValueError("give either an influxdb or a sqlite block, not both")
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
