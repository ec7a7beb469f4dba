"""Virtual sensors: each signal predicted from the recent history of the machine's other signals.

A machine's signals are tied together by its physics: the motor current follows the load at once,
its temperature trails the load by many minutes, vibration follows speed. A model fitted across
running, stopped and idle periods without time in it sees every start and stop as a broken
correlation (the current has dropped, the temperature has not yet). Here every signal gets a
linear "virtual sensor" fitted on the other signals' values and their exponentially weighted
averages over several time constants (``taus`` rows), which can express such lags; a degradation
shows as the measured value leaving its virtual sensor's prediction.

The score of a row is the largest of three parts, each measured above its typical value while
fitting and relative to how far above that it reached (so about 0 on normal data, 1 at most):

* ``fit``: the mean squared standardized residual over the signals, averaged over ``smooth`` rows
  (degradations: wear, fouling, a failing heater);
* ``spikes``: how often a signal jumps away and straight back within one row by more than
  ``spike_sigma`` times its noise, averaged over ``activity_tau`` rows (a sensor or wiring fault);
* ``activity``: how much the signals move row to row, relative to their noise, averaged over
  ``activity_tau`` rows, above its typical level, and averaged over the signals (a machine that
  keeps stopping and starting: a jam);

plus ``sensor_penalty`` for each missing or frozen reading (see :mod:`.sensors`).

Counters (signals that only ever rise in the fitting history, such as cycle or run-hour meters)
are read as their increase per row. The detector keeps its filters between :meth:`stream` calls,
so a live stream has its full memory however it is chunked; ``score`` runs a fresh stream. The
residuals' centre follows slow drift (``alpha`` per normal row).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Self

import numpy as np
from scipy.signal import lfilter  # type: ignore[import-untyped]

from analytics.anomaly.base import Detector
from analytics.anomaly.sensors import noisy_signals, sensor_faults

__all__ = ["VirtualSensors"]

NOISE_FROM_MAD = 1.4826 / np.sqrt(2.0)  # row-to-row change of white noise: sqrt(2) x its sd


def _ewma(values: np.ndarray, alpha: float, previous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exponentially weighted averages of each column, continuing from ``previous``."""
    if len(values) == 0:
        return values.copy(), previous
    out, _ = lfilter([alpha], [1.0, alpha - 1.0], values, axis=0, zi=(1.0 - alpha) * previous[None])
    return out, out[-1].copy()


@dataclass
class _Stream:
    """What the detector remembers of a live stream between blocks."""

    last: np.ndarray  # last reading of each signal (filled), raw
    last_input: np.ndarray  # last row of inputs (counters as increases)
    before_last: np.ndarray  # the input row before that
    averages: list[np.ndarray]  # one per tau
    fit: np.ndarray  # smoothed residual energy
    spikes: np.ndarray
    activity: np.ndarray  # per signal
    recent: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))  # raw rows, frozen test


