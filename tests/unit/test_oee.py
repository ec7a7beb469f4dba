"""The OEE engine on hand-built machine histories whose answers are known exactly."""

from __future__ import annotations

from datetime import date, time

import numpy as np
import pytest

from analytics.calendar import ShiftCalendar, Window
from analytics.oee import (
    CycleTimes,
    MachineData,
    OeeResult,
    OeeSettings,
    from_totals,
    line_oee,
    machine_oee,
)
from plantwire.config.models import Break, Shift
from plantwire.states import MachineState as S

NS = 1_000_000_000
DAY0 = 1_763_683_200  # 2025-11-21 00:00 UTC, a Friday
T0 = DAY0 + 6 * 3600  # the shift starts at 06:00
SHIFT = Shift(
    name="early",
    start=time(6),
    end=time(14),
    breaks=[Break(start=time(10), minutes=30)],
)
CALENDAR = ShiftCalendar([SHIFT], "UTC")
SETTINGS = OeeSettings()


LEAD_IN = 600  # the machine is off for 10 min before the shift: the counters have a history


def history(
    pieces: list[tuple[float, S]], *, start: float = T0, cycle_s: float = 1.0, reject_every: int = 0
) -> MachineData:
    """1 Hz samples of state and counters: 10 min off, then ``pieces`` of (seconds, state) from
    ``start``; while running one part every ``cycle_s``, every ``reject_every``-th a reject."""
    pieces = [(LEAD_IN, S.OFF), *pieces]
    start -= LEAD_IN
    times, states, good, reject = [], [], [], []
    g = r = made = 0
    t, fraction = start, 0.0
    for seconds, state in pieces:
        for _ in range(int(seconds)):
            if state is S.RUNNING:
                fraction += 1.0 / cycle_s
                while fraction >= 1.0 - 1e-9:
                    fraction -= 1.0
                    made += 1
                    if reject_every and made % reject_every == 0:
                        r += 1
                    else:
                        g += 1
            t += 1
            times.append(round(t * NS))
            states.append(float(state))
            good.append(float(g))
            reject.append(float(r))
    # The first sample says what the first second was: shift its state to the start.
    time_ns = np.array(times, dtype=np.int64)
    state_ns = time_ns - NS
    return MachineData(
        state=(state_ns, np.array(states)),
        good=(time_ns, np.array(good)),
        reject=(time_ns, np.array(reject)),
    )


def day_of(pieces: list[tuple[float, S]], **kw: float) -> MachineData:
    """A shift: ``pieces`` before the 10:00 break, the break, then running to 14:00."""
    before = sum(p[0] for p in pieces)
    assert before <= 4 * 3600
    tail = [(4 * 3600 - before, S.RUNNING)] if before < 4 * 3600 else []
    return history(
        [*pieces, *tail, (1800, S.PLANNED_STOP), (3.5 * 3600, S.RUNNING)],
        **kw,  # type: ignore[arg-type]
    )


def shift_oee(data: MachineData, cycles: CycleTimes | None = None, **kw: float) -> OeeResult:
    window = CALENDAR.shifts(T0 * NS, (T0 + 1) * NS)[0]
    production = CALENDAR.production((T0 - 3600) * NS, (T0 + 9 * 3600) * NS)
    (result,) = machine_oee(
        data,
        [window],
        production,
        cycles or CycleTimes(line_s=1.0),
        settings=OeeSettings(**kw) if kw else SETTINGS,
        from_ns=(T0 - 3600) * NS,
        to_ns=(T0 + 9 * 3600) * NS,
    )
    return result


def test_the_worked_example_comes_out_to_a_millionth() -> None:
    f = from_totals(420 * 60, (420 - 47) * 60, 19_271, 19_271 - 423, 1.0)
    assert f.availability == pytest.approx(0.888095, abs=1e-6)
    assert f.performance == pytest.approx(0.861081, abs=1e-6)
    assert f.quality == pytest.approx(0.978050, abs=1e-6)
    assert f.oee == pytest.approx(0.747937, abs=1e-6)


