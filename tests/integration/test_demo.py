"""``plantwire demo`` end to end: one wall minute at 60x (one plant hour) with the embedded broker
and store, and again against real Mosquitto and influxd. The report must show every sample read
at the edge stored, each line's OEE within a percentage point of the simulator's truth, and at
least one injected fault alerted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from plantwire.testing.servers import InfluxClient, Influxd, Mosquitto

pytestmark = [pytest.mark.timeout(600)]
OEE_TOLERANCE = 0.01  # one percentage point


def _demo(tmp_path: Path, *extra: str) -> dict[str, Any]:
    report = tmp_path / "r.json"
    args = ["--duration", "60", "--speed", "60", "--headless", "--report", str(report)]
    run = subprocess.run(
        [sys.executable, "-m", "demo", *args, "--workdir", str(tmp_path / "run"), *extra],
        capture_output=True,
        timeout=540,
        check=False,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr.decode()[-4000:]
    return dict(json.loads(report.read_text()))


def _check(report: dict[str, Any]) -> None:
    assert report["drained"]
    assert report["samples_read"] > 0
    assert report["samples_stored"] == report["samples_read"], report["edge"]
    assert report["outage"] is not None  # the scheduled outage happened, samples were buffered
    assert len(report["oee"]) == 3
    for line in report["oee"]:
        oee = line["oee"]
        assert oee["computed"] is not None, line
        assert abs(oee["difference"]) <= OEE_TOLERANCE, line
    # Models trained on about 18 plant minutes usually catch the stuck weigher sensor, but one CI
    # run missed it and alerted another fault; the bar is at least one fault alerted.
    assert report["faults_alerted"] >= 1, (report["faults"], report["alerts"])
    assert {f["kind"] for f in report["faults"]} == {"stuck_sensor", "clogging", "bearing_wear"}


def test_demo_with_the_embedded_broker_and_store(tmp_path: Path) -> None:
    report = _demo(tmp_path)
    assert report["store"].startswith("SQLite ")
    _check(report)


@pytest.mark.servers
def test_demo_with_mosquitto_and_influxd(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, influx: InfluxClient
) -> None:
    database = influx.database  # a fresh database made by the fixture
    report = _demo(
        tmp_path,
        "--broker",
        f"mqtt://127.0.0.1:{mosquitto.port}",
        "--influx",
        influxd.url,
        "--influx-database",
        database,
    )
    assert report["store"].startswith("InfluxDB ")
    _check(report)
    # The stored count again, straight from influxd: every value field, plus bad-quality samples.
    answer = influx.query(f'SELECT COUNT(*) FROM "{database}".."telemetry"')
    series = answer["results"][0]["series"][0]
    counts = dict(zip(series["columns"], series["values"][0], strict=True))
    values = sum(
        n for name, n in counts.items() if name.startswith("count_") and "__quality" not in name
    )
    assert values <= report["samples_stored"]
    assert values >= report["samples_stored"] - sum(
        n for name, n in counts.items() if name.endswith("__quality")
    )
