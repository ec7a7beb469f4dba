"""The simulator's ground truth: fault episodes, and per machine, line and shift the planned time,
run time, counts and energy, computed with the same rules the OEE engine applies to telemetry.

Run time is planned production time minus the stops that lasted at least the small-stop threshold
(a stop is a maximal stretch of non-running planned time; shorter ones stay in run time and show
as performance loss). A stop across a shift boundary is classified by its whole length and
counted in each shift for the part inside it. Every stop is kept, so the figures can be
recomputed for another threshold.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from plantwire.states import MachineState
from simulators.calendar import CalendarKind, Segment
from simulators.faults import FaultEpisode
from simulators.machine import StepResult

__all__ = ["ShiftRecord", "TruthRecorder"]

_PLANNED_PRODUCTION = (CalendarKind.PRODUCTION, CalendarKind.CHANGEOVER)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def _ns(t: float) -> int:
    return round(t * 1e9)


@dataclass
class ShiftRecord:
    machine: str
    line: str
    shift: str
    day: str
    start: float
    end: float
    planned_s: float = 0.0
    running_s: float = 0.0
    total: int = 0
    good: int = 0
    ideal_time_s: float = 0.0
    energy_kwh: float = 0.0
    stops: list[tuple[float, float]] = field(
        default_factory=list
    )  # (whole stop, part in this shift)

    def long_stop_s(
        self, threshold_s: float, open_stop: tuple[float, float] | None = None
    ) -> float:
        stops = [*self.stops, open_stop] if open_stop else self.stops
        return sum(piece for whole, piece in stops if whole >= threshold_s)

    def figures(
        self, threshold_s: float, open_stop: tuple[float, float] | None = None
    ) -> dict[str, Any]:
        run_s = self.planned_s - self.long_stop_s(threshold_s, open_stop)
        availability = run_s / self.planned_s if self.planned_s else None
        performance = self.ideal_time_s / run_s if run_s else None
        quality = self.good / self.total if self.total else None
        oee = None
        if availability is not None and performance is not None and quality is not None:
            oee = availability * performance * quality
        stops = [*self.stops, open_stop] if open_stop else list(self.stops)
        return {
            "machine": self.machine,
            "line": self.line,
            "shift": self.shift,
            "day": self.day,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "start_ns": _ns(self.start),
            "end_ns": _ns(self.end),
            "planned_s": self.planned_s,
            "run_s": run_s,
            "long_stop_s": self.planned_s - run_s,
            "small_stop_s": self.planned_s - self.running_s - (self.planned_s - run_s),
            "total": self.total,
            "good": self.good,
            "rejects": self.total - self.good,
            "ideal_time_s": self.ideal_time_s,
            "energy_kwh": self.energy_kwh,
            "availability": availability,
            "performance": performance,
            "quality": quality,
            "oee": oee,
            "stops": [[whole, piece] for whole, piece in stops],
        }


class TruthRecorder:
    """Accumulates the truth step by step, as the plant runs."""

    def __init__(
        self,
        machines: list[str],
        lines: list[str],
        outputs: dict[str, str],
        threshold_s: float,
        step_s: float,
    ) -> None:
        self.machines = machines
        self.line_of = lines
        self.outputs = outputs  # line path -> output machine path
        self.threshold_s = threshold_s
        self.step_s = step_s
        self.records: dict[tuple[int, str], ShiftRecord] = {}
        self._open: dict[int, tuple[float, dict[str, float]]] = {}  # machine -> (length, pieces)

    def _record(self, machine: int, segment: Segment) -> ShiftRecord:
        slot = segment.slot
        assert slot is not None
        key = (machine, slot.key)
        record = self.records.get(key)
        if record is None:
            record = self.records[key] = ShiftRecord(
                self.machines[machine],
                self.line_of[machine],
                slot.name,
                slot.day.isoformat(),
                slot.start,
                slot.end,
            )
        return record

    def _close(self, machine: int) -> None:
        stop = self._open.pop(machine, None)
        if stop is None:
            return
        length, pieces = stop
        for slot_key, piece in pieces.items():
            self.records[(machine, slot_key)].stops.append((length, piece))

    def record(
        self,
        machine: int,
        segment: Segment,
        state: MachineState,
        result: StepResult,
        ideal_cycle_time_s: float,
    ) -> None:
        dt = self.step_s
        if segment.slot is None:
            self._close(machine)
            return
        record = self._record(machine, segment)
        record.energy_kwh += result.energy_kwh
        if segment.kind in _PLANNED_PRODUCTION:
            record.planned_s += dt
            if state is MachineState.RUNNING:
                self._close(machine)
                record.running_s += dt
            else:
                length, pieces = self._open.get(machine, (0.0, {}))
                pieces[segment.slot.key] = pieces.get(segment.slot.key, 0.0) + dt
                self._open[machine] = (length + dt, pieces)
        else:
            self._close(machine)
        if result.parts:
            record.total += result.parts
            record.good += result.parts - result.rejects
            record.ideal_time_s += result.parts * ideal_cycle_time_s

    def snapshot(
        self, now: float, episodes: list[FaultEpisode], header: dict[str, Any]
    ) -> dict[str, Any]:
        """The truth so far, as JSON-ready data; stops still open count as ending now."""
        machine_rows = []
        by_line_shift: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
        for (machine, slot_key), record in sorted(
            self.records.items(), key=lambda kv: (kv[1].start, kv[0][0])
        ):
            open_stop = None
            if machine in self._open and slot_key in self._open[machine][1]:
                open_stop = (self._open[machine][0], self._open[machine][1][slot_key])
            row = record.figures(self.threshold_s, open_stop)
            row["complete"] = now >= record.end
            machine_rows.append(row)
            by_line_shift[(record.line, record.day, record.shift)].append(row)
        line_rows = []
        for (line, _, _), rows in by_line_shift.items():
            output = next((r for r in rows if r["machine"] == self.outputs[line]), None)
            if output is None:
                continue
            line_row = {key: value for key, value in output.items() if key != "machine"}
            line_row["output_machine"] = output["machine"]
            line_row["energy_kwh"] = sum(r["energy_kwh"] for r in rows)
            line_row["energy_per_good_part_kwh"] = (
                line_row["energy_kwh"] / output["good"] if output["good"] else None
            )
            line_rows.append(line_row)
        faults = [
            {
                "machine": e.path,
                "kind": e.kind,
                "signals": list(e.signals),
                "start": _iso(e.start),
                "end": _iso(e.end),
                "start_ns": _ns(e.start),
                "end_ns": _ns(e.end),
                "ongoing": e.end > now,
            }
            for e in sorted(episodes, key=lambda e: (e.start, e.path))
            if e.start <= now
        ]
        return {
            **header,
            "now": _iso(now),
            "now_ns": _ns(now),
            "small_stop_threshold_s": self.threshold_s,
            "faults": faults,
            "lines": line_rows,
            "machines": machine_rows,
        }
