"""``format: value``: one plain value per message -- a number, ``true``/``false``, or text --
of the metric the topic (or the rule) names, stamped on receipt."""

from __future__ import annotations

import re

from gateway.ingest.readings import Readings, sample
from plantwire.config.ingest import ValueRule
from plantwire.errors import PayloadError
from plantwire.model import AssetPath, Quality

__all__ = ["read_value"]

_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_BOOLEANS = {"true": True, "false": False}


def read_value(
    rule: ValueRule, asset: AssetPath, metric: str, payload: bytes, received_ns: int
) -> Readings:
    try:
        text = payload.decode().strip()
    except UnicodeDecodeError:
        raise PayloadError("payload is not UTF-8 text") from None
    if not text:
        raise PayloadError("the message is empty")
    value: float | bool | str
    if _NUMBER.match(text):
        value = float(text)
    elif text.lower() in _BOOLEANS:
        value = _BOOLEANS[text.lower()]
    elif len(text) >= 2 and text[0] == text[-1] == '"':
        value = text[1:-1]
    else:
        value = text
    readings = Readings()
    readings.add(asset, sample("payload", received_ns, metric, value, Quality.GOOD))
    return readings
