"""PlantWire's native payload: one JSON object per batch, readable with ``mosquitto_sub``.

.. code-block:: json

    {"version": 1, "edge": "edge-dairy", "seq": 812, "sent": 1763712000250000000,
     "asset": {"site": "binh-duong", "area": "dairy", "line": "filling", "machine": "filler-1"},
     "samples": [{"t": 1763712000000000000, "m": "product_temp", "v": 4.2},
                 {"t": 1763712000000000000, "m": "fill_pressure", "v": null, "q": "bad"}]}

``sent`` (optional) is the edge's wall clock when it published the batch, in ns since the Unix
epoch; the gateway compares it with its own clock. ``t`` is nanoseconds since the Unix epoch
(UTC), ``m`` the metric, ``v`` the value (number, boolean, string, or null when quality is not
good), ``q`` the quality, left out when good.

Decoding never raises anything but :class:`~plantwire.errors.PayloadError`. A batch whose frame
(version, edge, seq, sent, asset, samples list) is wrong is refused whole; a sample that is wrong
is reported in :attr:`Decoded.rejected` while the good samples of the same batch are kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from plantwire.errors import InvalidNameError, PayloadError
from plantwire.model import (
    INT64_MAX,
    INT64_MIN,
    MAX_STRING_BYTES,
    AssetPath,
    Batch,
    ColumnSamples,
    Quality,
    Sample,
)
from plantwire.names import check_metric_name, check_segment

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "DEFAULT_MAX_SAMPLES",
    "SCHEMA_VERSION",
    "Decoded",
    "RejectedSample",
    "assemble_batch",
    "decode_batch",
    "decode_fragments",
    "encode_batch",
    "encode_samples",
]

SCHEMA_VERSION = 1
DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_SAMPLES = 100_000

_QUALITIES = {q.value: q for q in Quality}
_ASSET_KEYS = ("site", "area", "line", "machine")
_FRAME_KEYS = frozenset({"version", "edge", "seq", "sent", "asset", "samples"})


@dataclass(frozen=True, slots=True)
class RejectedSample:
    """A sample that was left out of a batch: its position, why, and what it was."""

    index: int
    reason: str
    raw: Any


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded batch (good samples only) and the samples that were refused."""

    batch: Batch
    rejected: list[RejectedSample] = field(default_factory=list)
    # Top-level keys this decoder does not know: a newer edge's, ignored (and counted by the
    # gateway) so edges can be upgraded before gateways.
    unknown_keys: tuple[str, ...] = ()


def encode_batch(batch: Batch) -> bytes:
    """Serialize a batch; the caller is responsible for having validated it."""
    return assemble_batch(
        batch.edge_id,
        batch.seq,
        batch.asset,
        [encode_samples(batch.samples)],
        sent_ns=batch.sent_ns,
    )


def decode_batch(
    payload: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    max_samples: int = DEFAULT_MAX_SAMPLES,
) -> Decoded:
    """Decode a payload into a batch, keeping the valid samples and reporting the others."""
    if len(payload) > max_bytes:
        raise PayloadError(f"payload is {len(payload)} bytes, more than the limit of {max_bytes}")
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"not JSON: {exc}") from None
    if type(doc) is not dict:
        raise PayloadError(f"payload must be a JSON object, got {_json_type(doc)}")
    version = doc.get("version")
    if version != SCHEMA_VERSION or type(version) is not int:
        raise PayloadError(
            f"unsupported schema version {version!r} (this decoder reads {SCHEMA_VERSION})"
        )
    edge_id = doc.get("edge")
    seq = doc.get("seq")
    if type(seq) is not int or not 0 <= seq <= INT64_MAX:
        raise PayloadError(f"'seq' must be a non-negative integer, got {_short(seq)}")
    sent = doc.get("sent")
    if sent is not None and (type(sent) is not int or not 0 <= sent <= INT64_MAX):
        raise PayloadError(
            f"'sent' must be a non-negative integer of nanoseconds, got {_short(sent)}"
        )
    raw_samples = doc.get("samples")
    if type(raw_samples) is not list:
        raise PayloadError(f"'samples' must be a list, got {_json_type(raw_samples)}")
    if len(raw_samples) > max_samples:
        raise PayloadError(
            f"batch has {len(raw_samples)} samples, more than the limit of {max_samples}"
        )
    try:
        edge_id = check_segment(edge_id, "edge id")
        asset = _decode_asset(doc.get("asset"))
    except InvalidNameError as exc:
        raise PayloadError(str(exc)) from None
    # A frame missing none of the required keys with one more than them may hold an unknown
    # one (a newer edge's); fewer keys would have been refused above.
    unknown = tuple(sorted(doc.keys() - _FRAME_KEYS)) if len(doc) >= len(_FRAME_KEYS) else ()
    plain = _decode_plain(raw_samples)
    if plain is not None:
        return Decoded(Batch(edge_id, seq, asset, plain, sent), [], unknown)
    samples, rejected = _decode_samples(raw_samples)
    return Decoded(Batch(edge_id, seq, asset, samples, sent), rejected, unknown)


