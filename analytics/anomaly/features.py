"""Features that respect time, for detectors that look at one row at a time: per signal the value,
its trailing mean and standard deviation over ``window`` rows and its change over ``lag`` rows.
Everything is trailing (no look-ahead), so a streamed row gets the features a block would give it.
"""

from __future__ import annotations

import numpy as np

from analytics.anomaly.base import fill_forward

__all__ = ["windowed_features"]


def _trailing(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Trailing mean and standard deviation per column (fewer rows at the start)."""
    n = len(values)
    sums = np.vstack([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0)])
    squares = np.vstack([np.zeros((1, values.shape[1])), np.cumsum(values * values, axis=0)])
    end = np.arange(1, n + 1)
    start = np.maximum(0, end - window)
    count = (end - start)[:, None]
    mean = (sums[end] - sums[start]) / count
    var = np.maximum((squares[end] - squares[start]) / count - mean * mean, 0.0)
    return mean, np.sqrt(var)


def windowed_features(block: np.ndarray, *, window: int, lag: int) -> np.ndarray:
    """Rows x (4 x signals): value, trailing mean, trailing sd, change over ``lag`` rows.

    Missing values are carried forward (the first rows' from the column's first value).

    >>> f = windowed_features(np.array([[1.0], [2.0], [3.0], [5.0]]), window=2, lag=1)
    >>> f[:, 0].tolist(), f[:, 1].tolist(), f[:, 3].tolist()
    ([1.0, 2.0, 3.0, 5.0], [1.0, 1.5, 2.5, 4.0], [0.0, 1.0, 1.0, 2.0])
    """
    # Carried forward; the leading gap of a column takes its first value (carried backward), and
    # a column that is all missing reads 0.
    rows = fill_forward(np.asarray(block, dtype=np.float64))
    rows = np.nan_to_num(fill_forward(rows[::-1])[::-1], nan=0.0)
    mean, sd = _trailing(rows, window)
    change = np.zeros_like(rows)
    if len(rows) > lag:
        change[lag:] = rows[lag:] - rows[:-lag]
    change[1:lag] = rows[1:lag] - rows[0]
    return np.hstack([rows, mean, sd, change])