def test_a_shift_with_a_breakdown_small_stops_and_rejects() -> None:
    # 8 h shift, 30 min break at 10:00: 450 min planned.
    pieces = [
        (3600, S.RUNNING),
        (600, S.FAULT),  # a 10 min breakdown
        (10_200, S.RUNNING),
        (1800, S.PLANNED_STOP),  # the break, 10:00-10:30
        (60, S.IDLE),  # a 1 min small stop
        (12_540, S.RUNNING),
    ]
    assert sum(p[0] for p in pieces) == 8 * 3600
    result = shift_oee(history(pieces, cycle_s=2.0, reject_every=50))
    assert result.planned_s == 450 * 60
    assert result.run_s == 440 * 60  # the small stop stays in run time
    assert result.losses.breakdown_s == 600 and result.losses.breakdowns == 1
    assert result.losses.small_stop_s == 60 and result.losses.small_stops == 1
    running_s = 440 * 60 - 60
    assert result.total == running_s // 2
    assert result.figures.availability == pytest.approx(440 / 450)
    assert result.figures.performance == pytest.approx(result.total * 1.0 / (440 * 60))
    assert result.figures.quality == pytest.approx(result.good / result.total)
    assert result.rejects == result.total // 50
    # Performance loss is the small stop plus running at half the ideal rate.
    assert result.losses.reduced_speed_s == pytest.approx(440 * 60 - 60 - result.total * 1.0)
    assert result.teep == pytest.approx(result.figures.oee * 450 / 480)  # type: ignore[operator]
    assert result.warnings == []


def test_a_stop_across_the_shift_end_is_judged_by_its_whole_length() -> None:
    # 90 s before the shift end, 90 s after (a second shift follows): a 180 s stop.
    late = Shift(name="late", start=time(14), end=time(22))
    calendar = ShiftCalendar([SHIFT, late], "UTC")
    end = T0 + 8 * 3600
    data = history(
        [(8 * 3600 - 90, S.RUNNING), (180, S.FAULT), (3600, S.RUNNING)],
    )
    windows = calendar.shifts(T0 * NS, (end + 3600) * NS)
    early, after = machine_oee(
        data,
        windows,
        calendar.production(T0 * NS, (end + 3600) * NS),
        CycleTimes(line_s=1.0),
        settings=SETTINGS,
        from_ns=T0 * NS,
        to_ns=(end + 3600) * NS,
    )
    assert early.losses.breakdown_s == 90 and after.losses.breakdown_s == 90
    assert early.losses.breakdowns == 1 and after.losses.breakdowns == 0  # counted where it began
    assert early.losses.small_stop_s == 0


def test_a_state_that_began_before_the_window_counts_from_the_window_start() -> None:
    # The machine broke down at 05:50 and was repaired at 06:20.
    pieces = [
        (1800, S.FAULT),
        (4 * 3600 - 1200, S.RUNNING),
        (1800, S.PLANNED_STOP),
        (3.5 * 3600, S.RUNNING),
    ]
    data = history(pieces, start=T0 - 600)  # type: ignore[arg-type]
    result = shift_oee(data)
    assert result.losses.breakdown_s == 1200  # only the part in planned time is a loss
    assert result.losses.breakdowns == 1
    assert result.losses.no_data_s == 0
    assert result.run_s == 450 * 60 - 1200


def test_a_gap_in_the_data_is_not_running() -> None:
    data = day_of([])
    t, s = data.state
    keep = (t < (T0 + 3600) * NS) | (t >= (T0 + 3600 + 900) * NS)  # 15 min without samples
    gappy = MachineData(state=(t[keep], s[keep]), good=data.good, reject=data.reject)
    result = shift_oee(gappy)
    # The last sample before the gap (06:59:59) holds for max_gap_s (60 s); the rest until the
    # next sample (07:15:00) is unknown, a stop.
    assert result.losses.no_data_s == 901 - 60
    assert result.run_s == 450 * 60 - (901 - 60)
    assert any("without state data" in w for w in result.warnings)


def test_counter_resets_and_32_bit_wraps_count_every_part() -> None:
    data = day_of([])
    t, good = data.good
    wrapped = (good + 2**32 - 5_000) % 2**32  # the counter wraps after 5,000 parts
    reset_at = 20_000
    reset = wrapped.copy()
    reset[reset_at:] = good[reset_at:] - good[reset_at - 1] - 1  # and is reset to zero later
    reset[reset_at] = 0  # the part made in that second was lost with the reset
    result = shift_oee(MachineData(state=data.state, good=(t, reset), reject=data.reject))
    assert result.good == 450 * 60 - 1
    assert result.figures.performance == pytest.approx((450 * 60 - 1) / (450 * 60))
    assert any("went back 1 time" in w for w in result.warnings)


