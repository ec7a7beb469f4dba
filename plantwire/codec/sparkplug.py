"""Sparkplug B (Eclipse Sparkplug 3.0) payloads for PlantWire: the codec the Sparkplug edge node
and host application are built on.

* :func:`encode` / :func:`decode` turn a :class:`Payload` into protobuf bytes and back;
  decoding raises :class:`~plantwire.errors.PayloadError` and nothing else.
* :func:`metric_from_sample` and :func:`to_plantwire_value` map between PlantWire samples and
  Sparkplug metrics, with OPC-style quality in the metric property ``"Quality"``.
* :func:`next_seq`, :func:`bdseq_metric` and :func:`rebirth_metric` cover the session
  bookkeeping; :func:`describe` renders a payload for a log line.

>>> payload = Payload(seq=0, metrics=(Metric(name="fill_temp", datatype=DataType.Double,
...                                          value=4.5, timestamp=1_763_712_000_000),))
>>> decode(encode(payload)) == payload
True
>>> describe(payload)
"seq=0, 1 metric: 'fill_temp'=4.5 (Double)"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from plantwire.codec.sparkplug_decode import KnownDatatypes, birth_datatypes, decode
from plantwire.codec.sparkplug_encode import encode
from plantwire.codec.sparkplug_model import (
    ARRAY_DATATYPES,
    BASIC_DATATYPES,
    INTEGER_RANGES,
    MAX_SEQ,
    ArrayValue,
    DataSet,
    DataSetCell,
    DataType,
    MetaData,
    Metric,
    MetricValue,
    Payload,
    PropertySet,
    PropertyValue,
    Scalar,
    Template,
    TemplateParameter,
)
from plantwire.errors import PayloadError
from plantwire.model import Quality, Sample, Value, check_value

__all__ = [
    "ARRAY_DATATYPES",
    "BASIC_DATATYPES",
    "BDSEQ_METRIC_NAME",
    "INTEGER_RANGES",
    "MAX_SEQ",
    "QUALITY_BAD",
    "QUALITY_GOOD",
    "QUALITY_PROPERTY",
    "QUALITY_STALE",
    "QUALITY_UNCERTAIN",
    "REBIRTH_METRIC_NAME",
    "STORABLE_DATATYPES",
    "ArrayValue",
    "DataSet",
    "DataSetCell",
    "DataType",
    "KnownDatatypes",
    "MetaData",
    "Metric",
    "MetricValue",
    "NotStorable",
    "Payload",
    "PropertySet",
    "PropertyValue",
    "Scalar",
    "StorableValue",
    "Template",
    "TemplateParameter",
    "bdseq_metric",
    "birth_datatypes",
    "datatype_for",
    "decode",
    "describe",
    "encode",
    "metric_from_sample",
    "metric_quality",
    "next_seq",
    "quality_code",
    "quality_from_code",
    "quality_properties",
    "rebirth_metric",
    "to_plantwire_value",
]

BDSEQ_METRIC_NAME = "bdSeq"
REBIRTH_METRIC_NAME = "Node Control/Rebirth"

# The metric property many hosts (Ignition among them) use for OPC-style quality. Sparkplug 3.0
# names 0 (Bad), 192 (Good) and 500 (Stale); the OPC DA codes in 0..255 are read by their
# quality bits, so 64 (Uncertain) and its sub-statuses come through as well. PlantWire sends
# Uncertain as OPC DA's 64, which OPC-minded hosts understand, though the 3.0 conformance
# rules list only 0, 192 and 500.
QUALITY_PROPERTY = "Quality"
QUALITY_BAD = 0
QUALITY_UNCERTAIN = 64
QUALITY_GOOD = 192
QUALITY_STALE = 500
_OPC_QUALITY_MASK = 0xC0

# Sparkplug datatypes whose values become PlantWire samples; the rest are decoded faithfully
# but have no place in a time series of numbers, booleans and strings.
STORABLE_DATATYPES = BASIC_DATATYPES | {DataType.UUID}
_PLANTWIRE_DATATYPES = {
    float: DataType.Double,
    int: DataType.Int64,
    bool: DataType.Boolean,
    str: DataType.String,
}
_FLOAT_TYPES = frozenset({DataType.Float, DataType.Double})


# -- sequence numbers ----------------------------------------------------------------------------


def next_seq(seq: int) -> int:
    """The sequence number after ``seq``: 0..255, wrapping (for ``seq`` and bdSeq alike).

    >>> next_seq(254), next_seq(255)
    (255, 0)
    """
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise ValueError(f"a Sparkplug sequence number is an integer in 0..255, got {seq!r}")
    return (seq + 1) % (MAX_SEQ + 1)


def bdseq_metric(bdseq: int, *, timestamp: int | None = None) -> Metric:
    """The ``bdSeq`` metric of an NBIRTH and of the NDEATH will message (UInt64, 0..255)."""
    if type(bdseq) is not int or not 0 <= bdseq <= MAX_SEQ:
        raise ValueError(f"bdSeq is an integer in 0..255, got {bdseq!r}")
    return Metric(
        name=BDSEQ_METRIC_NAME, datatype=DataType.UInt64, value=bdseq, timestamp=timestamp
    )


def rebirth_metric(rebirth: bool = False, *, timestamp: int | None = None) -> Metric:
    """``Node Control/Rebirth``: False in every NBIRTH, True in a host's NCMD asking for one."""
    return Metric(
        name=REBIRTH_METRIC_NAME, datatype=DataType.Boolean, value=rebirth, timestamp=timestamp
    )


