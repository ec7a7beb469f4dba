"""One ingest rule as the gateway's decoder of its topics: the message's asset levels from the
topic and the rule, the format's reader, then the same lines and dead letters as PlantWire's
own batches -- so OEE, anomaly scoring and the boards read third-party data unchanged."""

from __future__ import annotations

import hashlib
import logging
import time

from gateway.deadletters import DeadLetter, dead_letter, original_payload
from gateway.ingest.readers import READERS
from gateway.ingest.readings import Readings
from gateway.intake import Processed
from plantwire.config.ingest import IngestRule
from plantwire.errors import LineProtocolError, PayloadError
from plantwire.lineprotocol import LineEncoder, batch_lines
from plantwire.logs import LogOnce
from plantwire.model import Batch

__all__ = ["IngestDecoder", "rule_name"]

log = logging.getLogger("plantwire.gateway.ingest")


def rule_name(rule: IngestRule, index: int) -> str:
    return rule.name or f"rule-{index}"


class IngestDecoder:
    """Decodes the messages of one rule and counts them (never raises)."""

    def __init__(
        self,
        rule: IngestRule,
        name: str,
        *,
        site: str,
        encoder: LineEncoder,
        max_payload_bytes: int,
        dead_letter_max_bytes: int,
    ) -> None:
        self.rule = rule
        self.name = name
        self.site = site
        self.pattern = rule.pattern()
        self.fixed = {k: v for k, v in rule.asset.model_dump().items() if v is not None}
        self.reader = READERS[rule.format]
        self.encoder = encoder
        self.max_payload_bytes = max_payload_bytes
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self.messages = 0
        self.samples = 0
        self.refused_messages = 0
        self.refused_parts = 0
        self._once = LogOnce(log)

    def read(self, topic: str, payload: bytes, received_ns: int | None = None) -> Readings:
        """What a message becomes (``plantwire ingest try`` shows it); PayloadError if nothing."""
        if len(payload) > self.max_payload_bytes:
            raise PayloadError(
                f"payload is {len(payload)} bytes, more than the limit of {self.max_payload_bytes}"
            )
        captured = self.pattern.match(topic)
        if captured is None:
            raise PayloadError(f"topic does not match the rule's {self.rule.topic!r}")
        now = time.time_ns() if received_ns is None else received_ns
        return self.reader(self.rule, self.site, {**self.fixed, **captured}, payload, now)

    def __call__(self, topic: str, payload: bytes) -> Processed:
        self.messages += 1
        try:
            readings = self.read(topic, payload)
            lines = [
                line
                for asset, samples in readings.samples.items()
                for line in batch_lines(self.encoder, Batch(self.name, 0, asset, samples))
            ]
        except (PayloadError, LineProtocolError) as exc:
            self.refused_messages += 1
            reason = exc.reason if isinstance(exc, PayloadError) else str(exc)
            self._once.problem(f"refused:{topic}", "ingest rule %s refused a message on %s: %s",
                               self.name, topic, reason)  # fmt: skip
            return Processed(dead_letters=[self._refused(topic, reason, payload)])
        self.samples += readings.count
        result = Processed(lines=lines, samples=readings.count, rejected=len(readings.rejected))
        if readings.rejected:
            self.refused_parts += len(readings.rejected)
            result.dead_letters.append(self._parts(topic, readings, payload))
        return result

    def _refused(self, topic: str, reason: str, payload: bytes) -> DeadLetter:
        limit = self.dead_letter_max_bytes
        return dead_letter(
            self.site, self.name, "payload", reason, topic, max_bytes=limit, rule=self.name,
            **original_payload(payload, limit),
        )  # fmt: skip

    def _parts(self, topic: str, readings: Readings, payload: bytes) -> DeadLetter:
        parts = [{"where": r.where, "reason": r.reason, "value": r.raw} for r in readings.rejected]
        return dead_letter(
            self.site, self.name, "samples", f"{len(parts)} values refused", topic,
            max_bytes=self.dead_letter_max_bytes, rule=self.name, samples=parts,
            payload_bytes=len(payload), payload_sha256=hashlib.sha256(payload).hexdigest(),
        )  # fmt: skip
