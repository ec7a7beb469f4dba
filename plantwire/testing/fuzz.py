"""Fuzz targets: each feeds hostile input to one boundary of PlantWire and checks the outcome.

The contract every boundary keeps, whatever the input:

* it returns a result, or raises its own error type (``ConfigError``, ``LineProtocolError``,
  ``PayloadError``; a part's own, such as the edge's ``RegisterDecodeError``) -- never a
  ``KeyError``, ``RecursionError``, a YAML or protobuf error, or anything else;
* the error is clear: its message is one non-empty line of words (a config issue also names its
  line or key path), and a refused site file never repeats a secret from the environment;
* what it accepts is sound: an encoded point parses back to the same values, a decoded batch
  can be written to InfluxDB, a Modbus value is storable.

A check returns a short label of the outcome (``"accepted"``, the error type's name) for the
statistics of a long run, and raises :class:`UnclearError` (an ``AssertionError``) when the
contract is broken in a way that is not a crash. ``tests/unit/test_fuzz_inputs.py`` runs every
target in CI; ``bench/fuzz.py`` runs them for minutes.
"""

from __future__ import annotations

import atexit
import numbers
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from plantwire.codec.native import decode_batch
from plantwire.codec.sparkplug import NotStorable, decode, describe, encode, to_plantwire_value
from plantwire.config import load_site_file, parse_site
from plantwire.errors import ConfigError, LineProtocolError, PayloadError
from plantwire.lineprotocol import LineEncoder, Point, batch_lines
from plantwire.lineprotocol_parse import parse_body
from plantwire.model import INT64_MAX, check_value
from plantwire.names import check_metric_name
from plantwire.testing.fuzz_inputs import (
    line_bodies,
    line_points,
    native_payloads,
    sparkplug_payloads,
)
from plantwire.testing.fuzz_sites import SiteCase, site_bytes, site_cases

__all__ = [
    "FuzzTarget",
    "UnclearError",
    "check_line_body",
    "check_message",
    "check_native_payload",
    "check_points",
    "check_site_bytes",
    "check_site_case",
    "check_sparkplug_payload",
    "fuzz_targets",
]

ACCEPTED = "accepted"


class UnclearError(AssertionError):
    """A boundary broke its contract without crashing: an unclear message, a leaked secret, an
    accepted input that is not sound."""


@dataclass(frozen=True)
class FuzzTarget:
    """One boundary: what it is fed and how its outcome is judged."""

    name: str
    about: str
    inputs: st.SearchStrategy[Any]
    check: Callable[[Any], str]


def check_message(text: object, what: str) -> None:
    """A clear message: a non-empty single line with words in it."""
    if not isinstance(text, str) or not text.strip():
        raise UnclearError(f"{what}: empty message {text!r}")
    if len(text.splitlines()) != 1:
        raise UnclearError(f"{what}: the message spans lines: {text!r}")
    if not any(character.isalpha() for character in text):
        raise UnclearError(f"{what}: the message has no words: {text!r}")


# -- site files ------------------------------------------------------------------------------------


