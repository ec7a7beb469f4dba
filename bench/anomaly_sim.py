"""Anomaly detection on the simulated plant: injected fault episodes alerted, false alerts per
machine per day.

    python bench/anomaly_sim.py [--detector pca] [--hours 24]

Per machine, a model is trained the way ``plantwire train`` trains it, on a fault-free simulated
day (the demo plant with its faults removed, another seed): fitted on the first 75 %, threshold
from the last 25 %. Then it scores, as the live service does (streaming, drift learned below the
threshold, alarm logic):

* the demo day with faults: the scenario's nine listed faults plus one random fault per machine;
  an episode counts as alerted when an alarm is active between its start and 10 min after its end;
  an alert that overlaps no fault of its machine is a false alert;
* a second fault-free day (a third seed): every alert is a false alert.

Signals are read at 1 Hz straight from the model, as the edge would read them (NaN while a sensor
drops out). Goal: >= 90 % of episodes alerted, <= 1 false alert per machine per fault-free day.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass

import numpy as np

from analytics.anomaly.alarms import AlarmLogic
from analytics.anomaly.detectors import DETECTORS
from analytics.anomaly.stream import score_adapting
from analytics.anomaly.threshold import Threshold
from simulators.faults import FaultEpisode
from simulators.plant import Plant
from simulators.scenario import RandomFaults, Scenario, bundled_scenario, load_scenario

GRACE_S = 600


@dataclass
class Day:
    times: np.ndarray  # plant seconds
    readings: np.ndarray  # rows x every signal of every machine
    episodes: list[FaultEpisode]


def simulate(scenario: Scenario, seconds: int) -> tuple[Plant, Day]:
    plant = Plant(scenario)
    bank = plant.signals
    times, rows = [], []
    for _ in range(seconds):
        plant.step()
        times.append(plant.now)
        rows.append(np.where(bank.dropout, np.nan, bank.values))
    return plant, Day(np.array(times), np.vstack(rows), list(plant.faults.episodes))


def variant(base: Scenario, *, seed: int, faults: bool) -> Scenario:
    if faults:
        return base.model_copy(
            update={"random_faults": RandomFaults(per_machine_per_day=1.0, min_duration=1200)}
        )
    return base.model_copy(update={"seed": seed, "faults": [], "random_faults": RandomFaults()})


def alarm_spans(alarms: np.ndarray, times: np.ndarray) -> list[tuple[float, float]]:
    edges = np.diff(np.concatenate([[0], alarms.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(float(times[s]), float(times[e - 1])) for s, e in zip(starts, ends, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--detector", default="pca", choices=sorted(DETECTORS))
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument(
        "--margin", type=float, default=1.1, help="threshold = margin x highest normal score"
    )
    args = parser.parse_args()
    seconds = round(args.hours * 3600)
    base = load_scenario(bundled_scenario())
    plant, training = simulate(variant(base, seed=101, faults=False), seconds)
    _, faulty = simulate(variant(base, seed=base.seed, faults=True), seconds)
    _, clean = simulate(variant(base, seed=202, faults=False), seconds)
    bank = plant.signals

    alerted: Counter[str] = Counter()
    missed: Counter[str] = Counter()
    false_faulty = false_clean = 0
    for machine, path in enumerate(plant.paths):
        columns = bank.machine_slice(machine)
        history = training.readings[:, columns]
        split = int(len(history) * 0.75)
        detector = DETECTORS[args.detector]().fit(history[:split])
        state = detector.state()
        top = float(detector.score(history[:split]).max())
        holdout = score_adapting(type(detector).from_state(state), history[split:], np.inf)
        threshold = Threshold(max(top, float(holdout.max())) * args.margin, "max", args.margin)
        for day, name in ((faulty, "faulty"), (clean, "clean")):
            scorer = type(detector).from_state(state)
            scores = score_adapting(scorer, day.readings[:, columns], threshold.value)
            alarms = AlarmLogic(threshold.value).update(scores)
            spans = alarm_spans(alarms, day.times)
            mine = [e for e in day.episodes if e.machine == machine]
            for episode in mine:
                hit = any(s <= episode.end + GRACE_S and e >= episode.start for s, e in spans)
                (alerted if hit else missed)[episode.kind] += 1
            false = sum(
                1
                for s, e in spans
                if not any(s <= ep.end + GRACE_S and e >= ep.start for ep in mine)
            )
            if name == "faulty":
                false_faulty += false
            else:
                false_clean += false
        print(f"{path:<32} threshold {threshold.value:8.3g}")
    total = sum(alerted.values()) + sum(missed.values())
    days = args.hours / 24
    machines = len(plant.paths)
    print(
        f"\n{args.detector}: {sum(alerted.values())} of {total} fault episodes alerted "
        f"({sum(alerted.values()) / total:.0%}; goal >= 90 %)"
    )
    for kind in sorted(set(alerted) | set(missed)):
        print(f"  {kind:<20} {alerted[kind]} alerted, {missed[kind]} missed")
    print(
        f"false alerts on the fault-free day: {false_clean} for {machines} machines "
        f"({false_clean / machines / days:.2f} per machine-day; goal <= 1)"
    )
    print(f"false alerts on the faulty day (outside faults): {false_faulty}")


if __name__ == "__main__":
    main()
