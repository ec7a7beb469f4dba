"""The Sparkplug B codec: the schema, golden bytes per datatype, refusals, round trips, fuzzing,
and the mapping to PlantWire samples.

The golden vectors were worked out by hand from the protobuf wire format and the field numbers
in plantwire/codec/sparkplug_b.proto, not copied from the encoder. A key byte is
``field_number << 3 | wire_type`` (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32); a
varint is 7 bits a byte, least significant first, the top bit set on every byte but the last.
Every vector is a payload with one metric (``12 <len>``, field 2 of Payload) whose name is "a"
(``0a 01 61``, field 1) and whose datatype is field 4 (``20 <type>``), unless it says otherwise.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plantwire.codec import sparkplug_b_pb2 as pb
from plantwire.codec.sparkplug import (
    ARRAY_DATATYPES,
    BASIC_DATATYPES,
    INTEGER_RANGES,
    QUALITY_PROPERTY,
    DataSet,
    DataType,
    MetaData,
    Metric,
    NotStorable,
    Payload,
    PropertyValue,
    StorableValue,
    Template,
    TemplateParameter,
    bdseq_metric,
    birth_datatypes,
    datatype_for,
    decode,
    describe,
    encode,
    metric_from_sample,
    metric_quality,
    next_seq,
    quality_code,
    quality_from_code,
    quality_properties,
    rebirth_metric,
    to_plantwire_value,
)
from plantwire.errors import PayloadError
from plantwire.model import Quality, Sample

D = DataType
PROTO = Path(__file__).parents[2] / "plantwire" / "codec" / "sparkplug_b.proto"


def one(metric: Metric) -> Payload:
    return Payload(metrics=(metric,))


# -- golden vectors ------------------------------------------------------------------------------

UUID_TEXT = "123e4567-e89b-12d3-a456-426614174000"
HEADER = Payload(
    timestamp=1_700_000_000_000,
    seq=255,
    uuid="u",
    body=b"\x01",
    metrics=(
        Metric(
            name="a",
            alias=5,
            timestamp=1_700_000_000_000,
            datatype=D.Boolean,
            value=False,
            is_historical=True,
            is_transient=True,
        ),
    ),
)
TEMPLATE = Template(
    template_ref="T",
    metrics=(Metric(name="x", datatype=D.UInt8, value=7),),
    parameters=(TemplateParameter("p", D.Int16, -3),),
)

GOLDEN = [
    # 50 = field 10 (int_value) varint; -128 as 8-bit two's complement is 0x80 = 128 -> 80 01.
    (one(Metric(name="a", datatype=D.Int8, value=-128)), "12 08 0a0161 2001 508001"),
    # Int8 -1 is 0xff = 255 -> ff 01 (the type's width, not sign-extended to 32 bits).
    (one(Metric(name="a", datatype=D.Int8, value=-1)), "12 08 0a0161 2001 50ff01"),
    # Int16 -2 is 0xfffe = 65534 -> 7-bit groups 1111110, 1111111, 11 -> fe ff 03.
    (one(Metric(name="a", datatype=D.Int16, value=-2)), "12 09 0a0161 2002 50feff03"),
    # Int32 -1 is 0xffffffff -> ff ff ff ff 0f.
    (one(Metric(name="a", datatype=D.Int32, value=-1)), "12 0b 0a0161 2003 50ffffffff0f"),
    # Int32 300 = 0x12c -> groups 0101100, 10 -> ac 02.
    (one(Metric(name="a", datatype=D.Int32, value=300)), "12 08 0a0161 2003 50ac02"),
    # 58 = field 11 (long_value) varint; Int64 -2 is 2**64 - 2 -> fe, eight ff, 01 (10 bytes).
    (
        one(Metric(name="a", datatype=D.Int64, value=-2)),
        "12 10 0a0161 2004 58feffffffffffffffff01",
    ),
    # UInt8 255 -> ff 01.
    (one(Metric(name="a", datatype=D.UInt8, value=255)), "12 08 0a0161 2005 50ff01"),
    # UInt16 65535 = sixteen 1 bits -> ff ff 03.
    (one(Metric(name="a", datatype=D.UInt16, value=65535)), "12 09 0a0161 2006 50ffff03"),
    # UInt32 2**32 - 1 -> ff ff ff ff 0f.
    (one(Metric(name="a", datatype=D.UInt32, value=2**32 - 1)), "12 0b 0a0161 2007 50ffffffff0f"),
    # UInt64 2**64 - 1 -> nine ff (63 bits) then 01.
    (
        one(Metric(name="a", datatype=D.UInt64, value=2**64 - 1)),
        "12 10 0a0161 2008 58ffffffffffffffffff01",
    ),
    # 65 = field 12 (float_value) fixed32; 1.5 is 0x3fc00000, little-endian 00 00 c0 3f.
    (one(Metric(name="a", datatype=D.Float, value=1.5)), "12 0a 0a0161 2009 650000c03f"),
    # 69 = field 13 (double_value) fixed64; -2.5 is 0xc004000000000000, little-endian.
    (
        one(Metric(name="a", datatype=D.Double, value=-2.5)),
        "12 0e 0a0161 200a 6900000000000004c0",
    ),
    # 70 = field 14 (boolean_value) varint 1.
    (one(Metric(name="a", datatype=D.Boolean, value=True)), "12 07 0a0161 200b 7001"),
    # 7a = field 15 (string_value), 2 bytes "hi".
    (one(Metric(name="a", datatype=D.String, value="hi")), "12 09 0a0161 200c 7a026869"),
    # DateTime 1700000000000 ms = 0x18bcfe56800 -> groups 0000000, 1010000, 0010101, 1111111,
    # 0111100, 0110001 -> 80 d0 95 ff bc 31 in long_value.
    (
        one(Metric(name="a", datatype=D.DateTime, value=1_700_000_000_000)),
        "12 0c 0a0161 200d 5880d095ffbc31",
    ),
    # Text travels in string_value like String: "ok".
    (one(Metric(name="a", datatype=D.Text, value="ok")), "12 09 0a0161 200e 7a026f6b"),
    # UUID: string_value of 36 (0x24) ASCII bytes.
    (
        one(Metric(name="a", datatype=D.UUID, value=UUID_TEXT)),
        (
            "12 2b 0a0161 200f 7a24"
            "31323365343536372d653839622d313264332d613435362d343236363134313734303030"
        ),
    ),
    # 82 01 = field 16 (bytes_value), a two-byte key; 2 bytes 00 ff.
    (one(Metric(name="a", datatype=D.Bytes, value=b"\x00\xff")), "12 0a 0a0161 2011 82010200ff"),
    # File: 42 = field 8 (metadata), 7 bytes: 2a = MetaData field 5 (file_name) "a.zip";
    # then bytes_value "PK".
    (
        one(Metric(name="a", datatype=D.File, value=b"PK", metadata=MetaData(file_name="a.zip"))),
        "12 13 0a0161 2012 4207 2a05612e7a6970 820102504b",
    ),
    # A null Double: no value field, 38 01 = field 7 (is_null) true.
    (one(Metric(name="a", datatype=D.Double, value=None)), "12 07 0a0161 200a 3801"),
    # Int16Array (0x17) (-2, 3): little-endian fe ff, 03 00 in bytes_value.
    (
        one(Metric(name="a", datatype=D.Int16Array, value=(-2, 3))),
        "12 0c 0a0161 2017 820104feff0300",
    ),
    # BooleanArray (0x20), the specification's example: count 12 as 4 little-endian bytes, then
    # bits most significant first: 0011 0100, 1101 (padded 0000) -> 34 d0.
    (
        one(
            Metric(
                name="a",
                datatype=D.BooleanArray,
                value=(
                    False,
                    False,
                    True,
                    True,
                    False,
                    True,
                    False,
                    False,
                    True,
                    True,
                    False,
                    True,
                ),
            )
        ),
        "12 0e 0a0161 2020 8201060c00000034d0",
    ),
    # StringArray (0x21) ("ABC", "hello"): each UTF-8 string ended by 00.
    (
        one(Metric(name="a", datatype=D.StringArray, value=("ABC", "hello"))),
        "12 12 0a0161 2021 82010a4142430068656c6c6f00",
    ),
    # DataSet (0x10): 8a 01 = field 17 (dataset_value), 27 bytes: num_of_columns 2 (08 02),
    # columns "n" and "ok" (12 ...), types Int32 and Boolean unpacked (18 03, 18 0b), one row
    # (22 0c) of two DataSetValue elements (0a ...): int_value -1 (08 ff ff ff ff 0f) and
    # boolean_value true (28 01).
    (
        one(
            Metric(
                name="a",
                datatype=D.DataSet,
                value=DataSet(("n", "ok"), (D.Int32, D.Boolean), ((-1, True),)),
            )
        ),
        "12 23 0a0161 2010 8a011b 0802 12016e 12026f6b 1803 180b 220c 0a0608ffffffff0f 0a022801",
    ),
    # Template (0x13): 92 01 = field 18 (template_value), 25 bytes: a member metric (12 07) "x"
    # UInt8 7, a parameter (1a 09) "p" (0a) of type Int16 (10 02) with int_value -3 = 0xfffd
    # (18 fd ff 03), template_ref "T" (22 01 54) and is_definition false (28 00).
    (
        one(Metric(name="a", datatype=D.Template, value=TEMPLATE)),
        "12 21 0a0161 2013 920119 12070a017820055007 1a090a0170100218fdff03 220154 2800",
    ),
    # Quality uncertain: 4a = field 9 (properties), 15 bytes: key "Quality" (0a 07 ...), value
    # (12 04) of type Int32 (08 03) with int_value 64 (18 40); then double_value 1.0.
    (
        one(
            Metric(
                name="a",
                datatype=D.Double,
                value=1.0,
                properties={"Quality": PropertyValue(D.Int32, 64)},
            )
        ),
        "12 1f 0a0161 200a 4a0f 0a075175616c697479 120408031840 69000000000000f03f",
    ),
    # An alias-only DATA metric: 10 07 = field 2 (alias) 7, Int32 5, no name.
    (one(Metric(alias=7, datatype=D.Int32, value=5)), "12 06 1007 2003 5005"),
    # Payload fields: 08 = timestamp, 18 ff 01 = seq 255, 22 = uuid "u", 2a = body 01; the
    # metric has alias 5 (10 05), a timestamp (18 ...), is_historical and is_transient (28 01,
    # 30 01) and boolean_value false (70 00).
    (
        HEADER,
        "08 80d095ffbc31 12 14 0a0161 1005 1880d095ffbc31 200b 2801 3001 7000 18ff01 220175 2a0101",
    ),
]


@pytest.mark.parametrize(("payload", "golden"), GOLDEN)
def test_golden_bytes_encode_and_decode(payload: Payload, golden: str) -> None:
    data = bytes.fromhex(golden)
    assert encode(payload).hex(" ") == data.hex(" ")
    assert decode(data) == payload


def test_golden_vectors_cover_every_scalar_type_and_more() -> None:
    covered = {p.metrics[0].datatype for p, _ in GOLDEN if p.metrics[0].value is not None}
    scalars = BASIC_DATATYPES | {D.UUID, D.Bytes, D.File}
    assert scalars <= covered
    assert {D.DataSet, D.Template} <= covered
    assert covered & ARRAY_DATATYPES


# -- decoding what others send -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("golden", "datatype", "value"),
    [
        # C and Java senders sign-extend to 32 bits: Int8 -1 as 0xffffffff.
        ("12 0b 0a0161 2001 50ffffffff0f", D.Int8, -1),
        # Int16 -2 as 0xfffffffe -> fe ff ff ff 0f.
        ("12 0b 0a0161 2002 50feffffff0f", D.Int16, -2),
        # Int8 -128 sign-extended: 0xffffff80 -> 80 ff ff ff 0f.
        ("12 0b 0a0161 2001 5080ffffff0f", D.Int8, -128),
        # Int16 32767 stays positive.
        ("12 09 0a0161 2002 50ffff01", D.Int16, 32767),
    ],
)
def test_decode_accepts_both_signed_encodings(golden: str, datatype: DataType, value: int) -> None:
    (metric,) = decode(bytes.fromhex(golden)).metrics
    assert (metric.datatype, metric.value) == (datatype, value)


def test_decode_uses_birth_datatypes_for_metrics_without_one() -> None:
    # Alias 1, no datatype, long_value 2**64 - 1 (nine ff, 01): -1 once the birth says Int64.
    data = bytes.fromhex("12 0d 1001 58ffffffffffffffffff01")
    with pytest.raises(PayloadError, match="no datatype"):
        decode(data)
    birth = Payload(seq=0, metrics=(Metric(name="t", alias=1, datatype=D.Int64, value=0),))
    (metric,) = decode(data, known_datatypes=birth_datatypes(birth)).metrics
    assert (metric.alias, metric.datatype, metric.value) == (1, D.Int64, -1)


def test_null_metric_ignores_a_stray_value() -> None:
    # is_null true (38 01) and an int_value as well: null wins.
    (metric,) = decode(bytes.fromhex("12 09 0a0161 2003 3801 5005")).metrics
    assert metric.is_null and metric.value is None


def wrap(metric_hex: str) -> bytes:
    """A payload holding one metric given in hex (for the refusals below, not golden bytes)."""
    metric = bytes.fromhex(metric_hex)
    return bytes([0x12, len(metric)]) + metric


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (bytes.fromhex("ff"), "not a Sparkplug B payload"),  # a key byte that never ends
        (bytes.fromhex("12050a01"), "not a Sparkplug B payload"),  # a length past the end
        (bytes.fromhex("188002"), r"seq 256 is outside 0\.\.255"),
        (wrap("2003 5005"), "neither a name nor an alias"),
        (wrap("0a0161 2063 5005"), "unknown datatype 99"),
        (wrap("0a0161 2000 5005"), "datatype Unknown cannot be a metric's"),
        (wrap("0a0161 2014 5005"), "datatype PropertySet cannot be a metric's"),
        (wrap("0a0161 2004 5005"), "Int64 value must be in long_value, found int_value"),
        (wrap("0a0161 2003"), "Int32 metric has no value and is not marked null"),
        (wrap("0a0161 2001 50ac02"), "int_value 300 does not fit Int8"),
        (wrap("0a0161 2001 508080808008"), "int_value 2147483648 does not fit Int8"),
        (wrap("0a0161 2005 508002"), "256 is outside UInt8's 0..255"),
        (wrap("0a02fffe 2003 5005"), "name is not valid UTF-8"),
        (wrap("0a0161 200c 7a02fffe"), "String value is not valid UTF-8"),
        (wrap("0a0161 2017 820103feff03"), "Int16Array of 3 bytes is not a whole number"),
        (wrap("0a0161 2020 8201050c00000034"), "BooleanArray of 12 values needs 2 bytes"),
        (wrap("0a0161 2021 820103414243"), "StringArray does not end with a NUL byte"),
        (wrap("0a0161 2010 8a0107 0802 12016e 1803"), "data set says 2 columns but has 1"),
        (wrap("0a0161 2010 8a0103 12016e"), "data set has 1 column names but 0 types"),
        (wrap("0a0161 2010 8a0105 12016e 1811"), "Bytes cannot be a data set column's"),
        (wrap("0a0161 2010 8a0107 12016e 1803 2200"), "row 0 has 0 values for 1 columns"),
        (
            wrap("0a0161 2010 8a010c 12016e 1803 22050a03320178"),
            "row 0 column 'n': Int32 value must be in int_value, found string_value",
        ),
        (wrap("0a0161 200b 4a03 0a0171 7001"), "property set has 1 keys but 0 values"),
        (wrap("0a0161 200b 4a05 0a0171 1200 7001"), "property 'q': property value has no type"),
        (wrap("0a0161 200b 4a07 0a0171 12020811 7001"), "Bytes cannot be a property's"),
        (wrap("0a0161 2013 920107 12030a0178 2800"), "member 0 'x': metric has no datatype"),
        (wrap("0a0161 2013 920105 1a030a0170"), "template parameter 'p' has no type"),
    ],
)
def test_decode_refuses_with_a_clear_reason(data: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        decode(data)


def test_decode_errors_name_the_metric() -> None:
    # Metric 0 is String "hi"; metric 1 ("b") is an Int64 with its value in int_value.
    data = bytes.fromhex("12090a0161200c7a026869 12070a016220045005".replace(" ", ""))
    with pytest.raises(PayloadError, match=r"^metric 1 'b': Int64 value must be in long_value"):
        decode(data)


def test_decode_refuses_oversized_and_non_bytes() -> None:
    with pytest.raises(PayloadError, match="more than the limit"):
        decode(b"\x00" * 11, max_bytes=10)
    with pytest.raises(PayloadError, match="must be bytes"):
        decode("12 00")  # type: ignore[arg-type]


# -- encoding refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (Payload(seq=256), r"seq must be an integer in 0\.\.255"),
        (one(Metric(datatype=D.Int8, value=1)), "neither a name nor an alias"),
        (one(Metric(name="a", datatype=D.Int8, value=128)), "128 is outside Int8's -128..127"),
        (one(Metric(name="a", datatype=D.UInt32, value=-1)), "outside UInt32"),
        (one(Metric(name="a", datatype=D.Int32, value=True)), "Int32 needs an int, got bool"),
        (one(Metric(name="a", datatype=D.Double, value=1)), "Double needs a float, got int"),
        (one(Metric(name="a", datatype=D.Float, value=1e39)), "does not fit a 32-bit Float"),
        (one(Metric(name="a", datatype=D.String, value="\ud800")), "not valid Unicode"),
        (one(Metric(name="a", datatype=D.Unknown, value=1)), "Unknown cannot be a metric's"),
        (one(Metric(name="a", datatype=D.Bytes, value="x")), "must be bytes, got str"),
        (one(Metric(name="a", datatype=D.StringArray, value=("a\x00",))), "contains NUL"),
        (one(Metric(name="a", datatype=D.Int8Array, value=[1])), "must be a tuple"),
        (one(Metric(name="a", datatype=D.UInt8Array, value=(256,))), "element 0: 256 is outside"),
        (one(Metric(name="a", alias=-1, datatype=D.Boolean, value=True)), "alias must be"),
        (
            one(Metric(name="a", datatype=D.DataSet, value=DataSet(("x",), (D.File,), ()))),
            "File cannot be a data set column's",
        ),
        (
            one(Metric(name="a", datatype=D.DataSet, value=DataSet(("x",), (D.Int8,), ((1, 2),)))),
            "row 0 has 2 values for 1 columns",
        ),
        (
            one(
                Metric(
                    name="a",
                    datatype=D.Boolean,
                    value=True,
                    properties={"q": PropertyValue(D.Int32, 2**31)},
                )
            ),
            "property 'q': 2147483648 is outside Int32",
        ),
        (
            one(
                Metric(
                    name="a",
                    datatype=D.Template,
                    value=Template(metrics=(Metric(name="m", datatype=D.Int8, value=999),)),
                )
            ),
            "template member 0 'm': 999 is outside Int8",
        ),
    ],
)
def test_encode_refuses_with_a_clear_reason(payload: Payload, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        encode(payload)


# -- round trips and fuzzing ---------------------------------------------------------------------

texts = st.text(st.characters(codec="utf-8"), max_size=12)
uint64s = st.integers(0, 2**64 - 1)


def scalars(datatype: DataType) -> st.SearchStrategy[Any]:
    if datatype in INTEGER_RANGES:
        return st.integers(*INTEGER_RANGES[datatype])
    if datatype is D.Float:
        return st.floats(width=32, allow_nan=False)
    if datatype is D.Double:
        return st.floats(allow_nan=False)
    if datatype is D.Boolean:
        return st.booleans()
    return texts


def arrays(datatype: DataType) -> st.SearchStrategy[Any]:
    values = scalars(D[datatype.name.removesuffix("Array")])
    if datatype is D.StringArray:
        values = texts.filter(lambda text: "\x00" not in text)
    return st.lists(values, max_size=10).map(tuple)


basic_types = st.sampled_from(sorted(BASIC_DATATYPES))


@st.composite
def datasets(draw: st.DrawFn) -> DataSet:
    types = tuple(draw(st.lists(basic_types, max_size=4)))
    columns = draw(st.lists(texts, min_size=len(types), max_size=len(types)))
    rows = draw(st.lists(st.tuples(*(scalars(t) | st.none() for t in types)), max_size=3))
    return DataSet(tuple(columns), types, tuple(rows))


@st.composite
def scalar_metrics(draw: st.DrawFn) -> Metric:
    datatype = draw(basic_types)
    return Metric(name=draw(texts), datatype=datatype, value=draw(scalars(datatype) | st.none()))


@st.composite
def templates(draw: st.DrawFn) -> Template:
    parameters = []
    for name in draw(st.lists(texts, max_size=3)):
        datatype = draw(basic_types)
        parameters.append(TemplateParameter(name, datatype, draw(scalars(datatype) | st.none())))
    return Template(
        metrics=tuple(draw(st.lists(scalar_metrics(), max_size=3))),
        parameters=tuple(parameters),
        version=draw(texts | st.none()),
        template_ref=draw(texts | st.none()),
        is_definition=draw(st.booleans()),
    )


@st.composite
def property_values(draw: st.DrawFn) -> PropertyValue:
    datatype = draw(basic_types)
    return PropertyValue(datatype, draw(scalars(datatype) | st.none()))


property_sets = st.dictionaries(texts, property_values(), max_size=3)
nested_property_values = (
    property_values()
    | st.builds(PropertyValue, st.just(D.PropertySet), property_sets)
    | st.builds(
        PropertyValue, st.just(D.PropertySetList), st.lists(property_sets, max_size=2).map(tuple)
    )
)
metric_types = st.sampled_from(
    [d for d in DataType if d not in (D.Unknown, D.PropertySet, D.PropertySetList)]
)


def metric_values(datatype: DataType) -> st.SearchStrategy[Any]:
    if datatype in ARRAY_DATATYPES:
        return arrays(datatype)
    if datatype in (D.Bytes, D.File):
        return st.binary(max_size=16)
    if datatype is D.DataSet:
        return datasets()
    if datatype is D.Template:
        return templates()
    return scalars(datatype)


@st.composite
def metrics(draw: st.DrawFn) -> Metric:
    datatype = draw(metric_types)
    name = draw(texts | st.none())
    return Metric(
        datatype=datatype,
        value=draw(metric_values(datatype) | st.none()),
        name=name,
        alias=draw(uint64s if name is None else uint64s | st.none()),
        timestamp=draw(uint64s | st.none()),
        is_historical=draw(st.booleans()),
        is_transient=draw(st.booleans()),
        properties=draw(st.dictionaries(texts, nested_property_values, max_size=3) | st.none()),
        metadata=draw(
            st.builds(MetaData, is_multi_part=st.booleans(), file_name=texts, size=uint64s)
            | st.none()
        ),
    )


payloads = st.builds(
    Payload,
    metrics=st.lists(metrics(), max_size=4).map(tuple),
    timestamp=uint64s | st.none(),
    seq=st.integers(0, 255) | st.none(),
    uuid=texts | st.none(),
    body=st.binary(max_size=8) | st.none(),
)


@given(payloads)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_payloads_round_trip_exactly(payload: Payload) -> None:
    assert decode(encode(payload)) == payload


@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_payload_error(data: bytes) -> None:
    try:
        decode(data)
    except PayloadError as exc:
        reason = exc.reason
        assert reason


@given(payloads, st.data())
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_garbled_payloads_decode_or_raise_payload_error(
    payload: Payload, data: st.DataObject
) -> None:
    wire = bytearray(encode(payload))
    for _ in range(data.draw(st.integers(1, 4))):
        if not wire:
            break
        at = data.draw(st.integers(0, len(wire) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            wire[at] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del wire[at : at + data.draw(st.integers(1, 4))]
        else:
            wire[at:at] = data.draw(st.binary(min_size=1, max_size=4))
    try:
        decode(bytes(wire))
    except PayloadError as exc:
        reason = exc.reason
        assert reason


# Protobuf-valid messages with any datatype number and any value field: everything the
# validation has to sort out, with the wire format itself out of the way.
value_fields = st.sampled_from(
    [
        "int_value",
        "long_value",
        "float_value",
        "double_value",
        "boolean_value",
        "string_value",
        "bytes_value",
        None,
    ]
)


@st.composite
def raw_metrics(draw: st.DrawFn) -> pb.Payload.Metric:
    wire = pb.Payload.Metric()
    if draw(st.booleans()):
        wire.name = draw(texts)
    if draw(st.booleans()):
        wire.alias = draw(uint64s)
    if draw(st.booleans()):
        wire.datatype = draw(st.integers(0, 40))
    wire.is_null = draw(st.booleans())
    field = draw(value_fields)
    if field is not None:
        raw = {
            "int_value": st.integers(0, 2**32 - 1),
            "long_value": uint64s,
            "float_value": st.floats(width=32),
            "double_value": st.floats(),
            "boolean_value": st.booleans(),
            "string_value": texts,
            "bytes_value": st.binary(max_size=12),
        }[field]
        setattr(wire, field, draw(raw))
    if draw(st.booleans()):
        properties = wire.properties
        for _ in range(draw(st.integers(0, 2))):
            properties.keys.append(draw(texts))
        for _ in range(draw(st.integers(0, 2))):
            value = properties.values.add()
            value.type = draw(st.integers(0, 40))
            value.int_value = draw(st.integers(0, 2**32 - 1))
    return wire


@given(st.lists(raw_metrics(), max_size=4), st.integers(0, 300) | st.none())
def test_any_protobuf_payload_decodes_or_raises_payload_error(
    wires: list[pb.Payload.Metric], seq: int | None
) -> None:
    message = pb.Payload(metrics=wires)
    if seq is not None:
        message.seq = seq
    try:
        decoded = decode(message.SerializeToString())
    except PayloadError as exc:
        reason = exc.reason
        assert reason
    else:
        assert decode(encode(decoded)) == decoded or any(
            isinstance(m.value, float) and math.isnan(m.value) for m in decoded.metrics
        )


# -- PlantWire samples ---------------------------------------------------------------------------


def test_datatype_for_plantwire_values() -> None:
    assert [datatype_for(v) for v in (1.5, 7, False, "run")] == [
        D.Double,
        D.Int64,
        D.Boolean,
        D.String,
    ]
    with pytest.raises(PayloadError, match="no Sparkplug datatype for a NoneType"):
        datatype_for(None)


def test_metric_from_sample_carries_time_and_quality() -> None:
    sample = Sample(1_763_712_000_123_456_789, "fill_temp", 4, Quality.UNCERTAIN)
    metric = metric_from_sample(sample, datatype=D.Float, alias=12, with_name=False)
    assert metric == Metric(
        alias=12,
        timestamp=1_763_712_000_123,
        datatype=D.Float,
        value=4.0,
        properties={QUALITY_PROPERTY: PropertyValue(D.Int32, 64)},
    )
    assert to_plantwire_value(decode(encode(one(metric))).metrics[0]) == StorableValue(
        4.0, Quality.UNCERTAIN
    )
    assert metric_from_sample(Sample(0, "run", True)).properties is None
    with pytest.raises(PayloadError, match="pass its birth datatype"):
        metric_from_sample(Sample(0, "speed", None, Quality.BAD))
    null = metric_from_sample(Sample(0, "speed", None, Quality.BAD), datatype=D.Int32)
    assert null.is_null and to_plantwire_value(null) == StorableValue(None, Quality.BAD)


@pytest.mark.parametrize(("payload", "_golden"), GOLDEN)
def test_every_golden_metric_is_storable_or_says_why(payload: Payload, _golden: str) -> None:
    metric = payload.metrics[0]
    if metric.datatype not in BASIC_DATATYPES | {D.UUID}:
        reason = f"{metric.datatype} is not storable as a PlantWire sample"
        expected: StorableValue | NotStorable = NotStorable(metric.datatype, reason)
    elif metric.value is None:
        expected = StorableValue(None, Quality.BAD)
    elif metric.value == 2**64 - 1:
        expected = NotStorable(D.UInt64, "integer does not fit in 64 bits")
    else:
        assert isinstance(metric.value, int | float | str)
        expected = StorableValue(metric.value, metric_quality(metric))
    assert to_plantwire_value(metric) == expected


def test_values_plantwire_cannot_store_are_not_storable() -> None:
    huge = Metric(name="n", datatype=D.UInt64, value=2**64 - 1)
    nan = Metric(name="x", datatype=D.Double, value=math.nan)
    assert to_plantwire_value(huge) == NotStorable(D.UInt64, "integer does not fit in 64 bits")
    assert to_plantwire_value(nan) == NotStorable(D.Double, "value is NaN or infinite")


@pytest.mark.parametrize(
    ("code", "quality"),
    [
        (192, Quality.GOOD),
        (0xD8, Quality.GOOD),  # OPC DA good, local override
        (64, Quality.UNCERTAIN),
        (0x54, Quality.UNCERTAIN),  # uncertain, sensor not accurate
        (500, Quality.UNCERTAIN),  # Sparkplug's STALE
        (0, Quality.BAD),
        (0x18, Quality.BAD),  # bad, communication failure
        (-1, Quality.BAD),
        (70000, Quality.BAD),
    ],
)
def test_quality_codes(code: int, quality: Quality) -> None:
    assert quality_from_code(code) is quality


@pytest.mark.parametrize("quality", list(Quality))
def test_quality_round_trips_through_the_property(quality: Quality) -> None:
    assert quality_from_code(quality_code(quality)) is quality
    metric = Metric(
        name="a", datatype=D.Boolean, value=True, properties=quality_properties(quality)
    )
    assert metric_quality(decode(encode(one(metric))).metrics[0]) is quality


def test_quality_property_of_the_wrong_type_is_bad() -> None:
    odd = Metric(
        name="a",
        datatype=D.Boolean,
        value=True,
        properties={"Quality": PropertyValue(D.String, "ok")},
    )
    assert metric_quality(odd) is Quality.BAD


# -- session helpers and logs --------------------------------------------------------------------


def test_sequence_numbers_wrap_at_256() -> None:
    assert [next_seq(s) for s in (0, 1, 254, 255)] == [1, 2, 255, 0]
    for bad in (-1, 256, True, 1.0):
        with pytest.raises(ValueError, match=r"0\.\.255"):
            next_seq(bad)  # type: ignore[arg-type]


def test_bdseq_and_rebirth_metrics() -> None:
    # bdSeq (UInt64, 0x08) 3 and Node Control/Rebirth (Boolean, 0x0b) false, as in an NBIRTH.
    birth = Payload(seq=0, metrics=(bdseq_metric(3), rebirth_metric()))
    assert encode(birth).hex() == (
        "120b0a05626453657120085803121a0a144e6f646520436f6e74726f6c2f52656269727468200b70001800"
    )
    assert rebirth_metric(True).value is True
    with pytest.raises(ValueError, match="bdSeq"):
        bdseq_metric(256)


def test_describe_is_short() -> None:
    payload = Payload(
        seq=3,
        timestamp=1_700_000_000_000,
        metrics=(
            Metric(name="fill_temp", alias=1, datatype=D.Double, value=4.5),
            Metric(alias=2, datatype=D.Float, properties=quality_properties(Quality.BAD)),
            Metric(name="blob", datatype=D.Bytes, value=b"\x00" * 300),
            Metric(name="note", datatype=D.String, value="x" * 100),
            Metric(name="udt", datatype=D.Template, value=TEMPLATE),
            Metric(name="grid", datatype=D.DataSet, value=DataSet(("a",), (D.Int8,), ((1,),))),
        ),
    )
    assert describe(payload, max_metrics=5) == (
        "seq=3, ts=1700000000000, 6 metrics: 'fill_temp' (alias 1)=4.5 (Double), "
        "alias 2=null (Float, bad), 'blob'=<300 bytes> (Bytes), "
        "'note'='" + "x" * 36 + "... (String), "
        "'udt'=<template of 'T', members=1> (Template), … 1 more"
    )


# -- the schema ----------------------------------------------------------------------------------


def test_datatype_enum_matches_the_proto() -> None:
    assert {d.name: d.value for d in DataType} == dict(pb.DataType.items())


def test_generated_module_matches_the_proto() -> None:
    """sparkplug_b_pb2.py embeds the schema protoc compiled; a parse of the .proto here must
    give the same descriptor, so an edit to either without regenerating fails."""
    embedded = descriptor_pb2.FileDescriptorProto.FromString(pb.DESCRIPTOR.serialized_pb)
    parsed = parse_proto(PROTO.read_text(), "plantwire/codec/sparkplug_b.proto")
    assert str(parsed) == str(embedded)
    assert parsed == embedded


_SCALARS = {
    name: getattr(descriptor_pb2.FieldDescriptorProto, f"TYPE_{name.upper()}")
    for name in ("uint32", "uint64", "float", "double", "bool", "string", "bytes")
}
_TOKEN = re.compile(r'"[^"]*"|[A-Za-z_][\w.]*|\d+|[{};=]')
_EXTENSION_MAX = 2**29  # "max" is the largest field number; descriptor ranges end one past it


def parse_proto(text: str, file_name: str) -> descriptor_pb2.FileDescriptorProto:
    """A descriptor from the proto2 subset the Sparkplug schema uses: package, enums, nested
    messages, optional/repeated fields, oneofs and extension ranges. Anything else fails."""
    tokens = _TOKEN.findall(re.sub(r"//[^\n]*", "", text))
    tokens.reverse()
    result = descriptor_pb2.FileDescriptorProto(name=file_name)
    fields: list[tuple[descriptor_pb2.FieldDescriptorProto, str, str]] = []

    def take(expected: str | None = None) -> str:
        token = tokens.pop()
        assert expected in (None, token), f"expected {expected!r}, got {token!r}"
        return token

    def numbered() -> tuple[str, int]:  # NAME = NUMBER ;
        name, _, number, _ = take(), take("="), take(), take(";")
        return name, int(number)

    def enum(into: Any) -> None:
        proto = into.add(name=take())
        take("{")
        while tokens[-1] != "}":
            name, number = numbered()
            proto.value.add(name=name, number=number)
        take("}")

    def field(proto: Any, scope: str, label: str, oneof: int | None = None) -> None:
        kind = take()
        name, number = numbered()
        entry = proto.field.add(name=name, number=number, label=label)
        if oneof is not None:
            entry.oneof_index = oneof
        fields.append((entry, kind, scope))

    def message(into: Any, scope: str) -> None:
        proto = into.add(name=take())
        scope = f"{scope}.{proto.name}"
        take("{")
        while (token := take()) != "}":
            if token == "message":
                message(proto.nested_type, scope)
            elif token == "enum":
                enum(proto.enum_type)
            elif token in ("optional", "repeated"):
                field(proto, scope, f"LABEL_{token.upper()}")
            elif token == "oneof":
                proto.oneof_decl.add(name=take())
                take("{")
                while tokens[-1] != "}":
                    field(proto, scope, "LABEL_OPTIONAL", len(proto.oneof_decl) - 1)
                take("}")
            elif token == "extensions":
                start, _, end = take(), take("to"), take()
                take(";")
                proto.extension_range.add(
                    start=int(start), end=_EXTENSION_MAX if end == "max" else int(end) + 1
                )
            else:
                raise AssertionError(f"unsupported .proto syntax at {token!r}")

    while tokens:
        token = take()
        if token == "syntax":
            _, syntax, _ = take("="), take(), take(";")
            assert syntax == '"proto2"'
        elif token == "package":
            result.package = take()
            take(";")
        elif token == "enum":
            enum(result.enum_type)
        elif token == "message":
            message(result.message_type, f".{result.package}")
        else:
            raise AssertionError(f"unsupported .proto syntax at {token!r}")

    enums = {f".{result.package}.{e.name}" for e in result.enum_type}
    messages = _message_names(result.message_type, f".{result.package}")
    for entry, kind, scope in fields:
        if kind in _SCALARS:
            entry.type = _SCALARS[kind]
            continue
        # Protobuf resolves a type name from the innermost scope outwards.
        candidates = [scope.rsplit(".", depth)[0] for depth in range(scope.count("."))]
        resolved = next(f"{c}.{kind}" for c in candidates if f"{c}.{kind}" in messages | enums)
        entry.type_name = resolved
        entry.type = entry.TYPE_ENUM if resolved in enums else entry.TYPE_MESSAGE
    return result


def _message_names(protos: Any, scope: str) -> set[str]:
    names = set()
    for proto in protos:
        names.add(f"{scope}.{proto.name}")
        names |= _message_names(proto.nested_type, f"{scope}.{proto.name}")
    return names
