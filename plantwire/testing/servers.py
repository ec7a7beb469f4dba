"""Run Debian's ``mosquitto`` and ``influxd`` as private processes for tests and benchmarks.

Each server gets a free loopback port and its own folder (config, data, log), so tests never
touch a system daemon and never collide with each other. A server can be stopped, killed
(``SIGKILL``) and started again on the same port and data, which is what the fault tests need.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Self

import orjson

from plantwire.influxql import quote_ident

__all__ = [
    "InfluxClient",
    "Influxd",
    "Mosquitto",
    "ServerError",
    "ServerMissingError",
    "find_binary",
    "free_port",
]

_SEARCH_DIRS = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")


class ServerError(RuntimeError):
    """A test server did not start, or did not answer in time."""


class ServerMissingError(ServerError):
    """The server's binary is not installed (``apt-get install mosquitto influxdb``)."""


def find_binary(name: str) -> str:
    """Return the path of a daemon binary; Debian puts mosquitto in /usr/sbin, off most PATHs."""
    found = shutil.which(name)
    if found:
        return found
    for folder in _SEARCH_DIRS:
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise ServerMissingError(
        f"{name} is not installed (Debian: apt-get install -y mosquitto influxdb)"
    )


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class _Daemon:
    """A child process with a config file and a log in its own folder."""

    name = "daemon"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    # -- subclass hooks -------------------------------------------------------------------
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise ServerError(f"{self.name} is not running")
        return self._proc.pid

    def start(self, timeout_s: float = 15.0) -> Self:
        if self.running:
            return self
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self._command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with code {self._proc.returncode}:\n{self.log_tail()}"
                )
            if self._ready():
                return self
            time.sleep(0.02)
        self.kill()
        raise ServerError(f"{self.name} did not answer within {timeout_s}s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop gracefully (SIGTERM), killing it if it does not go."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        """Kill without warning (SIGKILL), as a power cut or the OOM killer would."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Mosquitto(_Daemon):
    """A private Mosquitto 2 broker on a free port, persistence in its folder.

    ``extra_config`` lines are appended verbatim (listeners, TLS, password files, ACLs); with
    ``anonymous=False`` the default listener refuses clients without credentials.
    """

    name = "mosquitto"

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        anonymous: bool = True,
        extra_config: Iterable[str] = (),
        default_listener: bool = True,
    ) -> None:
        super().__init__(workdir)
        self.binary = find_binary("mosquitto")
        self.port = port or free_port()
        self.anonymous = anonymous
        self.extra_config = list(extra_config)
        self.default_listener = default_listener
        self.config_path = workdir / "mosquitto.conf"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _config_text(self) -> str:
        lines = [
            # Debian's broker drops to the 'mosquitto' user when started as root and could
            # then not write its persistence file in our temporary folder.
            "user root",
            "per_listener_settings false",
            f"allow_anonymous {'true' if self.anonymous else 'false'}",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            # Offline persistent sessions must hold a whole outage's backlog: no count limit.
            "max_queued_messages 0",
            "max_inflight_messages 0",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages true",
        ]
        if self.default_listener:
            lines.append(f"listener {self.port} 127.0.0.1")
        lines.extend(self.extra_config)
        return "\n".join(lines) + "\n"

    def _command(self) -> list[str]:
        self.config_path.write_text(self._config_text())
        return [self.binary, "-c", str(self.config_path)]

    def _ready(self) -> bool:
        return _port_open(self.port)


class InfluxClient:
    """The two InfluxDB 1.x calls tests and benchmarks need: write line protocol, run InfluxQL.

    Deliberately separate from PlantWire's own writer, so a test checks the writer against an
    independent path to the database.
    """

    def __init__(self, port: int, database: str) -> None:
        self.port = port
        self.database = database

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def write(self, lines: bytes | str, *, precision: str = "ns") -> None:
        """POST line protocol; raise with influxd's own message if it is refused."""
        body = lines.encode() if isinstance(lines, str) else lines
        params = urllib.parse.urlencode({"db": self.database, "precision": precision})
        status, payload = self._request("POST", f"/write?{params}", body)
        if status != 204:
            raise ServerError(
                f"influxd refused the write ({status}): {payload.decode(errors='replace')}"
            )

    def query(self, influxql: str, *, epoch: str = "ns") -> Any:
        """Run InfluxQL; return the parsed JSON response, raising on any statement error."""
        params = urllib.parse.urlencode({"db": self.database, "q": influxql, "epoch": epoch})
        status, payload = self._request(
            "POST", "/query", params.encode(), {"Content-Type": "application/x-www-form-urlencoded"}
        )
        if status != 200:
            raise ServerError(
                f"influxd query failed ({status}): {payload.decode(errors='replace')}"
            )
        result = orjson.loads(payload)
        for statement in result.get("results", []):
            if "error" in statement:
                raise ServerError(f"InfluxQL error: {statement['error']} in {influxql!r}")
        return result

    def rows(self, influxql: str) -> list[dict[str, Any]]:
        """Query and flatten every series into dicts (with the series' tags merged in)."""
        rows: list[dict[str, Any]] = []
        for statement in self.query(influxql).get("results", []):
            for series in statement.get("series", []):
                tags = series.get("tags", {})
                for values in series.get("values", []):
                    row = dict(zip(series["columns"], values, strict=True))
                    row.update(tags)
                    row["_measurement"] = series.get("name")
                    rows.append(row)
        return rows

    def count(self, measurement: str, field: str, where: str = "") -> int:
        """COUNT(field) over all time: the figure the zero-loss tests compare against."""
        clause = f" WHERE {where}" if where else ""
        rows = self.rows(
            f"SELECT COUNT({quote_ident(field)}) FROM {quote_ident(measurement)}{clause}"
        )
        return int(rows[0]["count"]) if rows else 0

    def create_database(self, name: str) -> InfluxClient:
        """Create a database on the same server and return a client for it."""
        self.query(f"CREATE DATABASE {quote_ident(name)}")
        return InfluxClient(self.port, name)


class Influxd(_Daemon):
    """A private InfluxDB 1.x (Debian's influxd) with HTTP on a free port.

    ``client`` talks to its default database; ``create_database`` gives each test its own.
    """

    name = "influxd"

    def __init__(
        self, workdir: Path, *, port: int | None = None, database: str = "plantwire"
    ) -> None:
        super().__init__(workdir)
        self.binary = find_binary("influxd")
        self.port = port or free_port()
        self.rpc_port = free_port()
        self.config_path = workdir / "influxdb.conf"
        self.client = InfluxClient(self.port, database)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _config_text(self) -> str:
        data = self.workdir / "data"
        return f"""
reporting-enabled = false
bind-address = "127.0.0.1:{self.rpc_port}"
[meta]
  dir = "{data}/meta"
[data]
  dir = "{data}/data"
  wal-dir = "{data}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
  pprof-enabled = false
[logging]
  level = "warn"
"""

    def _command(self) -> list[str]:
        self.config_path.write_text(self._config_text())
        return [self.binary, "-config", str(self.config_path)]

    def _ready(self) -> bool:
        try:
            status, _ = self.client._request("GET", "/ping")
        except OSError:
            return False
        return status == 204

    def start(self, timeout_s: float = 15.0) -> Self:
        super().start(timeout_s)
        self.client.create_database(self.client.database)
        return self

    def create_database(self, name: str) -> InfluxClient:
        return self.client.create_database(name)
