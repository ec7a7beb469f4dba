"""Process signals of every machine, advanced together with numpy.

All signals of the plant live in flat arrays, one entry per (machine, signal), so one step of
the whole plant is a handful of vector operations however many machines there are. Each signal
follows :class:`simulators.kinds.SignalSpec`: a level set by the machine's load and speed, the
daily ambient swing and a slow drift, reached through a first-order lag, plus sensor noise.
Faults act on the level (offset, scale), the noise, or the sensor itself (stuck, spikes,
dropout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulators.kinds import MachineKind, SignalSpec

__all__ = ["AMBIENT_SIGNALS", "SignalBank"]

Floats = npt.NDArray[np.float64]

# Every machine's control cabinet has these, beside the signals of its kind.
AMBIENT_SIGNALS = (
    SignalSpec(
        "cabinet_temp",
        "degC",
        30.5,
        load_gain=4.0,
        noise_sd=0.08,
        tau_s=1800,
        daily_amp=2.5,
        lo=-20,
        hi=80,
    ),
    SignalSpec(
        "cabinet_humidity",
        "%",
        58.0,
        load_gain=-3.0,
        noise_sd=0.4,
        tau_s=600,
        daily_amp=-7.0,
        lo=0,
        hi=100,
    ),
)


@dataclass(frozen=True)
class _Layout:
    machine_of: npt.NDArray[np.int64]  # signal -> machine index
    first: list[int]  # machine -> index of its first signal
    names: list[list[str]]  # machine -> its signal names


class SignalBank:
    """The current value of every process signal of the plant."""

    def __init__(self, kinds: list[MachineKind], step_s: float, seed: int, t0: float) -> None:
        specs: list[SignalSpec] = []
        machine_of: list[int] = []
        first: list[int] = []
        names: list[list[str]] = []
        for index, kind in enumerate(kinds):
            first.append(len(specs))
            own = [*kind.signals, *AMBIENT_SIGNALS]
            specs.extend(own)
            machine_of.extend([index] * len(own))
            names.append([spec.name for spec in own])
        self.layout = _Layout(np.array(machine_of, dtype=np.int64), first, names)
        self.specs = specs
        self.step_s = step_s
        self.t0 = t0
        self._rng = np.random.default_rng(seed)

        def column(attribute: str) -> Floats:
            return np.array([getattr(spec, attribute) for spec in specs], dtype=np.float64)

        self.base = column("base")
        self.load_gain = column("load_gain")
        self.speed_gain = column("speed_gain")
        self.noise_sd = column("noise_sd")
        self.daily_amp = column("daily_amp")
        self.drift_per_s = column("drift_per_day") / 86_400.0
        self.lo = column("lo")
        self.hi = column("hi")
        tau = column("tau_s")
        # Fraction of the gap to the target closed in one step (1 when there is no lag).
        self.alpha = np.where(tau > 0, 1.0 - np.exp(-step_s / np.maximum(tau, 1e-9)), 1.0)
        # Each machine's sensors drift their own way, a little.
        self.drift_per_s *= self._rng.choice([-1.0, 1.0], size=len(specs))
        self.level = self.base.copy()
        self.values = self.base.copy()
        # Fault inputs, reset by the plant every step.
        self.offset = np.zeros(len(specs))
        self.scale = np.ones(len(specs))
        self.noise_mult = np.ones(len(specs))
        self.stuck = np.zeros(len(specs), dtype=bool)
        self.dropout = np.zeros(len(specs), dtype=bool)
        self.spike = np.zeros(len(specs))

    def __len__(self) -> int:
        return len(self.specs)

    def index(self, machine: int, name: str) -> int:
        return self.layout.first[machine] + self.layout.names[machine].index(name)

    def names(self, machine: int) -> list[str]:
        return self.layout.names[machine]

    def machine_slice(self, machine: int) -> slice:
        start = self.layout.first[machine]
        return slice(start, start + len(self.layout.names[machine]))

    def clear_faults(self) -> None:
        self.offset.fill(0.0)
        self.scale.fill(1.0)
        self.noise_mult.fill(1.0)
        self.stuck.fill(False)
        self.dropout.fill(False)
        self.spike.fill(0.0)

    def step(self, t: float, local_hour: float, load: Floats, speed: Floats) -> None:
        """Advance every signal to plant time ``t``; ``load``/``speed`` are per machine (0..1)."""
        machine = self.layout.machine_of
        # Daily ambient swing peaking at 14:00 local time.
        daily = math.sin(2.0 * math.pi * (local_hour - 8.0) / 24.0)
        target = (
            self.base
            + self.load_gain * load[machine]
            + self.speed_gain * speed[machine]
            + self.daily_amp * daily
        ) * self.scale + self.offset
        self.level += (target - self.level) * self.alpha
        measured = self.level + self.drift_per_s * (t - self.t0)
        measured += self.noise_sd * self.noise_mult * self._rng.standard_normal(len(self.specs))
        measured += self.spike
        np.clip(measured, self.lo, self.hi, out=measured)
        # A stuck sensor keeps repeating its last reading.
        self.values = np.where(self.stuck, self.values, measured)

    def reading(self, index: int) -> float:
        """A signal's value as a sensor reports it: NaN while it drops out."""
        return math.nan if self.dropout[index] else float(self.values[index])
