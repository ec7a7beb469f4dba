"""From an MQTT message to line protocol, or to dead letters with the reason.

The topic must be a machine data topic, the payload a batch (:mod:`plantwire.codec`) for the
same machine. A message that fails either is dead-lettered whole; a batch with some invalid
samples keeps its valid samples and dead-letters the others. Sequence numbers are tracked per
edge, so gaps and duplicates show in the metrics.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

from gateway.deadletters import DEFAULT_MAX_BYTES, DeadLetter, dead_letter, original_payload
from plantwire.codec import decode_batch
from plantwire.codec.native import RejectedSample
from plantwire.errors import LineProtocolError, PayloadError, TopicError
from plantwire.lineprotocol import LineEncoder, batch_lines
from plantwire.logs import LogOnce
from plantwire.topics import parse_machine_topic

__all__ = ["Intake", "Processed", "SequenceTracker"]

log = logging.getLogger("plantwire.gateway.intake")

ROOT_LEVELS = 3  # plantwire / v1 / <site>


@dataclass
class Processed:
    lines: list[str] = field(default_factory=list)
    samples: int = 0
    rejected: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # Who sent it and when by its own wall clock (when it says): for the edge clock check.
    edge: str | None = None
    sent_ns: int | None = None


def _site_of(topic: str) -> str:
    levels = topic.split("/")
    return levels[2] if len(levels) > ROOT_LEVELS - 1 and levels[2] else "unknown"


class SequenceTracker:
    """Per edge: the last batch number, and how many batches went missing or came twice."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        self.gaps = 0
        self.duplicates = 0

    def observe(self, edge: str, seq: int) -> None:
        last = self.last.get(edge)
        if last is None or seq == last + 1:
            self.last[edge] = seq
        elif seq > last + 1:
            self.gaps += seq - last - 1
            self.last[edge] = seq
        else:
            self.duplicates += 1  # a redelivery (at least once), or an edge that started over


class Intake:
    def __init__(
        self,
        *,
        max_payload_bytes: int,
        site: str | None = None,
        dead_letter_max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.encoder = LineEncoder()
        self.max_payload_bytes = max_payload_bytes
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self.site = site
        self.sequences = SequenceTracker()
        self.unknown_keys = 0  # batches read with top-level keys this gateway does not know
        self._once = LogOnce(log)

    def _unknown_keys(self, edge: str, keys: tuple[str, ...]) -> None:
        self.unknown_keys += 1
        self._once.problem(
            f"keys:{edge}:{keys}", "edge %s sends batch keys this gateway does not know (%s): "
            "ignored; is the edge newer than the gateway?", edge,
            ", ".join(repr(key[:64]) for key in keys[:10]),
        )  # fmt: skip

    def process(self, topic: str, payload: bytes | bytearray) -> Processed:
        payload = bytes(payload)
        site = _site_of(topic)
        try:
            where = parse_machine_topic(topic)
        except TopicError as exc:
            return Processed(
                dead_letters=[self._refuse(site, "unknown", "topic", str(exc), topic, payload)]
            )
        try:
            decoded = decode_batch(payload, max_bytes=self.max_payload_bytes)
        except PayloadError as exc:
            return Processed(
                dead_letters=[self._refuse(site, "unknown", "payload", exc.reason, topic, payload)]
            )
        batch = decoded.batch
        if batch.asset != where.asset:
            reason = (
                f"payload is for {'/'.join(batch.asset)} "
                f"but came on the topic of {'/'.join(where.asset)}"
            )
            return Processed(
                dead_letters=[self._refuse(site, batch.edge_id, "payload", reason, topic, payload)]
            )
        if decoded.unknown_keys:
            self._unknown_keys(batch.edge_id, decoded.unknown_keys)
        self.sequences.observe(batch.edge_id, batch.seq)
        result = Processed(
            samples=len(batch.samples),
            rejected=len(decoded.rejected),
            edge=batch.edge_id,
            sent_ns=batch.sent_ns,
        )
        if decoded.rejected:
            result.dead_letters.append(
                self._rejected(site, batch.edge_id, batch.seq, topic, decoded.rejected, payload)
            )
        if batch.samples:
            try:
                result.lines = batch_lines(self.encoder, batch)
            except (
                LineProtocolError
            ) as exc:  # not expected after decoding; refuse rather than crash
                result.samples = 0
                result.dead_letters.append(
                    self._refuse(site, batch.edge_id, "payload", str(exc), topic, payload)
                )
        return result

    def _refuse(  # noqa: PLR0917 - the six facts of a refusal, always in this order
        self, site: str, origin: str, kind: str, reason: str, topic: str, payload: bytes
    ) -> DeadLetter:
        limit = self.dead_letter_max_bytes
        return dead_letter(
            site, origin, kind, reason, topic, max_bytes=limit, **original_payload(payload, limit)
        )

    def _rejected(  # noqa: PLR0917
        self,
        site: str,
        edge: str,
        seq: int,
        topic: str,
        rejected: list[RejectedSample],
        payload: bytes,
    ) -> DeadLetter:
        samples = [{"index": r.index, "reason": r.reason, "sample": r.raw} for r in rejected]
        return dead_letter(
            site,
            edge,
            "samples",
            f"{len(rejected)} invalid samples",
            topic,
            max_bytes=self.dead_letter_max_bytes,
            edge=edge,
            seq=seq,
            samples=samples,
            payload_bytes=len(payload),
            payload_sha256=hashlib.sha256(payload).hexdigest(),
        )
