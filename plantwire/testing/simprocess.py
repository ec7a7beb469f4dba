"""The simulated plant as a separate process (``plantwire sim``), for tests and benchmarks that
must not share a CPU or an event loop with what they measure."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

__all__ = ["SimProcess"]


class SimProcess:
    """``with SimProcess(modbus_port=5020, speed=10): ...`` -- started, and stopped after."""

    def __init__(
        self,
        *,
        modbus_port: int,
        opcua_port: int = 0,
        speed: float = 1.0,
        scenario: Path | None = None,
        truth: Path | None = None,
    ) -> None:
        self.modbus_port = modbus_port
        self.command = [sys.executable, "-m", "plantwire.cli", "sim", "--speed", str(speed)]
        self.command += ["--modbus-port", str(modbus_port), "--opcua-port", str(opcua_port)]
        if scenario is not None:
            self.command += ["--scenario", str(scenario)]
        if truth is not None:
            self.command += ["--truth", str(truth)]
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        self._process = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the simulator exited with code {self._process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.modbus_port), timeout=0.2).close()
            except OSError:
                time.sleep(0.1)
            else:
                return self
        self.__exit__()
        raise RuntimeError("the simulator did not open its Modbus port within 30 s")

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
