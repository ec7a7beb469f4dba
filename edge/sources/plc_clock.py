"""A machine's PLC clock, carried over polls where it cannot be read.

Samples of a machine with a clock register are stamped with the PLC's own time, which may be
offset from the edge's clock (a PLC set to local time, a drifting battery clock, a simulated
plant that runs faster than real time). When one poll's clock read fails, stamping that poll with
the edge's time would put its samples on another clock -- minutes or weeks away from their
neighbours, outside every query of the period they belong to. Instead the PLC time is carried on
from its recent readings: the last reading plus the elapsed edge time times the rate at which
the PLC clock has been advancing against the edge's clock (1.0 for a real PLC, the speed for an
accelerated simulation).
"""

from __future__ import annotations

from collections import deque

HISTORY = 16  # readings kept to measure the rate over (one per poll)
RATE_LIMITS = (0.0, 10_000.0)  # a measured rate outside this is a clock being set, not running


class PlcClock:
    """The relation between a PLC's clock and the edge's clock, from its recent readings.

    >>> clock = PlcClock()
    >>> clock.carry_on(5_000) is None  # never read: nothing to carry on from
    True
    >>> clock.observe(plc_ns=1_000_000, edge_ns=0)
    >>> clock.carry_on(500)  # one reading: the PLC is assumed to run at the edge's pace
    1000500
    >>> clock.observe(plc_ns=1_000_600, edge_ns=10)  # it runs 60 times faster
    >>> clock.carry_on(20)
    1001200
    """

    def __init__(self) -> None:
        self._readings: deque[tuple[int, int]] = deque(maxlen=HISTORY)  # (edge_ns, plc_ns)

    def observe(self, plc_ns: int, edge_ns: int) -> None:
        """Record a good reading of the PLC clock taken at edge time ``edge_ns``."""
        if self._readings:
            last_edge, last_plc = self._readings[-1]
            if plc_ns < last_plc or edge_ns <= last_edge:  # the clock was set back: start over
                self._readings.clear()
        self._readings.append((edge_ns, plc_ns))
        if not RATE_LIMITS[0] < self.rate() <= RATE_LIMITS[1]:  # set forward: start over
            self._readings.clear()
            self._readings.append((edge_ns, plc_ns))

    def rate(self) -> float:
        """PLC nanoseconds per edge nanosecond over the readings kept (1.0 with fewer than two)."""
        if len(self._readings) < 2:
            return 1.0
        (first_edge, first_plc), (last_edge, last_plc) = self._readings[0], self._readings[-1]
        return (last_plc - first_plc) / (last_edge - first_edge)

    def carry_on(self, edge_ns: int) -> int | None:
        """The PLC time at edge time ``edge_ns``, from the last reading; None if never read."""
        if not self._readings:
            return None
        last_edge, last_plc = self._readings[-1]
        return last_plc + round((edge_ns - last_edge) * self.rate())
