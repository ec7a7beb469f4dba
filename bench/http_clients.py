"""PlantWire's AsyncInfluxV1Writer vs httpx.AsyncClient vs aiohttp.ClientSession for InfluxDB 1.x
``POST /write``, against a private influxd (plantwire.testing.servers.Influxd).

Run (httpx and aiohttp are not PlantWire dependencies: install them beside it first):

    .venv/bin/pip install httpx==0.29.0 aiohttp==3.14.5
    .venv/bin/python bench/http_clients.py [--reps 3] [--big-bodies 2000] [--small-bodies 20000]
        [--no-bench] [--no-parity]

Figures and the decision they led to: docs/benchmarks.md, "Our own code beside libraries".

Part 1 (bench): the same pre-encoded bodies through each client, 4 writes in flight
(asyncio.Semaphore(4) + gather), each client with a pool of 4 keep-alive connections.
Every (workload, client, repetition) writes its own measurement, so COUNT(v) checks each run.
Order of clients rotates per repetition (ABC, BCA, CAB); medians reported.
Figures: wall s, lines/s, CPU s of this process per 1e6 lines (time.process_time), and
influxd's CPU s per 1e6 lines (from /proc) for context.

Part 2 (parity): hanging server, slow-drip server, connection refused, 400 body, recovery.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import httpx
import numpy as np

from plantwire.store.influx_async import AsyncInfluxV1Writer
from plantwire.store.influx_write import WriteOutcome, WriteResult, classify_response
from plantwire.testing.servers import Influxd, free_port

HEADERS = {"Content-Type": "text/plain; charset=utf-8"}
IN_FLIGHT = 4
MACHINES = 50
TS0 = 1_700_000_000_000_000_000


# -- the two library writers, same contract as AsyncInfluxV1Writer -----------------------------


def _write_url(url: str, database: str) -> str:
    return f"{url.rstrip('/')}/write?{urlencode({'db': database, 'precision': 'ns'})}"


class HttpxWriter:
    """httpx.AsyncClient, HTTP/1.1 only, pool of max_connections keep-alive connections."""

    def __init__(
        self, url: str, database: str, *, timeout_s: float = 10.0, max_connections: int = 8
    ):
        self.url = url.rstrip("/")
        self._write_url = _write_url(url, database)
        self._client = httpx.AsyncClient(
            http1=True,
            http2=False,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            timeout=httpx.Timeout(timeout_s),  # connect/read/write/pool each; no total
            headers=HEADERS,
            trust_env=False,
            follow_redirects=False,
        )

    async def write(self, body: bytes) -> WriteResult:
        if not body:
            return WriteResult(WriteOutcome.OK, None, "nothing to write")
        try:
            response = await self._client.post(self._write_url, content=body)
        except httpx.ConnectTimeout as exc:
            return WriteResult(
                WriteOutcome.UNREACHABLE, None, f"cannot connect to {self.url}: {exc}"
            )
        except httpx.TimeoutException:
            return WriteResult(WriteOutcome.RETRY, None, f"no answer from {self.url} in time")
        except httpx.ConnectError as exc:
            return WriteResult(
                WriteOutcome.UNREACHABLE, None, f"cannot connect to {self.url}: {exc}"
            )
        except (httpx.TransportError, OSError) as exc:
            return WriteResult(
                WriteOutcome.UNREACHABLE,
                None,
                f"connection to {self.url} failed: {exc or type(exc).__name__}",
            )
        return classify_response(response.status_code, response.content, response.headers)

    async def close(self) -> None:
        await self._client.aclose()


class AiohttpWriter:
    """aiohttp.ClientSession on TCPConnector(limit=max_connections), total timeout per write."""

    def __init__(
        self, url: str, database: str, *, timeout_s: float = 10.0, max_connections: int = 8
    ):
        self.url = url.rstrip("/")
        self._write_url = _write_url(url, database)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._max = max_connections

    def _get_session(self) -> aiohttp.ClientSession:
        # made lazily: a ClientSession wants a running loop
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max),
                timeout=self._timeout,
                headers=HEADERS,
                auto_decompress=False,
            )
        return self._session

    async def write(self, body: bytes) -> WriteResult:
        if not body:
            return WriteResult(WriteOutcome.OK, None, "nothing to write")
        try:
            async with self._get_session().post(
                self._write_url, data=body, allow_redirects=False
            ) as response:
                answer = await response.read()
                return classify_response(response.status, answer, response.headers)
        except aiohttp.ConnectionTimeoutError as exc:
            return WriteResult(
                WriteOutcome.UNREACHABLE, None, f"cannot connect to {self.url}: {exc}"
            )
        except TimeoutError:  # ServerTimeoutError / total timeout
            return WriteResult(WriteOutcome.RETRY, None, f"no answer from {self.url} in time")
        except aiohttp.ClientConnectorError as exc:
            return WriteResult(
                WriteOutcome.UNREACHABLE, None, f"cannot connect to {self.url}: {exc}"
            )
        except (aiohttp.ClientError, OSError) as exc:
            return WriteResult(
                WriteOutcome.UNREACHABLE,
                None,
                f"connection to {self.url} failed: {exc or type(exc).__name__}",
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


CLIENTS = {
    "plantwire": AsyncInfluxV1Writer,
    "httpx": HttpxWriter,
    "aiohttp": AiohttpWriter,
}


# -- workload ---------------------------------------------------------------------------------


def make_bodies(measurement: str, n_bodies: int, lines_per_body: int, ts_base: int) -> list[bytes]:
    """Fixed-width lines built with numpy (fast, outside the timed part); distinct timestamps."""
    prefixes = [
        f"{measurement},site=s,area=a,line=l,machine=m{k:02d} v=1.5,w=2i ".encode()
        for k in range(MACHINES)
    ]
    plen = len(prefixes[0])
    width = plen + 19 + 1
    n = n_bodies * lines_per_body
    table = np.frombuffer(b"".join(prefixes), dtype=np.uint8).reshape(MACHINES, plen)
    arr = np.empty((n, width), dtype=np.uint8)
    idx = np.arange(n, dtype=np.int64)
    arr[:, :plen] = table[idx % MACHINES]
    ts = ts_base + idx * 1000
    for j in range(19):
        arr[:, plen + j] = (ts // 10 ** (18 - j)) % 10 + 48
    arr[:, -1] = 10
    flat = arr.reshape(n_bodies, lines_per_body * width)
    return [flat[i].tobytes() for i in range(n_bodies)]


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_once(
    name: str, url: str, database: str, bodies: list[bytes]
) -> tuple[float, float, int]:
    writer = CLIENTS[name](url, database, max_connections=IN_FLIGHT)
    gate = asyncio.Semaphore(IN_FLIGHT)
    failures: list[WriteResult] = []

    async def one(body: bytes) -> None:
        async with gate:
            result = await writer.write(body)
        if not result.ok:
            failures.append(result)

    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(b) for b in bodies))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    await writer.close()
    if failures:
        print(f"  !! {name}: {len(failures)} failed writes, first: {failures[0]}", flush=True)
    return wall, cpu, len(failures)


def bench(influxd: Influxd, reps: int, workloads: dict[str, tuple[int, int]]) -> None:
    names = list(CLIENTS)
    db = influxd.client.database
    results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    expected: dict[str, int] = {}
    # warm-up: imports, first connections, influxd's first series
    warm = make_bodies("warmup", 20, 10, TS0)
    for name in names:
        asyncio.run(run_once(name, influxd.url, db, warm))
    for rep in range(reps):
        order = names[rep % 3 :] + names[: rep % 3]
        for wl, (n_bodies, per_body) in workloads.items():
            for name in order:
                measurement = f"t_{wl}_{name}_{rep}"
                bodies = make_bodies(measurement, n_bodies, per_body, TS0)
                time.sleep(1.0)  # let influxd settle a little
                s0 = proc_cpu_s(influxd.pid)
                wall, cpu, fails = asyncio.run(run_once(name, influxd.url, db, bodies))
                server_cpu = proc_cpu_s(influxd.pid) - s0
                lines = n_bodies * per_body
                expected[measurement] = lines
                results.setdefault((wl, name), []).append((wall, cpu, server_cpu))
                print(
                    f"rep {rep} {wl:5} {name:9} wall {wall:7.2f}s  {lines / wall:10,.0f} lines/s  "
                    f"cpu {cpu * 1e6 / lines:6.3f} s/Mlines  influxd {server_cpu * 1e6 / lines:6.2f} "
                    f"s/Mlines  fails {fails}",
                    flush=True,
                )
                del bodies
    print("\nverification (SELECT COUNT(v) per measurement):")
    bad = 0
    for measurement, lines in expected.items():
        got = influxd.client.count(measurement, "v")
        if got != lines:
            bad += 1
            print(f"  MISMATCH {measurement}: {got} != {lines}")
    print(
        f"  {len(expected) - bad}/{len(expected)} measurements complete "
        f"({sum(expected.values()):,} lines)"
    )
    print("\nmedians:")
    print(
        f"{'workload':8} {'client':10} {'wall s':>8} {'lines/s':>11} {'cpu s/Ml':>9} "
        f"{'cpu min-max':>13} {'influxd s/Ml':>12}"
    )
    for (wl, name), rows in results.items():
        n_bodies, per_body = workloads[wl]
        lines = n_bodies * per_body
        wall = statistics.median(r[0] for r in rows)
        cpus = [r[1] * 1e6 / lines for r in rows]
        srv = statistics.median(r[2] for r in rows) * 1e6 / lines
        print(
            f"{wl:8} {name:10} {wall:8.2f} {lines / wall:11,.0f} {statistics.median(cpus):9.3f} "
            f"{min(cpus):6.3f}-{max(cpus):6.3f} {srv:12.2f}"
        )


# -- parity ---------------------------------------------------------------------------------


async def _hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while await reader.read(65536):
            pass
    finally:
        writer.close()


async def _drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads the request, then answers one byte every 0.25 s (a 27-byte 204: ~7 s)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            ),
            0,
        )
        await reader.readexactly(length)
        for byte in b"HTTP/1.1 204 No Content\r\n\r\n":
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.25)
        await reader.read()
    except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def parity(influxd: Influxd) -> None:
    big = make_bodies("parity_big", 1, 5000, TS0)[0]
    small = make_bodies("parity", 1, 10, TS0)[0]
    hang = await asyncio.start_server(_hang, "127.0.0.1", 0)
    drip = await asyncio.start_server(_drip, "127.0.0.1", 0)
    hang_url = f"http://127.0.0.1:{hang.sockets[0].getsockname()[1]}"
    drip_url = f"http://127.0.0.1:{drip.sockets[0].getsockname()[1]}"
    refused_url = f"http://127.0.0.1:{free_port()}"
    db = influxd.client.database
    # create the 1970 shard first: influxd words an in-body type conflict differently when the
    # write is the one creating the shard ("field type conflict" alone), whatever the client
    influxd.client.write(b"parity_shard v=0 1\n")
    cases = [
        ("hang, 10 lines, timeout 1s", hang_url, db, small),
        ("hang, 5000 lines, timeout 1s", hang_url, db, big),
        ("drip 1 B/0.25s, timeout 1s", drip_url, db, small),
        ("refused", refused_url, db, small),
        ("400 unparsable line", influxd.url, db, b"parity_bad_{m},machine=m1 v=\n"),
        (
            "400 type conflict in one body",
            influxd.url,
            db,
            b'parity_tc1_{m},machine=m1 v=1.5 1\nparity_tc1_{m},machine=m1 v="text" 2\n',
        ),
        (
            "400 type conflict with stored data (2nd write)",
            influxd.url,
            db,
            b'parity_tc2_{m},machine=m1 v="text" 2\n',
        ),
        ("404 no such database", influxd.url, "nodb", small),
    ]
    for label, url, database, body in cases:
        print(f"\n{label}:")
        for name, cls in CLIENTS.items():
            writer = cls(url, database, timeout_s=1.0, max_connections=IN_FLIGHT)
            if label.startswith("400 type conflict with"):
                await writer.write(
                    b"parity_tc2_{m},machine=m1 v=1.5 1\n".replace(b"{m}", name.encode())
                )
            t0 = time.perf_counter()
            try:
                result = await asyncio.wait_for(
                    writer.write(body.replace(b"{m}", name.encode())), 20
                )
                text = f"{result.outcome.value:11} status={result.status} {result.message[:90]!r}"
            except TimeoutError:
                text = "still waiting after 20 s (harness gave up)"
            except BaseException as exc:
                text = f"RAISED {type(exc).__name__}: {exc}"
            elapsed = time.perf_counter() - t0
            # recovery: the same writer object must still work against the real server
            await writer.close()
            print(f"  {name:9} {elapsed:6.2f}s  {text}")
    # an idle keep-alive connection closed by the server (influxd restarted between writes);
    # "loop ran" gives the event loop 0.1 s to see the EOF, "no loop turn" writes at once
    for settle in (0.1, 0.0):
        what = "loop ran 0.1 s" if settle else "no loop turn"
        print(f"\nidle keep-alive connection closed by influxd restart ({what}):")
        for name, cls in CLIENTS.items():
            writer = cls(influxd.url, db, timeout_s=5.0, max_connections=IN_FLIGHT)
            first = await writer.write(small)
            influxd.restart()
            if settle:
                await asyncio.sleep(settle)
            second = await writer.write(small)
            third = await writer.write(small)
            await writer.close()
            print(
                f"  {name:9} before {first.outcome.value}, after restart {second.outcome.value} "
                f"{second.message[:60]!r}, next {third.outcome.value}"
            )
    hang.close()
    drip.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--big-bodies", type=int, default=2000)
    ap.add_argument("--small-bodies", type=int, default=20000)
    ap.add_argument("--no-bench", action="store_true")
    ap.add_argument("--no-parity", action="store_true")
    ap.add_argument("--workdir", default="/tmp/libbench/influx")
    args = ap.parse_args()
    print(
        f"python {sys.version.split()[0]}  httpx {httpx.__version__}  aiohttp {aiohttp.__version__}"
        f"  httpcore {__import__('httpcore').__version__}  h11 {__import__('h11').__version__}"
    )
    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    with Influxd(workdir) as influxd:
        if not args.no_bench:
            bench(
                influxd,
                args.reps,
                {"big": (args.big_bodies, 5000), "small": (args.small_bodies, 10)},
            )
        if not args.no_parity:
            asyncio.run(parity(influxd))


if __name__ == "__main__":
    main()
