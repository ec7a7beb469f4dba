"""OEE -- availability x performance x quality -- with the losses behind it.

The standard definitions (oee.com; ISO 22400-2: A = APT/PBT, E = PRI x PQ / APT, QR = GQ/PQ):

* planned production time: the shift minus its breaks and other planned stops;
* run time: planned production time minus the stops that lasted at least the small-stop
  threshold (2 min by default); shorter stops stay in run time and show as performance loss;
* availability = run time / planned production time;
* performance = ideal cycle time x total count / run time;
* quality = good count / total count; OEE = A x P x Q; TEEP = OEE x planned time / all time.

The six big losses: breakdowns and setups (availability), small stops and reduced speed
(performance), start-up and production rejects (quality). Everything here is a pure function
of arrays; reading them from the store is :mod:`analytics.telemetry`'s job.

The figures are never capped: a performance above 100 % means the ideal cycle time is wrong, and
it is reported as a data-quality warning so it can be fixed rather than hidden.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from analytics.calendar import Window
from analytics.counters import CounterIncrements, counter_increments
from analytics.timeline import NO_DATA, PlannedTime, planned_time, state_runs
from plantwire.states import MachineState

__all__ = [
    "CycleTimes",
    "Losses",
    "MachineData",
    "OeeFigures",
    "OeeResult",
    "OeeSettings",
    "from_totals",
    "line_oee",
    "machine_oee",
]

NS = 1_000_000_000
_SETUP_STATES = (int(MachineState.CHANGEOVER), int(MachineState.SETUP))


@dataclass(frozen=True, slots=True)
class OeeFigures:
    """Availability, performance, quality and OEE as fractions; None where undefined (no planned
    time, no run time, no parts)."""

    availability: float | None
    performance: float | None
    quality: float | None
    oee: float | None


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def from_totals(
    planned_time_s: float,
    run_time_s: float,
    total_count: float,
    good_count: float,
    ideal_cycle_time_s: float,
) -> OeeFigures:
    """OEE from a shift's totals.

    The worked example: a 480 min shift with two 15 min breaks and a 30 min meal (420 min
    planned), 47 min of downtime, an ideal rate of 60 parts/min, 19,271 parts of which 423
    rejected.

    >>> f = from_totals(420 * 60, (420 - 47) * 60, 19_271, 19_271 - 423, 1.0)
    >>> [round(x, 6) for x in (f.availability, f.performance, f.quality, f.oee)]
    [0.888095, 0.861081, 0.97805, 0.747937]

    Nothing is capped; without planned time there is no availability:

    >>> from_totals(3600, 3600, 4000, 4000, 1.0).performance
    1.1111111111111112
    >>> from_totals(0, 0, 0, 0, 1.0)
    OeeFigures(availability=None, performance=None, quality=None, oee=None)
    """
    availability = _ratio(run_time_s, planned_time_s)
    performance = _ratio(ideal_cycle_time_s * total_count, run_time_s)
    quality = _ratio(good_count, total_count)
    oee = None
    if availability is not None and performance is not None and quality is not None:
        oee = availability * performance * quality
    return OeeFigures(availability, performance, quality, oee)


@dataclass(frozen=True, slots=True)
class OeeSettings:
    """The site's OEE rules (the ``analytics`` block of the site file)."""

    small_stop_s: float = 120.0
    startup_s: float = 300.0
    max_gap_s: float = 60.0


@dataclass(frozen=True, slots=True)
class CycleTimes:
    """Ideal cycle time of a machine: its own, else its running product's, else its line's."""

    line_s: float
    by_product: Mapping[str, float] = field(default_factory=dict)
    machine_s: float | None = None

    def of(self, product: object) -> float | None:
        """The ideal cycle time for a product id (None if the product is unknown)."""
        if self.machine_s is not None:
            return self.machine_s
        if not self.by_product or product is None or product == "":
            return self.line_s
        return self.by_product.get(str(product))


@dataclass(frozen=True, eq=False)
class MachineData:
    """One machine's OEE signals over a time range, as the store returns them: ``time_ns`` arrays
    with float64 values (NaN where missing) and object arrays of strings for the product."""

    state: tuple[np.ndarray, np.ndarray]
    good: tuple[np.ndarray, np.ndarray] | None = None
    reject: tuple[np.ndarray, np.ndarray] | None = None
    total: tuple[np.ndarray, np.ndarray] | None = None
    energy_kwh: tuple[np.ndarray, np.ndarray] | None = None
    product: tuple[np.ndarray, np.ndarray] | None = None


