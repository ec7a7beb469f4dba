"""Hostile inputs for PlantWire's boundaries, as hypothesis strategies.

Generic mutators (of bytes, of text, of a parsed tree) and what they start from: valid native
and Sparkplug payloads, encoded line protocol, Modbus tags. Site files are in
:mod:`plantwire.testing.fuzz_sites`; the checks that judge what the code does with all of these
are in :mod:`plantwire.testing.fuzz`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import orjson
from hypothesis import strategies as st

from plantwire.codec.native import encode_batch
from plantwire.codec.sparkplug import (
    DataSet,
    DataType,
    MetaData,
    Metric,
    Payload,
    PropertyValue,
    Template,
    TemplateParameter,
    bdseq_metric,
    encode,
    metric_from_sample,
    rebirth_metric,
)
from plantwire.config import models
from plantwire.config.modbus import MODBUS_MAX_REGISTERS
from plantwire.errors import InvalidNameError
from plantwire.lineprotocol import LineEncoder, Point
from plantwire.model import INT64_MAX, INT64_MIN, AssetPath, Batch, Quality, Sample
from plantwire.names import check_influx_name

__all__ = [
    "AWKWARD_TEXT",
    "CHARACTERS",
    "arbitrary_json",
    "line_bodies",
    "line_points",
    "modbus_reads",
    "mutated_bytes",
    "mutated_texts",
    "mutated_trees",
    "native_payloads",
    "sparkplug_payloads",
    "tree_containers",
    "tree_slots",
]

# -- text and bytes --------------------------------------------------------------------------------

# Characters that have broken parsers and messages before: controls, line breaks Python's
# splitlines knows, YAML and line-protocol syntax, escapes, wide and right-to-left characters.
_AWKWARD_CHARS = list(
    " \t\n\r\x00\x01\x0b\x1b\x7f\x85\xa0\u2028\ufeff\u202e,=#\"'\\/$+{}[]:&*!|>%@`-.?~ é温🏭"
)
CHARACTERS = st.one_of(
    st.characters(),
    st.sampled_from(_AWKWARD_CHARS),
    st.characters(categories=["Cs"]),  # a lone surrogate: a str with no UTF-8 form
)
AWKWARD_TEXT = st.text(CHARACTERS, max_size=30)


@st.composite
def mutated_bytes(draw: st.DrawFn, seeds: st.SearchStrategy[bytes], max_edits: int = 4) -> bytes:
    """A seed with bit flips, odd bytes, truncation, cuts, insertions, repeats and splices."""
    data = bytearray(draw(seeds))
    for _ in range(draw(st.integers(1, max_edits))):
        edit = draw(st.sampled_from(_BYTE_EDITS))
        at = draw(st.integers(0, len(data)))
        if edit == "insert" or not data:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif edit == "flip":
            data[min(at, len(data) - 1)] ^= 1 << draw(st.integers(0, 7))
        elif edit == "byte":
            byte = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]) | st.integers(0, 255))
            data[min(at, len(data) - 1)] = byte
        elif edit == "truncate":
            del data[at:]
        elif edit == "cut":
            del data[at : at + draw(st.integers(1, 16))]
        elif edit == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 16))]
        else:  # splice: this seed's head on another seed's tail
            other = draw(seeds)
            data = data[:at] + other[draw(st.integers(0, len(other))) :]
    return bytes(data)


_BYTE_EDITS = ("flip", "byte", "truncate", "cut", "insert", "repeat", "splice")


@st.composite
def mutated_texts(
    draw: st.DrawFn, seeds: Sequence[str], tokens: Sequence[str], max_edits: int = 3
) -> str:
    """A seed text with lines deleted, repeated, swapped, re-indented, values replaced by
    tokens, tokens inserted anywhere, and cuts."""
    text = draw(st.sampled_from(seeds))
    token = st.sampled_from(tokens) | AWKWARD_TEXT
    for _ in range(draw(st.integers(1, max_edits))):
        lines = text.split("\n")
        at = draw(st.integers(0, len(lines) - 1))
        edit = draw(st.sampled_from(_TEXT_EDITS))
        if edit == "delete line":
            del lines[at]
        elif edit == "repeat line":  # in a mapping: a duplicate key
            lines.insert(at, lines[at])
        elif edit == "swap lines":
            other = draw(st.integers(0, len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
        elif edit == "indent":
            lines[at] = draw(st.sampled_from([" ", "  ", "    ", "\t"])) + lines[at]
        elif edit == "dedent":
            lines[at] = lines[at][draw(st.integers(1, 4)) :]
        elif edit == "replace value" and ": " in lines[at]:
            lines[at] = lines[at][: lines[at].index(": ") + 2] + draw(token)
        elif edit == "cut":
            text = "\n".join(lines)
            start = draw(st.integers(0, len(text)))
            lines = (text[:start] + text[start + draw(st.integers(1, 40)) :]).split("\n")
        else:  # insert a token anywhere
            text = "\n".join(lines)
            start = draw(st.integers(0, len(text)))
            lines = (text[:start] + draw(token) + text[start:]).split("\n")
        text = "\n".join(lines)
    return text


_TEXT_EDITS = (
    "delete line",
    "repeat line",
    "swap lines",
    "indent",
    "dedent",
    "replace value",
    "cut",
    "insert",
)

# -- trees (parsed YAML or JSON) -------------------------------------------------------------------


def tree_slots(tree: Any) -> list[tuple[Any, Any]]:
    """Every ``(container, key or index)`` of a tree of dicts and lists, in a fixed order."""
    found: list[tuple[Any, Any]] = []
    stack = [tree] if isinstance(tree, dict | list) else []
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in list(items):
            found.append((node, key))
            if isinstance(child, dict | list):
                stack.append(child)
    return found


def tree_containers(tree: Any, kind: type) -> list[Any]:
    found = [tree] if isinstance(tree, kind) else []
    found += [parent[key] for parent, key in tree_slots(tree) if isinstance(parent[key], kind)]
    return found


def _retyped(value: Any) -> list[Any]:
    """The same value as other types: what a typo or a wrong indentation turns it into."""
    return [str(value), [value], {"value": value}, None, True, 0, -1, 2**64, math.inf, ""]


@st.composite
def mutated_trees(
    draw: st.DrawFn,
    base: Any,
    leaves: st.SearchStrategy[Any],
    keys: st.SearchStrategy[Any],
    max_edits: int = 3,
) -> Any:
    """A copy of a tree with values deleted, replaced, retyped, moved, list items repeated (a
    duplicate id) and keys added or renamed."""
    tree = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, max_edits))):
        edit = draw(st.sampled_from(_TREE_EDITS))
        if edit == "repeat item":
            lists = [items for items in tree_containers(tree, list) if items]
            if lists:
                items = draw(st.sampled_from(lists))
                at = draw(st.integers(0, len(items) - 1))
                items.insert(at, copy.deepcopy(items[at]))
            continue
        if edit == "add key":
            mapping = draw(st.sampled_from(tree_containers(tree, dict) or [{}]))
            mapping[draw(keys)] = draw(leaves)
            continue
        slots = tree_slots(tree)
        if not slots:
            continue
        parent, key = draw(st.sampled_from(slots))
        if edit == "delete":
            del parent[key]
        elif edit == "replace":
            parent[key] = draw(leaves)
        elif edit == "retype":
            parent[key] = draw(st.sampled_from(_retyped(parent[key])))
        elif edit == "move":
            source, source_key = draw(st.sampled_from(slots))
            parent[key] = copy.deepcopy(source[source_key])
        elif isinstance(parent, dict):  # rename key
            parent[draw(keys)] = parent.pop(key)
    return tree


_TREE_EDITS = ("delete", "replace", "retype", "move", "rename", "repeat item", "add key")

# -- line protocol ---------------------------------------------------------------------------------


def _is_name(text: str) -> bool:
    try:
        check_influx_name(text)
    except InvalidNameError:
        return False
    return text not in {"time", "_field", "_measurement"} and not text.startswith("#")


# Names and values the encoder must accept and write so they read back unchanged ...
_clean_names = st.sampled_from(
    ["telemetry", "temp", "good_count", "nhiệt độ", "温度", "a b", "x,y=z", 'q"m', "C:\\m", "x%s"]
) | st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")) | st.sampled_from(_AWKWARD_CHARS),
    min_size=1,
    max_size=20,
).filter(_is_name)
_clean_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(INT64_MIN, INT64_MAX),
    st.booleans(),
    st.text(st.characters(codec="utf-8") | st.sampled_from(_AWKWARD_CHARS), max_size=30),
    st.sampled_from(["two\nlines", 'say "hi" \\', "", -0.0, 5e-324, INT64_MIN, INT64_MAX]),
    st.floats(allow_nan=False, allow_infinity=False).map(np.float64),
    st.floats(width=32, allow_nan=False, allow_infinity=False).map(np.float32),
    st.integers(INT64_MIN, INT64_MAX).map(np.int64),
    st.booleans().map(np.bool_),
    st.fractions(max_denominator=1000),
)
_clean_timestamps = st.integers(INT64_MIN + 1, INT64_MAX - 1)
# ... and anything else, which it must refuse with a LineProtocolError.
_wild_names = st.one_of(
    AWKWARD_TEXT,
    st.sampled_from(["", "time", "_field", "_measurement", " x", "x\\", "x" * 257, "\ud800"]),
    st.sampled_from([None, 1, b"x", Quality.GOOD, 1.5]),  # not str (a str subclass counts too)
)
_wild_values = st.one_of(
    st.floats(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([INT64_MIN - 1, INT64_MAX + 1, math.nan, -math.inf]),
    AWKWARD_TEXT,
    st.sampled_from(["x" * 70_000, "é" * 40_000, "\udfff"]),
    st.floats().map(np.float64),
    st.sampled_from([None, [1], Decimal("1.5"), 1 + 2j, b"x", np.float32("nan")]),
)
_wild_timestamps = st.one_of(
    st.integers(-(2**65), 2**65),
    st.sampled_from([INT64_MIN, INT64_MAX]),
    st.sampled_from([1.5, True, None, "1", np.int64(7)]),
)


def _sometimes(clean: st.SearchStrategy[Any], wild: st.SearchStrategy[Any], level: int) -> Any:
    """Clean at level 0, wild one time in ten at level 1, wild one time in two at level 2."""
    return [clean, st.one_of(*[clean] * 9, wild), clean | wild][level]


@st.composite
def line_points(draw: st.DrawFn) -> list[Point]:
    """Points with any names, values and timestamps -- all clean, a few wild, or many wild;
    consecutive points may share one tags dict (the encoder escapes a shared one once)."""
    level = draw(st.integers(0, 2))
    names = _sometimes(_clean_names, _wild_names, level)
    values = _sometimes(_clean_values, _wild_values, level)
    timestamps = _sometimes(_clean_timestamps, _wild_timestamps, level)
    tag_sets = draw(st.lists(st.dictionaries(names, names, max_size=4), min_size=1, max_size=3))
    measurements = draw(st.lists(names, min_size=1, max_size=2))
    return [
        Point(
            draw(st.sampled_from(measurements)),
            draw(st.sampled_from(tag_sets)),
            draw(st.dictionaries(names, values, min_size=level // 2, max_size=6)),
            draw(timestamps),
        )
        for _ in range(draw(st.integers(1, 5)))
    ]


_good_points = [
    Point("telemetry", {"site": "binh-duong", "machine": "filler"}, {"temp": 4.2, "n": 7}, 1),
    Point("a b,c", {"k=1": "v 1"}, {"s": 'two\n"lines" \\', "b": True, "f": -0.0}, -5),
    Point("m", {}, {"é温": 1e-300, "x%s": 2**63 - 1}, 2**63 - 2),
]
_bodies = [LineEncoder().encode([point]) for point in _good_points]
_bodies.append(b"\n".join(_bodies))
_LINE_TOKENS = [" ", ",", "=", '"', "\\", "\n", "#", "i", "u", "t", "1", "-", ".", "e", "nan"]


def line_bodies() -> st.SearchStrategy[bytes]:
    """Write request bodies: encoded points mutated, line-protocol-ish text, any bytes."""
    tokens = st.lists(st.sampled_from(_LINE_TOKENS) | AWKWARD_TEXT, max_size=30).map("".join)
    texts = tokens.map(lambda text: text.encode(errors="surrogatepass"))
    return mutated_bytes(st.sampled_from(_bodies)) | texts | st.binary(max_size=200)


# -- payloads --------------------------------------------------------------------------------------

_segments = st.sampled_from(["binh-duong", "dairy", "filling", "filler-1", "nhà máy", "a b,c=d"])
_metrics = st.sampled_from(["temp", "good_count", "état", "温度", "a b", "x,y=z", 'q"m', "C:\\m"])
_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(INT64_MIN, INT64_MAX),
    st.booleans(),
    st.text(max_size=12),
)


@st.composite
def _samples(draw: st.DrawFn) -> Sample:
    quality = draw(st.sampled_from(list(Quality)))
    value = draw(_values | st.none()) if quality is not Quality.GOOD else draw(_values)
    return Sample(draw(st.integers(0, INT64_MAX)), draw(_metrics), value, quality)


_batches = st.builds(
    Batch,
    _segments,
    st.integers(0, INT64_MAX),
    st.builds(AssetPath, _segments, _segments, _segments, _segments),
    st.lists(_samples(), max_size=6),
)
_json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(INT64_MIN, 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
    st.sampled_from(["good", "bad", "uncertain", "time", "temp", "alerts", "a/b", "+", ""]),
)
arbitrary_json = st.recursive(
    _json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children)
    ),
    max_leaves=20,
)
_json_keys = st.sampled_from(["version", "edge", "seq", "asset", "samples", "t", "m", "v", "q"])


@st.composite
def _mutated_json(draw: st.DrawFn) -> bytes:
    payload = encode_batch(draw(_batches))
    tree = draw(mutated_trees(orjson.loads(payload), arbitrary_json, _json_keys | st.text()))
    try:
        return orjson.dumps(tree)
    except orjson.JSONEncodeError:  # a key that is not a string, a lone surrogate
        return payload


def native_payloads() -> st.SearchStrategy[bytes]:
    """Native payloads: valid batches mutated as bytes and as JSON, any JSON, any bytes."""
    valid = _batches.map(encode_batch)
    any_json = arbitrary_json.map(orjson.dumps)
    return st.one_of(mutated_bytes(valid), _mutated_json(), any_json, st.binary(max_size=300))


def _sparkplug_examples() -> list[Payload]:
    """Payloads using every part of the schema: a birth, arrays, a data set, a template."""
    quality = {"Quality": PropertyValue(DataType.Int32, 64)}
    limits = {"hi": PropertyValue(DataType.Float, 1.5)}
    nested = {"limits": PropertyValue(DataType.PropertySet, limits)}
    return [
        Payload(
            timestamp=1_763_712_000_000,
            seq=0,
            metrics=(
                bdseq_metric(3),
                rebirth_metric(),
                Metric(
                    name="temp", alias=1, datatype=DataType.Double, value=4.2, properties=quality
                ),
                Metric(name="count", alias=2, datatype=DataType.UInt32, value=19271),
                Metric(name="state", alias=3, datatype=DataType.String, value="running"),
                Metric(name="lost", alias=4, datatype=DataType.Int16, value=None),
            ),
        ),
        Payload(
            seq=7,
            uuid="u",
            body=b"\x00\x01",
            metrics=(
                Metric(alias=5, datatype=DataType.Int8Array, value=(-1, 0, 127)),
                Metric(alias=6, datatype=DataType.BooleanArray, value=(True, False, True)),
                Metric(alias=7, datatype=DataType.StringArray, value=("a", "", "é")),
                Metric(alias=8, datatype=DataType.DoubleArray, value=(1.5, -0.0)),
                Metric(
                    name="file",
                    datatype=DataType.File,
                    value=b"\x89PNG",
                    metadata=MetaData(file_name="a.png", size=4, md5="00"),
                ),
                Metric(name="props", datatype=DataType.Int64, value=-1, properties=nested),
            ),
        ),
        Payload(
            seq=255,
            metrics=(
                Metric(
                    name="table",
                    datatype=DataType.DataSet,
                    value=DataSet(
                        ("a", "b"), (DataType.Int32, DataType.String), ((1, "x"), (None, "y"))
                    ),
                ),
                Metric(
                    name="motor",
                    datatype=DataType.Template,
                    value=Template(
                        metrics=(Metric(name="rpm", datatype=DataType.Float, value=0.5),),
                        parameters=(TemplateParameter("p", DataType.Int32, 5),),
                        template_ref="Motor",
                    ),
                ),
            ),
        ),
    ]


@st.composite
def _sample_payloads(draw: st.DrawFn) -> bytes:
    samples = draw(st.lists(_samples().filter(lambda s: s.value is not None), max_size=5))
    metrics = tuple(
        metric_from_sample(sample, alias=index, with_name=draw(st.booleans()))
        for index, sample in enumerate(samples)
    )
    return encode(Payload(seq=draw(st.integers(0, 255)), metrics=metrics))


_SPARKPLUG_SEEDS = [encode(payload) for payload in _sparkplug_examples()]


def sparkplug_payloads() -> st.SearchStrategy[bytes]:
    """Sparkplug B payloads: valid ones (every part of the schema) mutated, any bytes."""
    valid = st.sampled_from(_SPARKPLUG_SEEDS) | _sample_payloads()
    return st.one_of(mutated_bytes(valid), valid, st.binary(max_size=300))


# -- Modbus ----------------------------------------------------------------------------------------

_INTERESTING_WORDS = [0, 1, 0x7FFF, 0x8000, 0xFFFF, 0x7F80, 0xFF80, 0x7FC0, 0x7FF0, 0x0041]


@st.composite
def modbus_reads(draw: st.DrawFn) -> tuple[models.ModbusTag, models.ByteOrder, list[int]]:
    """A valid tag of any type, scale and order, and the words (or bits) a device answered:
    mostly as many as the tag needs, sometimes fewer or more."""
    table = draw(st.sampled_from(list(models.RegisterTable)))
    fields: dict[str, Any] = {"metric": "m", "table": table.value}
    fields["address"] = draw(st.integers(0, 65535 - MODBUS_MAX_REGISTERS))
    if not table.is_bit:
        kind = draw(st.sampled_from([None, *(k for k in models.DataType if k.value != "bit")]))
        if kind is not None:
            fields["type"] = kind.value
        if kind is models.DataType.STRING:
            fields["length"] = draw(st.integers(1, MODBUS_MAX_REGISTERS))
        elif draw(st.booleans()):
            fields["scale"] = draw(st.floats() | st.sampled_from([0.0, 0.1, -1.0, 1e308]))
            fields["offset"] = draw(st.floats() | st.sampled_from([0.0, -40.0, 1e308]))
    if draw(st.booleans()):
        fields["order"] = draw(st.sampled_from(list(models.ByteOrder))).value
    tag = models.ModbusTag.model_validate(fields)
    order = tag.order or draw(st.sampled_from(list(models.ByteOrder)))
    count = draw(st.just(tag.count) | st.integers(0, tag.count + 4))
    word = st.integers(0, 1) if table.is_bit else st.sampled_from(_INTERESTING_WORDS)
    words = draw(st.lists(word | st.integers(0, 0xFFFF), min_size=count, max_size=count))
    return tag, order, [w & 1 for w in words] if table.is_bit else words
