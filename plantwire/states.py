"""Machine state codes: what a PLC's state register means, shared by the simulator, the edge
agent and the OEE engine.

The codes follow the usual split of OEE time (ISO 22400-2, oee.com):

* time outside planned production: ``OFF`` (nothing scheduled), ``PLANNED_STOP`` (breaks,
  meetings), ``MAINTENANCE`` (planned maintenance) -- not counted against availability;
* ``RUNNING`` -- run time;
* stops inside planned production: ``IDLE`` (starved: waiting for material), ``BLOCKED``
  (downstream full), ``FAULT`` (breakdown, jam), ``CHANGEOVER`` (product change), ``SETUP``
  (start-up and adjustment). A stop shorter than the small-stop threshold (default 2 min) stays
  in run time and shows as a performance loss; a longer one is an availability loss.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["PLANNED_STATES", "STOP_STATES", "MachineState"]


class MachineState(IntEnum):
    OFF = 0
    RUNNING = 1
    IDLE = 2
    BLOCKED = 3
    FAULT = 4
    PLANNED_STOP = 5
    CHANGEOVER = 6
    MAINTENANCE = 7
    SETUP = 8


PLANNED_STATES = frozenset({MachineState.OFF, MachineState.PLANNED_STOP, MachineState.MAINTENANCE})
STOP_STATES = frozenset(
    {
        MachineState.IDLE,
        MachineState.BLOCKED,
        MachineState.FAULT,
        MachineState.CHANGEOVER,
        MachineState.SETUP,
    }
)
