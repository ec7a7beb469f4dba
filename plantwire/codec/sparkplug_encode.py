"""Sparkplug B payloads to protobuf bytes.

Everything is checked on the way out, so a payload PlantWire sends is one it would accept:
:func:`encode` raises :class:`~plantwire.errors.PayloadError`, naming the metric, for a value
its datatype cannot carry. Signed integers are written as two's complement at the type's own
width (Int8 -1 is ``int_value`` 255, Int16 -1 is 65535): every decoder in use reads that back,
including those that only subtract 2**8 or 2**16, where a 32-bit sign extension
(4294967295) would come out wrong.
"""

from __future__ import annotations

from collections.abc import Mapping

from plantwire.codec import sparkplug_b_pb2 as pb
from plantwire.codec.sparkplug_arrays import pack_array
from plantwire.codec.sparkplug_model import (
    ARRAY_DATATYPES,
    BASIC_DATATYPES,
    BINARY_DATATYPES,
    MAX_SEQ,
    METRIC_DATATYPES,
    PROPERTY_DATATYPES,
    SIGNED_WIDTHS,
    VALUE_FIELD,
    DataSet,
    DataType,
    MetaData,
    Metric,
    Payload,
    PropertySet,
    PropertyValue,
    Template,
    scalar_problem,
)
from plantwire.errors import PayloadError

__all__ = ["encode"]

_UINT64_MAX = 2**64 - 1


def encode(payload: Payload) -> bytes:
    """Serialize a payload; raise PayloadError, naming the metric, for a value that cannot be
    sent as its datatype."""
    message = pb.Payload()
    if payload.timestamp is not None:
        message.timestamp = _uint64(payload.timestamp, "payload timestamp")
    if payload.seq is not None:
        if type(payload.seq) is not int or not 0 <= payload.seq <= MAX_SEQ:
            raise PayloadError(f"seq must be an integer in 0..{MAX_SEQ}, got {payload.seq!r}")
        message.seq = payload.seq
    for index, metric in enumerate(payload.metrics):
        if not isinstance(metric, Metric):
            raise PayloadError(f"metric {index} must be a Metric, got {type(metric).__name__}")
        try:
            _metric_to_wire(metric, message.metrics.add())
        except PayloadError as exc:
            raise PayloadError(f"metric {index} {metric.label}: {exc.reason}") from None
    if payload.uuid is not None:
        message.uuid = _text_out(payload.uuid, "uuid")
    if payload.body is not None:
        message.body = _bytes_out(payload.body, "body")
    return message.SerializeToString()


def _metric_to_wire(metric: Metric, wire: pb.Payload.Metric) -> None:
    if metric.name is None and metric.alias is None:
        raise PayloadError("metric has neither a name nor an alias")
    if metric.name is not None:
        wire.name = _text_out(metric.name, "name")
    if metric.alias is not None:
        wire.alias = _uint64(metric.alias, "alias")
    if metric.timestamp is not None:
        wire.timestamp = _uint64(metric.timestamp, "timestamp")
    datatype = _datatype_out(metric.datatype, METRIC_DATATYPES, "a metric's")
    wire.datatype = datatype
    if metric.is_historical:
        wire.is_historical = True
    if metric.is_transient:
        wire.is_transient = True
    if metric.value is None:
        wire.is_null = True
    if metric.metadata is not None:
        _metadata_to_wire(metric.metadata, wire.metadata)
    if metric.properties is not None:
        _properties_to_wire(metric.properties, wire.properties)
    if metric.value is not None:
        _metric_value_to_wire(datatype, metric.value, wire)


def _metric_value_to_wire(datatype: DataType, value: object, wire: pb.Payload.Metric) -> None:
    if datatype in ARRAY_DATATYPES:
        wire.bytes_value = pack_array(datatype, value)
    elif datatype in BINARY_DATATYPES:
        wire.bytes_value = _bytes_out(value, f"{datatype} value")
    elif datatype is DataType.DataSet:
        if not isinstance(value, DataSet):
            raise PayloadError(f"DataSet value must be a DataSet, got {type(value).__name__}")
        _dataset_to_wire(value, wire.dataset_value)
    elif datatype is DataType.Template:
        if not isinstance(value, Template):
            raise PayloadError(f"Template value must be a Template, got {type(value).__name__}")
        _template_to_wire(value, wire.template_value)
    else:
        setattr(wire, VALUE_FIELD[datatype], _scalar_to_wire(datatype, value))


def _datatype_out(datatype: object, allowed: frozenset[DataType], whose: str) -> DataType:
    if not isinstance(datatype, DataType):
        raise PayloadError(f"datatype must be a DataType, got {datatype!r}")
    if datatype not in allowed:
        raise PayloadError(f"datatype {datatype} cannot be {whose}")
    return datatype


def _scalar_to_wire(datatype: DataType, value: object) -> int | float | str:
    problem = scalar_problem(datatype, value)
    if problem:
        raise PayloadError(problem)
    assert isinstance(value, int | float | str)
    if datatype in SIGNED_WIDTHS:
        assert isinstance(value, int)
        return value & ((1 << SIGNED_WIDTHS[datatype][0]) - 1)
    return value


