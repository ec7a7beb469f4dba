"""A machine's state samples turned into what OEE counts: the planned production time, split into
running time and stops, each stop with its whole length.

Rules (the same the simulator's truth applies):

* a state sample holds until the next one, but never longer than ``max_gap``: past that the state
  is unknown (``NO_DATA``). A gap is not "running"; in planned time it is a stop;
* planned production time is scheduled production (a shift, outside its breaks) in which the
  machine is not in a planned state (off, planned stop, planned maintenance);
* a stop is a maximal stretch of planned time that is not running -- several stop states in a
  row are one stop, and a stop that crosses a shift boundary is one stop, judged by its whole
  length. Unplanned time (a break, maintenance) ends a stop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from plantwire.states import PLANNED_STATES, MachineState

__all__ = ["NO_DATA", "PlannedTime", "planned_time", "state_runs"]

NO_DATA = -1
_PLANNED_CODES = np.array(sorted(int(s) for s in PLANNED_STATES), dtype=np.int64)
_RUNNING = int(MachineState.RUNNING)


def state_runs(
    time_ns: np.ndarray,
    states: np.ndarray,
    *,
    from_ns: int,
    to_ns: int,
    max_gap_ns: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(starts, ends, codes)`` tiling ``[from_ns, to_ns)``: runs of one state (or ``NO_DATA``).

    Samples may come unsorted or repeated, and their values as floats with NaN where missing (as
    the store returns them); a sample before ``from_ns`` gives the state at ``from_ns``.

    >>> runs = state_runs(np.array([0, 10, 20, 100]), np.array([1, 1, 4, 1.0]),
    ...                   from_ns=5, to_ns=120, max_gap_ns=30)
    >>> [a.tolist() for a in runs]
    [[5, 20, 50, 100], [20, 50, 100, 120], [1, 4, -1, 1]]
    """
    values = np.asarray(states, dtype=np.float64)
    valid = ~np.isnan(values)
    times = np.asarray(time_ns, dtype=np.int64)
    if not valid.all():
        times, values = times[valid], values[valid]
    codes = values.astype(np.int64)
    if len(times) > 1 and bool((times[1:] < times[:-1]).any()):
        order = np.argsort(times, kind="stable")
        times, codes = times[order], codes[order]
    if to_ns <= from_ns:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy()
    no_data = (np.array([from_ns]), np.array([to_ns]), np.array([NO_DATA]))
    if len(times) == 0:
        return no_data
    # Work on whole arrays once, then only on runs (a state holds for minutes, not seconds).
    following = np.append(times[1:], to_ns)
    held_until = np.minimum(following, times + max_gap_ns)
    gap_after = held_until < following
    first = np.ones(len(times), dtype=bool)
    first[1:] = (codes[1:] != codes[:-1]) | gap_after[:-1]
    index = np.flatnonzero(first)
    last = np.append(index[1:] - 1, len(times) - 1)
    # Interleave each run with the gap after it (empty when there is none), after a leading gap.
    count = len(index)
    starts = np.empty(2 * count + 1, dtype=np.int64)
    ends = np.empty_like(starts)
    kinds = np.empty_like(starts)
    starts[0], ends[0], kinds[0] = from_ns, times[0], NO_DATA
    starts[1::2], ends[1::2], kinds[1::2] = times[index], held_until[last], codes[index]
    starts[2::2] = held_until[last]
    ends[2::2] = np.where(gap_after[last], following[last], held_until[last])
    kinds[2::2] = NO_DATA
    starts = np.clip(starts, from_ns, to_ns)
    ends = np.clip(ends, from_ns, to_ns)
    keep = ends > starts
    starts, ends, kinds = starts[keep], ends[keep], kinds[keep]
    if len(starts) == 0:
        return no_data
    merged = np.ones(len(kinds), dtype=bool)
    merged[1:] = kinds[1:] != kinds[:-1]
    begins = np.flatnonzero(merged)
    run_starts = starts[begins]
    run_ends = np.append(run_starts[1:], ends[-1])
    return run_starts, run_ends, kinds[begins]


