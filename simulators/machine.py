"""One machine's behaviour: its state machine, part counters, run-hour meters and energy meter.

States follow :class:`plantwire.states.MachineState`. While production is planned a running
machine has micro-stops (starved or blocked for seconds), breakdowns (minutes), periods of
reduced speed, and rejects -- more of them just after a restart. Every duration is a whole
number of simulation steps, so what the PLC serves is exactly what the truth records.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from plantwire.states import MachineState
from simulators.calendar import CalendarKind
from simulators.kinds import MachineKind
from simulators.scenario import MachineSpec

__all__ = ["MachineModel", "StepResult"]

U32 = 2**32
SHIFT_S = 8 * 3600
STARTUP_S = 45.0  # after a restart, parts made in this long are often rejected
STARTUP_REJECT_RATE = 0.18
JAM_STOP_FACTOR = 25.0  # a jam multiplies the micro-stop rate

_CALENDAR_STATE = {
    CalendarKind.OFF: MachineState.OFF,
    CalendarKind.BREAK: MachineState.PLANNED_STOP,
    CalendarKind.MAINTENANCE: MachineState.MAINTENANCE,
    CalendarKind.CHANGEOVER: MachineState.CHANGEOVER,
}
_RESTART_FROM = frozenset(
    {MachineState.OFF, MachineState.PLANNED_STOP, MachineState.MAINTENANCE, MachineState.CHANGEOVER}
)
_OWN_STOPS = frozenset(
    {MachineState.IDLE, MachineState.BLOCKED, MachineState.FAULT, MachineState.SETUP}
)


@dataclass(slots=True)
class StepResult:
    """What one step produced: parts, rejects, energy."""

    parts: int = 0
    rejects: int = 0
    energy_kwh: float = 0.0


class MachineModel:
    def __init__(
        self,
        spec: MachineSpec,
        kind: MachineKind,
        ideal_cycle_time_s: float,
        step_s: float,
        rng: random.Random,
    ) -> None:
        self.spec = spec
        self.kind = kind
        self.ideal_cycle_time_s = ideal_cycle_time_s
        self.step_s = step_s
        self._rng = rng
        per_step_hours = step_s / 3600
        self.p_micro = (
            spec.micro_stops_per_hour
            if spec.micro_stops_per_hour is not None
            else kind.micro_stops_per_hour
        ) * per_step_hours
        breakdowns = (
            spec.breakdowns_per_shift
            if spec.breakdowns_per_shift is not None
            else kind.breakdowns_per_shift
        )
        self.p_breakdown = breakdowns * step_s / SHIFT_S
        self.p_reduced = (
            spec.reduced_speed_per_hour
            if spec.reduced_speed_per_hour is not None
            else kind.reduced_speed_per_hour
        ) * per_step_hours
        self.reject_rate = spec.reject_rate if spec.reject_rate is not None else kind.reject_rate

        self.own_state = MachineState.OFF  # what the machine itself is doing
        self.state = MachineState.OFF  # what it shows, after its line's neighbours had their say
        self.own_until = 0.0
        self.stop_started = 0.0  # when the current own stop began (for line coupling)
        self.speed_factor = 1.0
        self.reduced_until = 0.0
        self.startup_until = 0.0
        self.jammed = False
        self._part_fraction = 0.0
        # Counters as the PLC holds them (32-bit, wrapping) and meters.
        self.good_count = spec.counter_start
        self.reject_count = spec.counter_start // 97 % U32
        self.cycle_count = (U32 - 5_000 + spec.counter_start) % U32  # machine cycles, wraps soon
        self.run_seconds = 0
        self.stop_seconds = 0
        self.energy_kwh = 0.0
        self.power_kw = kind.standby_kw

    # -- durations, whole steps ---------------------------------------------------------------
    def _steps(self, seconds: float) -> float:
        return max(1, round(seconds / self.step_s)) * self.step_s

    def _lognormal(self, median: float, sigma: float, lo: float, hi: float) -> float:
        return self._steps(min(hi, max(lo, median * math.exp(self._rng.gauss(0.0, sigma)))))

    def _stop(self, t: float, state: MachineState, seconds: float) -> None:
        self.own_state = state
        self.own_until = t + seconds
        self.stop_started = t

    # -- the state machine ----------------------------------------------------------------------
    def breakdown(self, t: float, minutes: float) -> None:
        """Stop for repair (after bearing wear ends, say)."""
        self._stop(t, MachineState.FAULT, self._steps(minutes * 60))

    def advance_state(self, t: float, calendar: CalendarKind) -> None:
        """Decide the machine's own state for the step starting at plant time ``t``."""
        planned = _CALENDAR_STATE.get(calendar)
        if planned is not None:
            self.own_state = planned
            return
        if self.own_state in _RESTART_FROM:
            self._stop(t, MachineState.SETUP, self._lognormal(self.kind.setup_s, 0.25, 30, 110))
            return
        if self.own_state in _OWN_STOPS:
            if t < self.own_until:
                return
            if self.own_state is MachineState.SETUP:
                self.startup_until = t + STARTUP_S
            self.own_state = MachineState.RUNNING
        self._running_events(t)

    def _running_events(self, t: float) -> None:
        p_micro = self.p_micro * (JAM_STOP_FACTOR if self.jammed else 1.0)
        draw = self._rng.random()
        if draw < self.p_breakdown:
            self._stop(t, MachineState.FAULT, self._lognormal(540, 0.55, 180, 3600))
        elif draw < self.p_breakdown + p_micro:
            if self.jammed:
                self._stop(t, MachineState.FAULT, self._lognormal(8, 0.5, 3, 30))
            else:
                state = MachineState.IDLE if self._rng.random() < 0.6 else MachineState.BLOCKED
                self._stop(t, state, self._lognormal(14, 0.6, 3, 100))
        elif draw < self.p_breakdown + p_micro + self.p_reduced and t >= self.reduced_until:
            self.reduced_until = t + self._lognormal(300, 0.5, 60, 1800)
            self.speed_factor = self._rng.uniform(0.62, 0.85)
        if t >= self.reduced_until:
            self.speed_factor = 1.0

    # -- production -----------------------------------------------------------------------------
    def produce(self, t: float) -> StepResult:
        """Parts, rejects and energy of the step, from the state shown (after line coupling)."""
        result = StepResult()
        kind = self.kind
        if self.state is MachineState.RUNNING:
            # Real cycles are never faster than ideal on average: a few percent slower, varying.
            cycle = self.ideal_cycle_time_s * (1.0 + abs(self._rng.gauss(0.0, 0.03)))
            self._part_fraction += self.speed_factor * self.step_s / cycle
            parts = int(self._part_fraction)
            self._part_fraction -= parts
            rate = STARTUP_REJECT_RATE if t < self.startup_until else self.reject_rate
            rejects = sum(1 for _ in range(parts) if self._rng.random() < rate)
            result.parts, result.rejects = parts, rejects
            self.good_count = (self.good_count + parts - rejects) % U32
            self.reject_count = (self.reject_count + rejects) % U32
            self.cycle_count = (self.cycle_count + parts) % U32
            self.run_seconds += round(self.step_s)
            self.power_kw = kind.idle_kw + (kind.run_kw - kind.idle_kw) * self.speed_factor
        elif self.state in (MachineState.OFF, MachineState.PLANNED_STOP, MachineState.MAINTENANCE):
            self.power_kw = kind.standby_kw
        else:
            self.stop_seconds += round(self.step_s)
            self.power_kw = kind.idle_kw
        # A little ripple, as a real meter shows.
        self.power_kw *= 1.0 + self._rng.gauss(0.0, 0.01)
        result.energy_kwh = self.power_kw * self.step_s / 3600.0
        self.energy_kwh += result.energy_kwh
        return result

    @property
    def load(self) -> float:
        """Motor effort, 0..1, that drives the process signals."""
        if self.state is MachineState.RUNNING:
            return self.speed_factor
        if self.state in (MachineState.OFF, MachineState.PLANNED_STOP, MachineState.MAINTENANCE):
            return 0.03
        return 0.12

    @property
    def speed(self) -> float:
        return self.speed_factor if self.state is MachineState.RUNNING else 0.0
