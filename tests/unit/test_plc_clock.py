"""The PLC clock carried over polls that cannot read it (edge/sources/plc_clock.py)."""

from __future__ import annotations

from edge.sources.plc_clock import HISTORY, PlcClock

S = 10**9


def test_the_pace_is_measured_over_the_recent_readings() -> None:
    clock = PlcClock()
    for i in range(HISTORY + 5):  # a PLC running 0.1 % fast, an hour ahead
        clock.observe(plc_ns=3600 * S + round(i * S * 1.001), edge_ns=i * S)
    assert abs(clock.rate() - 1.001) < 1e-9
    last = HISTORY + 4
    assert clock.carry_on(last * S + 2 * S) == 3600 * S + round(last * S * 1.001) + 2_002_000_000


def test_a_clock_set_back_or_jumped_forward_starts_over_from_its_new_reading() -> None:
    clock = PlcClock()
    clock.observe(plc_ns=100 * S, edge_ns=0)
    clock.observe(plc_ns=101 * S, edge_ns=S)
    clock.observe(plc_ns=50 * S, edge_ns=2 * S)  # set back
    assert clock.rate() == 1.0 and clock.carry_on(3 * S) == 51 * S
    clock.observe(plc_ns=10**6 * S, edge_ns=3 * S)  # set forward by days in a second
    assert clock.rate() == 1.0 and clock.carry_on(4 * S) == (10**6 + 1) * S


def test_a_clock_that_stands_still_between_two_polls_is_not_a_stopped_clock() -> None:
    clock = PlcClock()
    clock.observe(plc_ns=100 * S, edge_ns=0)
    clock.observe(plc_ns=100 * S, edge_ns=S // 10)  # a clock of one-second resolution
    assert clock.carry_on(S) == 101 * S - S // 10
