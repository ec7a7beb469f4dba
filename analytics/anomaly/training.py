"""Train a machine's anomaly model from stored history, evaluate it against ground truth when there
is some, and save it to the registry with its metadata and an evaluation plot.

The threshold is calibrated without labels: the detector is fitted on the first 75 % of the
history, and the last 25 % -- normal data the model has not seen -- is scored as a live stream
would be (learning drift); the threshold is the highest score of either part times ``margin``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from analytics.anomaly.alarms import AlarmLogic
from analytics.anomaly.base import Detector
from analytics.anomaly.detectors import DETECTORS
from analytics.anomaly.registry import ModelVersion, Registry
from analytics.anomaly.stream import score_adapting
from analytics.anomaly.threshold import Threshold
from analytics.history import History

__all__ = ["Evaluation", "evaluate", "fault_labels", "train"]

FIT_SHARE = 0.75
PRIME_NS = 3600 * 1_000_000_000  # as the live service primes a fresh stream
Progress = Callable[[str], None]


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat()


def fault_labels(
    truth: dict[str, Any], machine: str, time_ns: np.ndarray
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Per-row fault flags and the fault episodes (start, end ns) of ``machine`` in a simulator
    truth file."""
    episodes = [
        (int(f["start_ns"]), int(f["end_ns"]))
        for f in truth.get("faults", [])
        if f.get("machine") == machine
    ]
    labels = np.zeros(len(time_ns), dtype=bool)
    for start, end in episodes:
        labels |= (time_ns >= start) & (time_ns < end)
    first, last = (int(time_ns[0]), int(time_ns[-1])) if len(time_ns) else (0, 0)
    inside = [(s, e) for s, e in episodes if s <= last and e >= first]
    return labels, inside


@dataclass(frozen=True)
class Evaluation:
    scores: np.ndarray
    alarms: np.ndarray
    labels: np.ndarray
    metrics: dict[str, float | int | None]


def evaluate(
    detector: Detector,
    threshold: Threshold,
    history: History,
    truth: dict[str, Any] | None,
    *,
    before: np.ndarray | None = None,
) -> Evaluation:
    """Score ``history`` as a live stream and compare the alarms with the truth's faults.

    ``before``: rows just before ``history``, shown to the stream first (not scored), as the
    live service primes a fresh stream."""
    if before is not None and len(before):
        detector.stream(before)
    scores = score_adapting(detector, history.values, threshold.value)
    alarms = AlarmLogic(threshold.value).update(scores)
    if truth is None:
        labels = np.zeros(len(scores), dtype=bool)
        return Evaluation(scores, alarms, labels, {"alarm_share": float(alarms.mean())})
    labels, episodes = fault_labels(truth, history.machine, history.time_ns)
    tp = int(np.sum(alarms & labels))
    fp = int(np.sum(alarms & ~labels))
    fn = int(np.sum(~alarms & labels))
    tn = int(np.sum(~alarms & ~labels))
    delays = []
    for start, end in episodes:
        hit = np.flatnonzero(alarms & (history.time_ns >= start) & (history.time_ns < end))
        if len(hit):
            delays.append((int(history.time_ns[hit[0]]) - start) / 1e9)
    alert_starts = np.flatnonzero(np.diff(np.concatenate([[0], alarms.astype(np.int8)])) == 1)
    false_alerts = sum(1 for i in alert_starts if not labels[i:].any() or not labels[i])
    metrics: dict[str, float | int | None] = {
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "f1": tp / (tp + (fp + fn) / 2) if tp + fp + fn else None,
        "false_alarm_rate": fp / (fp + tn) if fp + tn else None,
        "episodes": len(episodes),
        "episodes_alerted": len(delays),
        "mean_detection_delay_s": float(np.mean(delays)) if delays else None,
        "false_alerts": int(false_alerts),
    }
    return Evaluation(scores, alarms, labels, metrics)