def _decode_asset(raw: object) -> AssetPath:
    if type(raw) is not dict:
        raise PayloadError(f"'asset' must be an object with {', '.join(_ASSET_KEYS)}")
    if raw.keys() != set(_ASSET_KEYS):
        raise PayloadError(f"'asset' must have exactly the keys {', '.join(_ASSET_KEYS)}")
    return AssetPath(raw["site"], raw["area"], raw["line"], raw["machine"]).validate()


# Metric names repeat in every batch; remember the ones already checked.
_known_metrics: dict[str, None] = {}
_KNOWN_METRICS_LIMIT = 100_000


_PLAIN_VALUE_TYPES = frozenset({float, int, bool, str})


def _decode_plain(raw_samples: list[Any]) -> ColumnSamples | None:
    """The fast path for the common batch: every sample ``{"t", "m", "v"}``, quality good, all
    valid. Checks run over whole columns (in C where possible); anything unusual returns None
    and the batch goes through :func:`_decode_samples`, which reports sample by sample.
    """
    if (
        not raw_samples
        or set(map(type, raw_samples)) != {dict}
        or set(map(len, raw_samples)) != {3}
    ):
        return None
    try:
        ts = [raw["t"] for raw in raw_samples]
        metrics = [raw["m"] for raw in raw_samples]
        values = [raw["v"] for raw in raw_samples]
    except KeyError:
        return None
    if _stamps_ok(ts) and _metrics_ok(metrics) and _values_ok(values):
        return ColumnSamples(ts, metrics, values)
    return None


def _stamps_ok(ts: list[Any]) -> bool:
    # InfluxDB refuses 2**63 - 1 (its "no time" marker), so the largest storable stamp is one less.
    return set(map(type, ts)) == {int} and min(ts) >= 0 and max(ts) < INT64_MAX


def _metrics_ok(metrics: list[Any]) -> bool:
    if set(map(type, metrics)) != {str}:
        return False
    unknown = set(metrics).difference(_known_metrics)
    return not unknown or not any(_metric_problem(metric) for metric in unknown)


def _values_ok(values: list[Any]) -> bool:
    """Floats need no finiteness check: JSON has no NaN or infinity, and orjson refuses numbers
    that overflow a double."""
    kinds = set(map(type, values))
    if not kinds <= _PLAIN_VALUE_TYPES:
        return False
    if int in kinds:
        ints = [v for v in values if type(v) is int]
        if min(ints) < INT64_MIN or max(ints) > INT64_MAX:
            return False
    return str not in kinds or not any(
        len(v) > MAX_STRING_BYTES // 4 and len(v.encode()) > MAX_STRING_BYTES
        for v in values
        if type(v) is str
    )


