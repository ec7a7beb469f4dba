"""One conformance suite for every detector, on a synthetic machine whose faults are known."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.anomaly.alarms import AlarmLogic
from analytics.anomaly.base import Detector, rolling_mean
from analytics.anomaly.detectors import DETECTORS
from analytics.anomaly.threshold import Threshold

NAMES = sorted(DETECTORS)


def machine(rows: int, seed: int) -> np.ndarray:
    """Three correlated signals: load, a current that follows it, a temperature that lags."""
    rng = np.random.default_rng(seed)
    load = 0.6 + 0.2 * np.sin(np.arange(rows) / 200.0) + rng.normal(0, 0.02, rows)
    current = 10 + 8 * load + rng.normal(0, 0.1, rows)
    temperature = 40 + 5 * rolling_mean(load, 50) + rng.normal(0, 0.1, rows)
    return np.column_stack([load, current, temperature])


def with_fault(block: np.ndarray, start: int, end: int) -> np.ndarray:
    faulty = block.copy()
    faulty[start:end, 1] += 3.0  # the current no longer follows the load: a broken correlation
    return faulty


def make(name: str) -> Detector:
    return DETECTORS[name]()


@pytest.mark.parametrize("name", NAMES)
def test_scores_are_finite_one_per_row_and_higher_in_a_fault(name: str) -> None:
    detector = make(name).fit(machine(2000, seed=1))
    test = with_fault(machine(1500, seed=2), 800, 1000)
    scores = detector.score(test)
    assert scores.shape == (1500,) and np.isfinite(scores).all()
    normal = np.concatenate([scores[100:750], scores[1100:]])
    assert np.median(scores[850:1000]) > np.quantile(normal, 0.99)


@pytest.mark.parametrize("name", NAMES)
def test_streaming_one_row_at_a_time_gives_the_block_scores(name: str) -> None:
    detector = make(name).fit(machine(1000, seed=3))
    block = with_fault(machine(120, seed=4), 60, 90)
    streamed = [detector.score_one(row) for row in block]
    np.testing.assert_allclose(streamed, detector.score(block), rtol=1e-9, atol=1e-9)
    detector.reset()
    assert detector.score_one(block[0]) == pytest.approx(detector.score(block[:1])[0])


@pytest.mark.parametrize("name", NAMES)
def test_missing_values_still_give_finite_scores(name: str) -> None:
    detector = make(name).fit(machine(1000, seed=5))
    block = machine(200, seed=6)
    block[50:60, 2] = np.nan  # a sensor dropout
    assert np.isfinite(detector.score(block)).all()


@pytest.mark.parametrize("name", NAMES)
def test_misuse_is_refused_clearly(name: str) -> None:
    with pytest.raises(RuntimeError, match="fit before scoring"):
        make(name).score(machine(10, seed=7))
    detector = make(name).fit(machine(500, seed=7))
    with pytest.raises(ValueError, match="fitted on 3 signals, given 2"):
        detector.score(machine(10, seed=8)[:, :2])
    with pytest.raises(ValueError, match="at least"):
        make(name).fit(machine(2, seed=9))


@pytest.mark.parametrize("name", NAMES)
def test_fitting_is_deterministic(name: str) -> None:
    history, block = machine(800, seed=10), with_fault(machine(300, seed=11), 100, 200)
    first = make(name).fit(history).score(block)
    np.testing.assert_array_equal(first, make(name).fit(history).score(block))


def test_one_fault_episode_is_one_alert() -> None:
    detector = make("pca").fit(machine(2000, seed=12))
    threshold = Threshold.calibrate(detector.score(machine(2000, seed=12)), margin=1.2)
    test = with_fault(machine(3000, seed=13), 1000, 1400)
    scores = detector.score(test)
    logic = AlarmLogic(threshold.value, raise_after=5, clear_after=30)
    episodes = AlarmLogic.episodes(logic.update(scores), scores)
    assert len(episodes) == 1
    assert 1000 <= episodes[0].start < 1030 and 1400 <= episodes[0].end < 1460


def test_the_baseline_follows_slow_drift_when_taught() -> None:
    detector = make("baseline").fit(machine(1000, seed=14))
    drifted = machine(1, seed=15)[0] + np.array([0.0, 0.0, 8.0])  # the temperature crept up
    before = detector.score_one(drifted)
    for _ in range(5000):
        detector.learn_one(drifted)
    detector.reset()
    assert detector.score_one(drifted) < before / 3
