"""Live anomaly scoring: each machine's promoted model scores the telemetry that arrived since the
last round; scores go to the store (``anomaly``), alarm episodes become events
(``anomaly_events``) and alerts (MQTT: a retained state and one event per change).

A promotion in the registry is picked up at the next round (no restart): the machine's stream
starts afresh with the new model. A fresh stream is first shown the ``prime_s`` before the rows
it scores (not scored), so detectors with a long memory (lagged temperatures) start settled.
Rows are scored in time order once each; a round that fails to read or write is retried from the
same place the next time.

Rows are scored only once every signal has arrived up to them. Poll groups arrive at different
times, and after a link outage an edge's backlog comes minutes late: a row scored before then
would carry stale (filled-forward) values for the late signals, which looks like a frozen sensor,
and the late rows would never be scored. A signal that stays silent holds scoring back for at
most ``max_lateness_s``; after that its rows are scored as they are (the silence is news).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from analytics.anomaly.alarms import AlarmLogic
from analytics.anomaly.base import Detector
from analytics.anomaly.registry import ModelFileError, Registry
from analytics.anomaly.stream import score_adapting
from analytics.anomaly.threshold import Threshold
from analytics.history import History, HistoryError, load_history
from analytics.telemetry import MachineRef, line_machines
from plantwire.config.models import SiteConfig
from plantwire.lineprotocol import Point
from plantwire.logs import LogOnce
from plantwire.model import AssetPath
from plantwire.store.base import Store
from plantwire.topics import alert_topic

__all__ = ["ANOMALY_EVENTS", "ANOMALY_MEASUREMENT", "Alert", "AnomalyScoring"]

log = logging.getLogger("plantwire.analytics.anomaly")
ANOMALY_MEASUREMENT = "anomaly"
ANOMALY_EVENTS = "anomaly_events"
NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Alert:
    """An MQTT message to publish: the retained state, or an event."""

    topic: str
    payload: bytes
    retain: bool


@dataclass
class _Machine:
    ref: MachineRef
    version: int
    signals: list[str]
    detector: Detector
    threshold: Threshold
    logic: AlarmLogic
    scored_until: int  # ns: rows at or before this time are scored
    primed: bool = False
    episode_start: int | None = None
    episode_peak: float = 0.0
    pending: list[Point] = field(default_factory=list)


class AnomalyScoring:
    def __init__(
        self,
        site: SiteConfig,
        store: Store,
        registry_path: Path,
        *,
        lookback_s: float = 600.0,
        prime_s: float = 3600.0,
        max_lateness_s: float = 600.0,
    ) -> None:
        self.site = site
        self.store = store
        self.registry = Registry(registry_path)
        self.lookback_ns = round(lookback_s * NS)
        self.prime_ns = round(prime_s * NS)
        self.max_lateness_ns = round(max_lateness_s * NS)
        self.machines: dict[str, _Machine] = {}
        self.episodes = 0
        self._log_once = LogOnce(log)

    def _model_path(self, ref: MachineRef) -> str:
        return f"{ref.site}/{ref.path}"

    def _current(self, ref: MachineRef, now_ns: int) -> _Machine | None:
        """The machine's scoring state with its promoted model (reloaded on a promotion)."""
        promoted = self.registry.promoted(self._model_path(ref))
        known = self.machines.get(ref.path)
        if promoted is None:
            self.machines.pop(ref.path, None)
            return None
        if known is not None and known.version == promoted.version:
            return known
        detector, threshold, version = self.registry.load(self._model_path(ref))
        log.info("%s: scoring with model v%d (%s)", ref.path, version.version, detector.name)
        started = known.scored_until if known is not None else now_ns - self.lookback_ns
        state = _Machine(
            ref,
            version.version,
            list(version.metadata["signals"]),
            detector,
            threshold,
            AlarmLogic(threshold.value),
            started,
        )
        self.machines[ref.path] = state
        return state

    def _loaded(self, ref: MachineRef, now_ns: int) -> _Machine | None:
        problem = None
        try:
            machine = self._current(ref, now_ns)
        except ModelFileError as exc:
            machine, problem = None, str(exc)
        if problem is not None:
            self._log_once.problem(
                ref.path,
                "%s: promoted model not loaded: %s",
                ref.path,
                problem,
                level=logging.ERROR,
            )
        elif machine is not None:
            self._log_once.recovered(ref.path, "%s: promoted model loaded", ref.path)
        return machine

    def run_once(self, now_ns: int) -> tuple[int, list[Alert]]:
        """Score every machine with a promoted model; returns (points written, alerts)."""
        alerts: list[Alert] = []
        written = 0
        for refs in line_machines(self.site).values():
            for ref in refs:
                machine = self._loaded(ref, now_ns)
                if machine is None:
                    continue
                alerts += self._score(machine, now_ns)
                if machine.pending:
                    written += self.store.write_points(machine.pending)
                    machine.pending = []
        return written, alerts

    def _prime(self, machine: _Machine) -> None:
        """Show a fresh stream the history just before the rows it will score."""
        machine.primed = True
        try:
            history = load_history(
                self.site,
                self.store,
                machine.ref.path,
                start=machine.scored_until + 1 - self.prime_ns,
                end=machine.scored_until + 1,
                signals=machine.signals,
            )
        except HistoryError:
            return  # nothing before: the stream starts at its first row
        if history.signals == machine.signals:
            machine.detector.stream(history.values)

    def _score(self, machine: _Machine, now_ns: int) -> list[Alert]:
        if not machine.primed:
            self._prime(machine)
        try:
            history = load_history(
                self.site,
                self.store,
                machine.ref.path,
                start=machine.scored_until + 1,
                end=now_ns,
                signals=machine.signals,
            )
        except HistoryError:
            return []  # nothing new yet
        if history.signals != machine.signals:
            log.warning("%s: signals missing from new data, waiting", machine.ref.path)
            return []
        history = self._arrived(history, now_ns)
        if not len(history):
            return []  # some signal has not caught up yet
        scores = score_adapting(machine.detector, history.values, machine.threshold.value)
        alarms = machine.logic.update(scores)
        tags = {**machine.ref.tags, "model": f"v{machine.version}"}
        threshold = machine.threshold.value
        machine.pending += [
            Point(
                ANOMALY_MEASUREMENT,
                tags,
                {"score": float(s), "threshold": threshold, "alarm": bool(a)},
                int(t),
            )
            for t, s, a in zip(
                history.time_ns.tolist(), scores.tolist(), alarms.tolist(), strict=True
            )
        ]
        machine.scored_until = int(history.time_ns[-1])
        return self._episodes(machine, history.time_ns, scores, alarms)

    def _arrived(self, history: History, now_ns: int) -> History:
        """The rows up to the watermark: the earliest of the signals' last arrivals, but no
        further back than ``max_lateness_s`` before now."""
        if history.last_seen_ns is None:
            return history
        watermark = max(int(history.last_seen_ns.min()), now_ns - self.max_lateness_ns)
        keep = history.time_ns <= watermark
        if keep.all():
            return history
        return History(
            history.machine,
            history.signals,
            history.time_ns[keep],
            history.values[keep],
            history.last_seen_ns,
        )

    def _episodes(
        self, machine: _Machine, times: np.ndarray, scores: np.ndarray, alarms: np.ndarray
    ) -> list[Alert]:
        alerts = []
        previous = machine.episode_start is not None
        for t, score, alarm in zip(times.tolist(), scores.tolist(), alarms.tolist(), strict=True):
            if alarm:
                machine.episode_peak = max(machine.episode_peak, score)
            if alarm and not previous:
                machine.episode_start, machine.episode_peak = int(t), float(score)
                self.episodes += 1
                alerts += self._alert(machine, "raised", int(t), float(score))
            elif previous and not alarm:
                alerts += self._alert(machine, "cleared", int(t), machine.episode_peak)
                machine.episode_start = None
            previous = bool(alarm)
        return alerts

    def _alert(self, machine: _Machine, kind: str, t_ns: int, score: float) -> list[Alert]:
        ref = machine.ref
        text = (
            f"{ref.path}: anomaly {kind} (score {score:.3g}, threshold "
            f"{machine.threshold.value:.3g}, model v{machine.version})"
        )
        log.warning(text)
        fields: dict[str, Any] = {
            "event": kind,
            "score": score,
            "threshold": machine.threshold.value,
            "text": text,
            "started_ns": machine.episode_start or t_ns,
        }
        machine.pending.append(Point(ANOMALY_EVENTS, ref.tags, fields, t_ns))
        asset = AssetPath(ref.site, ref.area.id, ref.line.id, ref.machine.id)
        topic = alert_topic(asset)
        state = {
            "active": kind == "raised",
            "since_ns": machine.episode_start or t_ns,
            "machine": ref.path,
            "model_version": machine.version,
            "threshold": machine.threshold.value,
            "score": score,
        }
        event = {**fields, "machine": ref.path, "time_ns": t_ns, "model_version": machine.version}
        return [
            Alert(topic, orjson.dumps(state), True),
            Alert(f"{topic}/events", orjson.dumps(event), False),
        ]
