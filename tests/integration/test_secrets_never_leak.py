"""No secret ever reaches the output: every ``plantwire`` command runs as a subprocess with
distinctive passwords and tokens in its environment and in a secret file, and neither they nor
their base64 or URL encodings may appear in what it prints -- help, summaries, errors, and
DEBUG and JSON logs while it fails against servers that refuse it or are not there.

The commands are read from the argparse tree, so a new command fails this test until it is given
runs here. What each run meets:

* a Mosquitto that knows user ``edge`` with the environment's MQTT password (the ``v2`` site
  logs in; the ``v1`` site's password, from its secret file, is refused);
* an "InfluxDB" (and "Grafana") that answers 401 to everything, and a port nobody listens on;
* ``plantwire sim`` serving OPC UA to user ``plantwire`` with its own password; the edge's OPC UA
  password is another one, so the edge and ``edge browse`` are refused (and browse, given the
  simulator's password, gets in).

``plantwire demo`` only shows its help and refuses a bad option here: it reads no secrets (its
broker and store are embedded), and a run takes 20 s of the two shared cores; test_demo.py runs it.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import running
from pw_deploy import tool
from pw_mqtt import DEMO

from plantwire.cli import build_parser
from plantwire.testing.servers import Mosquitto, free_port
from simulators.siteconfig import scenario_site_config

pytestmark = [pytest.mark.servers, pytest.mark.timeout(180)]

SECRETS = {  # environment variable -> a value found nowhere else
    "PLANTWIRE_MQTT_PASSWORD": "s3cr3t-mqtt-Pa55-xyz",
    "PLANTWIRE_INFLUX_TOKEN": "infl-t0ken-abc-123",
    "PLANTWIRE_INFLUX_PASSWORD": "infl-Pa55w0rd-def-456",
    "PLANTWIRE_OPCUA_PASSWORD": "0pcua-Pa55-ghi-789",
    "PLANTWIRE_SIM_OPCUA_PASSWORD": "s1m-0pcua-Pa55-jkl-012",
    "GRAFANA_TOKEN": "glsa-graf-t0ken-mno-345",
    "GRAFANA_PASSWORD": "graf-Pa55-pqr-678",
}
FILE_SECRET = "f1le-mqtt-Pa55-stu-901"  # the v1 site's MQTT password, through password_file
ALL_SECRETS = {**SECRETS, "mqtt-password file": FILE_SECRET}
PLANTWIRE = [sys.executable, "-m", "plantwire.cli"]  # the console script's main, wherever it is
NODE = "edge-snacks"  # reads Modbus and OPC UA machines
COMMAND_LIMIT_S = 45  # what a command may take; a service must show ``expect`` by then
SERVICE_GRACE_S = 1.5  # a service runs on this long after the failure under test showed


def needles(secret: str) -> list[str]:
    """The secret and the forms a leak could take: percent-encoded (a URL), and base64 (an HTTP
    basic auth header, ``user:password``) -- for base64, the characters that depend on the
    secret alone, in each of the three alignments it can have inside a longer encoded text."""
    raw = secret.encode()
    found = {secret, urllib.parse.quote(secret, safe="")}
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw + b"\0\0\0")
        first, last = -(-shift // 3), (shift + len(raw)) // 3  # groups inside the secret
        for alphabet in (encoded, encoded.replace(b"+", b"-").replace(b"/", b"_")):
            found.add(alphabet[4 * first : 4 * last].decode())
    return sorted(found)


# -- the command tree ------------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[Any] | None:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return actions[0] if actions else None


def command_tree(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], bool]]:
    """Every parser's path, and whether it runs something (has no required subcommand)."""
    children = _subcommands(parser)
    yield path, children is None or not children.required
    for name, child in (children.choices if children else {}).items():
        yield from command_tree(child, (*path, name))


# -- what the commands meet ------------------------------------------------------------------------