def test_zero_planned_time_gives_no_figures_and_says_why() -> None:
    data = history([(8 * 3600, S.MAINTENANCE)])  # planned maintenance all shift
    result = shift_oee(data)
    assert result.planned_s == 0
    assert result.figures.availability is None and result.figures.oee is None
    assert any("no planned production time" in w for w in result.warnings)


def test_performance_above_100_percent_is_reported_not_capped() -> None:
    data = day_of([], cycle_s=1.0)
    result = shift_oee(data, CycleTimes(line_s=1.25))  # the ideal cycle time is too long
    assert result.figures.performance == pytest.approx(1.25, rel=1e-3)
    assert any("above 100%" in w for w in result.warnings)


def test_changeover_and_setup_are_setup_losses_and_startup_rejects_are_split() -> None:
    pieces = [(1800, S.RUNNING), (1200, S.CHANGEOVER), (90, S.SETUP)]
    data = day_of(pieces, reject_every=10)
    result = shift_oee(data, startup_s=300)
    assert result.losses.setup_s == 1290 and result.losses.setups == 1
    assert result.losses.breakdown_s == 0
    # Rejects in the first 300 s after the changeover (and after the break) are start-up rejects.
    assert 0 < result.losses.startup_rejects < result.rejects
    assert result.losses.startup_rejects + result.losses.production_rejects == result.rejects


def test_each_product_is_judged_by_its_own_cycle_time() -> None:
    data = day_of([], cycle_s=1.0)
    t = data.state[0]
    half = LEAD_IN + 3600  # "small" until 07:00, then "large"
    products = np.array(["small"] * half + ["large"] * (len(t) - half), dtype=object)
    with_products = MachineData(
        state=data.state, good=data.good, reject=data.reject, product=(t, products)
    )
    cycles = CycleTimes(line_s=1.0, by_product={"small": 0.5, "large": 1.0})
    result = shift_oee(with_products, cycles)
    assert result.total == 450 * 60
    assert result.ideal_time_s == pytest.approx(0.5 * 3600 + 1.0 * (450 * 60 - 3600), abs=1.0)


def test_energy_per_good_part_is_the_line_energy_over_the_output_good_count() -> None:
    data = day_of([], cycle_s=2.0)
    t = data.good[0]
    meter = np.arange(len(t), dtype=np.float64) * 0.01  # 36 kWh an hour
    meter[5000:] -= meter[5000]  # the meter is replaced mid-shift and starts at zero
    machine = MachineData(state=data.state, good=data.good, energy_kwh=(t, meter))
    window = CALENDAR.shifts(T0 * NS, (T0 + 1) * NS)
    production = CALENDAR.production(T0 * NS, (T0 + 8 * 3600) * NS)
    args = {"settings": SETTINGS, "from_ns": T0 * NS, "to_ns": (T0 + 8 * 3600) * NS}
    out = machine_oee(machine, window, production, CycleTimes(1.0), **args)  # type: ignore[arg-type]
    other = machine_oee(machine, window, production, CycleTimes(1.0), **args)  # type: ignore[arg-type]
    (line,) = line_oee(out, {"a": out, "b": other}, "a")
    # Every second of the shift but the one of the meter swap.
    assert out[0].energy_kwh == pytest.approx((8 * 3600 - 1) * 0.01)
    assert line.energy_kwh == pytest.approx(2 * out[0].energy_kwh)
    assert line.energy_per_good_part_kwh == pytest.approx(line.energy_kwh / out[0].good)


def test_a_night_shift_belongs_to_the_day_it_starts() -> None:
    night = Shift(
        name="night", start=time(22), end=time(6), breaks=[Break(start=time(2), minutes=30)]
    )
    calendar = ShiftCalendar([night], "Asia/Ho_Chi_Minh")
    # 2025-11-21 00:00 UTC is 07:00 in Vietnam: the night of the 20th has ended.
    windows = calendar.shifts(DAY0 * NS, (DAY0 + 86_400) * NS)
    assert [(w.label, w.day, w.seconds) for w in windows] == [
        ("night", date(2025, 11, 21), 28_800.0)
    ]
    assert isinstance(windows[0], Window) and windows[0].start_ns == (DAY0 + 15 * 3600) * NS
    production = calendar.production(windows[0].start_ns, windows[0].end_ns)
    assert sum(e - s for s, e in production) == 7.5 * 3600 * NS
    hours = calendar.windows(DAY0 * NS, (DAY0 + 86_400) * NS, "hour")
    assert len(hours) == 24 and hours[0].label == "07:00"  # UTC midnight is 07:00 in Vietnam
