"""Thresholds calibrated without labels, from the scores a detector gives its own (normal)
training history: a high quantile, or the training maximum, times a safety margin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["Threshold"]


@dataclass(frozen=True, slots=True)
class Threshold:
    """``value`` is the alarm level; ``method`` and ``margin`` say how it was found.

    >>> Threshold.calibrate(np.arange(101.0), method="quantile", q=0.99, margin=1.0).value
    99.0
    >>> Threshold.calibrate(np.arange(101.0), method="max", margin=1.2).value
    120.0
    """

    value: float
    method: str
    margin: float

    @classmethod
    def calibrate(
        cls,
        training_scores: np.ndarray,
        *,
        method: Literal["max", "quantile"] = "max",
        q: float = 0.995,
        margin: float = 1.2,
    ) -> Threshold:
        scores = np.asarray(training_scores, dtype=np.float64)
        scores = scores[np.isfinite(scores)]
        if len(scores) == 0:
            raise ValueError("no finite training scores to calibrate a threshold on")
        base = float(scores.max()) if method == "max" else float(np.quantile(scores, q))
        return cls(base * margin, method, margin)
