"""The layout the install extras rely on: the contract package imports no part, the parts
import only the contract, and an edge install -- without the analytics stack, the gateway's
InfluxDB client or the demo's broker and view -- runs its commands and imports all its code."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
CONTRACT = "plantwire"
PARTS = ("edge", "gateway", "analytics", "simulators")
# Above the parts: the boards read the store's schema only; the demo runs every part.
ABOVE = {"grafana_boards": (CONTRACT,), "demo": (CONTRACT, *PARTS)}
# What an edge device's install lacks (pyproject.toml's extras).
NOT_ON_AN_EDGE = ("sklearn", "scipy", "matplotlib", "skops", "amqtt", "rich", "influxdb_client")


def imported_packages(package: str) -> dict[str, set[str]]:
    """Top-level packages of this project each module of ``package`` imports (at any depth of
    the code: a lazy import inside a function counts too) -> the modules that do."""
    ours = {CONTRACT, *PARTS, *ABOVE}
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in ours and top != package:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_the_contract_imports_no_part() -> None:
    assert imported_packages(CONTRACT) == {}


@pytest.mark.parametrize("part", PARTS)
def test_a_part_imports_only_the_contract(part: str) -> None:
    imports = imported_packages(part)
    assert set(imports) <= {CONTRACT}, {k: v for k, v in imports.items() if k != CONTRACT}


@pytest.mark.parametrize("package", sorted(ABOVE))
def test_what_sits_above_the_parts_imports_what_it_says(package: str) -> None:
    assert set(imported_packages(package)) <= set(ABOVE[package])


# Runs in a fresh interpreter where the libraries an edge lacks cannot be imported: every
# attempt is printed and fails as it would on an edge device.
BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCKED = set(sys.argv[1].split(","))

    class EdgeInstall(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                print("IMPORTED", name, flush=True)
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, EdgeInstall())
    sys.argv = ["plantwire", *sys.argv[2:]]
    """
)


def run_as_edge(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + script, ",".join(NOT_ON_AN_EDGE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )


CLI = "from plantwire.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.parametrize(
    "command",
    [
        ["--help"],
        ["edge", "--help"],
        ["sim", "--help"],
        ["config", "check", "deploy/site.example.yaml"],
    ],
)
def test_an_edge_install_runs_the_edge_s_commands(command: list[str]) -> None:
    done = run_as_edge(CLI, *command)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "IMPORTED" not in done.stdout, done.stdout


def test_an_edge_install_imports_all_the_edge_s_code() -> None:
    modules = [
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in sorted((ROOT / "edge").rglob("*.py"))
        if path.name != "modbus_fuzz.py"  # the dev tools' fuzz target
    ]
    script = "import importlib\nfor m in sys.argv[1:]: importlib.import_module(m)\nprint('ok')"
    done = run_as_edge(script, *modules)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
    assert "IMPORTED" not in done.stdout, done.stdout


def test_a_command_whose_part_is_not_installed_names_its_extra(tmp_path: Path) -> None:
    site = ROOT / "deploy" / "site.example.yaml"
    done = run_as_edge(
        CLI, "train", "--config", str(site), "--machine", "a/b/c", "--from", "2026-01-01",
        "--to", "2026-01-02",
    )  # fmt: skip
    assert done.returncode == 5, (done.stdout, done.stderr[-3000:])
    assert "pip install 'plantwire[analytics]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_image_copies_every_package_and_installs_the_parts_it_runs(tmp_path: Path) -> None:
    """deploy/Dockerfile installs the dependencies from pyproject.toml in a layer of their own,
    then the packages: a package it forgets would break `plantwire --help` in the image."""
    import re
    import shutil
    import tomllib

    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    for package in packages:
        assert f"COPY {package} ./{package}\n" in dockerfile, package
    (script,) = re.findall(r"RUN python -c '([^']+)'", dockerfile)
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    listed = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    names = {re.split(r"[=<>\[ ]", line)[0] for line in listed if line}
    assert {"pymodbus", "influxdb-client", "scikit-learn"} <= names
    assert not {"amqtt", "rich", "pytest", "plantwire"} & names