def _uint64(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value <= _UINT64_MAX:
        raise PayloadError(f"{what} must be an integer in 0..2**64-1, got {value!r}")
    return value


def _text_out(value: object, what: str) -> str:
    problem = scalar_problem(DataType.String, value)
    if problem:
        raise PayloadError(f"{what}: {problem}")
    assert isinstance(value, str)
    return value


def _bytes_out(value: object, what: str) -> bytes:
    if type(value) is not bytes:
        raise PayloadError(f"{what} must be bytes, got {type(value).__name__}")
    return value


def _properties_to_wire(properties: PropertySet, wire: pb.Payload.PropertySet) -> None:
    if not isinstance(properties, Mapping):
        raise PayloadError(f"properties must be a mapping, got {type(properties).__name__}")
    wire.SetInParent()
    for key, value in properties.items():
        wire.keys.append(_text_out(key, "property key"))
        try:
            _property_value_to_wire(value, wire.values.add())
        except PayloadError as exc:
            raise PayloadError(f"property {key!r}: {exc.reason}") from None


def _property_value_to_wire(value: object, wire: pb.Payload.PropertyValue) -> None:
    if not isinstance(value, PropertyValue):
        raise PayloadError(f"must be a PropertyValue, got {type(value).__name__}")
    datatype = _datatype_out(value.datatype, PROPERTY_DATATYPES, "a property's")
    wire.type = datatype
    if value.value is None:
        wire.is_null = True
    elif datatype is DataType.PropertySet:
        if not isinstance(value.value, Mapping):
            raise PayloadError("PropertySet value must be a mapping of property values")
        _properties_to_wire(value.value, wire.propertyset_value)
    elif datatype is DataType.PropertySetList:
        if type(value.value) is not tuple:
            raise PayloadError("PropertySetList value must be a tuple of property sets")
        wire.propertysets_value.SetInParent()
        for properties in value.value:
            _properties_to_wire(properties, wire.propertysets_value.propertyset.add())
    else:
        setattr(wire, VALUE_FIELD[datatype], _scalar_to_wire(datatype, value.value))


def _metadata_to_wire(metadata: MetaData, wire: pb.Payload.MetaData) -> None:
    wire.SetInParent()
    if metadata.is_multi_part:
        wire.is_multi_part = True
    for field in ("content_type", "file_name", "file_type", "md5", "description"):
        text = getattr(metadata, field)
        if text is not None:
            setattr(wire, field, _text_out(text, f"metadata {field}"))
    if metadata.size is not None:
        wire.size = _uint64(metadata.size, "metadata size")
    if metadata.seq is not None:
        wire.seq = _uint64(metadata.seq, "metadata seq")


def _dataset_to_wire(dataset: DataSet, wire: pb.Payload.DataSet) -> None:
    if len(dataset.columns) != len(dataset.types):
        raise PayloadError(
            f"data set has {len(dataset.columns)} column names but {len(dataset.types)} types"
        )
    types = [_datatype_out(t, BASIC_DATATYPES, "a data set column's") for t in dataset.types]
    wire.SetInParent()
    wire.num_of_columns = len(types)
    wire.columns.extend(_text_out(column, "column name") for column in dataset.columns)
    wire.types.extend(types)
    for row_index, row in enumerate(dataset.rows):
        if len(row) != len(types):
            raise PayloadError(
                f"data set row {row_index} has {len(row)} values for {len(types)} columns"
            )
        wire_row = wire.rows.add()
        for column, (cell, datatype) in enumerate(zip(row, types, strict=True)):
            element = wire_row.elements.add()
            if cell is None:
                continue
            try:
                setattr(element, VALUE_FIELD[datatype], _scalar_to_wire(datatype, cell))
            except PayloadError as exc:
                raise PayloadError(
                    f"data set row {row_index} column {dataset.columns[column]!r}: {exc.reason}"
                ) from None


def _template_to_wire(template: Template, wire: pb.Payload.Template) -> None:
    wire.SetInParent()
    if template.version is not None:
        wire.version = _text_out(template.version, "template version")
    for index, metric in enumerate(template.metrics):
        if not isinstance(metric, Metric):
            raise PayloadError(f"template member {index} must be a Metric")
        try:
            _metric_to_wire(metric, wire.metrics.add())
        except PayloadError as exc:
            raise PayloadError(f"template member {index} {metric.label}: {exc.reason}") from None
    for parameter in template.parameters:
        wire_parameter = wire.parameters.add()
        wire_parameter.name = _text_out(parameter.name, "template parameter name")
        datatype = _datatype_out(parameter.datatype, BASIC_DATATYPES, "a template parameter's")
        wire_parameter.type = datatype
        if parameter.value is not None:
            try:
                value = _scalar_to_wire(datatype, parameter.value)
            except PayloadError as exc:
                raise PayloadError(f"template parameter {parameter.name!r}: {exc.reason}") from None
            setattr(wire_parameter, VALUE_FIELD[datatype], value)
    if template.template_ref is not None:
        wire.template_ref = _text_out(template.template_ref, "template_ref")
    # The specification wants is_definition in every template, definition or instance.
    wire.is_definition = template.is_definition
