"""Gateway throughput: samples per second from MQTT into InfluxDB, beside influxd's own ingest of
the same points from a minimal writer, in the same run; then a flood of single-sample messages.

    python bench/gateway_throughput.py [--messages 2000] [--rows 200] [--flood 100000]

Mosquitto and influxd run as private processes; a publisher process sends pre-encoded batches at
QoS 1 as fast as the broker takes them; the gateway runs in this process. Prints samples/s
through the gateway, samples/s of the minimal writer (4 threads posting pre-encoded line
protocol, the sink's limit), their ratio, the gateway's peak memory, and messages/s for the
flood. Goals: >= 250,000 samples/s, ratio >= 0.5.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import multiprocessing
import random
import resource
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.service import Gateway
from plantwire.codec import encode_batch
from plantwire.config import parse_site
from plantwire.lineprotocol import LineEncoder, batch_lines
from plantwire.model import AssetPath, Batch, Sample
from plantwire.store.influx_async import make_async_writer
from plantwire.testing.servers import InfluxClient, Influxd, Mosquitto
from plantwire.topics import data_topic

SITE = "bench"
T0 = 1_763_712_000_000_000_000
METRICS = ("temp", "pressure", "current", "count", "state")


def batches(messages: int, rows: int, seed: int = 1) -> list[Batch]:
    rng = random.Random(seed)
    out = []
    for n in range(messages):
        asset = AssetPath(SITE, "area", f"line-{n % 10}", f"machine-{n % 50}")
        samples = []
        for r in range(rows):
            ts = T0 + (n * rows + r) * 1_000_000
            samples += [
                Sample(ts, "temp", round(rng.uniform(20, 90), 2)),
                Sample(ts, "pressure", round(rng.uniform(1, 6), 3)),
                Sample(ts, "current", round(rng.uniform(0, 40), 2)),
                Sample(ts, "count", n * rows + r),
                Sample(ts, "state", rng.randrange(9)),
            ]
        out.append(Batch("edge-bench", n, asset, samples))
    return out


def publish(port: int, messages: int, rows: int, ready: Any, go: Any) -> None:
    """In a child process: encode and connect (then say so), and on the word publish everything
    at QoS 1 as fast as possible."""
    payloads = [(data_topic(b.asset), encode_batch(b)) for b in batches(messages, rows)]
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="bench-publisher", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(500)
    client.max_queued_messages_set(0)  # queue all of them: the bench measures the gateway
    client.connect("127.0.0.1", port)
    client.loop_start()
    ready.set()
    go.wait()
    # Message ids are 16 bits: keep fewer than 65,535 publishes outstanding.
    infos: list[Any] = []
    for number, (topic, payload) in enumerate(payloads):
        if number >= 30_000:
            infos[number - 30_000].wait_for_publish(120)
        infos.append(client.publish(topic, payload, qos=1))
    for info in infos:
        info.wait_for_publish(120)
    client.loop_stop()
    client.disconnect()


def _post_all(port: int, database: str, bodies: list[bytes], threads: int) -> float:
    work = list(bodies)
    lock = threading.Lock()

    def worker() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                if not work:
                    break
                body = work.pop()
            connection.request("POST", f"/write?db={database}&precision=ns", body)
            response = connection.getresponse()
            response.read()
            assert response.status == 204, response.status

    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return time.perf_counter() - started


def _baseline_child(port: int, messages: int, rows: int, results: Any) -> None:
    """In a child process (so its memory is not counted as the gateway's): encode the same points
    once, then post them pre-encoded, with one writer thread and with four."""
    encoder = LineEncoder()
    lines = [line for batch in batches(messages, rows) for line in batch_lines(encoder, batch)]
    bodies = ["\n".join(lines[i : i + 5000]).encode() for i in range(0, len(lines), 5000)]
    results.put((_post_all(port, "baseline1", bodies, 1), _post_all(port, "baseline4", bodies, 4)))


def baseline(influxd: Influxd, messages: int, rows: int) -> tuple[float, float]:
    """influxd's ingest of the pre-encoded points: seconds with one writer, with four."""
    for database in ("baseline1", "baseline4"):
        influxd.client.create_database(database)
    results: Any = multiprocessing.Queue()
    child = multiprocessing.Process(
        target=_baseline_child, args=(influxd.port, messages, rows, results)
    )
    child.start()
    one, four = results.get(timeout=600)
    child.join()
    return one, four


async def through_gateway(gateway: Gateway, ready: Any, go: Any, samples: int, lines: int) -> float:
    task = asyncio.create_task(gateway.run())
    while not gateway.connected or not ready.is_set():  # the publisher has encoded everything
        await asyncio.sleep(0.01)
    go.set()
    started = time.perf_counter()
    while gateway.writer.stats.lines_written < lines:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    await gateway.drain(30)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert gateway.samples == samples, (gateway.samples, samples)
    return elapsed


def site_for(folder: Path, broker: Mosquitto, influxd: Influxd, database: str) -> Any:
    text = f"""
site: {{id: {SITE}}}
mqtt: {{url: "{broker.url}", session_expiry_s: 3600, max_payload_bytes: 16777216}}
store: {{backend: influxdb, url: "{influxd.url}", database: {database}}}
gateway: {{spool_path: "{folder / database}.db", health_port: 0, receive_maximum: 1000}}
areas: [{{id: area, lines: [{{id: l, ideal_cycle_time_s: 1, machines: [{{id: m, sources: [{{protocol: modbus, endpoint: "tcp://h", tags: [{{metric: x, table: input, address: 0}}]}}]}}]}}]}}]
"""
    return parse_site(text, environ={}).config


def run_case(
    folder: Path, broker: Mosquitto, influxd: Influxd, database: str, messages: int, rows: int
) -> tuple[float, int]:
    influxd.client.create_database(database)
    site = site_for(folder, broker, influxd, database)
    assert site.store is not None
    gateway = Gateway(site, make_async_writer(site.store), gateway_id=f"bench-{database}")
    ready, go = multiprocessing.Event(), multiprocessing.Event()
    publisher = multiprocessing.Process(
        target=publish, args=(broker.port, messages, rows, ready, go)
    )
    publisher.start()
    expected_lines = messages * rows
    elapsed = asyncio.run(
        through_gateway(gateway, ready, go, messages * rows * len(METRICS), expected_lines)
    )
    publisher.join(120)
    return elapsed, expected_lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument(
        "--rows", type=int, default=200, help="timestamps per message (5 samples each)"
    )
    parser.add_argument("--flood", type=int, default=100_000, help="single-sample messages")
    args = parser.parse_args()
    samples = args.messages * args.rows * len(METRICS)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        with Mosquitto(folder / "mqtt") as broker, Influxd(folder / "influx") as influxd:
            sink1_s, sink4_s = baseline(influxd, args.messages, args.rows)
            gateway_s, _ = run_case(folder, broker, influxd, "gateway", args.messages, args.rows)
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            flood_s, _ = run_case(folder, broker, influxd, "flood", args.flood, 1)
            flood_samples = args.flood * len(METRICS)
            landed = InfluxClient(influxd.port, "flood").count("telemetry", "temp")
            written = InfluxClient(influxd.port, "gateway").count("telemetry", "temp")
    assert written == args.messages * args.rows, written
    print(
        f"gateway throughput: {args.messages:,} messages x {args.rows * len(METRICS):,} samples = {samples:,} samples"
    )
    print(
        f"  through MQTT + gateway into influxd: {samples / gateway_s:,.0f} samples/s ({gateway_s:.1f} s)"
    )
    print(
        f"  minimal writer, pre-encoded line protocol, 1 thread: {samples / sink1_s:,.0f} samples/s"
    )
    print(f"  the same, 4 threads (influxd's limit here): {samples / sink4_s:,.0f} samples/s")
    print(
        f"  ratio: {sink1_s / gateway_s:.2f} against one writer, {sink4_s / gateway_s:.2f} against four "
        "(goal >= 0.5); goal >= 250,000 samples/s"
    )
    print(f"  gateway process peak memory (RSS): {peak_mb:,.0f} MB")
    print(
        f"flood: {args.flood:,} messages of one row ({flood_samples:,} samples): "
        f"{args.flood / flood_s:,.0f} messages/s; rows in InfluxDB: {landed:,} of {args.flood:,}"
    )


if __name__ == "__main__":
    main()
