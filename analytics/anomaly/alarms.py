"""From scores to alerts: persistence and hysteresis, so one fault episode is one alert.

An alarm is raised when the score stays above the threshold for ``raise_after`` rows in a row,
and cleared only when it stays below ``clear_ratio`` x threshold for ``clear_after`` rows: a
score that hovers around the threshold neither floods nor flickers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["AlarmEpisode", "AlarmLogic"]


@dataclass(frozen=True, slots=True)
class AlarmEpisode:
    """Rows ``start`` (inclusive) to ``end`` (exclusive) of a block were in alarm."""

    start: int
    end: int
    peak: float


class AlarmLogic:
    """Stateful across calls, so a stream scored block by block gives the same alarms.

    >>> logic = AlarmLogic(threshold=1.0, raise_after=2, clear_after=2, clear_ratio=0.8)
    >>> logic.update(np.array([0, 2, 0, 2, 2, 0.9, 0.5, 2, 0.1, 0.1, 0])).astype(int).tolist()
    [0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0]
    """

    def __init__(
        self,
        threshold: float,
        *,
        raise_after: int = 5,
        clear_after: int = 30,
        clear_ratio: float = 0.8,
    ) -> None:
        self.threshold = threshold
        self.raise_after = raise_after
        self.clear_after = clear_after
        self.clear_ratio = clear_ratio
        self.active = False
        self._above = 0
        self._below = 0

    def update(self, scores: np.ndarray) -> np.ndarray:
        """Alarm state after each score (True while in alarm)."""
        states = np.zeros(len(scores), dtype=bool)
        high, low = self.threshold, self.threshold * self.clear_ratio
        for i, score in enumerate(np.asarray(scores, dtype=np.float64).tolist()):
            if not self.active:
                self._above = self._above + 1 if score > high else 0
                if self._above >= self.raise_after:
                    self.active, self._below = True, 0
            else:
                self._below = self._below + 1 if score < low else 0
                if self._below >= self.clear_after:
                    self.active, self._above = False, 0
            states[i] = self.active
        return states

    @staticmethod
    def episodes(states: np.ndarray, scores: np.ndarray) -> list[AlarmEpisode]:
        """The alarm episodes in a block of states."""
        flags = np.asarray(states, dtype=np.int8)
        edges = np.diff(np.concatenate([[0], flags, [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        return [
            AlarmEpisode(int(s), int(e), float(np.max(scores[s:e])))
            for s, e in zip(starts, ends, strict=True)
        ]
