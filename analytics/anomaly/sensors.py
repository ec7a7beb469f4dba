"""Sensor faults that statistics on values miss: a reading that is missing (a dropout) or frozen
(a stuck sensor repeating its last value while it normally moves with noise)."""

from __future__ import annotations

import numpy as np

__all__ = ["noisy_signals", "sensor_faults"]


def noisy_signals(history: np.ndarray, share: float = 0.9) -> np.ndarray:
    """Signals whose value changed from one row to the next in at least ``share`` of the rows of
    normal history: for those, a long run of identical readings means a stuck sensor. Quantized
    or slow signals (a level that holds for minutes) are not judged this way."""
    rows = np.asarray(history, dtype=np.float64)
    if len(rows) < 2:
        return np.zeros(rows.shape[1], dtype=bool)
    with np.errstate(invalid="ignore"):
        moved = np.diff(rows, axis=0) != 0
    return np.asarray(moved.mean(axis=0) >= share)


def sensor_faults(block: np.ndarray, noisy: np.ndarray, frozen_rows: int) -> np.ndarray:
    """Per row, how many signals are missing or frozen (the ``noisy`` ones that have repeated
    the same reading for the last ``frozen_rows`` rows). Trailing only: no look-ahead.

    >>> block = np.array([[1.0, 5.0], [np.nan, 5.0], [2.0, 5.0], [3.0, 5.0]])
    >>> sensor_faults(block, np.array([True, True]), frozen_rows=2).tolist()
    [0, 1, 1, 1]
    """
    rows = np.asarray(block, dtype=np.float64)
    count = np.isnan(rows).sum(axis=1)
    if frozen_rows > 0 and noisy.any() and len(rows) > frozen_rows:
        watched = rows[:, noisy]
        same = np.zeros(watched.shape, dtype=np.int64)
        same[1:] = watched[1:] == watched[:-1]
        runs = np.cumsum(same, axis=0)
        trailing = runs[frozen_rows:] - runs[:-frozen_rows]
        frozen = np.zeros(watched.shape, dtype=bool)
        frozen[frozen_rows:] = trailing >= frozen_rows
        count = count + frozen.sum(axis=1)
    return np.asarray(count)
