"""Scenario files: the plant the simulator runs, in YAML.

A scenario names the site and its shift calendar (the same blocks as a site file), the lines with
their machines and how often each stops, the planned events (changeovers, maintenance), and the
faults to inject. The same scenario and seed always give the same plant, sample for sample.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from plantwire.config.models import Product, Shift, SiteInfo, Weekday
from plantwire.durations import parse_duration
from plantwire.names import check_segment
from simulators.kinds import KINDS

__all__ = [
    "FAULT_KINDS",
    "FaultSpec",
    "LineEvent",
    "LineSpec",
    "MachineSpec",
    "RandomFaults",
    "Scenario",
    "load_scenario",
]

FAULT_KINDS = (
    "bearing_wear",
    "heater_degradation",
    "clogging",
    "stuck_sensor",
    "spikes",
    "dropout",
    "jam",
)
# Faults that act on a kind's own signals, as listed in simulators.kinds.
DEGRADATION_FAULTS = ("bearing_wear", "heater_degradation", "clogging")

Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _kind(name: str) -> str:
    if name not in KINDS:
        raise ValueError(f"unknown machine kind {name!r} (known: {', '.join(sorted(KINDS))})")
    return name


class MachineSpec(_Block):
    """A simulated machine; rates left out come from its kind."""

    id: Annotated[str, AfterValidator(lambda v: check_segment(v, "machine id"))]
    kind: Annotated[str, AfterValidator(_kind)]
    protocol: Literal["modbus", "opcua"] = "modbus"  # how the generated site file reads it
    ideal_cycle_time_s: Annotated[float, Field(gt=0)] | None = None  # default: the line's
    counter_start: Annotated[int, Field(ge=0, lt=2**32)] = 0
    micro_stops_per_hour: Annotated[float, Field(ge=0)] | None = None
    breakdowns_per_shift: Annotated[float, Field(ge=0)] | None = None
    reduced_speed_per_hour: Annotated[float, Field(ge=0)] | None = None
    reject_rate: Annotated[float, Field(ge=0, le=1)] | None = None


class LineEvent(_Block):
    """A planned event inside a shift: ``after`` is the offset from the shift's start."""

    shift: str
    after: Duration
    minutes: Annotated[float, Field(gt=0, le=480)]
    days: list[Weekday] | None = None  # default: every day the shift runs


class LineSpec(_Block):
    area: Annotated[str, AfterValidator(lambda v: check_segment(v, "area id"))]
    id: Annotated[str, AfterValidator(lambda v: check_segment(v, "line id"))]
    name: str = ""
    layout: Literal["series", "parallel"] = "series"
    ideal_cycle_time_s: Annotated[float, Field(gt=0)]
    products: list[Product] = Field(default_factory=list)
    output: str | None = None  # the machine whose counters are the line's output (default: last)
    buffer_s: Annotated[float, Field(ge=0)] = 45.0  # how long a buffer hides a neighbour's stop
    changeovers: list[LineEvent] = Field(default_factory=list)
    maintenance: list[LineEvent] = Field(default_factory=list)
    machines: list[MachineSpec] = Field(min_length=1)

    @property
    def path(self) -> str:
        return f"{self.area}/{self.id}"

    @property
    def output_machine(self) -> str:
        return self.output or self.machines[-1].id

    @model_validator(mode="after")
    def _output(self) -> LineSpec:
        ids = [m.id for m in self.machines]
        if len(set(ids)) != len(ids):
            raise ValueError(f"line {self.id}: machine ids must be unique")
        if self.output is not None and self.output not in ids:
            raise ValueError(f"line {self.id}: output machine {self.output!r} is not one of {ids}")
        return self


class FaultSpec(_Block):
    """A fault to inject: ``at`` is the offset from the scenario start."""

    machine: str  # area/line/machine
    kind: Literal[
        "bearing_wear", "heater_degradation", "clogging", "stuck_sensor", "spikes", "dropout", "jam"
    ]
    at: Duration
    duration: Duration
    signal: str | None = None  # for stuck_sensor, spikes, dropout (default: chosen by the seed)


class RandomFaults(_Block):
    """Faults drawn by the seed, on top of the listed ones."""

    per_machine_per_day: Annotated[float, Field(ge=0)] = 0.0
    kinds: list[str] = Field(default_factory=lambda: list(FAULT_KINDS))
    min_duration: Duration = 600.0
    max_duration: Duration = 7200.0


class Scenario(_Block):
    scenario: str
    description: str = ""
    seed: int = 1
    start: datetime  # plant local time (site time zone) unless an offset is given
    step_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    small_stop_threshold_s: Annotated[float, Field(gt=0)] = 120.0
    site: SiteInfo
    shifts: list[Shift] = Field(min_length=1)
    lines: list[LineSpec] = Field(min_length=1)
    faults: list[FaultSpec] = Field(default_factory=list)
    random_faults: RandomFaults = Field(default_factory=RandomFaults)

    def machine_paths(self) -> list[str]:
        return [f"{line.path}/{m.id}" for line in self.lines for m in line.machines]

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        paths = self.machine_paths()
        if len(set(paths)) != len(paths):
            raise ValueError("machine paths area/line/machine must be unique")
        kinds = {f"{line.path}/{m.id}": m.kind for line in self.lines for m in line.machines}
        shift_names = {shift.name for shift in self.shifts}
        for line in self.lines:
            for event in (*line.changeovers, *line.maintenance):
                if event.shift not in shift_names:
                    raise ValueError(f"line {line.path}: unknown shift {event.shift!r}")
        for fault in self.faults:
            if fault.machine not in kinds:
                raise ValueError(
                    f"fault on unknown machine {fault.machine!r} (known: {', '.join(paths)})"
                )
            kind = KINDS[kinds[fault.machine]]
            if fault.kind in DEGRADATION_FAULTS and fault.kind not in kind.faults:
                raise ValueError(
                    f"a {kind.name} has no {fault.kind} (it has {', '.join(kind.faults) or 'none'})"
                )
            if fault.signal is not None and fault.signal not in kind.signal_names():
                raise ValueError(f"{fault.machine} has no signal {fault.signal!r}")
        for name in self.random_faults.kinds:
            if name not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {name!r} in random_faults")
        return self


def load_scenario(path: str | Path) -> Scenario:
    """Load a scenario file; errors name the file and what is wrong."""
    text = Path(path).read_text()
    try:
        data = yaml.safe_load(text)
        return Scenario.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def bundled_scenario(name: str = "binh_duong") -> Path:
    """Path of a scenario shipped with PlantWire."""
    return Path(__file__).parent / "scenarios" / f"{name}.yaml"
