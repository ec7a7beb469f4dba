"""Sparkplug B payloads as small, typed Python values (Eclipse Sparkplug 3.0, section 6.4).

These are what :func:`plantwire.codec.sparkplug.decode` returns and
:func:`~plantwire.codec.sparkplug.encode` takes; the protobuf classes never leave the codec.

=====================  ==============================================================
Sparkplug datatype     Python value of :attr:`Metric.value`
=====================  ==============================================================
Int8 … Int64           ``int``, negative as it is (the codec does the two's complement)
UInt8 … UInt64         ``int``
Float, Double          ``float`` (a Float is rounded to 32 bits on the wire)
Boolean                ``bool``
String, Text, UUID     ``str``
DateTime               ``int``, milliseconds since the Unix epoch (UTC)
Bytes, File            ``bytes`` (a File's name and type go in :class:`MetaData`)
<x>Array               ``tuple`` of the element values (DateTimeArray: ms as ``int``)
DataSet                :class:`DataSet`
Template               :class:`Template`
=====================  ==============================================================

A metric whose value is ``None`` is a null metric (``is_null`` on the wire).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeAlias

__all__ = [
    "ARRAY_DATATYPES",
    "BASIC_DATATYPES",
    "BINARY_DATATYPES",
    "FLOAT32_MAX",
    "INTEGER_RANGES",
    "MAX_SEQ",
    "METRIC_DATATYPES",
    "PROPERTY_DATATYPES",
    "SIGNED_WIDTHS",
    "VALUE_FIELD",
    "ArrayValue",
    "DataSet",
    "DataSetCell",
    "DataType",
    "MetaData",
    "Metric",
    "MetricValue",
    "Payload",
    "PropertySet",
    "PropertyValue",
    "Scalar",
    "Template",
    "TemplateParameter",
    "scalar_problem",
]


class DataType(IntEnum):
    """The Sparkplug ``DataType`` enum; member names are the specification's."""

    Unknown = 0
    Int8 = 1
    Int16 = 2
    Int32 = 3
    Int64 = 4
    UInt8 = 5
    UInt16 = 6
    UInt32 = 7
    UInt64 = 8
    Float = 9
    Double = 10
    Boolean = 11
    String = 12
    DateTime = 13
    Text = 14
    UUID = 15
    DataSet = 16
    Bytes = 17
    File = 18
    Template = 19
    PropertySet = 20
    PropertySetList = 21
    Int8Array = 22
    Int16Array = 23
    Int32Array = 24
    Int64Array = 25
    UInt8Array = 26
    UInt16Array = 27
    UInt32Array = 28
    UInt64Array = 29
    FloatArray = 30
    DoubleArray = 31
    BooleanArray = 32
    StringArray = 33
    DateTimeArray = 34

    def __str__(self) -> str:
        return self.name


# The types a property value, data set column or template parameter may have (spec 6.4.16).
BASIC_DATATYPES = frozenset(DataType(n) for n in range(DataType.Int8, DataType.Text + 1))
ARRAY_DATATYPES = frozenset(
    DataType(n) for n in range(DataType.Int8Array, DataType.DateTimeArray + 1)
)

# The values each integer datatype can hold; DateTime is an unsigned 64-bit count of ms.
INTEGER_RANGES: Mapping[DataType, tuple[int, int]] = {
    DataType.Int8: (-(2**7), 2**7 - 1),
    DataType.Int16: (-(2**15), 2**15 - 1),
    DataType.Int32: (-(2**31), 2**31 - 1),
    DataType.Int64: (-(2**63), 2**63 - 1),
    DataType.UInt8: (0, 2**8 - 1),
    DataType.UInt16: (0, 2**16 - 1),
    DataType.UInt32: (0, 2**32 - 1),
    DataType.UInt64: (0, 2**64 - 1),
    DataType.DateTime: (0, 2**64 - 1),
}

# The largest finite 32-bit float: a larger Float would reach the wire as infinity.
FLOAT32_MAX = 3.4028234663852886e38

# The datatypes each part of a payload may have.
METRIC_DATATYPES = frozenset(DataType) - {
    DataType.Unknown,
    DataType.PropertySet,
    DataType.PropertySetList,
}
PROPERTY_DATATYPES = BASIC_DATATYPES | {DataType.PropertySet, DataType.PropertySetList}
BINARY_DATATYPES = frozenset({DataType.Bytes, DataType.File})

# Which member of the protobuf ``value`` oneof carries each datatype (the specification's
# "Google Protocol Buffer Type"); every array type is packed into bytes_value.
VALUE_FIELD: Mapping[DataType, str] = {
    DataType.Int8: "int_value",
    DataType.Int16: "int_value",
    DataType.Int32: "int_value",
    DataType.UInt8: "int_value",
    DataType.UInt16: "int_value",
    DataType.UInt32: "int_value",
    DataType.Int64: "long_value",
    DataType.UInt64: "long_value",
    DataType.DateTime: "long_value",
    DataType.Float: "float_value",
    DataType.Double: "double_value",
    DataType.Boolean: "boolean_value",
    DataType.String: "string_value",
    DataType.Text: "string_value",
    DataType.UUID: "string_value",
    DataType.Bytes: "bytes_value",
    DataType.File: "bytes_value",
    **dict.fromkeys(ARRAY_DATATYPES, "bytes_value"),
    DataType.DataSet: "dataset_value",
    DataType.Template: "template_value",
    DataType.PropertySet: "propertyset_value",
    DataType.PropertySetList: "propertysets_value",
}
# The signed types: their own width in bits, and that of the unsigned field carrying them.
SIGNED_WIDTHS: Mapping[DataType, tuple[int, int]] = {
    DataType.Int8: (8, 32),
    DataType.Int16: (16, 32),
    DataType.Int32: (32, 32),
    DataType.Int64: (64, 64),
}
# A payload's seq (and an NBIRTH's bdSeq) runs 0..MAX_SEQ and wraps to 0.
MAX_SEQ = 255