# -- quality -------------------------------------------------------------------------------------


def quality_code(quality: Quality) -> int:
    """The ``"Quality"`` property value for a PlantWire quality.

    >>> quality_code(Quality.UNCERTAIN)
    64
    """
    return {Quality.GOOD: QUALITY_GOOD, Quality.UNCERTAIN: QUALITY_UNCERTAIN}.get(
        quality, QUALITY_BAD
    )


def quality_from_code(code: int) -> Quality:
    """The PlantWire quality of a ``"Quality"`` property value. Stale (500) is uncertain: the
    value was good once. A code that means nothing known is bad, since it cannot be trusted.

    >>> quality_from_code(192), quality_from_code(0xD8), quality_from_code(500)
    (<Quality.GOOD: 'good'>, <Quality.GOOD: 'good'>, <Quality.UNCERTAIN: 'uncertain'>)
    """
    if code == QUALITY_STALE:
        return Quality.UNCERTAIN
    if not 0 <= code <= 0xFF:
        return Quality.BAD
    bits = code & _OPC_QUALITY_MASK
    if bits == QUALITY_GOOD:
        return Quality.GOOD
    return Quality.UNCERTAIN if bits == QUALITY_UNCERTAIN else Quality.BAD


def quality_properties(quality: Quality) -> dict[str, PropertyValue] | None:
    """The property set that carries a quality: None when good, as Sparkplug leaves it out."""
    if quality is Quality.GOOD:
        return None
    return {QUALITY_PROPERTY: PropertyValue(DataType.Int32, quality_code(quality))}


def metric_quality(metric: Metric) -> Quality:
    """A metric's quality: good without a ``"Quality"`` property, bad if that is not a number."""
    prop = (metric.properties or {}).get(QUALITY_PROPERTY)
    if prop is None or prop.value is None:
        return Quality.GOOD
    if prop.datatype not in INTEGER_RANGES or type(prop.value) is not int:
        return Quality.BAD
    return quality_from_code(prop.value)


# -- PlantWire values ----------------------------------------------------------------------------


class StorableValue(NamedTuple):
    """What a metric becomes in a PlantWire sample."""

    value: Value
    quality: Quality


@dataclass(frozen=True, slots=True)
class NotStorable:
    """Why a metric cannot become a PlantWire sample; the host counts and logs these."""

    datatype: DataType
    reason: str


