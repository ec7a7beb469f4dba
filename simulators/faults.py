"""Fault injection with ground truth.

Each fault is an episode on one machine: degradations that grow through the episode (bearing
wear, heater degradation, clogging), sensor faults (stuck, spikes, dropout) and jams (bursts of
micro-stops). Every episode is recorded, so tests and the anomaly benchmark can check detection
against the truth.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass

from simulators.kinds import MachineKind
from simulators.scenario import DEGRADATION_FAULTS, FAULT_KINDS, Scenario
from simulators.signals import SignalBank

__all__ = ["FaultEpisode", "FaultInjector"]

SPIKES_PER_S = 1 / 20  # while a spikes fault is on
SENSOR_FAULTS = ("stuck_sensor", "spikes", "dropout")


@dataclass(frozen=True, slots=True)
class FaultEpisode:
    machine: int  # index in the plant
    path: str  # area/line/machine
    kind: str
    start: float  # plant time, s
    end: float
    signals: tuple[str, ...]  # the signals it shows in (empty for a jam)

    def progress(self, t: float) -> float:
        """Severity from 0 to 1: slow at first, as wear is."""
        fraction = (t - self.start) / (self.end - self.start)
        return float(min(1.0, max(0.0, fraction)) ** 1.5)

    def active(self, t: float) -> bool:
        return self.start <= t < self.end


class FaultInjector:
    """Plans the episodes of a scenario and applies the active ones each step."""

    def __init__(
        self, scenario: Scenario, kinds: list[MachineKind], paths: list[str], t0: float, seed: int
    ) -> None:
        self.kinds = kinds
        self.paths = paths
        self.t0 = t0
        self._rng = random.Random(seed)
        self.random_faults = scenario.random_faults
        self.episodes: list[FaultEpisode] = []  # every episode planned so far: the truth
        self._pending: list[tuple[float, int, FaultEpisode]] = []  # heap by start time
        self._active: list[FaultEpisode] = []
        for fault in scenario.faults:
            machine = paths.index(fault.machine)
            start = t0 + fault.at
            self._add(
                self._episode(machine, fault.kind, start, start + fault.duration, fault.signal)
            )
        self._random_days = 0

    def _add(self, episode: FaultEpisode) -> None:
        self.episodes.append(episode)
        heapq.heappush(self._pending, (episode.start, len(self.episodes), episode))

    def _episode(
        self, machine: int, kind: str, start: float, end: float, signal: str | None
    ) -> FaultEpisode:
        spec = self.kinds[machine]
        if kind in DEGRADATION_FAULTS:
            signals = tuple(effect.signal for effect in spec.faults[kind])
        elif kind in SENSOR_FAULTS:
            signals = (signal or self._rng.choice(spec.signal_names()),)
        else:
            signals = ()
        return FaultEpisode(machine, self.paths[machine], kind, start, end, signals)

    def _plan_random(self, until: float) -> None:
        """Draw the random faults of each day up to ``until``, in a fixed order (deterministic)."""
        rate = self.random_faults.per_machine_per_day
        while rate > 0 and self.t0 + self._random_days * 86_400 <= until:
            day_start = self.t0 + self._random_days * 86_400
            for machine, spec in enumerate(self.kinds):
                kinds = [
                    k
                    for k in self.random_faults.kinds
                    if k in FAULT_KINDS and (k not in DEGRADATION_FAULTS or k in spec.faults)
                ]
                count = self._poisson(rate)
                for _ in range(count if kinds else 0):
                    kind = self._rng.choice(kinds)
                    duration = self._rng.uniform(
                        self.random_faults.min_duration, self.random_faults.max_duration
                    )
                    start = day_start + self._rng.uniform(0, 86_400 - duration)
                    self._add(self._episode(machine, kind, start, start + duration, None))
            self._random_days += 1

    def _poisson(self, mean: float) -> int:
        count, threshold, product = 0, pow(2.718281828459045, -mean), self._rng.random()
        while product > threshold:
            count += 1
            product *= self._rng.random()
        return count

    def apply(self, t: float, bank: SignalBank) -> tuple[set[int], list[int]]:
        """Set this step's fault effects on the signals.

        Returns the machines that are jammed now, and the machines whose bearing wear just ended
        (they stop for repair).
        """
        self._plan_random(t + 86_400)
        while self._pending and self._pending[0][0] <= t:
            self._active.append(heapq.heappop(self._pending)[2])
        repaired = [e.machine for e in self._active if e.end <= t and e.kind == "bearing_wear"]
        self._active = [e for e in self._active if e.end > t]
        bank.clear_faults()
        jammed: set[int] = set()
        for episode in self._active:
            if episode.kind == "jam":
                jammed.add(episode.machine)
            elif episode.kind in DEGRADATION_FAULTS:
                self._degrade(episode, episode.progress(t), bank)
            else:
                self._sensor_fault(episode, bank)
        return jammed, repaired

    def _sensor_fault(self, episode: FaultEpisode, bank: SignalBank) -> None:
        index = bank.index(episode.machine, episode.signals[0])
        if episode.kind == "stuck_sensor":
            bank.stuck[index] = True
        elif episode.kind == "dropout":
            bank.dropout[index] = True
        elif self._rng.random() < SPIKES_PER_S * bank.step_s:
            spec = bank.specs[index]
            size = 8 * spec.noise_sd + 0.2 * abs(spec.base + spec.load_gain + spec.speed_gain)
            bank.spike[index] = size * self._rng.choice((-1.0, 1.0))

    def _degrade(self, episode: FaultEpisode, severity: float, bank: SignalBank) -> None:
        for effect in self.kinds[episode.machine].faults[episode.kind]:
            index = bank.index(episode.machine, effect.signal)
            bank.offset[index] += effect.offset * severity
            bank.scale[index] *= 1.0 + effect.scale * severity
            bank.noise_mult[index] *= 1.0 + (effect.noise - 1.0) * severity
