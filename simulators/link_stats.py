"""Counters of the link emulator, for tests, logs and the demo's view."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

__all__ = ["DelayStats", "LinkStats"]

_RECENT_DELAYS = 1000


@dataclass
class DelayStats:
    """The sampled one-way delays applied in one direction, in seconds."""

    count: int = 0
    total: float = 0.0
    minimum: float = math.inf
    maximum: float = 0.0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=_RECENT_DELAYS))

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def record(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self.minimum = min(self.minimum, seconds)
        self.maximum = max(self.maximum, seconds)
        self.recent.append(seconds)


@dataclass
class LinkStats:
    """Counters of a :class:`LinkEmulator`; "up" is client -> target, "down" the reverse."""

    accepted: int = 0  # connections joined to the target
    refused: int = 0  # accepted in a race with an outage starting, aborted at once
    target_failures: int = 0  # the target could not be reached; the client was reset
    reset_random: int = 0  # aborted by the profile's random resets
    dropped_by_outage: int = 0
    peer_errors: int = 0  # a peer reset the connection or broke the pipe
    outages: int = 0  # outages started (an extension of a running one is not counted)
    profile_changes: int = 0
    bytes_up: int = 0  # delivered to the target
    bytes_down: int = 0  # delivered to the client
    delays_up: DelayStats = field(default_factory=DelayStats)
    delays_down: DelayStats = field(default_factory=DelayStats)
