"""The simulator's Modbus register map: where each metric of a machine lives, and its encoding.

Every machine is one Modbus device (device id = its position in the scenario + 1) with the same
layout, so one table documents the plant (``plantwire sim registers`` prints it per machine):

==========  =======  ==============  =========  =====  ===========  =============================
table       address  metric          type       order  scale        meaning
==========  =======  ==============  =========  =====  ===========  =============================
holding     0        state           uint16                         MachineState code
holding     1        product_code    uint16                         index of the running product
holding     2-5      plc_clock_ns    uint64     ABCD                PLC clock, ns since the epoch
holding     6-13     product         string                         product id, 16 bytes, NUL-padded
input       0-1      good_count      uint32     ABCD                good parts (wraps at 2^32)
input       2-3      reject_count    uint32     CDAB                rejected parts (wraps)
input       4-5      cycle_count     uint32     BADC                machine cycles (wraps early)
input       6-7      energy_wh       uint32     DCBA                energy meter, Wh (wraps)
input       8-9      power_w         int32      ABCD                active power, W
input       10-11    run_seconds     int32      CDAB                run-hour meter, s
input       12-13    stop_seconds    int32      BADC                stop-hour meter, s
input       14-15    cabinet_temp    int32      DCBA   0.001        control cabinet, degC
input       16       cabinet_humid.  int16             0.1          control cabinet, %
input       17       speed_pct       uint16            0.1          speed, % of rated
input       18-21    energy_kwh      float64    ABCD                energy meter, kWh
input       22-      process signals float32    ABCD, CDAB, BADC, DCBA in turn (see the kind)
coil        0        running         bit
coil        1        alarm           bit                            in FAULT
discrete    0        guard_closed    bit                            open in changeover/maintenance
discrete    1        estop_ok        bit
==========  =======  ==============  =========  =====  ===========  =============================

Byte orders name the bytes of the value from most to least significant as A, B, C, ...: ``ABCD``
is big-endian, ``CDAB`` swaps the 16-bit words, ``BADC`` swaps the bytes inside each word,
``DCBA`` does both (little-endian). For 64-bit values the same two swaps apply to four words.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from plantwire.config.models import ByteOrder, DataType, RegisterTable
from simulators.kinds import MachineKind
from simulators.signals import AMBIENT_SIGNALS

__all__ = ["RegisterImage", "RegisterSlot", "encode_image", "encode_value", "machine_map"]

_LIMITS = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1),
    DataType.UINT64: (0, 2**64 - 1),
}
SIGNAL_ORDERS = (ByteOrder.ABCD, ByteOrder.CDAB, ByteOrder.BADC, ByteOrder.DCBA)
PRODUCT_REGISTERS = 8
SIGNALS_START = 22


@dataclass(frozen=True)
class RegisterSlot:
    metric: str
    table: RegisterTable
    address: int
    type: DataType
    order: ByteOrder = ByteOrder.ABCD
    scale: float = 1.0
    length: int | None = None  # strings, in registers
    unit: str | None = None

    @property
    def count(self) -> int:
        if self.type is DataType.STRING:
            return self.length or 0
        return self.type.registers


def machine_map(kind: MachineKind, machine_index: int) -> list[RegisterSlot]:
    """The register map of one machine (the same layout for every machine, signals by kind)."""
    hr, ir = RegisterTable.HOLDING, RegisterTable.INPUT
    slots = [
        RegisterSlot("state", hr, 0, DataType.UINT16),
        RegisterSlot("product_code", hr, 1, DataType.UINT16),
        RegisterSlot("plc_clock_ns", hr, 2, DataType.UINT64, unit="ns"),
        RegisterSlot("product", hr, 6, DataType.STRING, length=PRODUCT_REGISTERS),
        RegisterSlot("good_count", ir, 0, DataType.UINT32, ByteOrder.ABCD, unit="parts"),
        RegisterSlot("reject_count", ir, 2, DataType.UINT32, ByteOrder.CDAB, unit="parts"),
        RegisterSlot("cycle_count", ir, 4, DataType.UINT32, ByteOrder.BADC, unit="cycles"),
        RegisterSlot("energy_wh", ir, 6, DataType.UINT32, ByteOrder.DCBA, unit="Wh"),
        RegisterSlot("power_w", ir, 8, DataType.INT32, ByteOrder.ABCD, unit="W"),
        RegisterSlot("run_seconds", ir, 10, DataType.INT32, ByteOrder.CDAB, unit="s"),
        RegisterSlot("stop_seconds", ir, 12, DataType.INT32, ByteOrder.BADC, unit="s"),
        RegisterSlot(
            AMBIENT_SIGNALS[0].name,
            ir,
            14,
            DataType.INT32,
            ByteOrder.DCBA,
            0.001,
            unit=AMBIENT_SIGNALS[0].unit,
        ),
        RegisterSlot(
            AMBIENT_SIGNALS[1].name, ir, 16, DataType.INT16, scale=0.1, unit=AMBIENT_SIGNALS[1].unit
        ),
        RegisterSlot("speed_pct", ir, 17, DataType.UINT16, scale=0.1, unit="%"),
        RegisterSlot("energy_kwh", ir, 18, DataType.FLOAT64, ByteOrder.ABCD, unit="kWh"),
    ]
    address = SIGNALS_START
    for number, spec in enumerate(kind.signals):
        order = SIGNAL_ORDERS[(number + machine_index) % len(SIGNAL_ORDERS)]
        slots.append(RegisterSlot(spec.name, ir, address, DataType.FLOAT32, order, unit=spec.unit))
        address += 2
    slots += [
        RegisterSlot("running", RegisterTable.COIL, 0, DataType.BIT),
        RegisterSlot("alarm", RegisterTable.COIL, 1, DataType.BIT),
        RegisterSlot("guard_closed", RegisterTable.DISCRETE, 0, DataType.BIT),
        RegisterSlot("estop_ok", RegisterTable.DISCRETE, 1, DataType.BIT),
    ]
    return slots


def _arrange(words: list[int], order: ByteOrder) -> list[int]:
    """Apply a byte order to big-endian 16-bit words."""
    if order in (ByteOrder.BADC, ByteOrder.DCBA):
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    if order in (ByteOrder.CDAB, ByteOrder.DCBA):
        words = words[::-1]
    return words


def encode_value(slot: RegisterSlot, value: float | int | bool | str) -> list[int]:
    """The registers that hold ``value`` in ``slot`` (bits: one 0/1 per bit)."""
    if slot.type is DataType.BIT:
        return [1 if value else 0]
    if slot.type is DataType.STRING:
        raw = str(value).encode()[: slot.count * 2].ljust(slot.count * 2, b"\0")
        return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    fmt = slot.type.struct_code
    if slot.type in (DataType.FLOAT32, DataType.FLOAT64):
        packed = struct.pack(">" + fmt, float(value))
    else:
        number = float(value)
        low, high = _LIMITS[slot.type]
        raw_int = (
            0
            if math.isnan(number)
            else round(number / slot.scale)
            if slot.scale != 1.0
            else int(value)
        )
        packed = struct.pack(">" + fmt, min(high, max(low, raw_int)))
    words = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, len(packed), 2)]
    return _arrange(words, slot.order)


@dataclass
class RegisterImage:
    """A machine's four tables as the server serves them; bit tables hold one entry per bit."""

    holding: list[int]
    input: list[int]
    coils: list[int]
    discrete: list[int]

    def table(self, table: RegisterTable) -> list[int]:
        return {
            RegisterTable.HOLDING: self.holding,
            RegisterTable.INPUT: self.input,
            RegisterTable.COIL: self.coils,
            RegisterTable.DISCRETE: self.discrete,
        }[table]


def table_sizes(slots: list[RegisterSlot]) -> dict[RegisterTable, int]:
    sizes = dict.fromkeys(RegisterTable, 0)
    for slot in slots:
        sizes[slot.table] = max(sizes[slot.table], slot.address + slot.count)
    return sizes


def encode_image(
    slots: list[RegisterSlot], values: dict[str, float | int | bool | str]
) -> RegisterImage:
    sizes = table_sizes(slots)
    image = RegisterImage(
        *(
            [0] * sizes[table]
            for table in (
                RegisterTable.HOLDING,
                RegisterTable.INPUT,
                RegisterTable.COIL,
                RegisterTable.DISCRETE,
            )
        )
    )
    for slot in slots:
        words = encode_value(slot, values[slot.metric])
        image.table(slot.table)[slot.address : slot.address + len(words)] = words
    return image
