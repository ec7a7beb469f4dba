"""Multivariate PCA with Hotelling's T² and the Q statistic (squared prediction error).

Signals are standardized on the training block, principal components kept up to ``variance``
of it; a row's T² measures how far it lies inside the model's plane (unusual combinations of
known variation), Q how far off the plane (a new kind of variation: a broken correlation). The
score is T² + Q, averaged over the last ``smooth`` rows (a fault persists, noise does not).

In a stream the centre follows slow, normal drift (``learn_block`` on rows below the threshold,
time constant ``1/alpha`` rows) while the correlation structure stays as fitted.

A missing reading (a dropout) or a frozen one (a stuck sensor: a signal that moves with noise in
normal history repeats one value for ``frozen_rows`` rows) adds ``sensor_penalty`` per signal:
enough on its own to cross any threshold, since such a reading is a fault whatever the values.

The scale of each signal is floored at ``scale_floor`` of its typical level: a signal that hardly
moved during training (a temperature over a few minutes) would otherwise turn normal slow drift
into huge standardized values.
"""

from __future__ import annotations

from typing import ClassVar, Self

import numpy as np

from analytics.anomaly.base import Detector, ewma_towards, rolling_mean
from analytics.anomaly.sensors import noisy_signals, sensor_faults

__all__ = ["PcaT2Q"]


class PcaT2Q(Detector):
    name: ClassVar[str] = "pca"
    PARAMS: ClassVar[tuple[str, ...]] = (
        "variance",
        "smooth",
        "scale_floor",
        "alpha",
        "frozen_rows",
        "sensor_penalty",
    )
    FITTED: ClassVar[tuple[str, ...]] = ("center", "scale", "components", "eigenvalues", "noisy")
    adapts: ClassVar[bool] = True

    def __init__(
        self,
        *,
        variance: float = 0.95,
        smooth: int = 20,
        scale_floor: float = 0.02,
        alpha: float = 0.01,
        frozen_rows: int = 30,
        sensor_penalty: float = 1000.0,
    ) -> None:
        if not 0 < variance <= 1:
            raise ValueError("variance must be in (0, 1]")
        self.variance = variance
        self.smooth = smooth
        self.scale_floor = scale_floor
        self.alpha = alpha
        self.frozen_rows = frozen_rows
        self.sensor_penalty = sensor_penalty
        self.window = smooth + frozen_rows
        super().__init__()
        self.center = np.empty(0)
        self.scale = np.empty(0)
        self.components = np.empty((0, 0))
        self.eigenvalues = np.empty(0)
        self.noisy = np.empty(0, dtype=bool)

    def fit(self, history: np.ndarray) -> Self:
        rows = np.asarray(history, dtype=np.float64)
        if rows.ndim != 2 or len(rows) < 3:
            raise ValueError("pca needs at least 3 rows of history, as rows x signals")
        rows = rows[~np.isnan(rows).any(axis=1)]
        if len(rows) < 3:
            raise ValueError("pca needs at least 3 complete rows of history")
        self.signals = rows.shape[1]
        self.noisy = noisy_signals(rows)
        self.center = rows.mean(axis=0)
        floor = np.abs(self.center) * self.scale_floor
        self.scale = np.maximum(rows.std(axis=0), np.maximum(floor, 1e-9))
        z = (rows - self.center) / self.scale
        _, singular, vt = np.linalg.svd(z - z.mean(axis=0), full_matrices=False)
        eigen = singular**2 / (len(z) - 1)
        total = eigen.sum()
        keep = (
            len(eigen)
            if total <= 0
            else int(np.searchsorted(np.cumsum(eigen) / total, self.variance)) + 1
        )
        keep = min(keep, len(eigen))
        self.components = vt[:keep].T
        self.eigenvalues = np.maximum(eigen[:keep], 1e-12)
        return self

    def row_scores(self, block: np.ndarray) -> np.ndarray:
        """T² + Q per row, before smoothing, plus ``sensor_penalty`` for each missing or frozen
        signal (a missing value counts as the training mean in T² and Q)."""
        rows = self._check(block)
        z = (rows - self.center) / self.scale
        z[np.isnan(z)] = 0.0  # a missing value counts as the centre
        t = z @ self.components
        t2 = np.sum(t * t / self.eigenvalues, axis=1)
        residual = z - t @ self.components.T
        faults = sensor_faults(rows, self.noisy, self.frozen_rows)
        return np.asarray(t2 + np.sum(residual * residual, axis=1) + self.sensor_penalty * faults)

    def score(self, block: np.ndarray) -> np.ndarray:
        return rolling_mean(self.row_scores(block), self.smooth)

    def learn_block(self, rows: np.ndarray) -> None:
        """Follow slow drift: move the centre towards normal rows (time constant 1/alpha rows);
        the correlation structure (the components) stays as fitted."""
        self.center = ewma_towards(self.center, rows, self.alpha)
