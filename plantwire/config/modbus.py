"""The Modbus source block: TCP, RTU over a serial line, or RTU framing over TCP.

Registered in :mod:`plantwire.config.sources`; the driver is :mod:`edge.sources.modbus`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, model_validator

from plantwire.config.common import (
    Block,
    GroupName,
    Problem,
    Seconds,
    SourceConfig,
    SourceTag,
)

__all__ = [
    "MODBUS_MAX_BITS",
    "MODBUS_MAX_REGISTERS",
    "ByteOrder",
    "DataType",
    "ModbusSource",
    "ModbusTag",
    "RegisterTable",
    "SerialSettings",
]

MODBUS_MAX_REGISTERS = 125  # per read request (Modbus application protocol, FC 3/4)
MODBUS_MAX_BITS = 2000  # per read request (FC 1/2)


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


class ModbusTag(SourceTag):
    table: RegisterTable
    address: Annotated[int, Field(ge=0, le=65535)]
    type: DataType | None = None  # default: bit for coil/discrete, uint16 for registers
    order: ByteOrder | None = None  # default: the source's byte_order
    length: Annotated[int, Field(ge=1, le=MODBUS_MAX_REGISTERS)] | None = (
        None  # strings, in registers
    )
    scale: float = 1.0
    offset: float = 0.0
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


class SerialSettings(Block):
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


class ModbusSource(SourceConfig):
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

    example: ClassVar[dict[str, object]] = {
        "protocol": "modbus",
        "endpoint": "tcp://127.0.0.1:1",
        "tags": [{"metric": "temperature", "table": "input", "address": 0, "type": "float32"}],
    }

    def group_of(self, tag: ModbusTag) -> str:
        """The poll group a tag is read in."""
        return tag.group or next(iter(self.poll_groups))

    def connection_key(self) -> tuple[object, ...]:
        # Devices behind one endpoint share its connection; a serial line has one setting.
        return (self.endpoint, self.serial)

    def problems(self) -> Iterator[Problem]:
        groups = ", ".join(sorted(self.poll_groups))
        for index, tag in enumerate(self.tags):
            if tag.group and tag.group not in self.poll_groups:
                yield (
                    ("tags", index, "group"),
                    f"poll group {tag.group!r} is not in this source's poll_groups ({groups})",
                )

    def describe(self) -> str:
        groups = ", ".join(f"{name} {interval:g}s" for name, interval in self.poll_groups.items())
        return (
            f"modbus {self.endpoint} device {self.device_id}: {len(self.tags)} tags (poll {groups})"
        )

    @property
    def transport(self) -> Literal["tcp", "rtu", "rtu+tcp"]:
        return self.endpoint.split("://", 1)[0]  # type: ignore[return-value]