def datatype_for(value: Value) -> DataType:
    """The datatype a PlantWire value is declared with in a birth.

    >>> datatype_for(72.5), datatype_for(3), datatype_for(True), datatype_for("run")
    (<DataType.Double: 10>, <DataType.Int64: 4>, <DataType.Boolean: 11>, <DataType.String: 12>)
    """
    datatype = _PLANTWIRE_DATATYPES.get(type(value))
    if datatype is None:
        raise PayloadError(f"no Sparkplug datatype for a {type(value).__name__} value")
    return datatype


def metric_from_sample(
    sample: Sample,
    *,
    datatype: DataType | None = None,
    alias: int | None = None,
    with_name: bool = True,
) -> Metric:
    """A sample as a Sparkplug metric (timestamp in ms, quality as a property when not good).

    ``datatype`` is the one declared in the birth; without it the value's own is used, which a
    null sample does not have. An int sent as a Float or Double becomes a float.
    """
    value = sample.value
    if datatype is None:
        if value is None:
            raise PayloadError(f"sample {sample.metric!r} is null: pass its birth datatype")
        datatype = datatype_for(value)
    elif datatype in _FLOAT_TYPES and type(value) is int:
        value = float(value)
    return Metric(
        name=sample.metric if with_name else None,
        alias=alias,
        timestamp=sample.ts_ns // 1_000_000,
        datatype=datatype,
        value=value,
        properties=quality_properties(sample.quality),
    )


def to_plantwire_value(metric: Metric) -> StorableValue | NotStorable:
    """What a received metric stores as: a value and quality, or why it cannot be stored.

    A null metric is stored as a missing value, bad unless its quality says uncertain. Whether
    a historical or transient metric is stored at all is the host's call, not the codec's.

    >>> to_plantwire_value(Metric(name="speed", datatype=DataType.Int16, value=-40))
    StorableValue(value=-40, quality=<Quality.GOOD: 'good'>)
    >>> to_plantwire_value(Metric(name="profile", datatype=DataType.FloatArray, value=(1.0,)))
    NotStorable(datatype=<DataType.FloatArray: 30>, reason='FloatArray is not storable as a \
PlantWire sample')
    """
    if metric.datatype not in STORABLE_DATATYPES:
        return NotStorable(
            metric.datatype, f"{metric.datatype} is not storable as a PlantWire sample"
        )
    quality = metric_quality(metric)
    if metric.value is None:
        return StorableValue(None, quality if quality is Quality.UNCERTAIN else Quality.BAD)
    assert isinstance(metric.value, int | float | str)
    problem = check_value(metric.value, quality)
    if problem:
        return NotStorable(metric.datatype, problem)
    return StorableValue(metric.value, quality)


# -- logs ----------------------------------------------------------------------------------------


def describe(payload: Payload, *, max_metrics: int = 5) -> str:
    """A one-line summary of a payload for logs; values are cut short, binary ones sized.

    >>> describe(Payload(seq=7, metrics=(Metric(alias=3, datatype=DataType.Float),)))
    'seq=7, 1 metric: alias 3=null (Float)'
    """
    head = [f"seq={payload.seq}"] if payload.seq is not None else ["no seq"]
    if payload.timestamp is not None:
        head.append(f"ts={payload.timestamp}")
    count = len(payload.metrics)
    shown = [
        f"{metric.label}={_short_value(metric.value)} ({metric.datatype}{_quality_note(metric)})"
        for metric in payload.metrics[:max_metrics]
    ]
    more = f", … {count - max_metrics} more" if count > max_metrics else ""
    plural = "" if count == 1 else "s"
    return f"{', '.join(head)}, {count} metric{plural}: {', '.join(shown)}{more}"


def _short_value(value: MetricValue) -> str:
    if value is None:
        return "null"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, tuple):
        return f"<{len(value)} values>"
    if isinstance(value, DataSet):
        return f"<{len(value.rows)}x{len(value.columns)} data set>"
    if isinstance(value, Template):
        kind = "definition" if value.is_definition else f"of {value.template_ref!r}"
        return f"<template {kind}, members={len(value.metrics)}>"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _quality_note(metric: Metric) -> str:
    quality = metric_quality(metric)
    return "" if quality is Quality.GOOD else f", {quality}"
