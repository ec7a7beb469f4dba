"""Backlog recovery: does the gateway drain any backlog at the same rate, in bounded memory?

    python bench/backlog.py [--small 100000] [--messages 1000000] [--publishers 4] [--busy]
                            [--ceiling] [--shared] [--workdir PATH]

Real processes throughout: a private Mosquitto with the project's settings (``max_queued_messages
0``, ``max_inflight_messages 0``; Mosquitto 2.0.11 ignores Receive Maximum), a private influxd,
``plantwire gateway``, and ``--publishers`` flood publishers (``plantwire.testing.flood``: each
message one native batch of one sample, QoS 1, as fast as the broker takes them).

Two backlogs, each the same way: the gateway is away (SIGTERM; its persistent session stays),
the publishers send the messages, the broker keeps them, the gateway starts and drains them into
a fresh database (so that influxd's own cost does not grow from one to the next). A small one
(``--small``) gives the gateway's normal rate with a short queue; the large one
(``--messages``, a million by default) whether a large queue costs more. Printed every 10 s:
stored, rate since the first point, the gateway's resident memory. At the end, per backlog:
messages in (acknowledged by the broker) and out (in influxd), the drain rate, CPU per message
of the gateway, the broker and influxd, the gateway's peak memory, and the reconnections or clock
warnings it logged while draining (must be 0); then the large/small ratios (1.0: a large backlog
costs nothing extra).

``--shared`` ends with a live flood of ``--small`` messages taken by one gateway and then by two
in one shared group (``gateway.shared_group``): their CPU per message, all processes together.
``--ceiling`` first drains a backlog of ``--small`` messages with a bare paho client that does
nothing but count them (``plantwire.testing.drain_client``): the MQTT library's own rate and CPU
per message, the ceiling of a gateway built on it. ``--busy`` runs one CPU-bound process per core
beside everything (a busy machine). Timings vary
by 2-3x between runs on a shared machine; the two backlogs of one run compare fairly, and CPU per
message is the steadier figure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import orjson
import yaml

from plantwire.influxql import quote_literal
from plantwire.testing.flood import start_flood, wait_flood
from plantwire.testing.processes import PlantwireProcess, cpu_seconds
from plantwire.testing.servers import InfluxClient, Influxd, Mosquitto, free_port


def site_file(
    folder: Path, broker: Mosquitto, influxd: Influxd, site_id: str, phase: str,
    shared_group: str | None = None,
) -> tuple[Path, InfluxClient]:  # fmt: skip
    """The phase's site file: one site and gateway session for both, a database each (a fresh
    one, so that influxd's cost does not grow from one phase to the next)."""
    database = influxd.create_database(phase)
    config = {
        "site": {"id": site_id},
        "mqtt": {"url": broker.url, "client_id_prefix": site_id},
        "store": {"backend": "influxdb", "url": influxd.url, "database": database.database},
        "gateway": {
            "spool_path": str(folder / "spool.db"),
            "health_port": free_port(),
            "pipeline_interval_s": 0,
            **({"shared_group": shared_group} if shared_group else {}),
        },
        "areas": [{"id": "press", "lines": [{"id": "stamping", "ideal_cycle_time_s": 1, "machines": [
            {"id": "m0", "sources": [{"protocol": "modbus", "endpoint": "tcp://127.0.0.1:1",
                                      "tags": [{"metric": "v", "table": "input", "address": 0}]}]}]}]}],
    }  # fmt: skip
    path = folder / f"{phase}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, database


def stored(influx: InfluxClient, site_id: str) -> int:
    return influx.count("telemetry", "v", where=f"site = {quote_literal(site_id)}")


def wait_stored(
    influx: InfluxClient, site_id: str, want: int, gateway: PlantwireProcess, label: str
) -> float:
    """Print progress every 10 s until ``want`` are stored; the seconds from first to last."""
    started = time.monotonic()
    first_at: float | None = None
    base = got = stored(influx, site_id)
    next_line = started + 10
    while got < want:
        if not gateway.running:
            sys.exit(f"the gateway exited:\n{gateway.log_tail()}")
        time.sleep(0.5)
        got = stored(influx, site_id)
        now = time.monotonic()
        if got > base and first_at is None:
            first_at = now
        if now >= next_line:
            assert gateway.memory is not None
            span = now - first_at if first_at is not None else 0.0
            rate = (got - base) / span if span > 0 else 0.0
            print(
                f"  {label} {now - started:6.0f} s  stored {got:>9,}  {rate:7.0f}/s  "
                f"gateway rss {gateway.memory.last_mb:5.0f} MB",
                flush=True,
            )
            next_line += 10
    return time.monotonic() - (first_at or started)


