"""Shared fixtures: real Mosquitto and InfluxDB processes on free ports in temporary folders.

Without the Debian packages a server test is skipped on a developer machine, but under
``CI=true`` it fails: CI must never pass by skipping what it was meant to prove.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from plantwire.testing.servers import InfluxClient, Influxd, Mosquitto, ServerMissingError

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
_database_numbers = itertools.count(1)
T = TypeVar("T", Influxd, Mosquitto)


def missing_server(exc: ServerMissingError) -> None:
    """Fail under CI, skip elsewhere: the one place this policy lives."""
    if IN_CI:
        pytest.fail(f"{exc} -- CI must have it (scripts/test installs it)", pytrace=False)
    pytest.skip(str(exc))


@contextmanager
def running(factory: type[T], workdir: Path) -> Iterator[T]:
    """Start a server of ``factory`` in ``workdir`` and stop it afterwards."""
    try:
        server = factory(workdir)
    except ServerMissingError as exc:
        missing_server(exc)
        raise  # unreachable: missing_server always raises
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influxd]:
    """One influxd for the whole session; tests get their own database from ``influx``."""
    with running(Influxd, tmp_path_factory.mktemp("influxd")) as server:
        yield server


@pytest.fixture
def influx(influxd: Influxd) -> InfluxClient:
    """A fresh, empty database on the session's influxd."""
    return influxd.create_database(f"test_{next(_database_numbers)}")


@pytest.fixture
def influxd_private(tmp_path: Path) -> Iterator[Influxd]:
    """An influxd of this test's own, for tests that stop, kill or restart it."""
    with running(Influxd, tmp_path / "influxd") as server:
        yield server


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One Mosquitto for the whole session; tests keep apart by topic."""
    with running(Mosquitto, tmp_path_factory.mktemp("mosquitto")) as server:
        yield server


@pytest.fixture
def mosquitto_private(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker of this test's own, for tests that restart or kill it."""
    with running(Mosquitto, tmp_path / "mosquitto") as server:
        yield server


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``small_disk("2m")``: a tmpfs of that size mounted in this test's folder, as the small or
    full disk of an edge device. Mounting needs root (as CI runs); elsewhere the test is skipped,
    under ``CI=true`` it fails."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            message = f"cannot mount a {size} tmpfs (needs root): {result.stderr.strip()}"
            if IN_CI:
                pytest.fail(f"{message} -- CI runs as root", pytrace=False)
            pytest.skip(message)
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)
