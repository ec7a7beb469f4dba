"""``plantwire analytics`` and ``plantwire oee`` against a real influxd: telemetry written as the
gateway writes it, OEE computed from it, ``oee`` points read back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from analytics.service import AnalyticsService
from plantwire.cli import main
from plantwire.config import load_site
from plantwire.lineprotocol import Point
from plantwire.states import MachineState as S
from plantwire.store.influx import InfluxStore
from plantwire.testing.servers import InfluxClient, Influxd

pytestmark = pytest.mark.servers
NS = 1_000_000_000
SHIFT_START = 1_794_812_400  # 2026-11-16 07:00 UTC = 14:00 in Ho Chi Minh City
HOUR = 3600
LINE_ROWS = """SELECT * FROM oee WHERE "level" = 'line'"""
MACHINE_ROWS = """SELECT * FROM oee WHERE "level" = 'machine'"""


def site_file(tmp_path: Path, influxd: Influxd, database: str) -> Path:
    machine = {
        "kind": "filler",
        "oee": {
            "state": "state",
            "good_count": "good_count",
            "reject_count": "reject_count",
            "energy_kwh": "energy_kwh",
        },
        "sources": [
            {
                "protocol": "modbus",
                "endpoint": "tcp://127.0.0.1:5020",
                "tags": [
                    {"metric": "state", "table": "holding", "address": 0},
                    {"metric": "good_count", "table": "input", "address": 0, "type": "uint32"},
                    {"metric": "reject_count", "table": "input", "address": 2, "type": "uint32"},
                    {"metric": "energy_kwh", "table": "input", "address": 4, "type": "float64"},
                ],
            }
        ],
    }
    config = {
        "site": {"id": "bd", "timezone": "Asia/Ho_Chi_Minh"},
        "store": {"backend": "influxdb", "url": influxd.url, "database": database},
        "shifts": [
            {
                "name": "afternoon",
                "start": "14:00",
                "end": "16:00",
                "breaks": [{"start": "15:00", "minutes": 10}],
            }
        ],
        "analytics": {"health_port": 0, "finalize_after_s": 60},
        "areas": [
            {
                "id": "dairy",
                "lines": [
                    {
                        "id": "filling",
                        "ideal_cycle_time_s": 1.0,
                        "output_machine": "capper",
                        "machines": [{"id": "filler", **machine}, {"id": "capper", **machine}],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def telemetry(machine: str) -> list[Point]:
    """Two hours at 1 Hz from 14:00: a 10 min breakdown at 14:30, the 15:00 break, one part a
    second while running, every 20th rejected, 0.01 kWh a second."""
    points = []
    good = reject = made = 0
    for second in range(2 * HOUR):
        if 30 * 60 <= second < 40 * 60:
            state = S.FAULT
        elif HOUR <= second < HOUR + 600:
            state = S.PLANNED_STOP
        else:
            state = S.RUNNING
        if state is S.RUNNING:
            made += 1
            if made % 20 == 0:
                reject += 1
            else:
                good += 1
        tags = {"site": "bd", "area": "dairy", "line": "filling", "machine": machine}
        fields = {
            "state": int(state),
            "good_count": good,
            "reject_count": reject,
            "energy_kwh": second * 0.01,
        }
        points.append(Point("telemetry", tags, fields, (SHIFT_START + second) * NS))
    return points


@pytest.fixture
def loaded(tmp_path: Path, influxd: Influxd, influx: InfluxClient) -> Path:
    path = site_file(tmp_path, influxd, influx.database)
    site = load_site(path)
    assert site.store is not None
    with InfluxStore(site.store) as store:
        store.write_points(telemetry("filler") + telemetry("capper"))
    return path


def test_the_service_writes_the_current_shift_then_finalizes_it(
    loaded: Path, influx: InfluxClient
) -> None:
    site = load_site(loaded)
    assert site.store is not None
    now = [(SHIFT_START + HOUR + 1800) * NS]  # 15:30, mid-shift
    with InfluxStore(site.store) as store:
        service = AnalyticsService(site, store, clock=lambda: now[0])
        assert service.run_once() == 3  # the line and its two machines
        rows = influx.rows(LINE_ROWS)
        assert len(rows) == 1 and rows[0]["final"] is False
        running_so_far = rows[0]["run_s"]
        # Known up to the newest state sample (15:29:59): the last second is not yet known.
        assert rows[0]["planned_s"] == pytest.approx(HOUR + 1800 - 600 - 1)
        now[0] = (SHIFT_START + 2 * HOUR + 61) * NS  # the shift ended, late data had its minute
        written = service.run_once()
        assert written == 3 and service.last_error is None
    rows = influx.rows(LINE_ROWS)
    assert len(rows) == 1  # the same point, overwritten with the final figures
    line = rows[0]
    assert line["final"] is True and line["run_s"] > running_so_far
    assert line["planned_s"] == pytest.approx(2 * HOUR - 600 - 1)
    assert line["breakdown_s"] == pytest.approx(600) and line["breakdowns"] == 1
    assert line["availability"] == pytest.approx((2 * HOUR - 1201) / (2 * HOUR - 601))
    assert line["quality"] == pytest.approx(0.95, abs=1e-3)
    assert line["output_machine"] == "capper" and line["shift"] == "afternoon"
    assert line["energy_kwh"] == pytest.approx(2 * (2 * HOUR - 1) * 0.01)
    machines = influx.rows(MACHINE_ROWS)
    assert {row["machine"] for row in machines} == {"filler", "capper"}


def test_plantwire_oee_prints_a_table_and_json(
    loaded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    span = ["--from", "2026-11-16T14:00", "--to", "2026-11-16T16:00"]
    assert main(["oee", "--config", str(loaded), *span]) == 0
    table = capsys.readouterr().out
    assert "dairy/filling" in table and "afternoon" in table and "breakdowns 1" in table
    assert main(["oee", "--config", str(loaded), *span, "--json", "--by", "hour"]) == 0
    report = json.loads(capsys.readouterr().out)
    (line,) = report["lines"]
    assert [w["window"] for w in line["windows"]] == ["14:00", "15:00"]
    first, second = line["windows"]
    assert first["losses"]["breakdown_s"] == 600
    assert second["planned_s"] == HOUR - 600 - 1  # the data ends at 15:59:59
    assert set(line["machines"]) == {"filler", "capper"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "yesterday"], "is not a time"),
        (["--from", "2026-11-16T16:00", "--to", "2026-11-16T14:00"], "--to must be after"),
        (["--from", "now-8h", "--line", "bottling"], "no line bottling"),
    ],
)
def test_plantwire_oee_refuses_bad_arguments_clearly(
    loaded: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["oee", "--config", str(loaded), *args]) == 2
    assert message in capsys.readouterr().err