def _plot(history: History, evaluation: Evaluation, threshold: Threshold, path: Path) -> None:
    import matplotlib  # only training draws: imported here, not at start-up

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = (history.time_ns - history.time_ns[0]) / 3.6e12
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    values = history.values
    spread = np.where(values.std(axis=0) > 0, values.std(axis=0), 1.0)
    for column, name in enumerate(history.signals):
        top.plot(
            hours,
            (values[:, column] - values[:, column].mean()) / spread[column],
            lw=0.6,
            label=name,
        )
    top.set_ylabel("signals (standardized)")
    top.legend(loc="upper right", fontsize=6, ncol=4)
    bottom.plot(hours, evaluation.scores, lw=0.7, color="black", label="score")
    bottom.axhline(threshold.value, color="red", lw=0.8, label="threshold")
    for axis in (top, bottom):
        axis.fill_between(
            hours,
            0,
            1,
            where=evaluation.labels,
            color="orange",
            alpha=0.3,
            transform=axis.get_xaxis_transform(),
            label="fault (truth)",
        )
        axis.fill_between(
            hours,
            0,
            0.08,
            where=evaluation.alarms,
            color="red",
            alpha=0.5,
            transform=axis.get_xaxis_transform(),
            label="alarm",
        )
    bottom.set_yscale("log")
    bottom.set_xlabel(f"hours from {_iso(int(history.time_ns[0]))}")
    bottom.legend(loc="upper right", fontsize=7)
    figure.suptitle(f"{history.machine}: anomaly score")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _versions() -> dict[str, str]:
    found = {}
    for package in ("plantwire", "numpy", "scikit-learn", "skops"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "unknown"
    return found


def train(
    history: History,
    registry: Registry,
    *,
    site: str,
    detector_name: str = "virtual",
    margin: float = 1.1,
    truth: dict[str, Any] | None = None,
    evaluation_history: History | None = None,
    progress: Progress = lambda _: None,
) -> ModelVersion:
    """Fit, calibrate, evaluate, plot and save; returns the saved (unpromoted) version."""
    if len(history) < 20:
        raise ValueError(f"{history.machine}: {len(history)} rows are too few to train on")
    split = int(len(history) * FIT_SHARE)
    progress(f"fitting {detector_name} on {split:,} rows of {len(history.signals)} signals")
    detector = DETECTORS[detector_name]().fit(history.values[:split])
    fitted_state = detector.state()
    top = float(detector.score(history.values[:split]).max())
    progress(f"calibrating the threshold on the last {len(history) - split:,} rows")
    # The holdout continues the fitted rows' stream, as live scoring runs on from history.
    continuing = DETECTORS[detector_name].from_state(fitted_state)
    continuing.stream(history.values[:split])
    holdout = score_adapting(continuing, history.values[split:], np.inf)
    threshold = Threshold(max(top, float(holdout.max(initial=top))) * margin, "max", margin)
    target = evaluation_history or history
    progress(f"evaluating on {len(target):,} rows")
    before = None
    if evaluation_history is not None and len(target):
        start = int(target.time_ns[0])
        just_before = (history.time_ns < start) & (history.time_ns >= start - PRIME_NS)
        before = history.values[just_before]
    evaluation = evaluate(
        DETECTORS[detector_name].from_state(fitted_state), threshold, target, truth, before=before
    )
    data_hash = hashlib.sha256(history.time_ns.tobytes() + history.values.tobytes()).hexdigest()
    metadata = {
        "signals": history.signals,
        "training": {
            "from": _iso(int(history.time_ns[0])),
            "to": _iso(int(history.time_ns[-1])),
            "rows": len(history),
            "fitted_rows": split,
            "data_sha256": data_hash,
        },
        "evaluation": {
            "from": _iso(int(target.time_ns[0])),
            "to": _iso(int(target.time_ns[-1])),
            "on": "training range" if evaluation_history is None else "evaluation range",
            "ground_truth": truth is not None,
            "metrics": evaluation.metrics,
        },
        "params": fitted_state["params"],
        "versions": _versions(),
    }
    json.dumps(metadata)  # fail before saving if anything is not plain data
    version = registry.save(f"{site}/{history.machine}", detector, threshold, metadata)
    progress("drawing the evaluation plot")
    _plot(target, evaluation, threshold, version.folder / "evaluation.png")
    return version
