"""Sparkplug B payloads from protobuf bytes.

Decoding refuses, with a :class:`~plantwire.errors.PayloadError` that says which metric and
why, anything a Sparkplug host could not interpret with certainty: bytes that are not protobuf,
a metric with neither name nor alias, an unknown datatype, a value in a field that does not
belong to the datatype or outside its range, a ``seq`` outside 0..255, text that is not UTF-8.
Fields this schema does not know are ignored, as protobuf intends.

Signed integers travel in the unsigned ``int_value`` / ``long_value`` fields as two's
complement. The encoder writes them at the type's own width; the decoder also accepts the
32-bit sign extension that C and Java senders produce by casting (Int8 -1 as 4294967295).
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import DecodeError

from plantwire.codec import sparkplug_b_pb2 as pb
from plantwire.codec.native import DEFAULT_MAX_PAYLOAD_BYTES
from plantwire.codec.sparkplug_arrays import unpack_array
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
    DataSetCell,
    DataType,
    MetaData,
    Metric,
    MetricValue,
    Payload,
    PropertyValue,
    Scalar,
    Template,
    TemplateParameter,
    scalar_problem,
)
from plantwire.errors import PayloadError

__all__ = ["KnownDatatypes", "birth_datatypes", "decode"]

# Datatypes declared in a birth, by metric alias and by name.
KnownDatatypes = Mapping[int | str, DataType]


def decode(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    known_datatypes: KnownDatatypes | None = None,
) -> Payload:
    """Decode a Sparkplug B payload; raise PayloadError, and nothing else, if it is not valid.

    A DATA message may leave a metric's datatype out, since the birth declared it; pass the
    birth's datatypes by alias and by name (:func:`birth_datatypes`) to decode those.
    """
    if type(data) not in (bytes, bytearray):
        raise PayloadError(f"payload must be bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise PayloadError(f"payload is {len(data)} bytes, more than the limit of {max_bytes}")
    message = pb.Payload()
    try:
        message.ParseFromString(bytes(data))
    except DecodeError as exc:
        raise PayloadError(f"not a Sparkplug B payload: {exc}") from None
    if message.HasField("seq") and message.seq > MAX_SEQ:
        raise PayloadError(f"seq {message.seq} is outside 0..{MAX_SEQ}")
    metrics = []
    for index, wire in enumerate(message.metrics):
        try:
            metrics.append(_metric_from_wire(wire, known_datatypes))
        except PayloadError as exc:
            raise PayloadError(f"metric {index}{_wire_label(wire)}: {exc.reason}") from None
    return Payload(
        metrics=tuple(metrics),
        timestamp=message.timestamp if message.HasField("timestamp") else None,
        seq=message.seq if message.HasField("seq") else None,
        uuid=_text(message.uuid, "uuid") if message.HasField("uuid") else None,
        body=message.body if message.HasField("body") else None,
    )


def birth_datatypes(birth: Payload) -> dict[int | str, DataType]:
    """The datatype of every metric of a birth, by alias and by name, for :func:`decode`."""
    known: dict[int | str, DataType] = {}
    for metric in birth.metrics:
        if metric.alias is not None:
            known[metric.alias] = metric.datatype
        if metric.name is not None:
            known[metric.name] = metric.datatype
    return known


def _wire_label(wire: pb.Payload.Metric) -> str:
    """The metric's name or alias for an error message, whatever state the metric is in."""
    if wire.HasField("name") and isinstance(wire.name, str):
        return f" {wire.name!r}"
    return f" (alias {wire.alias})" if wire.HasField("alias") else ""


def _metric_from_wire(wire: pb.Payload.Metric, known: KnownDatatypes | None) -> Metric:
    name = _text(wire.name, "name") if wire.HasField("name") else None
    alias = wire.alias if wire.HasField("alias") else None
    if name is None and alias is None:
        raise PayloadError("metric has neither a name nor an alias")
    datatype = _metric_datatype(wire, name, alias, known)
    # A null metric's value field, if a sender set one anyway, means nothing.
    value = None if wire.is_null else _metric_value(wire, datatype)
    return Metric(
        datatype=datatype,
        value=value,
        name=name,
        alias=alias,
        timestamp=wire.timestamp if wire.HasField("timestamp") else None,
        is_historical=wire.is_historical,
        is_transient=wire.is_transient,
        properties=_properties_from_wire(wire.properties) if wire.HasField("properties") else None,
        metadata=_metadata_from_wire(wire.metadata) if wire.HasField("metadata") else None,
    )