@dataclass(frozen=True, slots=True, eq=False)
class PlannedTime:
    """Planned production time as sorted, non-overlapping segments.

    ``state`` is the machine state of each segment (``NO_DATA`` for a gap); ``stop`` numbers the
    stop a non-running segment belongs to (-1 for running), and ``stop_length_ns[k]`` is stop
    k's whole length -- including any part outside the window a report looks at.
    """

    start_ns: np.ndarray
    end_ns: np.ndarray
    state: np.ndarray
    stop: np.ndarray
    stop_start_ns: np.ndarray
    stop_length_ns: np.ndarray

    @property
    def running(self) -> np.ndarray:
        return np.asarray(self.state == _RUNNING)

    def restarts(self, long_stop_ns: int) -> np.ndarray:
        """Where production restarted, as the origin of each start-up period: the first running
        segment after unplanned time (a break, the night) or after a long stop -- with the short
        stop of setting up in between counted as part of the restart."""
        running = np.flatnonzero(self.running)
        if len(running) == 0:
            return np.empty(0, dtype=np.int64)
        # Segments that begin right after unplanned time (or begin the data).
        after_gap = np.ones(len(self.start_ns), dtype=bool)
        after_gap[1:] = self.start_ns[1:] != self.end_ns[:-1]
        stop_first = np.searchsorted(self.start_ns, self.stop_start_ns)
        stop_restarts = (self.stop_length_ns >= long_stop_ns) | after_gap[stop_first]
        previous = running - 1
        stop_before = np.where(previous >= 0, self.stop[np.maximum(previous, 0)], -1)
        restart = after_gap[running].copy()
        known = np.asarray((stop_before >= 0) & ~restart)
        restart[known] = stop_restarts[stop_before[known]]
        return np.asarray(self.start_ns[running[restart]])


def planned_time(
    runs: tuple[np.ndarray, np.ndarray, np.ndarray], production: Sequence[tuple[int, int]]
) -> PlannedTime:
    """Intersect state runs with scheduled production and number the stops.

    >>> runs = (np.array([0, 50, 80]), np.array([50, 80, 200]), np.array([1, 4, 1]))
    >>> planned = planned_time(runs, [(0, 60), (70, 200)])
    >>> planned.start_ns.tolist(), planned.end_ns.tolist(), planned.state.tolist()
    ([0, 50, 70, 80], [50, 60, 80, 200], [1, 4, 4, 1])
    >>> planned.stop.tolist(), planned.stop_length_ns.tolist()
    ([-1, 0, 1, -1], [10, 10])
    """
    run_starts, run_ends, codes = runs
    starts: list[int] = []
    ends: list[int] = []
    states: list[int] = []
    planned_state = ~np.isin(codes, _PLANNED_CODES)
    i = 0
    count = len(run_starts)
    for prod_start, prod_end in production:
        # Runs are sorted; skip those that end before this production interval.
        while i < count and run_ends[i] <= prod_start:
            i += 1
        j = i
        while j < count and run_starts[j] < prod_end:
            if planned_state[j]:
                start = max(int(run_starts[j]), prod_start)
                end = min(int(run_ends[j]), prod_end)
                if end > start:
                    starts.append(start)
                    ends.append(end)
                    states.append(int(codes[j]))
            j += 1
    start_arr = np.array(starts, dtype=np.int64)
    end_arr = np.array(ends, dtype=np.int64)
    state_arr = np.array(states, dtype=np.int64)
    stop = np.full(len(start_arr), -1, dtype=np.int64)
    stopped = state_arr != _RUNNING
    # A stopped segment starts a new stop unless it continues a stopped segment without a break.
    continues = np.zeros(len(start_arr), dtype=bool)
    if len(start_arr) > 1:
        continues[1:] = stopped[:-1] & (start_arr[1:] == end_arr[:-1])
    begins = stopped & ~continues
    numbers = np.cumsum(begins) - 1
    stop[stopped] = numbers[stopped]
    n_stops = int(begins.sum())
    lengths = np.zeros(n_stops, dtype=np.int64)
    np.add.at(lengths, stop[stopped], (end_arr - start_arr)[stopped])
    return PlannedTime(start_arr, end_arr, state_arr, stop, start_arr[begins], lengths)
