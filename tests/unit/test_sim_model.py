"""The simulated plant: deterministic, realistic states and counters, faults with ground truth."""

from __future__ import annotations

import itertools
import math
from datetime import datetime
from typing import Any

import numpy as np
import pytest

from plantwire.config import parse_site
from plantwire.states import MachineState
from simulators.plant import Plant
from simulators.scenario import Scenario, bundled_scenario, load_scenario
from simulators.siteconfig import scenario_site_yaml

DEMO = load_scenario(bundled_scenario())
HOUR = 3600


def scenario(**changes: Any) -> Scenario:
    return DEMO.model_copy(update=changes)


def index(plant: Plant, path: str) -> int:
    return plant.paths.index(path)


def series(plant: Plant, path: str, metric: str, seconds: float) -> list[Any]:
    machine = index(plant, path)
    out = []
    for _ in range(round(seconds / plant.step_s)):
        plant.step()
        out.append(plant.values(machine)[metric])
    return out


@pytest.fixture(scope="module")
def day() -> Plant:
    """The demo plant after two full shifts (06:00 to 22:00)."""
    plant = Plant(DEMO)
    plant.advance(16 * HOUR)
    return plant


def test_same_seed_same_plant_other_seed_other_plant() -> None:
    a, b, c = Plant(DEMO), Plant(DEMO), Plant(DEMO, seed=99)
    for plant in (a, b, c):
        plant.advance(2 * HOUR)
    assert [a.values(i) for i in range(len(a.machines))] == [
        b.values(i) for i in range(len(b.machines))
    ]
    assert a.truth() == b.truth()
    assert a.values(0)["good_count"] != c.values(0)["good_count"]


def test_states_follow_the_calendar() -> None:
    plant = Plant(DEMO)
    filler = index(plant, "dairy/filling/filler")
    plant.advance(2.5 * HOUR + 5 * 60)  # 08:35, in the tea break
    assert plant.values(filler)["state"] == MachineState.PLANNED_STOP
    plant.advance(2.5 * HOUR)  # 11:05: the dairy changeover runs 11:00-11:25
    assert plant.values(filler)["state"] == MachineState.CHANGEOVER
    assert plant.values(filler)["guard_closed"] is False
    plant.advance(11 * HOUR)  # 22:05, no shift
    assert plant.values(filler)["state"] == MachineState.OFF


def test_the_changeover_switches_the_product() -> None:
    plant = Plant(DEMO)
    filler = index(plant, "dairy/filling/filler")
    assert plant.values(filler)["product"] == "milk-180ml"
    plant.advance(5.5 * HOUR)
    assert plant.values(filler)["product"] == "milk-1l"
    assert plant.models[filler].ideal_cycle_time_s == 0.5


def test_truth_follows_the_oee_definitions(day: Plant) -> None:
    truth = day.truth()
    lines = {(row["line"], row["shift"]): row for row in truth["lines"]}
    assert set(lines) == {
        (line, shift)
        for line in ("dairy/filling", "snacks/packaging", "machining/cell-1")
        for shift in ("morning", "afternoon")
    }
    for row in lines.values():
        assert row["complete"]
        assert row["total"] == row["good"] + row["rejects"]
        assert (
            0 < row["availability"] <= 1 and 0 < row["performance"] <= 1 and 0 < row["quality"] <= 1
        )
        assert row["oee"] == pytest.approx(
            row["availability"] * row["performance"] * row["quality"]
        )
        assert row["run_s"] == pytest.approx(
            row["planned_s"] - sum(p for w, p in row["stops"] if w >= 120)
        )
        assert 0.4 < row["oee"] < 0.97  # a real line, not a perfect one
    # A shift of 480 min with 60 min of breaks is 25,200 s of planned time ...
    assert lines[("dairy/filling", "morning")]["planned_s"] == 25_200
    # ... less the 30 min of planned maintenance the snack line has on Monday afternoons.
    assert lines[("snacks/packaging", "afternoon")]["planned_s"] == 25_200 - 1800