class VirtualSensors(Detector):
    name: ClassVar[str] = "virtual"
    PARAMS: ClassVar[tuple[str, ...]] = (
        "taus",
        "smooth",
        "ridge",
        "alpha",
        "spike_sigma",
        "activity_tau",
        "frozen_rows",
        "sensor_penalty",
    )
    FITTED: ClassVar[tuple[str, ...]] = (
        "counters",
        "noisy",
        "targets",
        "input_mean",
        "input_scale",
        "feature_mean",
        "feature_scale",
        "weights",
        "intercept",
        "sigma",
        "bias",
        "noise",
        "typical",
        "tops",
        "activity_typical",
        "activity_top",
        "start",
    )
    adapts: ClassVar[bool] = True

    def __init__(
        self,
        *,
        taus: tuple[float, ...] | list[float] = (30.0, 300.0, 1800.0),
        smooth: int = 60,
        ridge: float = 1e-3,
        alpha: float = 1.0 / 3600,
        spike_sigma: float = 6.0,
        activity_tau: float = 600.0,
        frozen_rows: int = 30,
        sensor_penalty: float = 1000.0,
    ) -> None:
        self.taus = tuple(float(t) for t in taus)
        if not self.taus or min(self.taus) < 1:
            raise ValueError("taus must be time constants of at least 1 row")
        self.smooth = smooth
        self.ridge = ridge
        self.alpha = alpha
        self.spike_sigma = spike_sigma
        self.activity_tau = activity_tau
        self.frozen_rows = frozen_rows
        self.sensor_penalty = sensor_penalty
        self.window = 1  # the filters carry the memory (see stream)
        super().__init__()
        empty = np.empty(0)
        self.counters = np.empty(0, dtype=bool)
        self.noisy = np.empty(0, dtype=bool)
        self.targets = np.empty(0, dtype=bool)
        self.input_mean = self.input_scale = self.feature_mean = self.feature_scale = empty
        self.weights = np.empty((0, 0))
        self.intercept = self.sigma = self.bias = self.noise = empty
        self.activity_typical = self.activity_top = empty  # per signal, while fitting
        # Each part's typical value while fitting, and how far above it the part reached.
        self.typical = self.tops = empty
        self.start = empty  # the first row of the fitting history: a stream's starting point
        self._live: _Stream | None = None
        self._residuals = np.empty((0, 0))

    # -- fitting ----------------------------------------------------------------------------------
    def fit(self, history: np.ndarray) -> Self:
        rows = np.asarray(history, dtype=np.float64)
        if rows.ndim != 2 or len(rows) < 20:
            raise ValueError("virtual needs at least 20 rows of history, as rows x signals")
        complete = rows[~np.isnan(rows).any(axis=1)]
        if len(complete) < 20:
            raise ValueError("virtual needs at least 20 complete rows of history")
        self.signals = rows.shape[1]
        steps = np.diff(complete, axis=0)
        self.counters = np.asarray(
            ((steps >= 0).mean(axis=0) >= 0.99) & ((steps > 0).mean(axis=0) >= 0.01)
        )
        # A counter holds still whenever the machine does: that is not a frozen sensor.
        self.noisy = noisy_signals(complete) & ~self.counters
        self.start = complete[0].copy()
        inputs = self._inputs(complete, complete[0])
        self.input_mean = inputs.mean(axis=0)
        self.input_scale = np.maximum(inputs.std(axis=0), 1e-9 * (1.0 + np.abs(self.input_mean)))
        self.targets = np.asarray(inputs.std(axis=0) > 1e-12)
        step_mad = np.median(np.abs(np.diff(inputs, axis=0)), axis=0)
        self.noise = np.maximum(step_mad * NOISE_FROM_MAD, 1e-3 * self.input_scale)
        features = self._features(inputs, self._fresh_stream(complete[0]).averages)[0]
        # The filters start from the first row as if it were steady; skip their settling time.
        settle = min(int(2 * max(self.taus)), len(inputs) // 4)
        self._fit_sensors(features[settle:], inputs[settle:])
        self.bias = np.zeros(self.signals)
        self.typical, self.tops = np.zeros(3), np.ones(3)
        self.activity_typical = np.zeros(self.signals)
        self.activity_top = np.ones(self.signals)
        parts, activity = self._parts(complete, self._fresh_stream(complete[0]))
        # Parts are measured above their typical level, so a normal row scores near 0, not near
        # its top: an alarm can clear once the machine is back to normal.
        settled = parts[settle:]
        self.typical = np.median(settled, axis=0)
        floor = [1e-9, 2.0 / self.activity_tau, 1e-9]  # spikes: at least two in the window
        self.tops = np.maximum(settled.max(axis=0) - self.typical, floor)
        self.activity_typical = np.median(activity[settle:], axis=0)
        spread = activity[settle:].max(axis=0) - self.activity_typical
        self.activity_top = np.maximum(spread, 0.1 * self.activity_typical + 1e-9)
        # Activity is already relative to each signal's own typical level and top.
        self.typical[2], self.tops[2] = 0.0, 1.0
        return self

    def _fit_sensors(self, features: np.ndarray, inputs: np.ndarray) -> None:
        """One ridge regression per target signal, on every feature but its own."""
        signals = self.signals or 0
        self.feature_mean = features.mean(axis=0)
        self.feature_scale = np.maximum(features.std(axis=0), 1e-12)
        x = (features - self.feature_mean) / self.feature_scale
        gram = x.T @ x + self.ridge * len(x) * np.eye(x.shape[1])
        y = (inputs - self.input_mean) / self.input_scale
        cross = x.T @ y
        owner = np.tile(np.arange(signals), len(self.taus) + 1)  # the signal of each feature
        self.weights = np.zeros((x.shape[1], signals))
        for target in np.flatnonzero(self.targets):
            use = owner != target
            self.weights[use, target] = np.linalg.solve(gram[np.ix_(use, use)], cross[use, target])
        self.intercept = np.zeros(signals)
        residual = y - x @ self.weights
        self.sigma = np.maximum(residual.std(axis=0), 1e-3)

    # -- the stream -------------------------------------------------------------------------------
    def _fresh_stream(self, row: np.ndarray) -> _Stream:
        """A stream that starts at ``row``, as if the machine had been steady there."""
        row = np.where(np.isnan(row), self.start, row)
        first = self._inputs(row[None], row)[0]
        signals = len(first)
        return _Stream(
            last=row.copy(),
            last_input=first.copy(),
            before_last=first.copy(),
            averages=[first.copy() for _ in self.taus],
            fit=np.zeros(1),
            spikes=np.zeros(1),
            activity=np.zeros(signals),
            recent=np.empty((0, signals)),
        )

    def _inputs(self, rows: np.ndarray, before: np.ndarray) -> np.ndarray:
        """Readings as the model sees them: counters as their increase since the row before."""
        inputs = rows.copy()
        if self.counters.any():
            raw = rows[:, self.counters]
            previous = np.vstack([before[self.counters][None], raw[:-1]])
            inputs[:, self.counters] = np.maximum(raw - previous, 0.0)  # a wrap or reset: 0
        return inputs

    def _features(
        self, inputs: np.ndarray, averages: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        columns = [inputs]
        ends = []
        for tau, previous in zip(self.taus, averages, strict=True):
            smoothed, end = _ewma(inputs, 1.0 / tau, previous)
            columns.append(smoothed)
            ends.append(end)
        return np.hstack(columns), ends

    def _parts(self, raw: np.ndarray, live: _Stream) -> tuple[np.ndarray, np.ndarray]:
        """Rows x (fit, spikes, activity) relative to their tops, and each signal's activity;
        advances ``live`` past ``raw``."""
        missing = np.isnan(raw)
        filled = raw.copy()
        for column in np.flatnonzero(missing.any(axis=0)):
            series = filled[:, column]
            gaps = np.isnan(series)
            index = np.where(~gaps, np.arange(len(series)), -1)
            np.maximum.accumulate(index, out=index)
            series[:] = np.where(index >= 0, series[np.maximum(index, 0)], live.last[column])
        inputs = self._inputs(filled, live.last)
        features, live.averages = self._features(inputs, live.averages)
        x = (features - self.feature_mean) / self.feature_scale
        y = (inputs - self.input_mean) / self.input_scale
        residual = (y - x @ self.weights - self.bias) / self.sigma
        residual[:, ~self.targets] = 0.0
        self._residuals = residual
        energy = (residual * residual).mean(axis=1, keepdims=True)
        fit, live.fit = _ewma(energy, 1.0 / self.smooth, live.fit)
        # A spike: away by more than spike_sigma x noise and straight back, within one row.
        joined = np.vstack([live.before_last[None], live.last_input[None], inputs])
        away, back = joined[1:-1] - joined[:-2], joined[2:] - joined[1:-1]
        limit = self.spike_sigma * self.noise
        blips = (np.abs(away) > limit) & (np.abs(back) > limit) & (np.sign(away) != np.sign(back))
        blips &= np.abs(joined[2:] - joined[:-2]) < 0.5 * np.minimum(np.abs(away), np.abs(back))
        # Judged on the signals that move with noise (a counter or a quantized level steps by
        # whole units); the blip is seen one row late (it needs the row after it).
        count = blips[:, self.noisy].sum(axis=1, keepdims=True).astype(np.float64)
        spikes, live.spikes = _ewma(count, 1.0 / self.activity_tau, live.spikes)
        moves = np.abs(np.diff(np.vstack([live.last_input[None], inputs]), axis=0)) / self.noise
        activity, live.activity = _ewma(moves, 1.0 / self.activity_tau, live.activity)
        live.before_last = joined[-2].copy()
        live.last_input = inputs[-1].copy()
        live.last = filled[-1].copy()
        raw_parts = np.hstack([fit, spikes, self._activity_part(activity)])
        parts = (raw_parts - self.typical) / self.tops
        return parts, activity

    def _activity_part(self, activity: np.ndarray) -> np.ndarray:
        """The mean excess over the signals that varied while fitting: a jam stirs them all, a
        chance burst on one signal is diluted (a signal that never moved has no scale)."""
        excess = (activity - self.activity_typical) / self.activity_top
        if not self.targets.any():
            return np.zeros((len(activity), 1))
        return np.asarray(excess[:, self.targets].mean(axis=1, keepdims=True))

    def _sensor_faults(self, raw: np.ndarray, live: _Stream) -> np.ndarray:
        joined = np.vstack([live.recent, raw]) if len(live.recent) else raw
        faults = sensor_faults(joined, self.noisy, self.frozen_rows)[len(live.recent) :]
        live.recent = joined[-self.frozen_rows :].copy()
        return faults

    def stream(self, block: np.ndarray) -> np.ndarray:
        rows = self._check(block)
        if self._live is None:
            self._live = self._fresh_stream(rows[0])
        parts, _ = self._parts(rows, self._live)
        faults = self._sensor_faults(rows, self._live)
        self._streamed = rows
        return np.asarray(parts.max(axis=1) + self.sensor_penalty * faults)

    def score(self, block: np.ndarray) -> np.ndarray:
        rows = self._check(block)
        saved = (self._live, self._residuals, self._streamed)
        self._live = None
        try:
            return self.stream(rows)
        finally:
            self._live, self._residuals, self._streamed = saved

    def reset(self) -> None:
        self._live = None

    def learn_streamed(self, normal: np.ndarray) -> None:
        """Move the residuals' centre towards those of the normal rows just streamed (drift)."""
        mask = np.asarray(normal, dtype=bool)
        if len(self._residuals) != len(mask) or not mask.any():
            return
        weights = self.alpha * (1.0 - self.alpha) ** np.arange(mask.sum() - 1, -1, -1)
        shift = weights @ self._residuals[mask] * self.sigma
        self.bias = self.bias * (1.0 - self.alpha) ** mask.sum() + shift + self.bias * weights.sum()

    def learn_block(self, rows: np.ndarray) -> None:
        """Normal rows are learned as they are streamed (:meth:`learn_streamed`): a residual
        needs the filters' state at that row, which a loose block of rows does not have."""
