"""OEE end to end: 8 hours of the simulated Binh Duong plant (two shifts, breaks, a changeover,
faults and micro-stops), read over Modbus TCP and OPC UA by three edge agents, carried by
Mosquitto and the gateway into a real influxd -- then ``plantwire oee`` must match the
simulator's truth within half a percentage point for A, P, Q and OEE on every line and shift.

Each part runs as its own process, as on a real site. The plant runs at 60x (8 plant hours in 8
minutes); the edge reads state every 2 plant seconds, counters every 10, signals every 30.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from plantwire.testing.servers import Influxd, Mosquitto, free_port
from simulators.scenario import bundled_scenario, load_scenario
from simulators.siteconfig import scenario_site_config

pytestmark = [pytest.mark.servers, pytest.mark.timeout(1200)]
SPEED = 60.0
# Monday 08:30 to 16:30: most of the morning shift and half the afternoon. Both ends fall on a
# tea break, so the edges connect while nothing is planned, and no stop is open at the end.
START = "2026-11-16T08:30:00"
END = "2026-11-16T16:30:00"
TOLERANCE = 0.005  # half a percentage point


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "plantwire.cli", *args]


def _health(port: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        return dict(orjson.loads(conn.getresponse().read()))
    finally:
        conn.close()


def _wait(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except OSError:
            pass
        time.sleep(1.0)
    raise AssertionError(f"{what} did not happen within {timeout_s:.0f} s")


def _site_file(tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd) -> tuple[Path, Path, dict]:
    scenario_text = bundled_scenario().read_text()
    scenario_text = scenario_text.replace('start: "2026-11-16T06:00:00"', f'start: "{START}"')
    assert START in scenario_text
    scenario_path = tmp_path / "scenario.yaml"
    scenario_path.write_text(scenario_text)
    config = scenario_site_config(
        load_scenario(scenario_path),
        modbus_port=free_port(),
        opcua_port=free_port(),
        speed=SPEED,
        poll_s=30.0,
        state_poll_s=2.0,
        counter_poll_s=10.0,
        mqtt_url=f"mqtt://127.0.0.1:{mosquitto.port}",
        influx_url=influxd.url,
    )
    config["site"]["id"] = f"bd-{uuid.uuid4().hex[:8]}"
    config["store"]["database"] = f"oee_{uuid.uuid4().hex[:8]}"
    for node in config["edge_nodes"]:
        node["buffer_path"] = str(tmp_path / f"{node['id']}.db")
        node["health_port"] = free_port()
    config.setdefault("gateway", {}).update(
        {"spool_path": str(tmp_path / "spool.db"), "health_port": free_port()}
    )
    site_path = tmp_path / "site.yaml"
    site_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return scenario_path, site_path, config


def test_oee_from_stored_telemetry_matches_the_simulator_truth(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd
) -> None:
    scenario_path, site_path, config = _site_file(tmp_path, mosquitto, influxd)
    influxd.create_database(config["store"]["database"])
    modbus_port = int(
        config["areas"][0]["lines"][0]["machines"][0]["sources"][0]["endpoint"].rsplit(":", 1)[1]
    )
    opcua_port = int(
        next(
            m["sources"][0]["endpoint"].rsplit(":", 1)[1].split("/")[0]
            for a in config["areas"]
            for line in a["lines"]
            for m in line["machines"]
            if m["sources"][0]["protocol"] == "opcua"
        )
    )
    truth_path = tmp_path / "truth.json"
    logs = tmp_path / "logs"
    logs.mkdir()
    processes: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        out = (logs / f"{name}.log").open("wb")
        process = subprocess.Popen(_command(*args), stdout=out, stderr=subprocess.STDOUT)
        processes.append(process)
        return process

    try:
        start("gateway", "gateway", "--config", str(site_path), "--id", "gw-oee")
        sim = start(
            "sim",
            "sim",
            "--scenario",
            str(scenario_path),
            "--speed",
            str(SPEED),
            "--duration",
            "8h",
            "--modbus-port",
            str(modbus_port),
            "--opcua-port",
            str(opcua_port),
            "--truth",
            str(truth_path),
        )
        time.sleep(1.0)  # the servers open their ports before the edges poll them
        for node in config["edge_nodes"]:
            start(node["id"], "edge", "--config", str(site_path), "--node", node["id"])
        assert sim.wait(timeout=8 * 3600 / SPEED + 120) == 0, (logs / "sim.log").read_text()[-3000:]
        # Everything read is delivered: the edges' buffers empty, the gateway's spool empty.
        for node in config["edge_nodes"]:
            _wait(
                lambda n=node: _health(n["health_port"])["samples_buffered"] == 0,
                120,
                f"{node['id']} emptying its buffer",
            )
        gateway_port = config["gateway"]["health_port"]
        _wait(
            lambda: _health(gateway_port)["spool_lines"] == 0, 120, "the gateway's spool emptying"
        )
        time.sleep(3.0)  # the last acknowledged batches' writes complete
        report = subprocess.run(
            _command("oee", "--config", str(site_path), "--from", START, "--to", END, "--json"),
            capture_output=True,
            check=False,
            timeout=300,
        )
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
    assert report.returncode == 0, report.stderr.decode()
    computed = orjson.loads(report.stdout)
    truth = json.loads(truth_path.read_text())
    compare(computed, truth)


def compare(computed: dict[str, Any], truth: dict[str, Any]) -> None:
    expected = {(row["line"], row["shift"]): row for row in truth["lines"]}
    assert {line for line, _ in expected} == {line["line"] for line in computed["lines"]}
    checked = []
    for line in computed["lines"]:
        for window in line["windows"]:
            want = expected[(line["line"], window["window"])]
            for figure in ("availability", "performance", "quality", "oee"):
                got, true = window[figure], want[figure]
                assert got is not None and true is not None
                assert abs(got - true) <= TOLERANCE, (
                    f"{line['line']} {window['window']} {figure}: {got:.4f} vs truth {true:.4f}\n"
                    f"computed {window}\ntruth {want}"
                )
            checked.append((line["line"], window["window"]))
            deviations = "  ".join(
                f"{f[0].upper()} {window[f]:.4f}/{want[f]:.4f}"
                for f in ("availability", "performance", "quality", "oee")
            )
            print(f"{line['line']:<22} {window['window']:<10} computed/truth: {deviations}")
    assert len(checked) == len(expected) == 6, checked  # three lines, two shifts each
