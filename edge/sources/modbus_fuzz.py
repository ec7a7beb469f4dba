"""The edge's fuzz target: Modbus register decoding (``tag_value``) fed any words for any tag.

It keeps the contract of :mod:`plantwire.testing.fuzz` and runs beside its targets in
``tests/unit/test_fuzz_inputs.py`` and ``bench/fuzz.py``; it lives here because the contract
package imports no part. Needs the dev tools (hypothesis): never imported by the agent.
"""

from __future__ import annotations

from edge.sources.modbus_codec import RegisterDecodeError, tag_value
from plantwire.config.models import ByteOrder, DataType, ModbusTag
from plantwire.model import Quality, check_value
from plantwire.testing.fuzz import ACCEPTED, FuzzTarget, UnclearError, check_message
from plantwire.testing.fuzz_inputs import modbus_reads

__all__ = ["check_modbus_read", "modbus_fuzz_target"]

_INTEGERS = frozenset(
    {DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32, DataType.INT64}
)


def check_modbus_read(read: tuple[ModbusTag, ByteOrder, list[int]]) -> str:
    """Any words for any tag: a storable value of the tag's type, or a RegisterDecodeError
    with a clear message exactly when the device answered with the wrong number of words."""
    tag, order, words = read
    try:
        value, quality = tag_value(tag, order, words)
    except RegisterDecodeError as exc:
        check_message(str(exc), "RegisterDecodeError")
        if len(words) == tag.count:
            raise UnclearError(f"a full read of {tag.data_type} is refused: {exc}") from None
        return "RegisterDecodeError"
    if len(words) != tag.count:
        raise UnclearError(f"{len(words)} words decoded for a tag of {tag.count}")
    if check_value(value, quality) is not None or (value is None) != (quality is Quality.BAD):
        raise UnclearError(f"an unstorable result {value!r} ({quality}) for {tag!r}")
    kind = tag.data_type
    unscaled = tag.scale == 1.0 and tag.offset == 0.0
    expected: type = {DataType.BIT: bool, DataType.STRING: str}.get(kind, float)
    if kind in _INTEGERS and unscaled:
        expected = int
    uint64 = kind is DataType.UINT64 and unscaled  # an int, or an uncertain float beyond int64
    if value is not None and not isinstance(value, expected) and not uint64:
        raise UnclearError(f"a {kind} tag gave {value!r}")
    return f"{ACCEPTED} ({quality})"


def modbus_fuzz_target() -> FuzzTarget:
    return FuzzTarget(
        "modbus-decode",
        "tag_value on any tag type, order and scale with any words, short and long reads",
        modbus_reads(),
        check_modbus_read,
    )
