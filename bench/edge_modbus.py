"""Modbus throughput of the edge agent against a bare pymodbus loop, in the same run.

    python bench/edge_modbus.py [--seconds 10]

The simulated plant's Modbus server runs in its own process. In this process, for the same
wall time each, (1) a bare loop sends exactly the requests the agent plans (one per table per
device) with a plain pymodbus client and throws the answers away; (2) the agent's driver polls
back to back, decoding every tag and delivering samples through the agent's intake (report by
exception and the SQLite disk buffer). Prints registers read per second for both, the ratio
(goal >= 0.8) and the requests per poll cycle.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from pymodbus.client import AsyncModbusTcpClient

from edge.agent import EdgeAgent
from edge.sources.modbus import ModbusSourceDriver
from plantwire.config import parse_site
from plantwire.testing.servers import free_port
from plantwire.testing.simprocess import SimProcess
from simulators.scenario import bundled_scenario, load_scenario
from simulators.siteconfig import scenario_site_yaml


async def bare_loop(
    port: int, requests: list[tuple[str, int, int, int]], seconds: float
) -> tuple[int, int]:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, retries=0)
    await client.connect()
    calls = {
        "coil": client.read_coils,
        "discrete": client.read_discrete_inputs,
        "holding": client.read_holding_registers,
        "input": client.read_input_registers,
    }
    registers = cycles = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for table, device, address, count in requests:
            response = await calls[table](address, count=count, device_id=device)
            assert not response.isError()
            registers += count
        cycles += 1
    client.close()
    return registers, cycles


async def agent_loop(
    agent: EdgeAgent, driver: ModbusSourceDriver, seconds: float
) -> tuple[int, int]:
    await driver.connect()
    per_cycle = sum(r.count for r in driver.plan[next(iter(driver.plan))])
    cycles = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await driver.poll(next(iter(driver.plan)), agent.intake)
        agent.buffer.flush()
        cycles += 1
    await driver.close()
    return per_cycle * cycles, cycles


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    port = free_port()
    with SimProcess(modbus_port=port), tempfile.TemporaryDirectory() as folder:
        site = parse_site(
            scenario_site_yaml(load_scenario(bundled_scenario()), modbus_port=port), environ={}
        ).config
        site = site.model_copy(
            update={
                "edge_nodes": [
                    n.model_copy(
                        update={
                            "buffer_path": Path(folder) / f"{n.id}.db",
                            "health_port": 0,
                            "wait_for_gateway": False,  # a bare broker: no gateway
                        }
                    )
                    for n in site.edge_nodes
                ]
            }
        )
        agents = [EdgeAgent(site, node.id, health_port=0) for node in site.edge_nodes]
        drivers = [d for a in agents for d in a.drivers if isinstance(d, ModbusSourceDriver)]
        # One connection for all Modbus machines, as the bare loop uses.
        driver = ModbusSourceDriver([t for d in drivers for t in d.targets])
        agent = agents[0]
        plan = driver.plan[next(iter(driver.plan))]
        requests = [(str(r.table), r.device_id, r.address, r.count) for r in plan]
        bare_registers, bare_cycles = asyncio.run(bare_loop(port, requests, args.seconds))
        agent_registers, agent_cycles = asyncio.run(agent_loop(agent, driver, args.seconds))
        samples = agent.samples_read
        for each in agents:
            each.buffer.close()
    bare_rate = bare_registers / args.seconds
    agent_rate = agent_registers / args.seconds
    print(
        f"Modbus TCP to the simulated plant, {len(driver.targets)} devices, one connection, {args.seconds:g} s each"
    )
    print(
        f"  requests per poll cycle (coalesced): {len(requests)} for {sum(len(r.tags) for r in plan)} tags"
    )
    print(
        f"  bare pymodbus loop: {bare_rate:,.0f} registers/s ({bare_cycles / args.seconds:.1f} cycles/s)"
    )
    print(
        f"  PlantWire driver + intake: {agent_rate:,.0f} registers/s ({agent_cycles / args.seconds:.1f} cycles/s, {samples / args.seconds:,.0f} samples/s to the disk buffer)"
    )
    print(f"  ratio: {agent_rate / bare_rate:.2f} (goal >= 0.8)")


if __name__ == "__main__":
    main()
