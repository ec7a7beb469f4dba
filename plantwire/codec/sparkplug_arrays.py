"""The Sparkplug array datatypes, packed into a metric's ``bytes_value`` (spec 6.4.16).

Numbers are little-endian and packed end to end. A BooleanArray is a 4-byte little-endian
count followed by the bits, the first value in the most significant bit of the first byte, the
last byte padded with zero bits. A StringArray is UTF-8 strings, each ended by a NUL byte.

>>> pack_array(DataType.Int16Array, (-2, 3)).hex()
'feff0300'
>>> unpack_array(DataType.BooleanArray, bytes.fromhex("0c00000034d0"))
(False, False, True, True, False, True, False, False, True, True, False, True)
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping

from plantwire.codec.sparkplug_model import ArrayValue, DataType, scalar_problem
from plantwire.errors import PayloadError

__all__ = ["pack_array", "unpack_array"]

# struct format letter and the scalar datatype of each element, per fixed-width array type.
_FIXED: Mapping[DataType, tuple[str, DataType]] = {
    DataType.Int8Array: ("b", DataType.Int8),
    DataType.Int16Array: ("h", DataType.Int16),
    DataType.Int32Array: ("i", DataType.Int32),
    DataType.Int64Array: ("q", DataType.Int64),
    DataType.UInt8Array: ("B", DataType.UInt8),
    DataType.UInt16Array: ("H", DataType.UInt16),
    DataType.UInt32Array: ("I", DataType.UInt32),
    DataType.UInt64Array: ("Q", DataType.UInt64),
    DataType.FloatArray: ("f", DataType.Float),
    DataType.DoubleArray: ("d", DataType.Double),
    DataType.DateTimeArray: ("Q", DataType.DateTime),
}


def pack_array(datatype: DataType, values: object) -> bytes:
    """The ``bytes_value`` of an array metric; PayloadError if a value does not fit."""
    if type(values) is not tuple:
        raise PayloadError(f"{datatype} value must be a tuple, got {type(values).__name__}")
    if datatype is DataType.BooleanArray:
        return _pack_booleans(values)
    if datatype is DataType.StringArray:
        return _pack_strings(values)
    letter, element = _FIXED[datatype]
    for index, value in enumerate(values):
        problem = scalar_problem(element, value)
        if problem:
            raise PayloadError(f"{datatype} element {index}: {problem}")
    return struct.pack(f"<{len(values)}{letter}", *values)


def _pack_booleans(values: tuple[object, ...]) -> bytes:
    if any(type(value) is not bool for value in values):
        raise PayloadError("BooleanArray elements must all be booleans")
    if len(values) > 2**32 - 1:
        raise PayloadError("BooleanArray holds at most 2**32 - 1 values")
    bits = bytearray(math.ceil(len(values) / 8))
    for index, value in enumerate(values):
        if value:
            bits[index // 8] |= 0x80 >> (index % 8)
    return struct.pack("<I", len(values)) + bytes(bits)


def _pack_strings(values: tuple[object, ...]) -> bytes:
    parts = []
    for index, value in enumerate(values):
        if type(value) is not str:
            raise PayloadError(f"StringArray element {index} must be a string")
        if "\x00" in value:
            raise PayloadError(f"StringArray element {index} contains NUL, which ends a string")
        try:
            parts.append(value.encode() + b"\x00")
        except UnicodeEncodeError:
            raise PayloadError(f"StringArray element {index} is not valid Unicode") from None
    return b"".join(parts)


def unpack_array(datatype: DataType, data: bytes) -> ArrayValue:
    """The values packed in an array metric's ``bytes_value``; PayloadError if malformed."""
    if datatype is DataType.BooleanArray:
        return _unpack_booleans(data)
    if datatype is DataType.StringArray:
        return _unpack_strings(data)
    letter, _ = _FIXED[datatype]
    size = struct.calcsize(letter)
    if len(data) % size:
        raise PayloadError(
            f"{datatype} of {len(data)} bytes is not a whole number of {size}-byte values"
        )
    values: ArrayValue = struct.unpack(f"<{len(data) // size}{letter}", data)
    return values


def _unpack_booleans(data: bytes) -> tuple[bool, ...]:
    if len(data) < 4:
        raise PayloadError("BooleanArray is shorter than its 4-byte count")
    (count,) = struct.unpack_from("<I", data)
    bits = data[4:]
    if len(bits) != math.ceil(count / 8):
        raise PayloadError(f"BooleanArray of {count} values needs {math.ceil(count / 8)} bytes")
    return tuple(bool(bits[i // 8] & (0x80 >> (i % 8))) for i in range(count))


def _unpack_strings(data: bytes) -> tuple[str, ...]:
    if not data:
        return ()
    if not data.endswith(b"\x00"):
        raise PayloadError("StringArray does not end with a NUL byte")
    try:
        return tuple(part.decode() for part in data[:-1].split(b"\x00"))
    except UnicodeDecodeError:
        raise PayloadError("StringArray holds bytes that are not UTF-8") from None
