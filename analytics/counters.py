"""Increments of a PLC counter (parts, rejects, energy) from its sampled values, with the traps of
real counters handled: 32-bit wraps, resets to zero (a PLC restart, a shift reset), repeated and
missing samples.

An increment is attributed to the time of the sample that shows it: the parts between two samples
were made by the later one. Summing increments over ``(start, end]`` gives a window's count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CounterIncrements", "counter_increments"]

WRAP_32 = float(2**32)


@dataclass(frozen=True, slots=True, eq=False)
class CounterIncrements:
    """``amount[i]`` was counted between ``time_ns[i-1]`` and ``time_ns[i]`` (the first is 0).

    ``resets`` and ``wraps`` count the places where the counter went down and how each was read.
    """

    time_ns: np.ndarray
    amount: np.ndarray
    resets: int
    wraps: int

    def cumulative(self) -> np.ndarray:
        """Running total, for window sums by ``searchsorted``."""
        return np.cumsum(self.amount)

    def between(self, start_ns: int, end_ns: int) -> float:
        """What was counted in ``(start_ns, end_ns]``."""
        lo = int(np.searchsorted(self.time_ns, start_ns, side="right"))
        hi = int(np.searchsorted(self.time_ns, end_ns, side="right"))
        return float(self.amount[lo:hi].sum())


def counter_increments(
    time_ns: np.ndarray, values: np.ndarray, *, wrap_at: float = WRAP_32
) -> CounterIncrements:
    """Increments of a monotonic counter sampled at ``time_ns`` (missing values are NaN).

    A drop is a 32-bit wrap when the counter was in the upper half of its range and the
    wrapped increment is small (under half the range); any other drop is a reset to zero, so
    the value after it is what was counted since.

    >>> t = np.arange(6, dtype=np.int64)
    >>> inc = counter_increments(t, np.array([4294967290.0, 4294967295.0, 3.0, 10.0, 2.0, 5.0]))
    >>> inc.amount.tolist(), inc.wraps, inc.resets
    ([0.0, 5.0, 4.0, 7.0, 2.0, 3.0], 1, 1)
    >>> counter_increments(t[:3], np.array([7.0, np.nan, 9.0])).amount.tolist()
    [0.0, 2.0]
    """
    keep = ~np.isnan(values)
    times = np.asarray(time_ns, dtype=np.int64)[keep]
    counts = np.asarray(values, dtype=np.float64)[keep]
    if len(counts) == 0:
        empty = np.empty(0, dtype=np.float64)
        return CounterIncrements(np.empty(0, dtype=np.int64), empty, 0, 0)
    step = np.diff(counts, prepend=counts[0])
    dropped = np.flatnonzero(step < 0)
    wraps = resets = 0
    if len(dropped):
        before = counts[dropped - 1]
        wrapped = step[dropped] + wrap_at
        is_wrap = (before >= wrap_at / 2) & (wrapped < wrap_at / 2)
        step[dropped] = np.where(is_wrap, wrapped, counts[dropped])
        wraps = int(is_wrap.sum())
        resets = len(dropped) - wraps
    return CounterIncrements(times, step, resets, wraps)