Scalar: TypeAlias = int | float | bool | str
ArrayValue: TypeAlias = tuple[int, ...] | tuple[float, ...] | tuple[bool, ...] | tuple[str, ...]
DataSetCell: TypeAlias = Scalar | None
MetricValue: TypeAlias = "Scalar | bytes | ArrayValue | DataSet | Template | None"
PropertySet: TypeAlias = "Mapping[str, PropertyValue]"


@dataclass(frozen=True, slots=True)
class PropertyValue:
    """One entry of a metric's property set, such as ``"Quality"`` or ``"engUnit"``.

    ``value`` is a scalar for the basic datatypes, a :data:`PropertySet` for PropertySet, a
    tuple of them for PropertySetList, or None for a null property.
    """

    datatype: DataType
    value: Scalar | PropertySet | tuple[PropertySet, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MetaData:
    """What describes a Bytes or File value, or one part of a multi-part transfer."""

    is_multi_part: bool = False
    content_type: str | None = None
    size: int | None = None
    seq: int | None = None
    file_name: str | None = None
    file_type: str | None = None
    md5: str | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class DataSet:
    """A table: one datatype per column (basic datatypes only), rows of cells.

    A cell is None when the sender left its value out.
    """

    columns: tuple[str, ...]
    types: tuple[DataType, ...]
    rows: tuple[tuple[DataSetCell, ...], ...] = ()


@dataclass(frozen=True, slots=True)
class TemplateParameter:
    """A named value of a template: a default in a definition, the instance's own otherwise."""

    name: str
    datatype: DataType
    value: Scalar | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Template:
    """A user-defined type: a definition (``is_definition``) or an instance of the definition
    named by ``template_ref``."""

    metrics: tuple[Metric, ...] = ()
    parameters: tuple[TemplateParameter, ...] = ()
    version: str | None = None
    template_ref: str | None = None
    is_definition: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Metric:
    """One Sparkplug metric: a tag's value, when it was acquired, and how to read it.

    ``name`` is sent in births; DATA and CMD messages may carry only the ``alias`` defined
    there. ``timestamp`` is milliseconds since the Unix epoch (UTC). ``properties`` is None
    when the metric has no property set at all.
    """

    datatype: DataType
    value: MetricValue = None
    name: str | None = None
    alias: int | None = None
    timestamp: int | None = None
    is_historical: bool = False
    is_transient: bool = False
    properties: PropertySet | None = None
    metadata: MetaData | None = None

    @property
    def is_null(self) -> bool:
        """True when the metric explicitly has no value."""
        return self.value is None

    @property
    def label(self) -> str:
        """How to name the metric in a log line: its name, its alias, or both."""
        if self.name is not None and self.alias is not None:
            return f"{self.name!r} (alias {self.alias})"
        return repr(self.name) if self.name is not None else f"alias {self.alias}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Payload:
    """A whole Sparkplug B message body.

    ``timestamp`` is when it was published (ms since the Unix epoch, UTC); ``seq`` runs
    0..255 and wraps, and is None only in an NDEATH.
    """

    metrics: tuple[Metric, ...] = ()
    timestamp: int | None = None
    seq: int | None = None
    uuid: str | None = None
    body: bytes | None = None


def scalar_problem(datatype: DataType, value: object) -> str | None:  # noqa: PLR0911  (one per type)
    """Why a basic datatype cannot hold a value, or None when it can.

    >>> scalar_problem(DataType.Int8, -129)
    "-129 is outside Int8's -128..127"
    >>> scalar_problem(DataType.Double, 1) is None  # an int is not a float to Sparkplug
    False
    """
    if datatype in INTEGER_RANGES:
        if type(value) is not int:
            return f"{datatype} needs an int, got {type(value).__name__}"
        low, high = INTEGER_RANGES[datatype]
        return None if low <= value <= high else f"{value} is outside {datatype}'s {low}..{high}"
    if datatype in (DataType.Float, DataType.Double):
        if type(value) is not float:
            return f"{datatype} needs a float, got {type(value).__name__}"
        too_big = datatype is DataType.Float and math.isfinite(value) and abs(value) > FLOAT32_MAX
        return f"{value!r} does not fit a 32-bit Float" if too_big else None
    if datatype is DataType.Boolean:
        return None if type(value) is bool else f"Boolean needs a bool, got {type(value).__name__}"
    if datatype in (DataType.String, DataType.Text, DataType.UUID):
        if type(value) is not str:
            return f"{datatype} needs a str, got {type(value).__name__}"
        return None if _is_utf8(value) else f"{datatype} value is not valid Unicode (a surrogate)"
    return f"{datatype} is not a scalar datatype"


def _is_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