@cache
def _scratch() -> Path:
    """An empty folder for site files and relative secret paths, removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="plantwire-fuzz-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _check_config_error(exc: ConfigError, file: str, secrets: Sequence[str]) -> str:
    if not exc.issues:
        raise UnclearError("ConfigError without issues")
    for issue in exc.issues:
        check_message(issue.message, "config issue")
        check_message(str(issue), "config issue")
        if issue.file != file:
            raise UnclearError(f"issue names file {issue.file!r}, not {file!r}: {issue}")
        if issue.line is None and not issue.path:
            raise UnclearError(f"issue names neither a line nor a key path: {issue}")
    text = str(exc)
    for secret in secrets:
        if secret in text:
            raise UnclearError(f"a refusal repeats the secret {secret!r}: {text}")
    return "ConfigError"


def check_site_case(case: SiteCase) -> str:
    """parse_site gives a config or a ConfigError with located, one-line, secret-free issues."""
    try:
        parse_site(case.text, "site.yaml", case.environ, base_dir=_scratch())
    except ConfigError as exc:
        return _check_config_error(exc, "site.yaml", case.protected)
    return ACCEPTED


def check_site_bytes(data: bytes) -> str:
    """load_site_file on any bytes: a config or a ConfigError with located issues."""
    path = _scratch() / "site.yaml"
    path.write_bytes(data)
    try:
        load_site_file(path, environ={})
    except ConfigError as exc:
        return _check_config_error(exc, str(path), ())
    return ACCEPTED


# -- line protocol ---------------------------------------------------------------------------------


def _plain(value: object) -> object:
    """The Python value an encoded field stands for (numpy and other numbers as Python's)."""
    if type(value) in (bool, int, float, str):
        return value
    if isinstance(value, bool) or type(value).__name__ in ("bool", "bool_"):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    assert isinstance(value, numbers.Real)
    return float(value)


def _typed(point: Point, *, plain: bool = False) -> tuple[object, ...]:
    """A point with every value beside its type and exact text (1, 1.0, True and 0.0, -0.0
    are told apart)."""
    fields = {}
    for key, raw in point.fields.items():
        value = _plain(raw) if plain else raw
        fields[key] = (type(value), repr(value))
    return point.measurement, dict(point.tags), fields, point.ts_ns


def check_points(points: list[Point]) -> str:
    """The encoder writes line protocol that parses back to exactly the points, or refuses
    with a one-line LineProtocolError."""
    try:
        body = LineEncoder().encode(points)
    except LineProtocolError as exc:
        check_message(str(exc), "LineProtocolError")
        return "LineProtocolError"
    parsed = parse_body(body)
    if parsed.refused:
        raise UnclearError(f"the encoder wrote a line its parser refuses: {parsed.refused[0]}")
    got = [_typed(point) for point in parsed.points]
    if got != [_typed(point, plain=True) for point in points]:
        raise UnclearError(f"encoded points do not parse back the same: {body!r}")
    return ACCEPTED


def check_line_body(body: bytes) -> str:
    """The parser reads any body without raising, each refusal has a one-line reason, and
    every point it reads can be written again and reads back the same."""
    parsed = parse_body(body)
    for refused in parsed.refused:
        check_message(refused.reason, "refused line")
    encoder = LineEncoder()
    for point in parsed.points:
        again = parse_body(encoder.encode([point]))
        if [_typed(p) for p in again.points] != [_typed(point)]:
            raise UnclearError(f"a parsed point does not survive re-encoding: {point!r}")
    if parsed.refused:
        return "refused lines" if parsed.points else "all lines refused"
    return ACCEPTED


# -- payloads --------------------------------------------------------------------------------------

# Known, left to the codec's owner: native.py lists unknown keys of a batch or a sample as they
# are, so a key holding a newline makes a two-line reason (test_fuzz_inputs.py keeps the case).
_ECHOES_KEYS = ("unknown keys in batch: ", "unknown keys in sample: ")


def _check_reason(reason: str, what: str) -> None:
    if reason.startswith(_ECHOES_KEYS):
        check_message(" ".join(reason.splitlines()), what)
    else:
        check_message(reason, what)


def check_native_payload(payload: bytes) -> str:
    """decode_batch gives a batch (whose refused samples have clear reasons and whose kept
    samples can be written to InfluxDB) or a PayloadError with a clear reason."""
    try:
        decoded = decode_batch(payload)
    except PayloadError as exc:
        _check_reason(exc.reason, "PayloadError")
        return "PayloadError"
    for rejected in decoded.rejected:
        _check_reason(rejected.reason, "rejected sample")
    for sample in decoded.batch.samples:
        check_metric_name(sample.metric)
        problem = check_value(sample.value, sample.quality)
        if problem:
            raise UnclearError(f"a kept sample cannot be stored ({problem}): {sample!r}")
    try:  # the gateway's next step
        batch_lines(LineEncoder(), decoded.batch)
    except LineProtocolError:
        # Known, left to the codec's owner: the decoder keeps t = 2**63 - 1, which InfluxDB
        # (and so the encoder) refuses; the gateway dead-letters the whole batch.
        if not any(sample.ts_ns == INT64_MAX for sample in decoded.batch.samples):
            raise
        return "accepted, unwritable t=2**63-1"
    return "accepted, samples rejected" if decoded.rejected else ACCEPTED


def check_sparkplug_payload(data: bytes) -> str:
    """decode gives a payload or a PayloadError with a clear reason; a decoded payload has a
    one-line description, encodes again to the same bytes, and every metric either becomes a
    storable value or says in one line why not."""
    try:
        payload = decode(data)
    except PayloadError as exc:
        check_message(exc.reason, "PayloadError")
        return "PayloadError"
    check_message(describe(payload) + " described", "describe")
    wire = encode(payload)
    if encode(decode(wire)) != wire:
        raise UnclearError(f"a decoded payload does not encode stably: {payload!r}")
    for metric in payload.metrics:
        stored = to_plantwire_value(metric)
        if isinstance(stored, NotStorable):
            check_message(stored.reason, "not storable")
        elif check_value(stored.value, stored.quality):
            raise UnclearError(f"a storable metric holds an unstorable value: {metric!r}")
    return ACCEPTED


# -- the targets -----------------------------------------------------------------------------------


def fuzz_targets(site_examples: Sequence[Path]) -> list[FuzzTarget]:
    """Every target of the shared contract; the site file targets start from the given valid
    site files. A part's own boundaries have their targets in that part (the edge's Modbus
    decoding: :func:`edge.sources.modbus_fuzz.modbus_fuzz_target`), since this package imports
    no part."""
    texts = [path.read_text() for path in site_examples]
    return [
        FuzzTarget(
            "config-text",
            "parse_site on the example mutated as text and data, random YAML, any text",
            site_cases(texts),
            check_site_case,
        ),
        FuzzTarget(
            "config-bytes",
            "load_site_file on the example's bytes mutated, other encodings, any bytes",
            site_bytes(texts),
            check_site_bytes,
        ),
        FuzzTarget(
            "lineprotocol-encode",
            "LineEncoder.encode on points with any names, values and timestamps",
            line_points(),
            check_points,
        ),
        FuzzTarget(
            "lineprotocol-parse",
            "parse_body on mutated bodies, line-protocol-ish text, any bytes",
            line_bodies(),
            check_line_body,
        ),
        FuzzTarget(
            "native-decode",
            "decode_batch on mutated batches (bytes and JSON), any JSON, any bytes",
            native_payloads(),
            check_native_payload,
        ),
        FuzzTarget(
            "sparkplug-decode",
            "Sparkplug decode on mutated payloads (every part of the schema), any bytes",
            sparkplug_payloads(),
            check_sparkplug_payload,
        ),
    ]
