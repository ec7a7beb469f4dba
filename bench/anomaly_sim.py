"""Anomaly detection on the simulated plant: injected fault episodes alerted, false alerts per
machine per day.

    python bench/anomaly_sim.py [--detector virtual] [--days 2] [--margin 1.1]

Per machine, a model is trained the way ``plantwire train`` trains it, on a fault-free simulated
day (the demo plant with its faults removed, another seed): fitted on the first 75 %, threshold
from the last 25 % (scored as the continuation of the fitted rows). Then it scores, as the live
service does (streaming, drift learned below the threshold, alarm logic):

* ``--days`` days of the demo plant with faults (after half an hour that primes the stream): the scenario's nine listed faults plus about one
  random fault per machine per day; an episode counts as alerted when an alarm is active between
  its start and 10 min after its end (episodes that start after the run are not counted); an
  alert that overlaps no fault of its machine is a false alert;
* ``--days`` fault-free days (another seed): every alert is a false alert.

The signals are the ones the live service scores (``analytics.history.signal_names``: every
numeric tag but the OEE ones), read at 1 Hz straight from the simulated PLCs (NaN while a sensor
drops out). Goal: >= 90 % of episodes alerted, <= 1 false alert per machine per fault-free day.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analytics.anomaly.alarms import AlarmLogic
from analytics.anomaly.detectors import DETECTORS
from analytics.anomaly.stream import score_adapting
from analytics.history import find_machine, signal_names
from plantwire.config import load_site
from simulators.faults import FaultEpisode
from simulators.plant import Plant
from simulators.scenario import RandomFaults, Scenario, bundled_scenario, load_scenario
from simulators.siteconfig import scenario_site_yaml

GRACE_S = 600
FIT_SHARE = 0.75
PRIME_S = 1800  # shown to a fresh stream before scoring, as the live service primes it


@dataclass
class Run:
    times: np.ndarray  # plant seconds
    readings: list[np.ndarray]  # per machine: rows x its signals
    episodes: list[FaultEpisode]  # the ones that started during the run, after the priming


def machine_signals(scenario: Scenario, plant: Plant) -> list[list[str]]:
    """Per machine, the signals the live service scores, minus text ones (not numbers)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "site.yaml"
        path.write_text(scenario_site_yaml(scenario))
        site = load_site(path)
    names = []
    for index, machine in enumerate(plant.paths):
        values = plant.values(index)
        wanted = signal_names(find_machine(site, machine))
        names.append([n for n in wanted if not isinstance(values[n], str)])
    return names


def simulate(scenario: Scenario, seconds: int) -> tuple[Plant, list[list[str]], Run]:
    plant = Plant(scenario)
    names = machine_signals(scenario, plant)
    times: list[float] = []
    rows: list[list[list[float]]] = [[] for _ in plant.paths]
    for _ in range(seconds):
        plant.step()
        times.append(plant.now)
        for index, wanted in enumerate(names):
            values = plant.values(index)
            rows[index].append([float(values[n]) for n in wanted])
    begin, end = times[min(PRIME_S, len(times) - 1)], plant.now
    episodes = [e for e in plant.faults.episodes if e.start < end and e.end > begin]
    return plant, names, Run(np.array(times), [np.array(r) for r in rows], episodes)


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
    parser.add_argument("--detector", default="virtual", choices=sorted(DETECTORS))
    parser.add_argument("--days", type=float, default=2.0, help="faulty days, and clean days")
    parser.add_argument(
        "--margin",
        type=float,
        default=1.1,
        help="threshold = margin x highest normal score (1.1: as plantwire train sets it)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    base = load_scenario(bundled_scenario())
    seconds = round(args.days * 86_400)
    plant, _, training = simulate(variant(base, seed=101, faults=False), 86_400)
    _, _, faulty = simulate(variant(base, seed=base.seed, faults=True), PRIME_S + seconds)
    _, _, clean = simulate(variant(base, seed=202, faults=False), PRIME_S + seconds)
    simulated = time.perf_counter() - started

    alerted: Counter[str] = Counter()
    missed: Counter[str] = Counter()
    false_clean: list[int] = []
    false_faulty = 0
    kind = DETECTORS[args.detector]
    for machine, path in enumerate(plant.paths):
        history = training.readings[machine]
        split = int(len(history) * FIT_SHARE)
        state = kind().fit(history[:split]).state()
        top = float(kind.from_state(state).score(history[:split]).max())
        continuing = kind.from_state(state)
        continuing.stream(history[:split])
        holdout = score_adapting(continuing, history[split:], np.inf)
        threshold = max(top, float(holdout.max())) * args.margin
        for run, name in ((faulty, "faulty"), (clean, "clean")):
            live = kind.from_state(state)
            live.stream(run.readings[machine][:PRIME_S])
            scores = score_adapting(live, run.readings[machine][PRIME_S:], threshold)
            spans = alarm_spans(AlarmLogic(threshold).update(scores), run.times[PRIME_S:])
            mine = [e for e in run.episodes if e.machine == machine]
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
                false_clean.append(false)
        print(f"{path:<32} threshold {threshold:8.3g}  false alerts, fault-free: {false_clean[-1]}")
    total = sum(alerted.values()) + sum(missed.values())
    machines = len(plant.paths)
    print(
        f"\n{args.detector} (margin {args.margin}): {sum(alerted.values())} of {total} fault "
        f"episodes alerted ({sum(alerted.values()) / total:.0%}; goal >= 90 %)"
    )
    for fault in sorted(set(alerted) | set(missed)):
        print(f"  {fault:<20} {alerted[fault]} alerted, {missed[fault]} missed")
    print(
        f"false alerts on {args.days:g} fault-free days: {sum(false_clean)} for {machines} "
        f"machines ({sum(false_clean) / machines / args.days:.2f} per machine-day, the most on "
        f"one machine {max(false_clean) / args.days:.2f} per day; goal <= 1)"
    )
    print(f"false alerts on the faulty days (outside faults, any cause): {false_faulty}")
    print(
        f"simulated {1 + 2 * args.days:g} plant days in {simulated:.0f} s, "
        f"scored in {time.perf_counter() - started - simulated:.0f} s"
    )


if __name__ == "__main__":
    main()
