"""Time to compute OEE by shift over 30 days of 1 Hz state and counter data for 10 lines.

    python bench/oee_compute.py [--days 30] [--lines 10]

Each line's output machine has 1 Hz samples of its state, good and reject counters (32-bit,
wrapping), energy meter and product, over two 8-hour shifts a day (Monday to Saturday) with
three breaks each: micro-stops every few minutes, a breakdown or two a shift, a changeover a day,
reduced-speed spells. The data is made first (not timed); then the OEE engine computes every
shift of every line -- A, P, Q, OEE, TEEP and the six big losses -- as ``plantwire oee --by
shift`` does after reading the store. Prints the compute time (CPU, one core) and the samples
it went through. Goal: under 5 s.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import time as clock

import numpy as np

from analytics.calendar import ShiftCalendar
from analytics.oee import CycleTimes, MachineData, OeeSettings, machine_oee
from plantwire.config.models import Break, Shift
from plantwire.states import MachineState as S

NS = 1_000_000_000
START = 1_794_787_200  # 2026-11-16 00:00 UTC, a Monday
SHIFTS = [
    Shift(
        name="morning",
        start=clock(6),
        end=clock(14),
        days=["mon", "tue", "wed", "thu", "fri", "sat"],
        breaks=[
            Break(start=clock(8, 30), minutes=15),
            Break(start=clock(10, 30), minutes=30),
            Break(start=clock(12, 30), minutes=15),
        ],
    ),
    Shift(
        name="afternoon",
        start=clock(14),
        end=clock(22),
        days=["mon", "tue", "wed", "thu", "fri", "sat"],
        breaks=[
            Break(start=clock(16, 30), minutes=15),
            Break(start=clock(18, 30), minutes=30),
            Break(start=clock(20, 30), minutes=15),
        ],
    ),
]


def machine_history(rng: np.random.Generator, calendar: ShiftCalendar, days: int) -> MachineData:
    """1 Hz samples of one machine over ``days`` days."""
    seconds = days * 86_400
    t = START + np.arange(seconds, dtype=np.int64)
    state = np.full(seconds, int(S.OFF), dtype=np.int64)
    for lo, hi in calendar.production(START * NS, (START + seconds) * NS):
        state[(lo // NS - START) : (hi // NS - START)] = int(S.RUNNING)
    for window in calendar.shifts(START * NS, (START + seconds) * NS):
        lo, hi = window.start_ns // NS - START, window.end_ns // NS - START
        in_shift = state[lo:hi]
        in_shift[in_shift == int(S.OFF)] = int(S.PLANNED_STOP)  # the breaks
    producing = np.flatnonzero(state == int(S.RUNNING))
    # Stops: micro-stops (every ~4 min, ~15 s), breakdowns (~1.5 a shift, ~9 min), a daily
    # changeover (25 min).
    for count, median_s, code in (
        (len(producing) // 240, 15, S.IDLE),
        (days * 3, 540, S.FAULT),
        (days, 1500, S.CHANGEOVER),
    ):
        starts = rng.choice(producing, size=count, replace=False)
        lengths = np.maximum(3, rng.lognormal(np.log(median_s), 0.5, size=count)).astype(int)
        for start, length in zip(starts, lengths, strict=True):
            span = state[start : start + length]
            span[span == int(S.RUNNING)] = int(code)
    running = state == int(S.RUNNING)
    speed = np.where(rng.random(seconds) < 0.9, 1.0, 0.7)
    made = np.cumsum(running * speed * rng.uniform(0.45, 0.5, seconds))  # ~2 s ideal cycle
    parts = np.floor(made)
    rejects = np.floor(parts * 0.02)
    good = (parts - rejects + 4_294_000_000) % 2**32  # wraps in the first days
    energy = np.cumsum(np.where(running, 0.012, 0.002))
    product = np.where((t - START) // 86_400 % 2 == 0, "small", "large").astype(object)
    stamps = t * NS
    return MachineData(
        state=(stamps, state.astype(np.float64)),
        good=(stamps, good),
        reject=(stamps, rejects),
        energy_kwh=(stamps, energy),
        product=(stamps, product),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--lines", type=int, default=10)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    calendar = ShiftCalendar(SHIFTS, "Asia/Ho_Chi_Minh")
    rng = np.random.default_rng(11)
    lines = [machine_history(rng, calendar, args.days) for _ in range(args.lines)]
    end = START + args.days * 86_400
    cycles = CycleTimes(line_s=2.0, by_product={"small": 2.0, "large": 2.2})
    samples = sum(5 * len(line.state[0]) for line in lines)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    windows = calendar.windows(START * NS, end * NS, "shift")
    production = calendar.production(START * NS, end * NS)
    results = [
        machine_oee(
            line,
            windows,
            production,
            cycles,
            settings=OeeSettings(),
            from_ns=START * NS,
            to_ns=end * NS,
        )
        for line in lines
    ]
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0

    oee = [r.figures.oee for rows in results for r in rows if r.figures.oee is not None]
    print(
        f"OEE by shift: {args.lines} lines x {args.days} days at 1 Hz "
        f"({samples / 1e6:.1f}M samples: state, good, reject, energy, product)"
    )
    print(f"shifts computed     {sum(len(rows) for rows in results):>10,}")
    print(f"compute time (CPU)  {cpu:>10.2f} s   (wall {wall:.2f} s; goal: under 5 s)")
    print(f"samples per second  {samples / cpu:>10,.0f}")
    print(f"OEE range           {min(oee):>10.3f} .. {max(oee):.3f}")


if __name__ == "__main__":
    main()
