"""Scoring a stream that teaches the detector as it goes: each chunk of rows is scored, then the
rows that scored below the threshold are learned as normal (drift), the rest are not -- so a
fault is never absorbed into the model while it is in progress."""

from __future__ import annotations

import numpy as np

from analytics.anomaly.base import Detector, as_block

__all__ = ["score_adapting"]


def score_adapting(
    detector: Detector, block: np.ndarray, threshold: float, *, chunk: int = 10
) -> np.ndarray:
    """Scores of ``block``'s rows, learning rows below ``threshold`` after each ``chunk`` rows.

    The block continues the detector's stream (see :meth:`Detector.stream`): scores run on across
    chunks and across calls, until the detector is ``reset``.
    """
    rows = as_block(block)
    scores = np.empty(len(rows))
    for start in range(0, len(rows), chunk):
        chunk_scores = detector.stream(rows[start : start + chunk])
        scores[start : start + chunk] = chunk_scores
        detector.learn_streamed(chunk_scores < threshold)
    return scores
