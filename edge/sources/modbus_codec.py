"""Turning Modbus registers into values: data types, byte orders, scale and offset.

Byte orders name a value's bytes from most to least significant as A, B, C, D...: ``ABCD`` is
big-endian (the Modbus default), ``CDAB`` swaps the 16-bit words, ``BADC`` swaps the bytes in each
word, ``DCBA`` does both (little-endian). For 64-bit values the same two swaps apply to four
words; strings honour the byte swap only. Pure functions, no protocol library: the driver hands
in the registers it read.
"""

from __future__ import annotations

import math
import struct

from plantwire.config.models import ByteOrder, DataType, ModbusTag
from plantwire.model import INT64_MAX, Quality, Value

_NUMERIC = frozenset(
    {"int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"}
)

__all__ = ["RegisterDecodeError", "decode_registers", "tag_value"]

_STRUCTS = {
    kind: struct.Struct(">" + kind.struct_code) for kind in DataType if kind.value in _NUMERIC
}


class RegisterDecodeError(ValueError):
    """Registers (or bits) that do not hold a value of the tag's type (wrong count)."""


_WORD_SWAP = (ByteOrder.CDAB, ByteOrder.DCBA)
_BYTE_SWAP = (ByteOrder.BADC, ByteOrder.DCBA)


def _to_bytes(registers: list[int], order: ByteOrder) -> bytes:
    words = registers[::-1] if order in _WORD_SWAP else registers
    raw = struct.pack(f">{len(words)}H", *(word & 0xFFFF for word in words))
    if order in _BYTE_SWAP:  # swap the two bytes of every word
        swapped = bytearray(len(raw))
        swapped[0::2], swapped[1::2] = raw[1::2], raw[0::2]
        return bytes(swapped)
    return raw


def decode_registers(registers: list[int], kind: DataType, order: ByteOrder) -> int | float | str:
    """Registers as read, to the raw value of ``kind``.

    >>> decode_registers([0x4148, 0x0000], DataType.FLOAT32, ByteOrder.ABCD)
    12.5
    >>> decode_registers([0x0000, 0x4148], DataType.FLOAT32, ByteOrder.CDAB)
    12.5
    >>> decode_registers([0x4841, 0x0000], DataType.FLOAT32, ByteOrder.BADC)
    12.5
    >>> decode_registers([0x0000, 0x4841], DataType.FLOAT32, ByteOrder.DCBA)
    12.5
    >>> decode_registers([0x6D69, 0x6C6B, 0x0000], DataType.STRING, ByteOrder.ABCD)
    'milk'
    """
    if kind is DataType.STRING:
        text_order = ByteOrder.BADC if order in (ByteOrder.BADC, ByteOrder.DCBA) else ByteOrder.ABCD
        raw = _to_bytes(registers, text_order)
        return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace").strip()
    packer = _STRUCTS.get(kind)
    if packer is None or len(registers) * 2 != packer.size:
        raise RegisterDecodeError(f"{len(registers)} registers do not hold a {kind}")
    value: int | float = packer.unpack(_to_bytes(registers, order))[0]
    return value


def tag_value(tag: ModbusTag, order: ByteOrder, registers: list[int]) -> tuple[Value, Quality]:
    """The engineering value of a tag: decoded, then ``raw * scale + offset``.

    Integers stay integers when there is no scale or offset; NaN and infinities from a float
    register become a bad-quality sample without a value (sensors report faults that way), and an
    unsigned 64-bit value beyond what InfluxDB stores becomes an uncertain float. A coil or
    discrete input is its one bit. A device that answers with fewer registers or bits than the
    tag needs gives a :class:`RegisterDecodeError`, strings and bits included.
    """
    if len(registers) != tag.count:
        unit = "bits" if tag.table.is_bit else "registers"
        raise RegisterDecodeError(
            f"{len(registers)} {unit} where a {tag.data_type} tag needs {tag.count}"
        )
    if tag.table.is_bit:
        return bool(registers[0]), Quality.GOOD
    raw = decode_registers(registers, tag.data_type, order)
    if isinstance(raw, str):
        return raw, Quality.GOOD
    if isinstance(raw, float) and not math.isfinite(raw):
        return None, Quality.BAD
    if tag.scale != 1.0 or tag.offset != 0.0:
        value = raw * tag.scale + tag.offset
        return (value, Quality.GOOD) if math.isfinite(value) else (None, Quality.BAD)
    if isinstance(raw, int) and raw > INT64_MAX:
        return float(raw), Quality.UNCERTAIN
    return raw, Quality.GOOD
