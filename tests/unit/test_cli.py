"""The plantwire command: --version, config check (summary, errors, exit codes, no secrets)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from plantwire.cli import main

ROOT = Path(__file__).parent.parent.parent
EXAMPLE = ROOT / "deploy" / "site.example.yaml"
GOLDEN = ROOT / "tests" / "golden"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("plantwire ")


def test_config_check_summarizes_a_valid_site(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANTWIRE_MQTT_PASSWORD", "never-print-me")
    monkeypatch.setenv("PLANTWIRE_OPCUA_PASSWORD", "nor-me")
    assert main(["config", "check", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "site binh-duong" in out
    assert "3 areas, 3 lines, 4 machines, 25 tags (modbus 19, opcua 6)" in out
    assert "password  ******** (from $PLANTWIRE_MQTT_PASSWORD)" in out
    assert "never-print-me" not in out and "nor-me" not in out


def test_config_check_lists_errors_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "site.yaml"
    bad.write_text((GOLDEN / "bad_configs" / "several_problems_at_once" / "site.yaml").read_text())
    assert main(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: 3 problems" in err
    assert f"{bad}:4:13: site.timezone: unknown time zone 'Mars/Olympus'" in err


def test_the_installed_console_script_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "plantwire.cli", "config", "check", "--quiet", str(EXAMPLE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "config" in capsys.readouterr().out
