"""CPU share of the edge agent polling 10,000 Modbus tags at 1 Hz, all the way to MQTT.

    python bench/edge_cpu_modbus.py [--tags 10000] [--seconds 30]

A simulated plant of filler machines (26 tags each: counters, meters, process signals, bits)
serves Modbus TCP from its own process; a private Mosquitto takes the agent's batches. The agent
runs in this process: polling, decoding, the disk buffer, batching and publishing. Prints the
agent's CPU seconds per wall second (goal: under 0.5 of one core) with samples read and
published per second.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
import time
from pathlib import Path

import yaml

from edge.agent import EdgeAgent
from plantwire.config import parse_site
from plantwire.testing.servers import Mosquitto, free_port
from plantwire.testing.simprocess import SimProcess
from simulators.scenario import load_scenario
from simulators.siteconfig import scenario_site_config

TAGS_PER_FILLER = 26


def scenario_file(folder: Path, machines: int) -> Path:
    lines = [
        {
            "area": "bench",
            "id": f"line-{n}",
            "ideal_cycle_time_s": 1.0,
            "machines": [
                {"id": f"filler-{k}", "kind": "filler"} for k in range(min(10, machines - 10 * n))
            ],
        }
        for n in range(math.ceil(machines / 10))
    ]
    data = {
        "scenario": "bench",
        "seed": 1,
        "start": "2026-11-16T07:00:00",
        "site": {"id": "bench", "timezone": "Asia/Ho_Chi_Minh"},
        "shifts": [{"name": "day", "start": "06:00", "end": "22:00"}],
        "lines": lines,
    }
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


async def measure(agent: EdgeAgent, warmup_s: float, seconds: float) -> tuple[float, int, int]:
    task = asyncio.create_task(agent.run())
    await asyncio.sleep(warmup_s)
    read0, published0 = agent.samples_read, agent.forwarder.samples_published
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    read, published = agent.samples_read - read0, agent.forwarder.samples_published - published0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return cpu / wall, read, published


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tags", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    machines = math.ceil(args.tags / TAGS_PER_FILLER)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        scenario_path = scenario_file(folder, machines)
        port = free_port()
        with (
            SimProcess(modbus_port=port, scenario=scenario_path),
            Mosquitto(folder / "mqtt") as broker,
        ):
            config = scenario_site_config(
                load_scenario(scenario_path), modbus_port=port, mqtt_url=broker.url
            )
            config["edge_nodes"] = [
                {
                    "id": "edge-bench",
                    "buffer_path": str(folder / "edge.db"),
                    "health_port": 0,
                    "wait_for_gateway": False,  # a bare broker: no gateway to wait for
                }
            ]
            for area in config["areas"]:
                for line in area["lines"]:
                    for machine in line["machines"]:
                        machine["edge_node"] = "edge-bench"
            site = parse_site(yaml.safe_dump(config), environ={}).config
            tags = sum(len(s.tags) for _, _, m in site.machines() for s in m.sources)
            agent = EdgeAgent(site, "edge-bench", health_port=0)
            share, read, published = asyncio.run(measure(agent, 8.0, args.seconds))
    print(
        f"edge agent, {machines} Modbus devices on two PLC connections, {tags:,} tags polled at 1 Hz, {args.seconds:g} s"
    )
    print(
        f"  samples read: {read / args.seconds:,.0f}/s, published to MQTT: {published / args.seconds:,.0f}/s"
    )
    print(f"  CPU share: {share:.2f} of one core (goal < 0.5)")


if __name__ == "__main__":
    main()
