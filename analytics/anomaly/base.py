"""The one interface every detector implements.

A detector is fitted on a block of history (rows = time, columns = one machine's signals) and
scores blocks: one number per row, higher = more anomalous. ``score`` is the fast path (whole
numpy blocks, read as a stream of its own); ``stream`` scores the next rows of a live stream,
continuing from the rows streamed since ``reset`` (``score_one`` is ``stream`` for one row), and
gives the same numbers ``score`` gives those rows in one block; ``learn_streamed`` (and
``learn_block``) let a detector follow slow, normal change (drift) in a stream, where it supports
that.

Rows may hold NaN (a dropout): detectors must still return a finite score for every row.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Self

import numpy as np

__all__ = ["Detector", "as_block", "ewma_towards", "fill_forward", "rolling_mean"]


def as_block(rows: np.ndarray) -> np.ndarray:
    """Rows as a 2-D float64 array (one row per time, one column per signal)."""
    block = np.asarray(rows, dtype=np.float64)
    if block.ndim == 1:
        block = block[:, None]
    if block.ndim != 2:
        raise ValueError(f"expected rows x signals, got an array of shape {block.shape}")
    return block


def fill_forward(values: np.ndarray) -> np.ndarray:
    """Each missing value (NaN) replaced by the last value before it in its column; leading
    missing values stay missing.

    >>> fill_forward(np.array([[np.nan], [1.0], [np.nan], [2.0]])).ravel().tolist()
    [nan, 1.0, 1.0, 2.0]
    """
    filled = np.array(values, dtype=np.float64)
    for column in range(filled.shape[1]):
        series = filled[:, column]
        present = ~np.isnan(series)
        index = np.where(present, np.arange(len(series)), 0)
        np.maximum.accumulate(index, out=index)
        filled[:, column] = np.where(present[index], series[index], np.nan)
    return filled


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` rows (fewer at the start): no look-ahead.

    >>> rolling_mean(np.array([1.0, 3.0, 5.0, 7.0]), 2).tolist()
    [1.0, 2.0, 4.0, 6.0]
    """
    if window <= 1:
        return np.asarray(values, dtype=np.float64)
    sums = np.concatenate(([0.0], np.cumsum(np.asarray(values, dtype=np.float64))))
    index = np.arange(1, len(values) + 1)
    start = np.maximum(0, index - window)
    return np.asarray((sums[index] - sums[start]) / (index - start))


def ewma_towards(center: np.ndarray, rows: np.ndarray, alpha: float) -> np.ndarray:
    """``center`` after moving ``alpha`` of the way towards each row in turn (NaN ignored): the
    exponentially weighted update, applied to a block in one step.

    >>> ewma_towards(np.array([0.0]), np.array([[1.0], [1.0]]), 0.5).tolist()
    [0.75]
    """
    values = np.asarray(rows, dtype=np.float64)
    if len(values) == 0 or alpha <= 0:
        return center
    filled = np.where(np.isnan(values), center, values)
    n = len(filled)
    weights = alpha * (1.0 - alpha) ** np.arange(n - 1, -1, -1)
    return np.asarray(center * (1.0 - alpha) ** n + weights @ filled)


class Detector(ABC):
    """Fit on history, score blocks or single rows. See the module docstring."""

    name: ClassVar[str]
    #: rows of context a score uses (1 = the row alone); score_one keeps this many rows
    window: int = 1
    #: whether learn_block changes the model (follows drift in a stream)
    adapts: ClassVar[bool] = False
    #: constructor keywords, saved with a model so it is rebuilt the same
    PARAMS: ClassVar[tuple[str, ...]] = ()
    #: attributes fit() sets, saved with a model (numpy arrays, numbers, scikit-learn models)
    FITTED: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        # The rows before the next streamed block that its first scores still look back on.
        self._recent: np.ndarray | None = None
        self._streamed = np.empty((0, 0))
        self.signals: int | None = None

    @abstractmethod
    def fit(self, history: np.ndarray) -> Self:
        """Learn what normal looks like from ``history`` (rows x signals)."""

    @abstractmethod
    def score(self, block: np.ndarray) -> np.ndarray:
        """One score per row of ``block``, the block read as a stream from its first row."""

    def _check(self, block: np.ndarray) -> np.ndarray:
        rows = as_block(block)
        if self.signals is None:
            raise RuntimeError(f"{self.name}: fit before scoring")
        if rows.shape[1] != self.signals:
            raise ValueError(
                f"{self.name}: fitted on {self.signals} signals, given {rows.shape[1]}"
            )
        return rows

    # -- persistence: plain data, so a model file holds no code (see analytics.anomaly.registry)
    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild the fitted detector, as plain data."""
        if self.signals is None:
            raise RuntimeError(f"{self.name}: fit before saving")
        return {
            "detector": self.name,
            "params": {key: getattr(self, key) for key in self.PARAMS},
            "signals": self.signals,
            "fitted": {key: getattr(self, key) for key in self.FITTED},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """The detector ``state()`` described (the class must match ``state["detector"]``)."""
        if state.get("detector") != cls.name:
            raise ValueError(f"a {state.get('detector')!r} model is not a {cls.name!r} model")
        detector = cls(**state["params"])
        detector.signals = int(state["signals"])
        for key in cls.FITTED:
            setattr(detector, key, state["fitted"][key])
        return detector

    def reset(self) -> None:
        """Forget the stream's recent rows (a new stream starts)."""
        self._recent = None

    def stream(self, block: np.ndarray) -> np.ndarray:
        """Scores of the next rows of a live stream, continuing from the rows streamed before.

        Windowed scores re-score the last ``window - 1`` rows as context; the window is short, so
        this stays cheap, and it keeps one code path for the numbers. Detectors that carry a
        filter state instead (long memories) override this.
        """
        rows = self._check(block)
        context = self._recent
        joined = rows if context is None else np.concatenate([context, rows])
        scores = self.score(joined)[len(joined) - len(rows) :]
        keep = self.window - 1
        self._recent = joined[max(0, len(joined) - keep) :] if keep > 0 else None
        self._streamed = rows
        return scores

    def score_one(self, row: np.ndarray) -> float:
        """Score the next row of a stream (see :meth:`stream`)."""
        return float(self.stream(np.asarray(row, dtype=np.float64).reshape(1, -1))[0])

    def learn_streamed(self, normal: np.ndarray) -> None:
        """Learn the rows of the last :meth:`stream` block that ``normal`` marks (the ones scored
        below the threshold) as normal drift."""
        self.learn_block(self._streamed[np.asarray(normal, dtype=bool)])

    def learn_one(self, row: np.ndarray) -> None:
        """Let a normal row update the model; detectors that follow drift override
        :meth:`learn_block`, the others keep their fitted model."""
        self.learn_block(np.asarray(row, dtype=np.float64).reshape(1, -1))

    def learn_block(self, rows: np.ndarray) -> None:  # noqa: B027 - optional: most models are fixed
        """Let normal rows (in time order) update the model."""