def test_truth_counts_match_the_machine_counters(day: Plant) -> None:
    truth = day.truth()
    for number, machine in enumerate(day.machines):
        rows = [r for r in truth["machines"] if r["machine"] == machine.path]
        good = sum(r["good"] for r in rows)
        rejects = sum(r["rejects"] for r in rows)
        model = day.models[number]
        assert model.good_count == (machine.spec.counter_start + good) % 2**32
        assert model.reject_count == (machine.spec.counter_start // 97 + rejects) % 2**32
        assert model.run_seconds == sum(
            r["planned_s"] - r["long_stop_s"] - r["small_stop_s"] for r in rows
        )


def test_the_filler_counter_wraps_at_32_bits(day: Plant) -> None:
    filler = index(day, "dairy/filling/filler")
    assert day.values(filler)["good_count"] < DEMO.lines[0].machines[0].counter_start


def test_breakdowns_micro_stops_and_reduced_speed_all_happen(day: Plant) -> None:
    truth = day.truth()
    stops = [whole for row in truth["machines"] for whole, _ in row["stops"]]
    assert sum(1 for s in stops if s < 120) > 50  # micro-stops
    assert sum(1 for s in stops if s >= 180) > 5  # breakdowns, changeovers
    assert all(row["small_stop_s"] >= 0 for row in truth["machines"])


def test_bearing_wear_raises_vibration_and_shows_in_the_truth() -> None:
    plant = Plant(DEMO)
    plant.advance(HOUR - 30 * 60)  # 06:30, before the fault (07:00-09:30)
    before = series(plant, "dairy/filling/filler", "vibration", 25 * 60)
    plant.advance(HOUR + 45 * 60)  # 09:10, late in the episode
    late = series(plant, "dairy/filling/filler", "vibration", 15 * 60)
    assert np.median(late) > np.median(before) + 1.5  # mm/s, against ~2.4 when healthy
    fault = next(f for f in plant.truth()["faults"] if f["kind"] == "bearing_wear")
    assert fault["machine"] == "dairy/filling/filler"
    assert fault["signals"] == ["vibration", "motor_temp"]
    assert fault["end_ns"] - fault["start_ns"] == 2.5 * HOUR * 1e9
    assert datetime.fromisoformat(fault["start"]).hour == 0  # 07:00 local is 00:00 UTC


def test_sensor_faults_stuck_and_dropout() -> None:
    plant = Plant(DEMO)
    plant.advance(2 * HOUR + 60)  # capper's cap_torque is stuck 08:00-08:40
    stuck = series(plant, "dairy/filling/capper", "cap_torque", 10 * 60)
    assert len(set(stuck)) == 1
    plant.advance(4 * HOUR - 11 * 60)  # 12:00 -> cnc-1's coolant_temp drops out 12:00-12:20
    dropped = series(plant, "machining/cell-1/cnc-1", "coolant_temp", 5 * 60)
    assert all(math.isnan(v) for v in dropped)
    plant.advance(20 * 60)
    assert not math.isnan(series(plant, "machining/cell-1/cnc-1", "coolant_temp", 1)[0])


def test_a_jam_is_a_burst_of_micro_stops() -> None:
    plant = Plant(DEMO)
    plant.advance(9 * HOUR)  # 15:00; the jam is 16:00-16:30

    def stops(seconds: float) -> int:
        states = series(plant, "snacks/packaging/case-packer", "state", seconds)
        return sum(
            1
            for a, b in itertools.pairwise(states)
            if a == MachineState.RUNNING and b != MachineState.RUNNING
        )

    calm = stops(25 * 60)  # 15:00-15:25
    plant.advance(35 * 60)
    jammed = stops(25 * 60)  # 16:00-16:25
    assert jammed > 3 * max(calm, 1)


def test_the_generated_site_file_is_valid_and_points_at_the_register_map() -> None:
    site = parse_site(scenario_site_yaml(DEMO, speed=60), "generated.yaml", environ={}).config
    machines = {f"{area.id}/{line.id}/{m.id}": m for area, line, m in site.machines()}
    assert len(machines) == 13
    filler = machines["dairy/filling/filler"]
    source = filler.sources[0]
    assert source.protocol == "modbus" and source.device_id == 1
    assert source.poll_groups == {"default": pytest.approx(1 / 60)}
    assert filler.clock_metric == "plc_clock_ns"
    bagger = machines["snacks/packaging/bagger"]
    assert bagger.sources[0].protocol == "opcua"
    assert {t.metric for t in bagger.sources[0].tags} >= {"state", "good_count", "seal_temp"}
    line = site.areas[2].lines[0]
    assert line.output.id == "cmm"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {
                "lines": [
                    {**DEMO.lines[0].model_dump(), "machines": [{"id": "x", "kind": "toaster"}]}
                ]
            },
            "unknown machine kind",
        ),
        (
            {"faults": [{"machine": "dairy/filling/nope", "kind": "jam", "at": 0, "duration": 60}]},
            "unknown machine",
        ),
        (
            {
                "faults": [
                    {
                        "machine": "machining/cell-1/cmm",
                        "kind": "bearing_wear",
                        "at": 0,
                        "duration": 60,
                    }
                ]
            },
            "has no bearing_wear",
        ),
        (
            {
                "faults": [
                    {
                        "machine": "dairy/filling/filler",
                        "kind": "stuck_sensor",
                        "at": "soon",
                        "duration": 60,
                    }
                ]
            },
            "duration 'soon'",
        ),
    ],
)
def test_bad_scenarios_are_refused(change: dict[str, Any], message: str) -> None:
    data = DEMO.model_dump(mode="json") | change
    with pytest.raises(ValueError, match=message):
        Scenario.model_validate(data)
