"""``format: json``: a JSON object per message.

Without ``records``, the object's leaves are the metrics: every number, true/false and text,
nested keys joined with ``_`` (``{"spindle": {"speed": 1200}}`` is ``spindle_speed``), or only
the ``metrics`` listed (a dotted path each, renamed with ``name``). With ``records``, the list
at its path holds one value per record (``{"id": ..., "v": ..., "q": ..., "t": ...}``) and the
id is the metric. The time is the ``timestamp`` path's (or each record's), else receipt.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.ingest.readings import Readings, Rejected, sample, time_ns
from plantwire.config.ingest import JsonRecords, JsonRule
from plantwire.errors import PayloadError
from plantwire.model import AssetPath, Quality

__all__ = ["read_json"]

_MISSING = object()
_QUALITIES = {q.value: q for q in Quality}
MAX_DEPTH = 8  # nesting below which leaves are not flattened (refused instead)


def _at(doc: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(doc, dict) or key not in doc:
            return _MISSING
        doc = doc[key]
    return doc


def read_json(rule: JsonRule, asset: AssetPath, payload: bytes, received_ns: int) -> Readings:
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PayloadError("payload must be a JSON object")
    ts_ns = received_ns
    if rule.timestamp is not None:
        raw_time = _at(doc, rule.timestamp.path)
        if raw_time is _MISSING:
            raise PayloadError(f"no {rule.timestamp.path!r} in the message")
        try:
            ts_ns = time_ns(raw_time, rule.timestamp.unit)
        except ValueError as exc:
            raise PayloadError(f"{rule.timestamp.path!r}: {exc}") from None
    readings = Readings()
    if rule.records is not None:
        _records(rule.records, doc, asset, ts_ns, readings)
    elif rule.metrics == "all":
        skip = rule.timestamp.path if rule.timestamp is not None else None
        _leaves(doc, "", skip, asset, ts_ns, readings, depth=0)
    else:
        for wanted in rule.metrics:
            raw = _at(doc, wanted.path)
            if raw is _MISSING:
                readings.add(asset, Rejected(wanted.path, "not in the message", None))
                continue
            name = wanted.name or wanted.path.replace(".", "_")
            readings.add(asset, sample(wanted.path, ts_ns, name, raw, Quality.GOOD))
    if not readings.samples and not readings.rejected:
        raise PayloadError("the message holds no values")
    return readings


def _leaves(  # noqa: PLR0917 - the walk's state, passed down
    doc: dict[str, Any],
    prefix: str,
    skip: str | None,
    asset: AssetPath,
    ts_ns: int,
    readings: Readings,
    depth: int,
) -> None:
    for key, value in doc.items():
        path = f"{prefix}.{key}" if prefix else key
        if path == skip:
            continue
        if isinstance(value, dict) and depth < MAX_DEPTH:
            _leaves(value, path, skip, asset, ts_ns, readings, depth + 1)
        else:
            name = path.replace(".", "_")
            readings.add(asset, sample(path, ts_ns, name, value, Quality.GOOD))


def _records(
    spec: JsonRecords, doc: dict[str, Any], asset: AssetPath, ts_ns: int, readings: Readings
) -> None:
    records = _at(doc, spec.path)
    if not isinstance(records, list):
        raise PayloadError(f"{spec.path!r} must be a list of records")
    for index, record in enumerate(records):
        where = f"{spec.path}[{index}]"
        if not isinstance(record, dict):
            readings.add(asset, Rejected(where, "a record must be an object", record))
            continue
        try:
            quality = _quality(_at(record, spec.quality) if spec.quality else _MISSING)
            stamp = ts_ns
            if spec.time is not None and (raw_time := _at(record, spec.time)) is not _MISSING:
                stamp = time_ns(raw_time, spec.unit)
        except ValueError as exc:
            readings.add(asset, Rejected(where, str(exc), record))
            continue
        metric = _at(record, spec.id)
        value = _at(record, spec.value)
        if metric is _MISSING or value is _MISSING:
            reason = f"a record needs {spec.id!r} and {spec.value!r}"
            readings.add(asset, Rejected(where, reason, record))
            continue
        if isinstance(metric, int) and not isinstance(metric, bool):
            metric = str(metric)
        readings.add(asset, sample(where, stamp, metric, value, quality))


def _quality(raw: object) -> Quality:
    """true/false (Kepware), good/uncertain/bad, or an OPC DA quality number."""
    if raw is _MISSING or raw is True:
        return Quality.GOOD
    if raw is False:
        return Quality.BAD
    if isinstance(raw, str) and raw.lower() in _QUALITIES:
        return _QUALITIES[raw.lower()]
    if isinstance(raw, int) and 0 <= raw <= 0xFFFF:
        # OPC DA: bits 6-7 are the quality (11 good, 01 uncertain, 00 bad).
        return {3: Quality.GOOD, 1: Quality.UNCERTAIN}.get((raw >> 6) & 3, Quality.BAD)
    raise ValueError(f"quality {raw!r} is not true/false, good/uncertain/bad or an OPC number")
