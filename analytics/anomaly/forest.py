"""An Isolation Forest (scikit-learn) on windowed features: a row is anomalous when its values,
their recent level, spread and rate of change are easy to isolate from normal history."""

from __future__ import annotations

from typing import ClassVar, Self

import numpy as np
from sklearn.ensemble import IsolationForest

from analytics.anomaly.base import Detector, rolling_mean
from analytics.anomaly.features import windowed_features

__all__ = ["WindowedIsolationForest"]


class WindowedIsolationForest(Detector):
    name: ClassVar[str] = "iforest"
    PARAMS: ClassVar[tuple[str, ...]] = ("feature_window", "lag", "smooth", "trees", "seed")
    FITTED: ClassVar[tuple[str, ...]] = ("center", "scale", "model")

    def __init__(
        self,
        *,
        feature_window: int = 30,
        lag: int = 5,
        smooth: int = 10,
        trees: int = 100,
        seed: int = 0,
    ) -> None:
        self.feature_window = feature_window
        self.lag = lag
        self.smooth = smooth
        self.trees = trees
        self.seed = seed
        # A score depends on the smoothing window of rows, each on its feature window before it.
        self.window = feature_window + smooth + lag
        super().__init__()
        self.center = np.empty(0)
        self.scale = np.empty(0)
        self.model: IsolationForest | None = None

    def _features(self, block: np.ndarray) -> np.ndarray:
        features = windowed_features(block, window=self.feature_window, lag=self.lag)
        return np.asarray((features - self.center) / self.scale)

    def fit(self, history: np.ndarray) -> Self:
        rows = np.asarray(history, dtype=np.float64)
        if rows.ndim != 2 or len(rows) < 10:
            raise ValueError("iforest needs at least 10 rows of history, as rows x signals")
        self.signals = rows.shape[1]
        raw = windowed_features(rows, window=self.feature_window, lag=self.lag)
        self.center = raw.mean(axis=0)
        self.scale = np.maximum(raw.std(axis=0), 1e-9)
        self.model = IsolationForest(n_estimators=self.trees, random_state=self.seed)
        self.model.fit((raw - self.center) / self.scale)
        return self

    def score(self, block: np.ndarray) -> np.ndarray:
        rows = self._check(block)
        assert self.model is not None
        raw = -self.model.score_samples(self._features(rows))
        return rolling_mean(raw, self.smooth)
