"""Soak: a sustained sample rate through simulated PLCs, edge agents, Mosquitto, the gateway and
influxd, with the memory and CPU of every process printed over time and an exact count at the end.

    python bench/soak.py [--minutes 30] [--rate 50000] [--interval 60] [--poll-ms 200]
                         [--edges 2] [--connections 2] [--warmup 120] [--workdir PATH] [--keep]

Every part is a real process: a Modbus TCP server (pymodbus, one device per machine, a dense bank
of float32 input registers whose values move on every read), ``--edges`` processes of
``plantwire edge`` with ``--connections`` Modbus connections each (one simulator port per
connection), a private Mosquitto, a ``plantwire gateway`` and a private influxd. A machine is 240
float32 tags, read in four requests of 60; there are ``--rate`` x ``--poll-ms`` tags. No tag has a
deadband (report by exception passes every sample) and no machine has a PLC clock tag (which
every poll group would read), so each sample is read once and stored once.

Every ``--interval`` seconds a line: elapsed time; samples/s read by the edges, published by them
(acknowledged by the broker) and received by the gateway; samples/s stored, counted in influxd
(samples stamped in the previous interval, ``LAG_S`` behind, so the writes have landed); lines/s
the gateway wrote; the edges' backlog (samples buffered, not yet acknowledged); per process the
resident memory (VmRSS, MB) and CPU (% of one core): edges, gateway, simulator, Mosquitto,
influxd; and the CPU everything else on the machine used.

At the end the simulator stops, so the edges read nothing more and drain their buffers; when the
gateway has written everything, the samples in influxd are counted with InfluxQL (``count(*)``
per time chunk) and the summary printed: duration, mean rates, samples in (published by the
edges: read - suppressed - dropped - still buffered, each printed), samples out (in influxd),
lost (must be 0); per process the memory after the warm-up, its maximum and at the end, the
growth in MB/hour (least squares after the warm-up), CPU, and a verdict: flat when memory grew
less than 10 % after the warm-up. The data lives in a temporary folder (under ``--workdir`` if
given), deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from plantwire.influxql import quote_ident
from plantwire.lineprotocol import TELEMETRY_MEASUREMENT
from plantwire.testing.servers import InfluxClient, Influxd, Mosquitto, free_port

SITE = "soak"
DATABASE = "soak"
TAGS_PER_MACHINE = 240
FLOATS_PER_REQUEST = 60  # max_registers_per_read 120: a machine is four requests
MAX_DEVICES_PER_PORT = 247
TICK_S = 10.0  # memory is sampled this often (for its maximum and trend)
LAG_S = 10.0  # the stored/s column counts samples stamped this long ago and earlier
FLAT_GROWTH = 0.10
CLK_TCK = os.sysconf("SC_CLK_TCK")
PLANTWIRE = ("edge", "gateway", "simulator")


# -- the simulated PLCs: a child process, ``python bench/soak.py --serve-modbus SPEC`` -------------
class RegisterBank:
    """One machine's float32 input registers; every read sees values that moved since the last."""

    def __init__(self, floats: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.level = rng.uniform(5.0, 95.0, floats)
        self.swing = rng.uniform(0.5, 5.0, floats)
        self.phase = rng.uniform(0.0, 2 * math.pi, floats)

    async def serve(  # pymodbus calls actions with these positional arguments
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> Any:
        if set_values is not None:
            from pymodbus.constants import ExcCodes

            return ExcCodes.ILLEGAL_FUNCTION  # read-only
        first, last = address // 2, (address + count + 1) // 2
        angle = time.time() / 7.0 + self.phase[first:last]
        values = (self.level[first:last] + self.swing[first:last] * np.sin(angle)).astype(">f4")
        offset = address - start_address
        registers[offset : offset + count] = values.view(">u2")[address % 2 :][:count].tolist()
        return None


async def _serve_modbus(ports: list[tuple[int, list[int]]]) -> None:
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    servers = []
    for port, floats_per_device in ports:
        devices = [
            SimDevice(
                unit + 1,
                simdata=[SimData(0, count=2 * floats, values=0, datatype=DataType.REGISTERS)],
                action=RegisterBank(floats, seed=port * 1000 + unit).serve,
            )
            for unit, floats in enumerate(floats_per_device)
        ]
        server = ModbusTcpServer(devices, address=("127.0.0.1", port))
        await server.serve_forever(background=True)
        servers.append(server)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        await server.shutdown()


def serve_modbus(spec: str) -> None:
    """``PORT:N,N,...;PORT:...``: each port and the float count of each device on it."""
    import logging

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    ports = []
    for part in spec.split(";"):
        port, counts = part.split(":")
        ports.append((int(port), [int(n) for n in counts.split(",")]))
    asyncio.run(_serve_modbus(ports))


# -- the plant and its site file ------------------------------------------------------------------
@dataclass(frozen=True)
class PlantMachine:
    name: str
    edge: int
    port: int
    device_id: int
    tags: int


def plan_plant(tags: int, edges: int, connections: int) -> list[PlantMachine]:
    """Machines of 240 tags (the last takes the remainder; fewer per machine when there are too
    few tags to give every port one), dealt in contiguous blocks to the ports, ``connections``
    consecutive ports to an edge."""
    ports = edges * connections
    size = min(TAGS_PER_MACHINE, math.ceil(tags / ports))
    counts = [size] * (tags // size) + ([tags % size] if tags % size else [])
    if len(counts) > ports * MAX_DEVICES_PER_PORT:
        raise SystemExit(f"{len(counts)} machines do not fit on {ports} ports of 247 devices")
    port_numbers: list[int] = []
    while len(port_numbers) < ports:
        port = free_port()
        if port not in port_numbers:
            port_numbers.append(port)
    machines: list[PlantMachine] = []
    devices = [0] * ports
    for index, count in enumerate(counts):
        slot = index * ports // len(counts)  # block sizes differ by one at most
        devices[slot] += 1
        edge = slot // connections
        machines.append(
            PlantMachine(f"m{index:04d}", edge, port_numbers[slot], devices[slot], count)
        )
    return machines


def simulator_spec(machines: Sequence[PlantMachine]) -> str:
    ports: dict[int, list[int]] = {}
    for machine in machines:
        ports.setdefault(machine.port, []).append(machine.tags)
    return ";".join(f"{port}:{','.join(map(str, n))}" for port, n in ports.items())


def _machine(machine: PlantMachine, poll_s: float, tags: list[dict[str, Any]]) -> dict[str, Any]:
    source = {
        "protocol": "modbus",
        "endpoint": f"tcp://127.0.0.1:{machine.port}",
        "device_id": machine.device_id,
        "max_registers_per_read": 2 * FLOATS_PER_REQUEST,
        "poll_groups": {"fast": poll_s},
        "tags": tags,
    }
    return {"id": machine.name, "edge_node": f"edge-{machine.edge + 1}", "sources": [source]}


def write_site(
    folder: Path, machines: Sequence[PlantMachine], edges: int, poll_s: float, urls: tuple[str, str]
) -> tuple[Path, list[int], int]:
    """The site file, one line per edge; returns it, the edges' health ports and the gateway's."""
    edge_ports = [free_port() for _ in range(edges)]
    gateway_port = free_port()
    tag_lists = {  # shared: the YAML holds each list once, as an anchor
        n: [
            {"metric": f"s{k:03d}", "table": "input", "address": 2 * k, "type": "float32"}
            for k in range(n)
        ]
        for n in {machine.tags for machine in machines}
    }
    lines = [
        {
            "id": f"line-{edge + 1}",
            "ideal_cycle_time_s": 1.0,
            "machines": [
                _machine(m, poll_s, tag_lists[m.tags]) for m in machines if m.edge == edge
            ],
        }
        for edge in range(edges)
    ]
    site = {
        "site": {"id": SITE},
        "mqtt": {"url": urls[0]},
        "store": {"backend": "influxdb", "url": urls[1], "database": DATABASE},
        "gateway": {"spool_path": str(folder / "gateway-spool.db"), "health_port": gateway_port},
        "edge_nodes": [
            {
                "id": f"edge-{n + 1}",
                "buffer_path": str(folder / f"edge-{n + 1}.db"),
                "health_port": edge_ports[n],
            }
            for n in range(edges)
        ],
        "areas": [{"id": "hall", "lines": lines}],
    }
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path, edge_ports, gateway_port


# -- processes: start, stop, wait, memory, CPU, metrics --------------------------------------------
@contextmanager
def child(command: list[str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def scrape(port: int) -> dict[str, float]:
    """A health endpoint's Prometheus metrics, each name summed over its labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    metrics: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            name = name.partition("{")[0]
            metrics[name] = metrics.get(name, 0.0) + float(value)
    return metrics


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_until(
    what: str, ready: Callable[[], bool], process: subprocess.Popen[bytes], timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if process.poll() is not None:
            raise SystemExit(f"{what}: the process exited with code {process.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.2)


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


@dataclass
class Watched:
    """A process whose memory is sampled every tick: (seconds since the start, MB)."""

    name: str
    pid: int
    rss: list[tuple[float, float]] = field(default_factory=list)
    cpu_mark: float = 0.0  # CPU seconds at the last line
    warm_cpu: float = 0.0  # CPU seconds at the end of the warm-up, then used since

    def rss_mb(self) -> float:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime, all threads


def host_busy_s() -> float:
    """CPU seconds the whole machine has been busy, all cores."""
    with open("/proc/stat") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK  # without idle and iowait


@dataclass
class Totals:
    """The counters that matter: the edges' (summed) and the gateway's."""

    read: float = 0.0
    suppressed: float = 0.0
    published: float = 0.0
    buffered: float = 0.0
    dropped: float = 0.0
    gateway_samples: float = 0.0
    lines: float = 0.0
    unacked: float = 0.0
    spooled: float = 0.0
    in_flight: float = 0.0
    duplicates: float = 0.0
    gaps: float = 0.0
    dead_letters: float = 0.0

    @classmethod
    def scrape(cls, edge_ports: Sequence[int], gateway_port: int) -> Totals:
        totals = cls()
        for port in edge_ports:
            edge = scrape(port)
            totals.read += edge["plantwire_edge_samples_read_total"]
            totals.suppressed += edge["plantwire_edge_samples_suppressed_total"]
            totals.published += edge["plantwire_edge_samples_published_total"]
            totals.buffered += edge["plantwire_edge_samples_buffered"]
            totals.dropped += edge["plantwire_edge_samples_dropped_total"]
        gateway = scrape(gateway_port)
        totals.gateway_samples = gateway["plantwire_gateway_samples_total"]
        totals.lines = gateway["plantwire_gateway_points_written_total"]
        totals.unacked = gateway["plantwire_gateway_messages_unacked"]
        totals.spooled = gateway["plantwire_gateway_spool_lines"]
        totals.in_flight = gateway["plantwire_gateway_writes_in_flight"]
        totals.duplicates = gateway["plantwire_gateway_sequence_duplicates_total"]
        totals.gaps = gateway["plantwire_gateway_sequence_gaps_total"]
        totals.dead_letters = gateway["plantwire_gateway_dead_letters_total"]
        return totals


def count_samples(influx: InfluxClient, start_ns: int, end_ns: int) -> int:
    """Samples (field values) in the telemetry measurement stamped in [start, end)."""
    rows = influx.rows(
        f"SELECT count(*) FROM {quote_ident(TELEMETRY_MEASUREMENT)} "
        f"WHERE time >= {start_ns} AND time < {end_ns}"
    )
    return sum(int(v) for row in rows for k, v in row.items() if k.startswith("count_") and v)


# -- the run --------------------------------------------------------------------------------------
@dataclass
class Pipeline:
    processes: dict[str, subprocess.Popen[bytes]]  # simulator, gateway, edges
    watched: list[Watched]  # edges, gateway, simulator, mosquitto, influxd
    edge_ports: list[int]
    gateway_port: int
    influx: InfluxClient

    def totals(self) -> Totals:
        return Totals.scrape(self.edge_ports, self.gateway_port)


class Monitor:
    """Samples memory every tick and prints a line every interval; keeps what the summary needs."""

    def __init__(self, pipeline: Pipeline, warmup_s: float) -> None:
        self.pipeline = pipeline
        self.warmup_s = warmup_s
        self.started = time.monotonic()
        at, self.first = self.mark()
        self.started += at  # time 0 is the moment of the first scrape
        self.last = self.warm = self.end = self.first
        self.last_at, self.warm_at, self.end_at = 0.0, 0.0, 0.0
        self.window_ns = time.time_ns()  # start of the next stored/s window
        self.host_mark = host_busy_s()
        for process in pipeline.watched:
            process.cpu_mark = process.cpu_seconds()
        self.sample(0.0)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def mark(self) -> tuple[float, Totals]:
        """The counters, and when they were read (the middle of the scrapes)."""
        before = self.elapsed()
        totals = self.pipeline.totals()
        return (before + self.elapsed()) / 2, totals

    def sample(self, at: float) -> None:
        for process in self.pipeline.watched:
            process.rss.append((at, process.rss_mb()))

    def header(self) -> None:
        names = " ".join(f"{p.name:>9}" for p in self.pipeline.watched)
        print(
            f"{'time':>6} {'read/s':>7} {'publ/s':>7} {'gw in/s':>7} {'stored/s':>8} "
            f"{'lines/s':>7} {'backlog':>7} | RSS MB {names} | CPU % {names} {'others':>6}",
            flush=True,
        )

    def line(self) -> None:
        at, totals = self.mark()
        span, before = at - self.last_at, self.last
        window_end = max(self.window_ns, time.time_ns() - int(LAG_S * 1e9))
        stored = count_samples(self.pipeline.influx, self.window_ns, window_end)
        stored_rate = stored / max((window_end - self.window_ns) / 1e9, 1e-9)
        cpu = []
        for process in self.pipeline.watched:
            seconds = process.cpu_seconds()
            cpu.append(100 * (seconds - process.cpu_mark) / span)
            process.cpu_mark = seconds
        busy = host_busy_s()
        others = max(0.0, 100 * (busy - self.host_mark) / span - sum(cpu))
        rss = " ".join(f"{p.rss[-1][1]:9.0f}" for p in self.pipeline.watched)
        cpu_text = " ".join(f"{c:9.0f}" for c in cpu)
        minutes, seconds_ = divmod(round(at), 60)
        print(
            f"{minutes:3d}:{seconds_:02d} {(totals.read - before.read) / span:7,.0f} "
            f"{(totals.published - before.published) / span:7,.0f} "
            f"{(totals.gateway_samples - before.gateway_samples) / span:7,.0f} "
            f"{stored_rate:8,.0f} {(totals.lines - before.lines) / span:7,.0f} "
            f"{totals.buffered:7,.0f} | RSS MB {rss} | CPU % {cpu_text} {others:6.0f}",
            flush=True,
        )
        self.last, self.last_at, self.window_ns, self.host_mark = totals, at, window_end, busy
        self.end, self.end_at = totals, at

    def check_alive(self) -> None:
        for name, process in self.pipeline.processes.items():
            if process.poll() is not None:
                raise SystemExit(f"{name} exited with code {process.returncode} during the run")

    def run(self, seconds: float, interval: float) -> None:
        """Until ``seconds``; the last line is printed at the end, whatever the interval."""
        self.header()
        tick = min(TICK_S, interval)
        next_tick, next_line, warm = tick, min(interval, seconds), False
        while self.end_at < seconds - 0.01:
            time.sleep(max(0.0, min(next_tick, next_line) - self.elapsed()))
            at = self.elapsed()
            self.check_alive()
            if at >= next_tick - 0.01:
                self.sample(at)
                next_tick += tick
            if not warm and at >= self.warmup_s - 0.01:
                warm = True
                self.warm_at, self.warm = self.mark()
                for process in self.pipeline.watched:
                    process.warm_cpu = process.cpu_seconds()
            if at >= next_line - 0.01:
                self.line()
                next_line = min(next_line + interval, seconds)
        self.sample(self.elapsed())
        for process in self.pipeline.watched:
            process.warm_cpu = process.cpu_seconds() - process.warm_cpu


def drain(pipeline: Pipeline, stall_s: float = 30.0) -> Totals:
    """After the simulator stopped: wait until the edges hold nothing unacknowledged and the
    gateway has received and written all they published -- or until nothing has moved for
    ``stall_s`` (what is missing then is not coming)."""
    previous = pipeline.totals()
    moved = time.monotonic()
    while True:
        time.sleep(1.0)
        totals = pipeline.totals()
        still = (totals.published, totals.gateway_samples, totals.lines) == (
            previous.published,
            previous.gateway_samples,
            previous.lines,
        )
        idle = not (totals.buffered or totals.unacked or totals.in_flight or totals.spooled)
        if still and idle and totals.gateway_samples >= totals.published:
            return totals
        if not still:
            moved = time.monotonic()
        elif time.monotonic() - moved > stall_s:
            print(f"  nothing moved for {stall_s:.0f} s; counting what arrived", flush=True)
            return totals
        previous = totals


def count_stored(influx: InfluxClient, start_ns: int, end_ns: int, chunk_s: float) -> int:
    step = int(chunk_s * 1e9)
    return sum(
        count_samples(influx, low, min(low + step, end_ns)) for low in range(start_ns, end_ns, step)
    )


def slope_mb_per_hour(points: Sequence[tuple[float, float]]) -> float:
    times = np.array([t for t, _ in points])
    if len(points) < 2 or np.ptp(times) == 0:
        return 0.0
    return float(np.polyfit(times, np.array([mb for _, mb in points]), 1)[0] * 3600)


def flow_summary(monitor: Monitor, final: Totals, stored: int, count_s: float, rate: float) -> int:
    """Print what went in and what came out; returns the samples lost."""
    duration, first, end = monitor.end_at, monitor.first, monitor.end
    print()
    print(f"soak summary: {duration:,.0f} s of polling, target {rate:,.0f} samples/s")
    print(
        f"  mean rates: read {(end.read - first.read) / duration:,.0f}/s, "
        f"published {(end.published - first.published) / duration:,.0f}/s, "
        f"written {(end.lines - first.lines) / duration:,.0f} lines/s"
    )
    if duration > monitor.warm_at:
        warm_rate = (end.read - monitor.warm.read) / (duration - monitor.warm_at)
        print(f"  read after the warm-up: {warm_rate:,.0f}/s")
    print(
        f"  edges, since their start: read {final.read:,.0f}, suppressed by report by exception "
        f"{final.suppressed:,.0f}, dropped at the buffer cap {final.dropped:,.0f}, "
        f"still buffered {final.buffered:,.0f}"
    )
    print(
        f"  samples in (published by the edges, acknowledged by the broker): {final.published:,.0f}"
    )
    print(
        f"  gateway: received {final.gateway_samples:,.0f} samples, wrote {final.lines:,.0f} "
        f"lines; duplicate batches {final.duplicates:,.0f}, sequence gaps {final.gaps:,.0f}, "
        f"dead letters {final.dead_letters:,.0f}"
    )
    print(f"  samples out (count(*) in influxd, {count_s:.1f} s to count): {stored:,}")
    lost = int(final.published) - stored
    verdict = "OK" if lost == 0 else ("LOSS" if lost > 0 else "MORE STORED THAN PUBLISHED")
    print(f"  lost: {lost:,}  [{verdict}]")
    return lost


def memory_summary(monitor: Monitor) -> bool:
    """Print each process's memory and CPU after the warm-up; True if PlantWire's stayed flat."""
    span = monitor.end_at - monitor.warm_at
    print()
    print(
        f"  memory (RSS MB) after the warm-up of {monitor.warmup_s:.0f} s, its maximum and end, "
        "growth; CPU after the warm-up (% of one core):"
    )
    print(
        f"  {'process':<10} {'start':>8} {'max':>8} {'end':>8} {'MB/hour':>9} {'growth':>8} "
        f"{'CPU %':>6}  verdict"
    )
    all_flat = True
    for process in monitor.pipeline.watched:
        warm = [(t, mb) for t, mb in process.rss if t >= monitor.warm_at - 0.01]
        start_mb, end_mb = warm[0][1], warm[-1][1]
        growth = (end_mb - start_mb) / start_mb
        verdict = "flat" if growth < FLAT_GROWTH else "GROWS"
        if process.name.startswith(PLANTWIRE):
            all_flat = all_flat and growth < FLAT_GROWTH
        else:
            verdict += " (not PlantWire)"
        cpu = 100 * process.warm_cpu / span if span > 0 else float("nan")
        print(
            f"  {process.name:<10} {start_mb:8.1f} {max(mb for _, mb in warm):8.1f} {end_mb:8.1f} "
            f"{slope_mb_per_hour(warm):+9.1f} {100 * growth:+7.1f}% {cpu:6.0f}  {verdict}"
        )
    return all_flat


def start(
    stack: ExitStack, folder: Path, machines: list[PlantMachine], args: argparse.Namespace
) -> Pipeline:
    """Every process, in an order that loses nothing: the simulator's ports open, the gateway
    subscribed (the broker keeps messages only for subscriptions it knows), then the edges."""
    broker = stack.enter_context(Mosquitto(folder / "mosquitto"))
    influxd = stack.enter_context(Influxd(folder / "influxd", database=DATABASE))
    urls = (broker.url, influxd.url)
    site, edge_ports, gateway_port = write_site(
        folder, machines, args.edges, args.poll_ms / 1000, urls
    )
    spec = simulator_spec(machines)
    sim = stack.enter_context(
        child([sys.executable, __file__, "--serve-modbus", spec], folder / "simulator.log")
    )
    for port in {machine.port for machine in machines}:
        wait_until(f"simulator port {port}", functools.partial(port_open, port), sim, 60)
    cli = [sys.executable, "-m", "plantwire.cli"]
    processes = {"simulator": sim}
    gateway = [*cli, "gateway", "--config", str(site), "--id", "soak", "--log-level", "WARNING"]
    processes["gateway"] = stack.enter_context(child(gateway, folder / "gateway.log"))
    # /healthz is 200 once connected, a moment before the subscriptions exist; the gateway's own
    # retained "online" comes back through the second of them: once it has taken a message, both
    # are there.
    wait_until(
        "the gateway subscribed",
        lambda: (
            healthy(gateway_port)
            and scrape(gateway_port)["plantwire_gateway_messages_acked_total"] >= 1
        ),
        processes["gateway"],
        180,
    )
    for n in range(args.edges):
        name = f"edge-{n + 1}"
        edge = [*cli, "edge", "--config", str(site), "--node", name, "--log-level", "WARNING"]
        processes[name] = stack.enter_context(child(edge, folder / f"{name}.log"))
    for n, port in enumerate(edge_ports):
        name = f"edge-{n + 1}"
        wait_until(f"{name} healthy", functools.partial(healthy, port), processes[name], 180)
    watched = [Watched(name, process.pid) for name, process in processes.items()]
    watched = [*watched[2:], watched[1], watched[0]]
    watched += [Watched("mosquitto", broker.pid), Watched("influxd", influxd.pid)]
    return Pipeline(processes, watched, edge_ports, gateway_port, influxd.client)


def run(args: argparse.Namespace, folder: Path) -> None:
    poll_s = args.poll_ms / 1000
    tags = round(args.rate * poll_s)
    machines = plan_plant(tags, args.edges, args.connections)
    seconds = args.minutes * 60
    print(
        f"soak: {tags:,} float32 tags on {len(machines)} machines, polled every "
        f"{args.poll_ms:g} ms = {tags / poll_s:,.0f} samples/s; {args.edges} edge processes x "
        f"{args.connections} Modbus connections; {args.minutes:g} min; data in {folder}",
        flush=True,
    )
    with ExitStack() as stack:
        start_ns = time.time_ns() - 10**9  # before the first poll
        pipeline = start(stack, folder, machines, args)
        monitor = Monitor(pipeline, min(args.warmup, seconds / 2))
        monitor.run(seconds, args.interval)
        print("stopping the simulator; waiting for the edges and the gateway to drain", flush=True)
        stop_process(pipeline.processes["simulator"])
        began = time.monotonic()
        final = drain(pipeline)
        print(f"  drained in {time.monotonic() - began:.1f} s", flush=True)
        end_ns = time.time_ns() + 60 * 10**9
        for name, process in pipeline.processes.items():
            if name != "simulator":
                stop_process(process)
        began = time.monotonic()
        stored = count_stored(pipeline.influx, start_ns, end_ns, args.count_chunk)
        lost = flow_summary(monitor, final, stored, time.monotonic() - began, tags / poll_s)
        flat = memory_summary(monitor)
    print(f"\nverdict: {'zero loss' if lost == 0 else 'DATA LOST'}, ", end="")
    print("PlantWire memory flat" if flat else "PlantWire memory GROWS")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=50_000, help="samples per second to read")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between lines")
    parser.add_argument("--poll-ms", type=float, default=200.0, help="poll interval of every tag")
    parser.add_argument("--edges", type=int, default=2, help="edge agent processes")
    parser.add_argument("--connections", type=int, default=2, help="Modbus connections per edge")
    parser.add_argument("--warmup", type=float, default=120.0, help="s, at most half the run")
    parser.add_argument("--count-chunk", type=float, default=300.0, help="s of data per count")
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the data folder")
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    parser.add_argument("--serve-modbus", default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.serve_modbus is not None:
        serve_modbus(args.serve_modbus)
        return
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="plantwire-soak-", dir=args.workdir))
    try:
        run(args, folder)
    finally:
        if args.keep:
            print(f"data kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