def _metric_datatype(
    wire: pb.Payload.Metric, name: str | None, alias: int | None, known: KnownDatatypes | None
) -> DataType:
    if wire.HasField("datatype"):
        datatype = _datatype(wire.datatype)
    elif known is not None and alias is not None and alias in known:
        datatype = known[alias]
    elif known is not None and name is not None and name in known:
        datatype = known[name]
    else:
        raise PayloadError("metric has no datatype, and none is known from its birth")
    if datatype not in METRIC_DATATYPES:
        raise PayloadError(f"datatype {datatype} cannot be a metric's")
    return datatype


def _metric_value(wire: pb.Payload.Metric, datatype: DataType) -> MetricValue:
    field = wire.WhichOneof("value")
    if field is None:
        raise PayloadError(f"{datatype} metric has no value and is not marked null")
    if field != VALUE_FIELD[datatype]:
        raise PayloadError(f"{datatype} value must be in {VALUE_FIELD[datatype]}, found {field}")
    if datatype in ARRAY_DATATYPES:
        return unpack_array(datatype, wire.bytes_value)
    if datatype in BINARY_DATATYPES:
        return wire.bytes_value
    if datatype is DataType.DataSet:
        return _dataset_from_wire(wire.dataset_value)
    if datatype is DataType.Template:
        return _template_from_wire(wire.template_value)
    return _scalar_from_wire(datatype, field, getattr(wire, field))


def _datatype(raw: int) -> DataType:
    try:
        return DataType(raw)
    except ValueError:
        raise PayloadError(f"unknown datatype {raw}") from None


def _scalar_from_wire(datatype: DataType, field: str, raw: object) -> Scalar:
    if field != VALUE_FIELD[datatype]:
        raise PayloadError(f"{datatype} value must be in {VALUE_FIELD[datatype]}, found {field}")
    if datatype in SIGNED_WIDTHS and isinstance(raw, int):
        return _signed(datatype, raw)
    if datatype in (DataType.UInt8, DataType.UInt16):
        problem = scalar_problem(datatype, raw)
        if problem:
            raise PayloadError(problem)
    if isinstance(raw, bytes):  # protobuf hands back a proto2 string that is not UTF-8 as bytes
        raise PayloadError(f"{datatype} value is not valid UTF-8")
    assert isinstance(raw, int | float | str)
    return raw


def _signed(datatype: DataType, raw: int) -> int:
    """Undo the two's complement, at the type's width or sign-extended to the field's."""
    bits, field_bits = SIGNED_WIDTHS[datatype]
    if raw >= 1 << bits:
        if raw < (1 << field_bits) - (1 << (bits - 1)):
            raise PayloadError(f"{VALUE_FIELD[datatype]} {raw} does not fit {datatype}")
        return raw - (1 << field_bits)
    return raw - (1 << bits) if raw >= 1 << (bits - 1) else raw


def _text(raw: object, what: str) -> str:
    if not isinstance(raw, str):
        raise PayloadError(f"{what} is not valid UTF-8")
    return raw


def _properties_from_wire(wire: pb.Payload.PropertySet) -> dict[str, PropertyValue]:
    if len(wire.keys) != len(wire.values):
        raise PayloadError(f"property set has {len(wire.keys)} keys but {len(wire.values)} values")
    properties: dict[str, PropertyValue] = {}
    for raw_key, raw_value in zip(wire.keys, wire.values, strict=True):
        key = _text(raw_key, "property key")
        if key in properties:
            raise PayloadError(f"property {key!r} appears twice")
        try:
            properties[key] = _property_value_from_wire(raw_value)
        except PayloadError as exc:
            raise PayloadError(f"property {key!r}: {exc.reason}") from None
    return properties