# One flat if/elif chain per sample: this is the gateway's hot loop, and a call per check
# would cost more than the checks themselves.
def _decode_samples(raw_samples: list[Any]) -> tuple[list[Sample], list[RejectedSample]]:  # noqa: PLR0912
    samples: list[Sample] = []
    rejected: list[RejectedSample] = []
    known = _known_metrics
    good = Quality.GOOD
    for index, raw in enumerate(raw_samples):
        reason = None
        if type(raw) is not dict:
            reason = f"sample must be an object, got {_json_type(raw)}"
        else:
            ts: Any = raw.get("t")
            metric: Any = raw.get("m")
            value: Any = raw.get("v")
            quality_text: Any = raw.get("q")
            if quality_text is None:
                quality: Quality | None = good
            else:
                quality = _QUALITIES.get(quality_text) if type(quality_text) is str else None
            kind = type(value)
            if type(ts) is not int or not 0 <= ts < INT64_MAX:
                reason = "'t' must be a non-negative integer of nanoseconds"
            elif type(metric) is not str:
                reason = f"'m' must be a string, got {_json_type(metric)}"
            elif metric not in known and (reason := _metric_problem(metric)):
                pass
            elif quality is None:
                reason = f"'q' must be one of {', '.join(_QUALITIES)}"
            elif "v" not in raw:
                reason = "'v' is missing"
            elif len(raw) > 3 + (quality_text is not None):
                unknown = sorted(raw.keys() - {"t", "m", "v", "q"})
                reason = f"unknown keys in sample: {', '.join(map(repr, unknown))}"
            elif kind is float:
                if not math.isfinite(value):
                    reason = "value is not finite"
            elif kind is int:
                if not INT64_MIN <= value <= INT64_MAX:
                    reason = "integer does not fit in 64 bits"
            elif kind is str:
                if len(value) > MAX_STRING_BYTES // 4 and len(value.encode()) > MAX_STRING_BYTES:
                    reason = f"string is longer than {MAX_STRING_BYTES} bytes"
            elif value is None:
                if quality is good:
                    reason = "value is null but quality is good"
            elif kind is not bool:
                reason = f"value must be a number, boolean, string or null, got {_json_type(value)}"
            if reason is None and quality is not None:
                samples.append(Sample(ts, metric, value, quality))
                continue
        rejected.append(RejectedSample(index, reason or "invalid sample", raw))
    return samples, rejected


def _metric_problem(metric: object) -> str | None:
    try:
        check_metric_name(metric)
    except InvalidNameError as exc:
        return f"'m': {exc}"
    if len(_known_metrics) < _KNOWN_METRICS_LIMIT:
        _known_metrics[metric] = None  # type: ignore[index]
    return None


def _json_type(value: object) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- assembling batches from pre-encoded samples (the edge's store-and-forward path) -------------


def encode_samples(samples: Sequence[Sample]) -> bytes:
    """The samples of a batch as a JSON fragment (no brackets), for :func:`assemble_batch`.

    The edge stores samples encoded like this, so forming a batch from stored chunks is a byte
    join, not a decode and re-encode.
    """
    good = Quality.GOOD
    return orjson.dumps(
        [
            {"t": s.ts_ns, "m": s.metric, "v": s.value}
            if s.quality is good
            else {"t": s.ts_ns, "m": s.metric, "v": s.value, "q": s.quality.value}
            for s in samples
        ]
    )[1:-1]


def assemble_batch(
    edge_id: str,
    seq: int,
    asset: AssetPath,
    fragments: Sequence[bytes],
    *,
    sent_ns: int | None = None,
) -> bytes:
    """A batch payload from :func:`encode_samples` fragments; equal to :func:`encode_batch`'s.

    ``sent_ns``, when given, is written as ``sent``: the edge's wall clock at publication.
    """
    frame: dict[str, object] = {"version": SCHEMA_VERSION, "edge": edge_id, "seq": seq}
    if sent_ns is not None:
        frame["sent"] = sent_ns
    frame["asset"] = dict(zip(_ASSET_KEYS, asset, strict=True))
    head = orjson.dumps(frame)
    return head[:-1] + b',"samples":[' + b",".join(f for f in fragments if f) + b"]}"


def decode_fragments(fragments: Sequence[bytes]) -> list[Sample]:
    """The samples of :func:`encode_samples` fragments (what the edge buffer stores), for a
    format that publishes them otherwise. PayloadError if any does not decode: the buffer
    wrote them, so that is a bug, not bad input."""
    try:
        raw = orjson.loads(b"[" + b",".join(f for f in fragments if f) + b"]")
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"stored samples are not JSON: {exc}") from None
    samples, rejected = _decode_samples(raw)
    if rejected:
        raise PayloadError(f"stored sample {rejected[0].index}: {rejected[0].reason}")
    return samples
