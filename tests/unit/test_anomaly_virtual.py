"""Virtual sensors on a machine that starts and stops: lagged temperatures are normal, the faults of
a real machine are not."""

from __future__ import annotations

import numpy as np

from analytics.anomaly.pca import PcaT2Q
from analytics.anomaly.virtual import VirtualSensors

SIGNALS = ["motor_current", "speed", "motor_temp", "vibration", "cycle_count"]


def running_pattern(
    rows: int, rng: np.random.Generator, stops_per_hour: float, stop_s: tuple[int, int] = (20, 60)
) -> np.ndarray:
    """1 while running, 0 while stopped: short stops, and a long break now and then."""
    running = np.ones(rows)
    t = 0
    while t < rows:
        t += int(rng.exponential(3600 / stops_per_hour))
        long_break = rng.random() < 0.1
        length = int(rng.uniform(600, 1800) if long_break else rng.uniform(*stop_s))
        running[t : t + length] = 0.0
        t += length
    return running


def machine(
    rows: int, seed: int, *, stops_per_hour: float = 6.0, running: np.ndarray | None = None
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    run = running_pattern(rows, rng, stops_per_hour) if running is None else running
    current = 2 + 20 * run + rng.normal(0, 0.3, rows)
    speed = 100 * run + rng.normal(0, 0.5, rows)
    target = 30 + 15 * run
    temperature = np.empty(rows)
    level = target[0]
    for i in range(rows):  # a first-order lag of 10 min: the motor warms and cools slowly
        level += (target[i] - level) / 600
        temperature[i] = level
    temperature += rng.normal(0, 0.1, rows)
    vibration = 0.3 + 2 * run + rng.normal(0, 0.05, rows)
    cycles = 1_000_000 + np.cumsum(run)
    return np.column_stack([current, speed, temperature, vibration, cycles])


def test_starts_and_stops_with_lagged_temperatures_stay_normal() -> None:
    detector = VirtualSensors().fit(machine(20_000, seed=1))
    normal = detector.score(machine(20_000, seed=2))[3600:]  # after the filters have settled
    assert normal.max() < 2.0
    # A model without time in it sees every stop as a broken correlation.
    pca = PcaT2Q().fit(machine(20_000, seed=1))
    pca_train = pca.score(machine(20_000, seed=1)).max()
    assert pca.score(machine(20_000, seed=2))[3600:].max() > 0.5 * pca_train


def test_a_degradation_leaves_its_virtual_sensor() -> None:
    detector = VirtualSensors().fit(machine(20_000, seed=3))
    faulty = machine(20_000, seed=4)
    wear = np.clip((np.arange(20_000) - 10_000) / 3000, 0, 1)
    faulty[:, 3] += 1.5 * wear  # bearing wear: vibration rises while load and speed do not
    scores = detector.score(faulty)
    assert scores[3600:10_000].max() < 2.0
    assert np.median(scores[13_000:]) > 5.0


def test_counters_are_read_as_their_increase() -> None:
    history = machine(10_000, seed=5)
    detector = VirtualSensors().fit(history)
    assert detector.counters.tolist() == [False, False, False, False, True]
    later = machine(10_000, seed=6)
    later[:, 4] += 5_000_000  # the meter has gone on counting for weeks: not an anomaly
    assert detector.score(later)[3000:].max() < 2.0


def test_spikes_on_one_signal_are_flagged() -> None:
    detector = VirtualSensors().fit(machine(20_000, seed=7))
    faulty = machine(20_000, seed=8)
    every = np.arange(12_000, 14_000, 20)
    faulty[every, 0] += 8.0  # a loose connection: one-row jumps on the current reading
    scores = detector.score(faulty)
    assert scores[3600:11_000].max() < 2.0
    assert scores[12_500:14_000].min() > 3.0


def test_a_jam_shows_as_unusual_activity() -> None:
    detector = VirtualSensors().fit(machine(20_000, seed=9))
    rng = np.random.default_rng(10)
    run = running_pattern(20_000, rng, stops_per_hour=6.0)
    jam = running_pattern(20_000, rng, stops_per_hour=150.0, stop_s=(3, 10))  # micro-stops
    run[12_000:14_000] = np.minimum(run[12_000:14_000], jam[12_000:14_000])
    scores = detector.score(machine(20_000, seed=11, running=run))
    normal = scores[3600:11_500].max()
    assert normal < 2.0
    assert scores[13_000:14_000].max() > 1.5 * normal


def test_a_stream_in_chunks_keeps_its_memory() -> None:
    detector = VirtualSensors().fit(machine(5_000, seed=12))
    block = machine(3_000, seed=13)
    whole = detector.score(block)
    chunks = [detector.stream(block[start : start + 250]) for start in range(0, 3_000, 250)]
    np.testing.assert_allclose(np.concatenate(chunks), whole, rtol=1e-9, atol=1e-12)


def test_drift_in_normal_rows_is_followed() -> None:
    detector = VirtualSensors(alpha=0.01).fit(machine(10_000, seed=14))
    drifted = machine(10_000, seed=15)
    drifted[:, 2] += 2.0  # the temperature sensor reads high (calibration drift)
    before = detector.score(drifted)[3000:].mean()
    for start in range(0, 10_000, 10):
        scores = detector.stream(drifted[start : start + 10])
        detector.learn_streamed(scores < 1e9)
    detector.reset()
    after = detector.score(drifted)[3000:].mean()
    assert before > 2.0 and after < before / 2
