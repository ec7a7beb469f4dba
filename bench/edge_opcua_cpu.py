"""CPU share of the edge polling 10,000 OPC UA monitored items at 1 Hz.

    python bench/edge_opcua_cpu.py [--items 10000] [--machines 20] [--seconds 30]

A plain asyncua server in a separate process serves ``--items`` Double variables and writes a
new value to every one of them once a second. This process runs PlantWire's OpcuaSourceDriver
subscribed to all of them (sampling 1000 ms, publishing 1000 ms, 1000 items per subscription),
spread over ``--machines`` machines, with a sink that only counts. After a warm-up (every item
delivered once, then 5 s), it measures ``--seconds`` of wall time and prints the samples per
second received and the CPU seconds this process used per wall second: the share of one core
the edge's OPC UA side costs. Goal: < 0.5.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from edge.sources.base import SourceTarget
from edge.sources.opcua import OpcuaSourceDriver
from plantwire.config.models import OpcuaSource
from plantwire.model import AssetPath, Sample
from plantwire.testing.servers import free_port

GOAL = 0.5


def node_name(item: int) -> str:
    return f"v{item:05d}"


# -- the server (runs in its own process) ----------------------------------------------------------
async def serve(port: int, items: int) -> None:
    """Serve ``items`` Doubles and write each of them once a second, all with the same stamp."""
    from asyncua import Server, ua

    for noisy in ("asyncua",):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/bench")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ns = await server.register_namespace("urn:plantwire:bench")
    folder = await server.nodes.objects.add_folder(ua.NodeId("bench", ns), "bench")
    nodes = [
        await folder.add_variable(ua.NodeId(node_name(i), ns), node_name(i), 0.0)
        for i in range(items)
    ]
    values = [random.uniform(0, 100) for _ in range(items)]
    async with server:
        next_tick = time.monotonic()
        while True:
            stamp = datetime.now(UTC)
            for index, node in enumerate(nodes):
                values[index] += random.uniform(-1, 1)
                value = ua.DataValue(
                    ua.Variant(values[index], ua.VariantType.Double),
                    SourceTimestamp=stamp,
                    ServerTimestamp=stamp,
                )
                await server.write_attribute_value(node.nodeid, value)
            next_tick += 1.0
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))


def start_server(port: int, items: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--items", str(items)],
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            if process.poll() is not None:
                raise SystemExit("the OPC UA server process ended") from None
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the OPC UA server did not open its port in time")


# -- the edge side ---------------------------------------------------------------------------------
def targets(endpoint: str, items: int, machines: int) -> list[SourceTarget]:
    per_machine = math.ceil(items / machines)
    result = []
    for machine in range(machines):
        first, last = machine * per_machine, min(items, (machine + 1) * per_machine)
        tags = [
            {"metric": node_name(i), "node": f"ns=2;s={node_name(i)}"} for i in range(first, last)
        ]
        config = OpcuaSource.model_validate(
            {
                "protocol": "opcua",
                "endpoint": endpoint,
                "publishing_interval_ms": 1000,
                "sampling_interval_ms": 1000,
                "max_items_per_subscription": 1000,
                "timeout_s": 10,
                "tags": tags,
            }
        )
        result.append(SourceTarget(AssetPath("bench", "area", "line", f"m{machine:03d}"), config))
    return result


async def measure(endpoint: str, items: int, machines: int, seconds: float) -> None:
    received = 0
    seen: set[str] = set()
    warm = False

    def sink(asset: AssetPath, samples: Sequence[Sample]) -> None:
        nonlocal received
        received += len(samples)
        if not warm:
            seen.update(f"{asset.machine}/{sample.metric}" for sample in samples)

    driver = OpcuaSourceDriver(targets(endpoint, items, machines))
    started = time.perf_counter()
    await driver.connect()
    task = asyncio.create_task(driver.run(sink))
    while len(seen) < items:
        await asyncio.sleep(0.2)
        if task.done():
            task.result()
    print(f"all {items} items delivered {time.perf_counter() - started:.1f} s after connecting")
    warm = True
    await asyncio.sleep(5)
    cpu0, wall0, count0 = time.process_time(), time.perf_counter(), received
    await asyncio.sleep(seconds)
    cpu, wall, count = time.process_time() - cpu0, time.perf_counter() - wall0, received - count0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    subscriptions = driver.subscription_count
    await driver.close()
    share = cpu / wall
    print(f"items: {items} monitored items, {subscriptions} subscriptions, {machines} machines")
    print(f"samples/s received: {count / wall:,.0f} (server writes {items:,}/s)")
    print(f"CPU share of one core: {share:.3f} ({cpu:.1f} CPU s in {wall:.1f} s)")
    print(f"goal: < {GOAL} -> {'met' if share < GOAL else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--machines", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.items))
        return
    port = free_port()
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; starting the server...")
    server = start_server(port, args.items)
    try:
        asyncio.run(
            measure(f"opc.tcp://127.0.0.1:{port}/bench", args.items, args.machines, args.seconds)
        )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
