"""How values look on the boards: machine states by name and colour, on/off values, OEE colours.

The state names and colours come from :class:`~plantwire.states.MachineState`, so a state added
there without a colour here fails the tests rather than showing up as a bare number.
"""

from __future__ import annotations

from collections.abc import Mapping

from grafana_boards.model import Json
from plantwire.states import MachineState

__all__ = [
    "FRACTION",
    "OEE_THRESHOLDS",
    "PER_MINUTE",
    "STATE_COLOURS",
    "STATE_NAMES",
    "flag_mappings",
    "state_mappings",
    "thresholds",
]

STATE_NAMES: Mapping[MachineState, str] = {
    MachineState.OFF: "Off",
    MachineState.RUNNING: "Running",
    MachineState.IDLE: "Idle (starved)",
    MachineState.BLOCKED: "Blocked",
    MachineState.FAULT: "Fault",
    MachineState.PLANNED_STOP: "Planned stop",
    MachineState.CHANGEOVER: "Changeover",
    MachineState.MAINTENANCE: "Maintenance",
    MachineState.SETUP: "Setup",
}
# Green runs; red, orange and yellow are the stops that cost availability (worst first); blues
# are planned time; purples are the changeover family; grey is nothing scheduled.
STATE_COLOURS: Mapping[MachineState, str] = {
    MachineState.OFF: "#8e8e8e",
    MachineState.RUNNING: "green",
    MachineState.IDLE: "yellow",
    MachineState.BLOCKED: "orange",
    MachineState.FAULT: "red",
    MachineState.PLANNED_STOP: "blue",
    MachineState.CHANGEOVER: "purple",
    MachineState.MAINTENANCE: "dark-blue",
    MachineState.SETUP: "light-purple",
}


def state_mappings() -> list[Json]:
    """Grafana value mappings: a state code shows as its name in its colour."""
    options = {
        str(int(state)): {"text": STATE_NAMES[state], "color": STATE_COLOURS[state], "index": i}
        for i, state in enumerate(MachineState)
    }
    return [{"type": "value", "options": options}]


def flag_mappings(on: tuple[str, str], off: tuple[str, str]) -> list[Json]:
    """Mappings for a 1/0 or true/false value: ``(text, colour)`` for each side."""
    options: Json = {}
    for index, (values, (text, colour)) in enumerate(((("1", "true"), on), (("0", "false"), off))):
        for value in values:
            options[value] = {"text": text, "color": colour, "index": index}
    return [{"type": "value", "options": options}]


def thresholds(base: str, *steps: tuple[float, str]) -> Json:
    """Absolute thresholds: ``base`` colour below the first step, then each step's colour."""
    return {
        "mode": "absolute",
        "steps": [{"color": base, "value": None}]
        + [{"color": colour, "value": value} for value, colour in steps],
    }


# 85 % is the usual "world class" OEE; under 60 % is commonly read as poor.
OEE_THRESHOLDS = thresholds("red", (0.6, "orange"), (0.85, "green"))
# A, P, Q and OEE are stored as fractions (0.85 = 85 %).
FRACTION: Json = {
    "unit": "percentunit",
    "min": 0,
    "max": 1,
    "decimals": 1,
    "thresholds": OEE_THRESHOLDS,
}
# Counters shown as rates: the same reading at any zoom.
PER_MINUTE: Json = {"unit": "suffix:/min", "min": 0, "thresholds": thresholds("green")}
