"""A robust streaming baseline: per-signal z-scores against the median and MAD of normal history.

The score of a row is the largest absolute z-score over the machine's signals, averaged over the
last ``smooth`` rows. In a stream, ``learn_one``/``learn_block`` move each signal's centre by an
exponentially weighted step (``alpha``) so slow, normal drift does not raise alarms; feed them
only rows below the threshold (:func:`analytics.anomaly.stream.score_adapting` does), or a fault
would be learned as normal.
"""

from __future__ import annotations

from typing import ClassVar, Self

import numpy as np

from analytics.anomaly.base import Detector, ewma_towards, rolling_mean

__all__ = ["RobustBaseline"]

MAD_TO_SD = 1.4826  # the MAD of a normal distribution is 0.6745 sd


class RobustBaseline(Detector):
    name: ClassVar[str] = "baseline"
    PARAMS: ClassVar[tuple[str, ...]] = ("smooth", "alpha", "scale_floor")
    FITTED: ClassVar[tuple[str, ...]] = ("center", "scale")
    adapts: ClassVar[bool] = True

    def __init__(
        self, *, smooth: int = 10, alpha: float = 0.001, scale_floor: float = 0.02
    ) -> None:
        self.smooth = smooth
        self.alpha = alpha
        self.scale_floor = scale_floor
        self.window = smooth
        super().__init__()
        self.center = np.empty(0)
        self.scale = np.empty(0)

    def fit(self, history: np.ndarray) -> Self:
        rows = np.asarray(history, dtype=np.float64)
        if rows.ndim != 2 or len(rows) < 3:
            raise ValueError("baseline needs at least 3 rows of history, as rows x signals")
        self.signals = rows.shape[1]
        with np.errstate(all="ignore"):
            self.center = np.nanmedian(rows, axis=0)
            mad = np.nanmedian(np.abs(rows - self.center), axis=0) * MAD_TO_SD
        self.center = np.nan_to_num(self.center)
        floor = np.abs(self.center) * self.scale_floor
        self.scale = np.maximum(np.nan_to_num(mad), np.maximum(floor, 1e-9))
        return self

    def score(self, block: np.ndarray) -> np.ndarray:
        z = np.abs((self._check(block) - self.center) / self.scale)
        return rolling_mean(np.nan_to_num(z, nan=0.0).max(axis=1), self.smooth)

    def learn_block(self, rows: np.ndarray) -> None:
        self.center = ewma_towards(self.center, rows, self.alpha)