@dataclass(slots=True)
class Losses:
    """The six big losses of a window, as durations (s) and counts.

    Availability: ``breakdown`` (faults, starved, blocked), ``setup`` (changeover, setup) and
    ``no_data`` (long stretches of planned time without state data) -- together planned minus
    run time. Performance: ``small_stop`` and ``reduced_speed`` (run time not explained by ideal
    cycles or small stops; negative when performance is above 100 %). Quality: rejects in the
    start-up period after a restart, and the rest; ``quality_loss_s`` is their ideal time.
    """

    breakdown_s: float = 0.0
    breakdowns: int = 0
    setup_s: float = 0.0
    setups: int = 0
    no_data_s: float = 0.0
    small_stop_s: float = 0.0
    small_stops: int = 0
    reduced_speed_s: float = 0.0
    startup_rejects: float = 0.0
    production_rejects: float = 0.0
    quality_loss_s: float = 0.0


@dataclass(slots=True)
class OeeResult:
    """OEE of one machine (or line) over one window, with the figures behind it."""

    window: Window
    planned_s: float
    run_s: float
    ideal_time_s: float
    total: float
    good: float
    energy_kwh: float
    figures: OeeFigures
    teep: float | None
    losses: Losses
    warnings: list[str] = field(default_factory=list)
    state_samples: int = 0  # state samples inside the window
    output_machine: str | None = None  # a line's: whose counters are its output
    energy_per_good_part_kwh: float | None = None

    @property
    def rejects(self) -> float:
        return self.total - self.good

    @property
    def has_data(self) -> bool:
        """False for a window without a single state sample or part: nothing to report."""
        return self.state_samples > 0 or self.total > 0

    @property
    def stop_s(self) -> float:
        return self.planned_s - self.run_s


# -- the engine ---------------------------------------------------------------------------------


def _overlap(starts: np.ndarray, ends: np.ndarray, lo_ns: int, hi_ns: int) -> int:
    """Total overlap of sorted, disjoint segments with ``[lo_ns, hi_ns)``."""
    first = int(np.searchsorted(ends, lo_ns, side="right"))
    last = int(np.searchsorted(starts, hi_ns, side="left"))
    if last <= first:
        return 0
    a, b = starts[first:last], ends[first:last]
    return int(np.clip(np.minimum(b, hi_ns) - np.maximum(a, lo_ns), 0, None).sum())


class _Counts:
    """Parts and ideal time per window from the configured counters."""

    def __init__(self, data: MachineData, cycles: CycleTimes, warnings: list[str]) -> None:
        self.good = _increments(data.good, "good count", warnings)
        self.reject = _increments(data.reject, "reject count", warnings)
        self.total = _increments(data.total, "total count", warnings)
        self.energy = _increments(data.energy_kwh, "energy meter", warnings, wrap_at=math.inf)
        # Ideal time of each counted part: the cycle time of the product running when it was made.
        made = [c for c in ((self.total,) if self.total else (self.good, self.reject)) if c]
        changes = None
        if data.product is not None and cycles.machine_s is None and cycles.by_product:
            changes = _product_changes(data.product, cycles, warnings)
        line_s = cycles.of(None) or cycles.line_s
        self.ideal = [_ideal_seconds(c, changes, line_s) for c in made]
        self._made = made

    def window(self, lo_ns: int, hi_ns: int) -> tuple[float, float, float, float]:
        """(total, good, rejects, ideal seconds) counted in ``(lo_ns, hi_ns]``."""
        good = self.good.between(lo_ns, hi_ns) if self.good else None
        reject = self.reject.between(lo_ns, hi_ns) if self.reject else None
        total = self.total.between(lo_ns, hi_ns) if self.total else None
        if total is None:
            total = (good or 0.0) + (reject or 0.0)
        if good is None:
            good = total - (reject or 0.0)
        if reject is None:
            reject = total - good
        ideal = 0.0
        for counter, seconds in zip(self._made, self.ideal, strict=True):
            lo = int(np.searchsorted(counter.time_ns, lo_ns, side="right"))
            hi = int(np.searchsorted(counter.time_ns, hi_ns, side="right"))
            ideal += float(seconds[lo:hi].sum())
        return total, good, reject, ideal


def _increments(
    series: tuple[np.ndarray, np.ndarray] | None,
    what: str,
    warnings: list[str],
    wrap_at: float = 2.0**32,
) -> CounterIncrements | None:
    if series is None:
        return None
    increments = counter_increments(series[0], series[1], wrap_at=wrap_at)
    if increments.resets:
        warnings.append(f"the {what} went back {increments.resets} time(s): read as reset(s)")
    return increments


