"""Jittered exponential backoff, for every reconnect loop in PlantWire.

Start small (100 ms, as Benthos does) so a blip costs little, double each failure up to a cap so
a dead server is not hammered, and randomise each wait (between half and all of it) so a hundred
edge agents that lost the same broker do not all come back in the same millisecond.
"""

from __future__ import annotations

import asyncio
import random

__all__ = ["Backoff"]


class Backoff:
    def __init__(
        self, initial_s: float = 0.1, maximum_s: float = 30.0, *, rng: random.Random | None = None
    ) -> None:
        self.initial_s = initial_s
        self.maximum_s = maximum_s
        self._next = initial_s
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.failures = 0

    def reset(self) -> None:
        self._next = self.initial_s
        self.failures = 0

    def next_delay(self) -> float:
        """The wait before the next attempt (and grow the one after)."""
        delay = self._next * self._rng.uniform(0.5, 1.0)
        self._next = min(self.maximum_s, self._next * 2)
        self.failures += 1
        return delay

    async def sleep(self) -> None:
        await asyncio.sleep(self.next_delay())