class _Refuse(BaseHTTPRequestHandler):
    """An InfluxDB or Grafana that turns every request away as unauthorized."""

    def _refuse(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'{"code":"unauthorized","message":"unauthorized access"}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = _refuse  # noqa: N815 - the names http.server calls

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """Quiet: the test's output is not under test."""


@pytest.fixture(scope="module")
def refusing_http() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def password_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    folder = tmp_path_factory.mktemp("password-broker")
    passwords = folder / "passwd"
    user, password = "edge", SECRETS["PLANTWIRE_MQTT_PASSWORD"]
    subprocess.run(
        [tool("mosquitto_passwd"), "-b", "-c", str(passwords), user, password], check=True
    )

    class PasswordMosquitto(Mosquitto):
        def __init__(self, workdir: Path) -> None:
            super().__init__(workdir, anonymous=False, extra_config=[f"password_file {passwords}"])

    with running(PasswordMosquitto, folder / "run") as broker:
        yield broker


def write_sites(folder: Path, *, modbus_port: int, opcua_port: int) -> dict[str, Path]:
    """Site files that take every secret from the environment (``v2``) or a file (``v1``), a
    broken one, and one with a password written into it (refused without echoing it)."""
    (folder / "secrets").mkdir()
    (folder / "secrets" / "mqtt-password").write_text(FILE_SECRET + "\n")
    base = scenario_site_config(DEMO, modbus_port=modbus_port, opcua_port=opcua_port)
    for node in base["edge_nodes"]:
        node.update(buffer_path=str(folder / f"{node['id']}.db"), health_port=0)
    for _, _, machine in _machines(base):
        for source in machine["sources"]:
            if source["protocol"] == "opcua":
                source.update(username="plantwire", password="${PLANTWIRE_OPCUA_PASSWORD}")
    base["gateway"] = {"pipeline_interval_s": 1}
    base["analytics"]["registry_path"] = str(folder / "models")
    mqtt = {"url": "${PW_TEST_MQTT_URL}", "username": "edge"}
    influx = {"url": "${PW_TEST_INFLUX_URL}", "timeout_s": 2}
    sites = {
        "v2": {
            **base,
            "mqtt": {**mqtt, "password": "${PLANTWIRE_MQTT_PASSWORD}"},
            "store": {
                "backend": "influxdb",
                **influx,
                "api": "v2",
                "org": "plant",
                "bucket": "plantwire",
                "token": "${PLANTWIRE_INFLUX_TOKEN}",
            },
        },
        "v1": {
            **base,
            "mqtt": {**mqtt, "password_file": "secrets/mqtt-password"},
            "store": {
                "backend": "influxdb",
                **influx,
                "database": "plantwire",
                "username": "writer",
                "password": "${PLANTWIRE_INFLUX_PASSWORD}",
            },
        },
        "bad": {
            **base,
            # Problems beside the secrets, in their blocks: a typo, a model-level refusal, and a
            # variable holding a secret wired to a number by mistake.
            "mqtt": {**mqtt, "password": "${PLANTWIRE_MQTT_PASSWORD}", "keepalive": 30},
            "store": {
                "backend": "influxdb",
                **influx,
                "api": "v2",
                "token": "${PLANTWIRE_INFLUX_TOKEN}",
            },
            "gateway": {"pipeline_interval_s": "${PLANTWIRE_INFLUX_PASSWORD}"},
        },
        "inline": {**base, "mqtt": {**mqtt, "password": SECRETS["PLANTWIRE_MQTT_PASSWORD"]}},
    }
    paths = {}
    for name, site in sites.items():
        paths[name] = folder / f"site-{name}.yaml"
        paths[name].write_text(yaml.safe_dump(site, sort_keys=False))
    return paths


def _machines(site: Mapping[str, Any]) -> Iterator[tuple[Any, Any, Any]]:
    for area in site["areas"]:
        for line in area["lines"]:
            for machine in line["machines"]:
                yield area, line, machine


# -- running the commands --------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    args: tuple[str, ...]
    expect: str  # a regular expression the output must match: the path under test was taken
    exits: frozenset[int] = frozenset({0})
    service: bool = False  # runs until stopped: Ctrl-C once ``expect`` shows, plus a moment
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    run: Run
    code: int
    output: str


def execute(
    run: Run,
    env: Mapping[str, str],
    cwd: Path,
    stop: threading.Event,
    limit_s: float = COMMAND_LIMIT_S,
) -> Outcome:
    """Run one command. A service is interrupted (SIGINT, as Ctrl-C) a moment after its output
    shows ``expect``, or once ``stop`` is set; anything still running at the limit is killed.
    Output goes to a file, so no pipe can fill up."""
    output = cwd / f"output-{uuid.uuid4().hex}.txt"
    with (
        output.open("wb") as sink,
        subprocess.Popen(
            [*PLANTWIRE, *run.args],
            env={**env, **run.env},
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        ) as process,
    ):
        deadline = time.monotonic() + limit_s
        while process.poll() is None and time.monotonic() < deadline and not stop.is_set():
            if run.service and re.search(
                run.expect, output.read_text(errors="replace"), re.MULTILINE
            ):
                deadline = min(deadline, time.monotonic() + SERVICE_GRACE_S)
            time.sleep(0.1)
        if process.poll() is None:
            in_time = run.service and time.monotonic() < deadline + 1
            process.send_signal(signal.SIGINT if in_time or stop.is_set() else signal.SIGKILL)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    return Outcome(run, code, output.read_text(errors="replace"))


def wait_for_port(port: int, server: Future[Outcome]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not server.done():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            time.sleep(0.1)
        else:
            return
    pytest.fail(f"plantwire sim did not serve OPC UA on port {port}")


def runs(sites: Mapping[str, Path], tmp: Path, urls: Mapping[str, str]) -> dict[str, list[Run]]:
    """The runs of each command (by its path, space-separated)."""
    v1, v2, bad, inline = (str(sites[name]) for name in ("v1", "v2", "bad", "inline"))
    refusing = {"PW_TEST_INFLUX_URL": urls["refusing"]}
    debug_json = ("--log-level", "DEBUG", "--log-format", "json")
    debug_text = ("--log-level", "DEBUG")
    unreachable = r"(?i)refused|unreachable|cannot reach|failed to establish"
    unauthorized = r"(?i)401|unauthori[sz]ed"
    registry = ("--registry", str(tmp / "registry"))
    opcua = urls["opcua"]
    return {
        "analytics": [
            Run(("analytics", "--config", v2, "--once", "--health-port", "0", *debug_json),
                unauthorized, frozenset({3}), env=refusing),
            Run(("analytics", "--config", v1, "--health-port", "0", *debug_text),
                unreachable, service=True),
        ],
        "oee": [
            Run(("oee", "--config", v2, "--from=-8h"), unauthorized, frozenset({3}),
                env=refusing),
            Run(("oee", "--config", v1, "--from=-8h", "--json"), unreachable, frozenset({3})),
        ],
        "train": [
            Run(("train", "--config", v2, "--machine", "bagger", "--from=-1h", "--to", "now",
                 *registry), unauthorized, frozenset({3}), env=refusing),
            Run(("train", "--config", v1, "--machine", "bagger", "--from=-1h", "--to", "now",
                 *registry), unreachable, frozenset({3})),
        ],
        "models list": [Run(("models", *registry, "list"), r"^$")],
        "models show": [Run(("models", *registry, "show", "bd/a/b/c"), "no promoted model",
                            frozenset({3}))],
        "models promote": [Run(("models", *registry, "promote", "bd/a/b/c", "1"),
                               "no model version 1", frozenset({3}))],
        "models rollback": [Run(("models", *registry, "rollback", "bd/a/b/c"),
                                "no earlier promoted version", frozenset({3}))],
        "config check": [
            Run(("config", "check", v2), r"password +\*{8} \(from \$PLANTWIRE_MQTT_PASSWORD\)"),
            Run(("config", "check", v1), r"password +\*{8} \(from file .*mqtt-password\)"),
            Run(("config", "check", "--quiet", v2), r"^$"),
            Run(("config", "check", bad), "3 problems", frozenset({2})),
            Run(("config", "check", inline), "readable by anyone", frozenset({2})),
        ],
        "demo": [Run(("demo", "--duration", "0"), "--duration must be positive", frozenset({2}))],
        "edge": [
            Run(("edge", "--config", v2, "--node", NODE, *debug_json),
                "refused user 'plantwire'", service=True),
            Run(("edge", "--config", v1, "--node", NODE, *debug_text),
                "MQTT broker unavailable .*(Not authorized|Bad user name)", service=True),
        ],
        "edge browse": [
            Run(("edge", "browse", opcua, "--user", "plantwire"), "refused user 'plantwire'",
                frozenset({2})),
            Run(("edge", "browse", opcua, "--user", "plantwire", "--depth", "2"), "# Tags browsed",
                env={"PLANTWIRE_OPCUA_PASSWORD": SECRETS["PLANTWIRE_SIM_OPCUA_PASSWORD"]}),
        ],
        "gateway": [
            Run(("gateway", "--config", v2, "--health-port", "0", "--spool", str(tmp / "g2.db"),
                 *debug_json), unauthorized, frozenset({3}), env=refusing),
            Run(("gateway", "--config", v1, "--health-port", "0", "--spool", str(tmp / "g1.db"),
                 *debug_text), "MQTT broker unavailable .*(Not authorized|Bad user name)",
                service=True),
        ],
        "ingest try": [
            Run(("ingest", "try", "--config", v2, "--topic", "factory/l/m/telemetry",
                 "--payload", '{"t": 1}'), "no ingest rule", frozenset({2})),
            Run(("ingest", "try", "--config", bad, "--topic", "x", "--payload", "1", "--json"),
                "the site file is refused", frozenset({2})),
        ],
        "grafana export": [Run(("grafana", "export", str(tmp / "boards")), r"\.json")],
        "grafana push": [
            Run(("grafana", "push", "--url", urls["refusing"]), "HTTP 401", frozenset({3})),
            Run(("grafana", "push", "--url", urls["refusing"], "--user", "admin"), "HTTP 401",
                frozenset({3})),
            Run(("grafana", "push", "--url", urls["unreachable"]), "cannot reach Grafana",
                frozenset({3})),
        ],
        # "sim" itself is the OPC UA server the others meet (see the test).
        "sim config": [Run(("sim", "config"), "plantwire sim config")],
        "sim registers": [Run(("sim", "registers"), "holding")],
        "sim link": [
            Run(("sim", "link", "--listen", f"127.0.0.1:{free_port()}", "--target",
                 f"127.0.0.1:{free_port()}"), "link emulator on", service=True),
        ],
    }  # fmt: skip


def test_no_command_prints_a_secret(
    tmp_path: Path, password_broker: Mosquitto, refusing_http: str
) -> None:
    tree = dict(command_tree(build_parser()))
    modbus_port, opcua_port = free_port(), free_port()
    sites = write_sites(tmp_path, modbus_port=modbus_port, opcua_port=opcua_port)
    urls = {
        "refusing": refusing_http,
        "unreachable": f"http://127.0.0.1:{free_port()}",
        "opcua": f"opc.tcp://127.0.0.1:{opcua_port}/plantwire",
    }
    plan = runs(sites, tmp_path, urls)
    sim = Run(
        ("sim", "--modbus-port", str(modbus_port), "--opcua-port", str(opcua_port),
         "--opcua-user", "plantwire", "--cert-dir", str(tmp_path / "sim-pki")),
        "OPC UA on opc.tcp://127.0.0.1",
    )  # fmt: skip
    runnable = {" ".join(path) for path, runs_something in tree.items() if path and runs_something}
    assert runnable == {*plan, "sim"}, "give every plantwire command its runs here"
    help_runs = [Run((*path, "--help"), r"(?i)usage: plantwire") for path in tree]
    help_runs += [Run((), "usage: plantwire", frozenset({2})), Run(("--version",), "plantwire")]

    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PLANTWIRE_", "GRAFANA_"))},
        **SECRETS,
        "PW_TEST_MQTT_URL": password_broker.url,
        "PW_TEST_INFLUX_URL": urls["unreachable"],
    }
    everything = [*help_runs, *(run for command in plan.values() for run in command)]
    stop_sim, never = threading.Event(), threading.Event()
    with ThreadPoolExecutor(max_workers=6) as pool:
        server = pool.submit(execute, sim, environment, tmp_path, stop_sim, 150)
        wait_for_port(opcua_port, server)
        outcomes = list(
            pool.map(lambda run: execute(run, environment, tmp_path, never), everything)
        )
        stop_sim.set()
        outcomes.append(server.result())

    problems = []
    for outcome in outcomes:
        line = f"plantwire {' '.join(outcome.run.args)}"
        for name, secret in ALL_SECRETS.items():
            leaked = [n for n in needles(secret) if n in outcome.output]
            if leaked:
                problems.append(f"{line}: prints {name} as {leaked}")
        if outcome.code not in outcome.run.exits:
            problems.append(f"{line}: exit {outcome.code}, not {set(outcome.run.exits)}")
        if not re.search(outcome.run.expect, outcome.output, flags=re.MULTILINE):
            problems.append(f"{line}: no {outcome.run.expect!r} in {outcome.output[-1500:]}")
    assert not problems, "\n".join(problems)