def _product_changes(
    product: tuple[np.ndarray, np.ndarray], cycles: CycleTimes, warnings: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """``(times, cycle times)`` where the running product changed: a product runs for hours, so
    the per-sample series shrinks to a handful of changes before anything else."""
    times, names = np.asarray(product[0], dtype=np.int64), np.asarray(product[1], dtype=object)
    if len(times) > 1 and bool((times[1:] < times[:-1]).any()):
        order = np.argsort(times, kind="stable")
        times, names = times[order], names[order]
    changed = np.ones(len(names), dtype=bool)
    changed[1:] = names[1:] != names[:-1]
    times, names = times[changed], names[changed]
    known = {name: cycles.of(name) for name in set(names.tolist())}
    unknown = sorted(str(n) for n, c in known.items() if c is None and n is not None)
    if unknown:
        warnings.append(
            f"unknown product(s) {', '.join(unknown)}: the line's ideal cycle time was used"
        )
    seconds = np.array(
        [c if (c := known[n]) is not None else cycles.line_s for n in names.tolist()],
        dtype=np.float64,
    )
    return times, seconds


def _ideal_seconds(
    counter: CounterIncrements, changes: tuple[np.ndarray, np.ndarray] | None, line_s: float
) -> np.ndarray:
    """Ideal time of each increment: the cycle time of the product running when it was made."""
    if changes is None or len(changes[0]) == 0:
        return counter.amount * line_s
    times, seconds = changes
    # The product running when a part was made: the last change before its count.
    index = np.searchsorted(times, counter.time_ns, side="left") - 1
    per_part = np.where(index >= 0, seconds[np.maximum(index, 0)], line_s)
    return np.asarray(counter.amount * per_part)


def machine_oee(
    data: MachineData,
    windows: Sequence[Window],
    production: Sequence[tuple[int, int]],
    cycles: CycleTimes,
    *,
    settings: OeeSettings,
    from_ns: int,
    to_ns: int,
) -> list[OeeResult]:
    """OEE of one machine for each window.

    ``production`` is the scheduled production time (shifts minus breaks) and ``[from_ns,
    to_ns)`` the span the data covers: read it wider than the windows, so a state that began
    before a window and a stop that reaches past it are seen whole. ``to_ns`` is also "now":
    nothing after it is known.
    """
    warnings: list[str] = []
    runs = state_runs(
        data.state[0],
        data.state[1],
        from_ns=from_ns,
        to_ns=to_ns,
        max_gap_ns=round(settings.max_gap_s * NS),
    )
    planned = planned_time(runs, production)
    counts = _Counts(data, cycles, warnings)
    restarts = planned.restarts(round(settings.small_stop_s * NS))
    booking = _StopBooking.of(planned, round(settings.small_stop_s * NS))
    state_times = np.sort(np.asarray(data.state[0], dtype=np.int64))
    results = []
    for window in windows:
        result = _window_oee(
            window, booking, counts, restarts, settings=settings, warnings=list(warnings)
        )
        result.state_samples = int(
            np.searchsorted(state_times, window.end_ns)
            - np.searchsorted(state_times, window.start_ns)
        )
        results.append(result)
    return results


@dataclass(frozen=True, eq=False)
class _StopBooking:
    """Which loss each planned segment and each stop is booked as: the same for every window,
    so it is worked out once per machine."""

    planned: PlannedTime
    breakdown: np.ndarray  # segment masks
    setup: np.ndarray
    no_data: np.ndarray
    short: np.ndarray
    long_stop: np.ndarray  # stop masks
    setup_stop: np.ndarray

    @classmethod
    def of(cls, planned: PlannedTime, threshold_ns: int) -> _StopBooking:
        states, stop = planned.state, planned.stop
        stopped = stop >= 0
        long_segment = np.zeros(len(states), dtype=bool)
        long_segment[stopped] = planned.stop_length_ns[stop[stopped]] >= threshold_ns
        long_stop = planned.stop_length_ns >= threshold_ns
        return cls(
            planned,
            breakdown=long_segment & ~np.isin(states, (*_SETUP_STATES, NO_DATA)),
            setup=long_segment & np.isin(states, _SETUP_STATES),
            no_data=long_segment & (states == NO_DATA),
            short=stopped & ~long_segment,
            long_stop=long_stop,
            setup_stop=long_stop & np.isin(_dominant_states(planned), _SETUP_STATES),
        )


def _window_oee(
    window: Window,
    booking: _StopBooking,
    counts: _Counts,
    restarts: np.ndarray,
    *,
    settings: OeeSettings,
    warnings: list[str],
) -> OeeResult:
    lo, hi = window.start_ns, window.end_ns
    planned = booking.planned
    starts, ends = planned.start_ns, planned.end_ns

    def seconds(mask: np.ndarray) -> float:
        return _overlap(starts[mask], ends[mask], lo, hi) / NS

    planned_s = _overlap(starts, ends, lo, hi) / NS
    losses = Losses(
        breakdown_s=seconds(booking.breakdown),
        setup_s=seconds(booking.setup),
        no_data_s=seconds(booking.no_data),
        small_stop_s=seconds(booking.short),
    )
    # Stops are counted in the window they began in.
    began = (planned.stop_start_ns >= lo) & (planned.stop_start_ns < hi)
    losses.small_stops = int((began & ~booking.long_stop).sum())
    losses.setups = int((began & booking.setup_stop).sum())
    losses.breakdowns = int((began & booking.long_stop).sum()) - losses.setups
    run_s = planned_s - losses.breakdown_s - losses.setup_s - losses.no_data_s

    total, good, rejects, ideal_s = counts.window(lo, hi)
    losses.reduced_speed_s = run_s - losses.small_stop_s - ideal_s
    if counts.reject is not None:
        losses.startup_rejects = _startup_rejects(counts.reject, restarts, settings, lo, hi)
    losses.production_rejects = rejects - losses.startup_rejects
    losses.quality_loss_s = ideal_s * rejects / total if total else 0.0

    figures = from_totals(planned_s, run_s, total, good, ideal_s / total if total else 0.0)
    all_time_s = window.seconds
    teep = figures.oee * planned_s / all_time_s if figures.oee is not None else None
    _data_warnings(warnings, figures, planned_s, losses)
    energy = counts.energy.between(lo, hi) if counts.energy else 0.0
    return OeeResult(
        window, planned_s, run_s, ideal_s, total, good, energy, figures, teep, losses, warnings
    )


def _dominant_states(planned: PlannedTime) -> np.ndarray:
    """Each stop's state with the most time in it (what a long stop is booked as)."""
    n = len(planned.stop_length_ns)
    result = np.full(n, NO_DATA, dtype=np.int64)
    stopped = planned.stop >= 0
    if n == 0:
        return result
    best = np.zeros(n, dtype=np.int64)
    lengths = planned.end_ns - planned.start_ns
    for code in np.unique(planned.state[stopped]):
        per_stop = np.zeros(n, dtype=np.int64)
        mask = stopped & (planned.state == code)
        np.add.at(per_stop, planned.stop[mask], lengths[mask])
        better = per_stop > best
        best[better], result[better] = per_stop[better], code
    return result


def _startup_rejects(
    rejects: CounterIncrements, restarts: np.ndarray, settings: OeeSettings, lo: int, hi: int
) -> float:
    first = int(np.searchsorted(rejects.time_ns, lo, side="right"))
    last = int(np.searchsorted(rejects.time_ns, hi, side="right"))
    times, amounts = rejects.time_ns[first:last], rejects.amount[first:last]
    if len(restarts) == 0 or len(times) == 0:
        return 0.0
    previous = np.searchsorted(restarts, times, side="right") - 1
    since = times - restarts[np.maximum(previous, 0)]
    in_startup = (previous >= 0) & (since <= round(settings.startup_s * NS))
    return float(amounts[in_startup].sum())


def _data_warnings(
    warnings: list[str], figures: OeeFigures, planned_s: float, losses: Losses
) -> None:
    if planned_s == 0:
        warnings.append("no planned production time in this window: no availability")
    if figures.performance is not None and figures.performance > 1.0:
        warnings.append(
            f"performance {figures.performance:.1%} is above 100%: check the ideal cycle time"
        )
    gap_s = losses.no_data_s
    if gap_s > 0:
        warnings.append(f"{gap_s:.0f} s of planned time without state data (counted as stopped)")


def line_oee(
    output: Sequence[OeeResult],
    machines: Mapping[str, Sequence[OeeResult]],
    output_machine: str,
) -> list[OeeResult]:
    """A line's OEE per window: its output machine's figures, with the energy of all its
    machines and the energy per good part beside them."""
    results = []
    for index, result in enumerate(output):
        energy = sum(rows[index].energy_kwh for rows in machines.values())
        results.append(
            OeeResult(
                result.window,
                result.planned_s,
                result.run_s,
                result.ideal_time_s,
                result.total,
                result.good,
                energy,
                result.figures,
                result.teep,
                result.losses,
                list(result.warnings),
                state_samples=result.state_samples,
                output_machine=output_machine,
                energy_per_good_part_kwh=energy / result.good if result.good > 0 else None,
            )
        )
    return results