def _property_value_from_wire(wire: pb.Payload.PropertyValue) -> PropertyValue:
    if not wire.HasField("type"):
        raise PayloadError("property value has no type")
    datatype = _datatype(wire.type)
    if datatype not in PROPERTY_DATATYPES:
        raise PayloadError(f"datatype {datatype} cannot be a property's")
    if wire.is_null:
        return PropertyValue(datatype, None)
    field = wire.WhichOneof("value")
    if field is None:
        raise PayloadError("property has no value and is not marked null")
    if field != VALUE_FIELD[datatype]:
        raise PayloadError(f"{datatype} value must be in {VALUE_FIELD[datatype]}, found {field}")
    if datatype is DataType.PropertySet:
        return PropertyValue(datatype, _properties_from_wire(wire.propertyset_value))
    if datatype is DataType.PropertySetList:
        sets = wire.propertysets_value.propertyset
        return PropertyValue(datatype, tuple(_properties_from_wire(s) for s in sets))
    return PropertyValue(datatype, _scalar_from_wire(datatype, field, getattr(wire, field)))


def _metadata_from_wire(wire: pb.Payload.MetaData) -> MetaData:
    def text(field: str) -> str | None:
        return _text(getattr(wire, field), f"metadata {field}") if wire.HasField(field) else None

    return MetaData(
        is_multi_part=wire.is_multi_part,
        content_type=text("content_type"),
        size=wire.size if wire.HasField("size") else None,
        seq=wire.seq if wire.HasField("seq") else None,
        file_name=text("file_name"),
        file_type=text("file_type"),
        md5=text("md5"),
        description=text("description"),
    )


def _dataset_from_wire(wire: pb.Payload.DataSet) -> DataSet:
    columns = tuple(_text(column, "column name") for column in wire.columns)
    types = tuple(_datatype(raw) for raw in wire.types)
    if len(columns) != len(types):
        raise PayloadError(f"data set has {len(columns)} column names but {len(types)} types")
    if wire.HasField("num_of_columns") and wire.num_of_columns != len(columns):
        raise PayloadError(f"data set says {wire.num_of_columns} columns but has {len(columns)}")
    for datatype in types:
        if datatype not in BASIC_DATATYPES:
            raise PayloadError(f"datatype {datatype} cannot be a data set column's")
    rows = []
    for row_index, row in enumerate(wire.rows):
        if len(row.elements) != len(types):
            raise PayloadError(
                f"data set row {row_index} has {len(row.elements)} values for {len(types)} columns"
            )
        cells: list[DataSetCell] = []
        for column, (element, datatype) in enumerate(zip(row.elements, types, strict=True)):
            field = element.WhichOneof("value")
            try:
                raw = None if field is None else getattr(element, field)
                cells.append(None if field is None else _scalar_from_wire(datatype, field, raw))
            except PayloadError as exc:
                raise PayloadError(
                    f"data set row {row_index} column {columns[column]!r}: {exc.reason}"
                ) from None
        rows.append(tuple(cells))
    return DataSet(columns, types, tuple(rows))


def _template_from_wire(wire: pb.Payload.Template) -> Template:
    metrics = []
    for index, member in enumerate(wire.metrics):
        try:
            metrics.append(_metric_from_wire(member, None))
        except PayloadError as exc:
            raise PayloadError(
                f"template member {index}{_wire_label(member)}: {exc.reason}"
            ) from None
    return Template(
        metrics=tuple(metrics),
        parameters=tuple(_parameter_from_wire(p) for p in wire.parameters),
        version=_text(wire.version, "template version") if wire.HasField("version") else None,
        template_ref=_text(wire.template_ref, "template_ref")
        if wire.HasField("template_ref")
        else None,
        is_definition=wire.is_definition,
    )


def _parameter_from_wire(wire: pb.Payload.Template.Parameter) -> TemplateParameter:
    if not wire.HasField("name"):
        raise PayloadError("template parameter has no name")
    name = _text(wire.name, "template parameter name")
    if not wire.HasField("type"):
        raise PayloadError(f"template parameter {name!r} has no type")
    datatype = _datatype(wire.type)
    if datatype not in BASIC_DATATYPES:
        raise PayloadError(f"datatype {datatype} cannot be a template parameter's")
    field = wire.WhichOneof("value")
    try:
        value = None if field is None else _scalar_from_wire(datatype, field, getattr(wire, field))
    except PayloadError as exc:
        raise PayloadError(f"template parameter {name!r}: {exc.reason}") from None
    return TemplateParameter(name, datatype, value)
