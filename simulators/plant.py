"""The simulated plant: every line and machine of a scenario, advanced one step of plant time at
a time, with the values a PLC would serve and the truth behind them."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import orjson

from plantwire.states import MachineState
from simulators.calendar import CalendarKind, LineCalendar
from simulators.faults import FaultInjector
from simulators.kinds import KINDS
from simulators.machine import U32, MachineModel
from simulators.scenario import LineSpec, MachineSpec, Scenario
from simulators.signals import SignalBank
from simulators.truth import TruthRecorder

__all__ = ["Plant", "PlantMachine"]

REPAIR_MINUTES = 25.0  # a worn bearing ends in a stop to replace it


@dataclass(frozen=True)
class PlantMachine:
    """Where a machine sits and what it is."""

    index: int
    line: LineSpec
    spec: MachineSpec

    @property
    def path(self) -> str:
        return f"{self.line.path}/{self.spec.id}"

    @property
    def area(self) -> str:
        return self.line.area


class Plant:
    """Advance with :meth:`step`; read values with :meth:`values`; the truth with :meth:`truth`."""

    def __init__(
        self, scenario: Scenario, *, seed: int | None = None, start: datetime | None = None
    ) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.zone = ZoneInfo(scenario.site.timezone)
        begin = start or scenario.start
        if begin.tzinfo is None:
            begin = begin.replace(tzinfo=self.zone)
        self.t0 = begin.timestamp()
        self.now = self.t0
        self.step_s = scenario.step_s
        self.steps = 0
        self.machines: list[PlantMachine] = []
        self.models: list[MachineModel] = []
        rng = random.Random(self.seed)
        for line in scenario.lines:
            for spec in line.machines:
                index = len(self.machines)
                self.machines.append(PlantMachine(index, line, spec))
                ideal = self._ideal_cycle_time(line, spec, 0)
                self.models.append(
                    MachineModel(
                        spec, KINDS[spec.kind], ideal, self.step_s, random.Random(rng.random())
                    )
                )
        self.paths = [m.path for m in self.machines]
        self.calendars = [
            LineCalendar(scenario.shifts, line, scenario.site.timezone) for line in scenario.lines
        ]
        self._line_of = [scenario.lines.index(m.line) for m in self.machines]
        self._line_members = [
            [m.index for m in self.machines if m.line is line] for line in scenario.lines
        ]
        self.product_index = [0] * len(scenario.lines)
        self._in_changeover = [False] * len(scenario.lines)
        kinds = [KINDS[m.spec.kind] for m in self.machines]
        self.signals = SignalBank(kinds, self.step_s, self.seed + 2, self.t0)
        self.faults = FaultInjector(scenario, kinds, self.paths, self.t0, self.seed + 1)
        self.truth_recorder = TruthRecorder(
            self.paths,
            [m.line.path for m in self.machines],
            {line.path: f"{line.path}/{line.output_machine}" for line in scenario.lines},
            scenario.small_stop_threshold_s,
            self.step_s,
        )
        self._load = np.zeros(len(self.machines))
        self._speed = np.zeros(len(self.machines))
        self._utc_offset_h = 0.0
        self._utc_offset_until = -math.inf
        self.version = 0  # bumped every step: servers re-encode what changed

    # -- configuration helpers --------------------------------------------------------------------
    @staticmethod
    def _ideal_cycle_time(line: LineSpec, spec: MachineSpec, product_index: int) -> float:
        if spec.ideal_cycle_time_s is not None:
            return spec.ideal_cycle_time_s
        if line.products:
            return line.products[product_index % len(line.products)].ideal_cycle_time_s
        return line.ideal_cycle_time_s

    def product(self, line_index: int) -> str:
        products = self.scenario.lines[line_index].products
        return products[self.product_index[line_index] % len(products)].id if products else ""

    # -- stepping ---------------------------------------------------------------------------------
    def step(self) -> None:
        """Advance the whole plant by one step of plant time."""
        t = self.now
        segments = [calendar.segment_at(t) for calendar in self.calendars]
        self._products(segments)
        jammed, repaired = self.faults.apply(t, self.signals)
        for index in repaired:
            self.models[index].breakdown(t, REPAIR_MINUTES)
        for index, model in enumerate(self.models):
            model.jammed = index in jammed
            model.advance_state(t, segments[self._line_of[index]].kind)
        for line_index, members in enumerate(self._line_members):
            self._couple(self.scenario.lines[line_index], members, t)
        truth = self.truth_recorder
        for index, model in enumerate(self.models):
            result = model.produce(t)
            truth.record(
                index, segments[self._line_of[index]], model.state, result, model.ideal_cycle_time_s
            )
            self._load[index] = model.load
            self._speed[index] = model.speed
        self.now = t + self.step_s
        self.steps += 1
        self.signals.step(self.now, self._local_hour(self.now), self._load, self._speed)
        self.version += 1

    def advance(self, seconds: float) -> None:
        """Run the plant forward by ``seconds`` of plant time."""
        for _ in range(round(seconds / self.step_s)):
            self.step()

    def _products(self, segments: list[Any]) -> None:
        """A changeover switches the line to its next product when it ends."""
        for line_index, segment in enumerate(segments):
            changing = segment.kind is CalendarKind.CHANGEOVER
            if self._in_changeover[line_index] and not changing:
                self.product_index[line_index] += 1
                line = self.scenario.lines[line_index]
                for index in self._line_members[line_index]:
                    model = self.models[index]
                    model.ideal_cycle_time_s = self._ideal_cycle_time(
                        line, self.machines[index].spec, self.product_index[line_index]
                    )
            self._in_changeover[line_index] = changing

    def _couple(self, line: LineSpec, members: list[int], t: float) -> None:
        """A machine stopped longer than the buffers last starves those after it and blocks those
        before it (series lines only; machines of a parallel cell work on their own)."""
        causes = []
        if line.layout == "series":
            causes = [
                position
                for position, index in enumerate(members)
                if self.models[index].own_state is MachineState.FAULT
                and t - self.models[index].stop_started >= line.buffer_s
            ]
        for position, index in enumerate(members):
            model = self.models[index]
            state = model.own_state
            if causes and state is MachineState.RUNNING:
                if any(cause > position for cause in causes):
                    state = MachineState.BLOCKED
                elif any(cause < position for cause in causes):
                    state = MachineState.IDLE
            model.state = state

    def _local_hour(self, t: float) -> float:
        if t >= self._utc_offset_until:
            offset = datetime.fromtimestamp(t, self.zone).utcoffset()
            self._utc_offset_h = offset.total_seconds() / 3600 if offset else 0.0
            self._utc_offset_until = t + 3600
        return (t / 3600 + self._utc_offset_h) % 24

    # -- what the PLCs serve ----------------------------------------------------------------------
    def values(self, machine: int) -> dict[str, float | int | bool | str]:
        """Every metric of a machine now, as its PLC holds it (NaN for a dropped-out sensor)."""
        model = self.models[machine]
        line_index = self._line_of[machine]
        bank = self.signals
        values: dict[str, float | int | bool | str] = {
            "state": int(model.state),
            "product_code": self.product_index[line_index]
            % max(1, len(self.scenario.lines[line_index].products)),
            "product": self.product(line_index),
            "plc_clock_ns": round(self.now * 1e9),
            "good_count": model.good_count,
            "reject_count": model.reject_count,
            "cycle_count": model.cycle_count,
            "energy_wh": int(model.energy_kwh * 1000) % U32,
            "power_w": round(model.power_kw * 1000),
            "run_seconds": model.run_seconds,
            "stop_seconds": model.stop_seconds,
            "speed_pct": round(model.speed * 100, 1),
            "energy_kwh": model.energy_kwh,
            "running": model.state is MachineState.RUNNING,
            "alarm": model.state is MachineState.FAULT,
            "guard_closed": model.state not in (MachineState.MAINTENANCE, MachineState.CHANGEOVER),
            "estop_ok": True,
        }
        first = bank.layout.first[machine]
        for offset, name in enumerate(bank.names(machine)):
            values[name] = bank.reading(first + offset)
        return values

    # -- truth ------------------------------------------------------------------------------------
    def truth(self) -> dict[str, Any]:
        header = {
            "scenario": self.scenario.scenario,
            "seed": self.seed,
            "step_s": self.step_s,
            "start": datetime.fromtimestamp(self.t0, self.zone).isoformat(),
            "start_ns": round(self.t0 * 1e9),
        }
        return self.truth_recorder.snapshot(self.now, self.faults.episodes, header)

    def write_truth(self, path: str | Path) -> None:
        """Write the truth atomically (readers never see half a file)."""
        target = Path(path)
        temporary = target.with_suffix(target.suffix + ".tmp")
        temporary.write_bytes(orjson.dumps(self.truth(), option=orjson.OPT_INDENT_2))
        temporary.replace(target)
