"""PlantWire services as processes of their own, for tests and benchmarks that kill them, fill
their disks or measure their memory: ``plantwire <part> ...`` with its log in a file, and a
sampler of its resident memory (``VmRSS`` from ``/proc``) over time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Self

__all__ = ["MemorySampler", "PlantwireProcess", "cpu_seconds", "rss_mb"]

CLK_TCK = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used, all its threads, user and system (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


class MemorySampler:
    """Samples a process's resident memory every ``interval_s`` in a thread."""

    def __init__(self, pid: int, interval_s: float = 0.2) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []  # (monotonic time, MB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            mb = rss_mb(self.pid)
            if mb:
                self.samples.append((time.monotonic(), mb))
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return max((mb for _, mb in self.samples), default=0.0)

    @property
    def last_mb(self) -> float:
        return self.samples[-1][1] if self.samples else 0.0


class PlantwireProcess:
    """``plantwire <arguments>`` in a process, its output appended to ``log``."""

    def __init__(self, log: Path, arguments: Sequence[str], env: dict[str, str] | None = None):
        self.log = log
        self.arguments = list(arguments)
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.memory: MemorySampler | None = None

    def start(self) -> Self:
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "plantwire.cli", *self.arguments],
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(self.env or {})},
            )
        self.memory = MemorySampler(self.process.pid)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def kill_9(self) -> None:
        """No chance to flush, acknowledge or say goodbye: a power cut, or the OOM killer."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._stop_sampler()

    def terminate(self, timeout_s: float = 30.0) -> int:
        """A clean stop (SIGTERM); returns the exit code, killing the process if it hangs."""
        assert self.process is not None, "not started"
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stop_sampler()
        return self.process.returncode

    def _stop_sampler(self) -> None:
        if self.memory is not None:
            self.memory.stop()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.running:
            self.terminate()
        self._stop_sampler()
