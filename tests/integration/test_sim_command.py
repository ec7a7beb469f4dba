"""``plantwire sim`` from the command line: serves the plant, writes the truth, prints site files
and register maps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from plantwire.cli import main
from plantwire.config import parse_site
from plantwire.testing.servers import free_port


def test_sim_runs_accelerated_and_writes_the_truth(tmp_path: Path) -> None:
    truth = tmp_path / "truth.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "plantwire.cli",
            "sim",
            "--speed",
            "3600",
            "--duration",
            "1h30m",
            "--modbus-port",
            str(free_port()),
            "--opcua-port",
            str(free_port()),
            "--truth",
            str(truth),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data = orjson.loads(truth.read_bytes())
    assert data["scenario"] == "binh-duong" and data["seed"] == 7
    assert data["now_ns"] - data["start_ns"] == 90 * 60 * 10**9
    assert {row["line"] for row in data["lines"]} == {
        "dairy/filling",
        "snacks/packaging",
        "machining/cell-1",
    }
    assert [f["kind"] for f in data["faults"]] == ["bearing_wear"]  # the only one started by 07:30


def test_sim_config_prints_a_valid_site_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "sim",
                "config",
                "--speed",
                "60",
                "--modbus-port",
                "5555",
                "--influx-url",
                "http://db:8086",
            ]
        )
        == 0
    )
    site = parse_site(capsys.readouterr().out, "sim.yaml", environ={}).config
    assert site.store is not None and site.store.url == "http://db:8086"
    endpoints = {s.endpoint for _, _, m in site.machines() for s in m.sources}
    assert endpoints == {"tcp://127.0.0.1:5555", "opc.tcp://127.0.0.1:4840/plantwire"}


def test_sim_registers_documents_every_device(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "registers"]) == 0
    out = capsys.readouterr().out
    assert out.count("device ") == 13
    assert "input     0-1     good_count           uint32 ABCD parts" in out


def test_a_bad_scenario_is_refused_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenario: x\nseed: one\n")
    assert main(["sim", "config", str(bad)]) == 2
    assert "bad.yaml" in capsys.readouterr().err
