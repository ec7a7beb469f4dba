"""Dead letters: what the gateway could not store, republished with the reason -- and bounded.

A dead letter carries the refused message so that someone can see what was sent, but a flood of
large bad messages must not become a flood of equally large dead letters (the gateway holds each
until the broker has it). So every letter built from a message says how long the original was
and its SHA-256, and stays within ``max_bytes``: a larger original is kept only as a truncated
preview, long lists of refused samples are cut to what fits (``omitted`` says how many were
left out), and a single refused sample too large to show is replaced by its size and hash.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from plantwire.topics import deadletter_topic

__all__ = ["DEFAULT_MAX_BYTES", "DeadLetter", "dead_letter", "original_payload"]

DEFAULT_MAX_BYTES = 64 * 1024
# Room kept for the reason, topic and the other small keys when fitting the bulky ones.
_FRAME_BYTES = 2048


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    payload: bytes
    kind: str  # for the metrics: topic, payload, samples, influx


def _as_text_or_base64(data: bytes, *, cut: bool = False) -> dict[str, str]:
    """Bytes for JSON: text when they are UTF-8 (a ``cut`` prefix may end inside a character:
    up to three bytes are dropped to find its end), else base64."""
    for drop in range(4 if cut else 1):
        try:
            return {"text": data[: len(data) - drop].decode("utf-8")}
        except UnicodeDecodeError:
            continue
    return {"base64": base64.b64encode(data).decode()}


def original_payload(payload: bytes, max_bytes: int) -> dict[str, Any]:
    """The refused payload for a dead letter: its length and hash, and the payload itself (as
    JSON when it parses, else as text or base64) -- or its first bytes when it is larger than
    ``max_bytes``."""
    fields: dict[str, Any] = {
        "payload_bytes": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
    }
    budget = max(0, max_bytes - _FRAME_BYTES) * 3 // 4  # base64 grows by a third
    if len(payload) > budget:
        fields["payload_truncated"] = True
        fields["payload"] = _as_text_or_base64(payload[:budget], cut=True)
        return fields
    try:
        fields["payload"] = orjson.loads(payload)
    except orjson.JSONDecodeError:
        fields["payload"] = _as_text_or_base64(payload)
    return fields


def _shrunk(item: Any, limit: int) -> Any:
    """An item of a list detail, replaced by its size and hash when its JSON exceeds limit."""
    encoded = orjson.dumps(item, default=str)
    if len(encoded) <= limit:
        return item
    summary: dict[str, Any] = {
        "truncated": True,
        "bytes": len(encoded),
        "sha256": hashlib.sha256(encoded).hexdigest(),
    }
    if isinstance(item, dict):  # keep the small keys (index, reason) that say what it was
        small = {k: v for k, v in item.items() if len(orjson.dumps(v, default=str)) <= 256}
        summary = small | summary
    return summary


def _fit_list(items: list[Any], budget: int) -> tuple[list[Any], int]:
    """As many items (each shrunk if need be) as fit in ``budget`` bytes; and how many not."""
    kept: list[Any] = []
    used = 0
    for item in items:
        shown = _shrunk(item, max(256, budget // 4))
        size = len(orjson.dumps(shown, default=str)) + 1
        if used + size > budget:
            break
        kept.append(shown)
        used += size
    return kept, len(items) - len(kept)


def dead_letter(
    site: str,
    origin: str,
    kind: str,
    reason: str,
    topic: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    **details: Any,
) -> DeadLetter:
    """A dead letter for ``plantwire/v1/<site>/deadletter/<origin>``, at most about
    ``max_bytes`` long (list details are cut to fit; see the module docstring)."""
    body = {"reason": reason, "topic": topic, **details}
    encoded = orjson.dumps(body, default=str)
    if len(encoded) > max_bytes:
        budget = max(0, max_bytes - _FRAME_BYTES)
        for key, value in details.items():
            if isinstance(value, list):
                body[key], omitted = _fit_list(value, budget)
                if omitted:
                    body[f"{key}_omitted"] = omitted
        encoded = orjson.dumps(body, default=str)
    return DeadLetter(deadletter_topic(site, origin), encoded, kind)