def busy_processes() -> list[subprocess.Popen[bytes]]:
    burner = "while True: pass"
    return [subprocess.Popen([sys.executable, "-c", burner]) for _ in range(os.cpu_count() or 1)]


def healthy(gateway: PlantwireProcess, port: int) -> None:
    import http.client

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"the gateway did not become healthy:\n{gateway.log_tail()}")


def drain_phase(
    name: str, messages: int, args: argparse.Namespace, servers: Servers, site: Path,
    influx: InfluxClient, folder: Path, stack: ExitStack,
) -> Phase:  # fmt: skip
    """Queue ``messages`` while the gateway is away, then start it and time the drain."""
    per_publisher = max(1, messages // args.publishers)
    print(f"{name}: {per_publisher * args.publishers:,} messages queued, the gateway away")
    started = time.monotonic()
    flood = start_flood(
        servers.broker.port, servers.site_id, publishers=args.publishers, count=per_publisher
    )
    queued = wait_flood(flood, timeout_s=3600)
    print(f"  queued {queued.acked:,} in {time.monotonic() - started:.0f} s")
    before = servers.cpu()
    gateway = PlantwireProcess(
        folder / "gateway.log", ["gateway", "--config", str(site), "--id", "gw"]
    ).start()
    stack.callback(lambda: gateway.terminate() if gateway.running else None)
    cpu_before = gateway.cpu_seconds()
    seconds = wait_stored(influx, servers.site_id, queued.acked, gateway, name)
    gateway_cpu = gateway.cpu_seconds() - cpu_before
    broker_cpu, influxd_cpu = (after - b for after, b in zip(servers.cpu(), before, strict=True))
    assert gateway.memory is not None
    peak = gateway.memory.peak_mb
    gateway.terminate()
    troubles = [
        line
        for line in gateway.log.read_text(errors="replace").splitlines()
        if "connection lost" in line or "clock" in line
    ]
    gateway.log.unlink()
    return Phase(
        name, queued.acked, stored(influx, servers.site_id), seconds,
        (gateway_cpu, broker_cpu, influxd_cpu), peak, len(troubles),
    )  # fmt: skip


def ceiling_phase(args: argparse.Namespace, servers: Servers) -> None:
    """The same backlog drained by a bare paho client that only counts (and auto-acknowledges):
    what the MQTT library itself can take, the gateway's ceiling in this process model."""
    client_id = f"ceiling-{uuid.uuid4().hex[:6]}"
    topic = f"plantwire/v1/{servers.site_id}/+/+/+/data"
    command = [sys.executable, "-m", "plantwire.testing.drain_client",
               "--port", str(servers.broker.port), "--client-id", client_id, "--topic", topic]  # fmt: skip
    subprocess.run([*command, "--subscribe-only"], check=True, timeout=60)
    per_publisher = max(1, args.small // args.publishers)
    flood = start_flood(
        servers.broker.port, servers.site_id, publishers=args.publishers, count=per_publisher
    )
    queued = wait_flood(flood, timeout_s=3600)
    before = cpu_seconds(servers.broker.pid)
    done = subprocess.run(
        [*command, "--count", str(queued.acked)], check=True, capture_output=True, timeout=3600
    )
    figures = orjson.loads(done.stdout.splitlines()[-1])
    broker_us = 1e6 * (cpu_seconds(servers.broker.pid) - before) / max(figures["messages"], 1)
    print(
        f"ceiling: a bare paho client drained {figures['messages']:,} of {queued.acked:,} queued "
        f"at {figures['messages'] / figures['seconds']:,.0f} msg/s, "
        f"{1e6 * figures['cpu_s'] / max(figures['messages'], 1):,.0f} µs of its CPU per message "
        f"(broker {broker_us:,.0f} µs)"
    )


def live_phase(
    gateways: int, messages: int, args: argparse.Namespace, servers: Servers, folder: Path,
    stack: ExitStack,
) -> float:  # fmt: skip
    """``gateways`` processes in one shared group take a live flood of ``messages`` (into a
    fresh database); returns their CPU microseconds per message, all of them together."""
    name = f"shared{gateways}"
    # A group of the phase's own: a group of an ended phase keeps its session at the broker,
    # which would otherwise be handed part of this phase's messages.
    site, influx = site_file(
        folder, servers.broker, servers.influxd, servers.site_id, name, shared_group=name
    )
    processes = []
    for index in range(gateways):
        port = free_port()
        gateway = PlantwireProcess(folder / f"{name}-{index}.log", [
            "gateway", "--config", str(site), "--id", f"{name}-{index}",
            "--spool", str(folder / f"{name}-{index}.db"), "--health-port", str(port),
        ]).start()  # fmt: skip
        stack.callback(lambda g=gateway: g.terminate() if g.running else None)
        healthy(gateway, port)
        processes.append(gateway)
    before = [g.cpu_seconds() for g in processes]
    per_publisher = max(1, messages // args.publishers)
    flood = start_flood(
        servers.broker.port, servers.site_id, publishers=args.publishers, count=per_publisher,
        first_index=100 * gateways,  # machines of their own: nothing of another phase's
    )  # fmt: skip
    sent = wait_flood(flood, timeout_s=3600).acked
    wait_stored(influx, servers.site_id, sent, processes[0], name)
    cpu = sum(g.cpu_seconds() - b for g, b in zip(processes, before, strict=True))
    for gateway in processes:
        gateway.terminate()
    got = stored(influx, servers.site_id)
    per_message = 1e6 * cpu / sent
    print(
        f"{name}: {gateways} gateway(s) in one shared group, a live flood of {sent:,}: "
        f"{got:,} stored, {per_message:,.0f} µs of gateway CPU per message (all of them)"
    )
    return per_message


@dataclass(frozen=True)
class Servers:
    broker: Mosquitto
    influxd: Influxd
    site_id: str

    def cpu(self) -> tuple[float, float]:
        """CPU seconds used so far by the broker and influxd."""
        return cpu_seconds(self.broker.pid), cpu_seconds(self.influxd.pid)


@dataclass(frozen=True)
class Phase:
    name: str
    sent: int
    stored: int
    seconds: float
    cpu: tuple[float, float, float]  # gateway, broker, influxd
    peak_mb: float
    troubles: int  # reconnections or clock warnings while draining

    def row(self) -> str:
        per_message = "".join(f" {1e6 * cpu / self.sent:>8.0f}" for cpu in self.cpu)
        return (
            f"{self.name:8} {self.sent:>10,} {self.stored:>10,} {self.rate:>8.0f}{per_message} "
            f"{self.peak_mb:>8.0f} {self.troubles:>9}"
        )

    @property
    def rate(self) -> float:
        return self.sent / self.seconds


def run(args: argparse.Namespace, folder: Path) -> None:
    with ExitStack() as stack:
        broker = stack.enter_context(Mosquitto(folder / "mosquitto"))
        influxd = stack.enter_context(Influxd(folder / "influxd"))
        servers = Servers(broker, influxd, f"backlog-{uuid.uuid4().hex[:6]}")
        burners = busy_processes() if args.busy else []
        stack.callback(lambda: [p.kill() for p in burners])
        if args.ceiling:
            ceiling_phase(args, servers)
        phases = []
        for name, messages in (("small", args.small), ("large", args.messages)):
            site, influx = site_file(folder, broker, influxd, servers.site_id, name)
            if not phases:  # the gateway's persistent session: the broker keeps its messages
                first = PlantwireProcess(
                    folder / "gateway.log", ["gateway", "--config", str(site), "--id", "gw"]
                ).start()
                healthy(first, yaml.safe_load(site.read_text())["gateway"]["health_port"])
                first.terminate()
            phases.append(drain_phase(name, messages, args, servers, site, influx, folder, stack))
        small, large = phases
        print()
        print("CPU per message in microseconds: the gateway's, the broker's and influxd's")
        print(
            f"{'backlog':8} {'in':>10} {'out':>10} {'msg/s':>8} {'gateway':>8} {'broker':>8} "
            f"{'influxd':>8} {'peak MB':>8} {'troubles':>9}"
        )
        for phase in phases:
            print(phase.row())
        print(
            f"large / small: rate {large.rate / small.rate:.2f}, gateway CPU per message "
            f"{large.cpu[0] / large.sent / (small.cpu[0] / small.sent):.2f}; lost: "
            f"{sum(p.sent - p.stored for p in phases)}"
            f"{'; one CPU-bound process per core beside it' if args.busy else ''}"
        )
        if args.shared:
            one = live_phase(1, args.small, args, servers, folder, stack)
            two = live_phase(2, args.small, args, servers, folder, stack)
            print(f"shared group: CPU per message with two gateways / with one: {two / one:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--busy", action="store_true")
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="first drain a backlog of --small with a bare paho client: the library's own rate",
    )
    parser.add_argument(
        "--shared",
        action="store_true",
        help="last, a live flood of --small into one and then two gateways in a shared group",
    )
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="pw-backlog-", dir=args.workdir))
    try:
        run(args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
