"""Report by exception: send a tag's value when it moved more than its deadband, when its quality
changed, or when it has not been sent for ``max_interval_s`` (the heartbeat that keeps history free
of holes). Unchanged values then cost nothing on a slow link.

Time here is the samples' own time (plant time when a PLC clock stamps them), so a heartbeat
means the same in an accelerated simulation as on a real line. Tags without a deadband or a
maximum interval pass every sample, at no cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from plantwire.config.models import DeadbandKind
from plantwire.model import AssetPath, Quality, Sample, Value

__all__ = ["DEFAULT_HEARTBEAT_S", "ReportByException", "TagPolicy"]

DEFAULT_HEARTBEAT_S = 60.0  # when a deadband is set without max_interval_s


@dataclass(frozen=True)
class TagPolicy:
    deadband: float | None = None
    kind: DeadbandKind = DeadbandKind.ABSOLUTE
    max_interval_s: float | None = None
    eu_range: tuple[float, float] | None = None  # for percent deadbands (OPC UA EURange)

    @property
    def filters(self) -> bool:
        return self.deadband is not None or self.max_interval_s is not None


class ReportByException:
    """Per-tag filter state; ``filter`` returns the samples worth sending."""

    def __init__(self, policies: dict[tuple[AssetPath, str], TagPolicy]) -> None:
        self.policies = {key: policy for key, policy in policies.items() if policy.filters}
        self._last: dict[tuple[AssetPath, str], tuple[Value, Quality, int]] = {}
        self.suppressed = 0

    def set_eu_range(self, asset: AssetPath, metric: str, eu_range: tuple[float, float]) -> None:
        policy = self.policies.get((asset, metric))
        if policy is not None:
            self.policies[(asset, metric)] = TagPolicy(
                policy.deadband, policy.kind, policy.max_interval_s, eu_range
            )

    def filter(self, asset: AssetPath, samples: Sequence[Sample]) -> Sequence[Sample]:
        if not self.policies:
            return samples
        kept: list[Sample] = []
        for sample in samples:
            key = (asset, sample.metric)
            policy = self.policies.get(key)
            if policy is None or self._worth_sending(key, policy, sample):
                kept.append(sample)
            else:
                self.suppressed += 1
        return kept

    def _worth_sending(self, key: tuple[AssetPath, str], policy: TagPolicy, sample: Sample) -> bool:
        last = self._last.get(key)
        if last is None or self._changed(policy, last, sample):
            self._last[key] = (sample.value, sample.quality, sample.ts_ns)
            return True
        heartbeat = (
            policy.max_interval_s if policy.max_interval_s is not None else DEFAULT_HEARTBEAT_S
        )
        if sample.ts_ns - last[2] >= heartbeat * 1e9:
            self._last[key] = (last[0], sample.quality, sample.ts_ns)
            return True
        return False

    @staticmethod
    def _changed(policy: TagPolicy, last: tuple[Value, Quality, int], sample: Sample) -> bool:
        old, old_quality, _ = last
        new = sample.value
        if sample.quality is not old_quality:
            return True
        if (
            isinstance(new, bool)
            or isinstance(old, bool)
            or not isinstance(new, int | float)
            or not isinstance(old, int | float)
        ):
            return new != old
        if policy.deadband is None:
            return new != old
        band = policy.deadband
        if policy.kind is DeadbandKind.PERCENT:
            span = (policy.eu_range[1] - policy.eu_range[0]) if policy.eu_range else abs(old)
            band = policy.deadband / 100.0 * span
        return abs(new - old) > band
