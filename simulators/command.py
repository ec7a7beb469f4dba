"""``plantwire sim``: run the simulated plant, print its site file or register map, or run the
link emulator."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from plantwire.durations import parse_duration

if TYPE_CHECKING:
    from simulators.scenario import Scenario


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "sim", help="run the simulated plant (Modbus TCP + OPC UA) or the link emulator"
    )
    _plant_options(parser)
    parser.set_defaults(handler=run_plant)
    actions = parser.add_subparsers(dest="sim_command", metavar="ACTION")

    config = actions.add_parser("config", help="print the PlantWire site file for a scenario")
    config.add_argument(
        "scenario", nargs="?", default="binh_duong", help="scenario file or bundled name"
    )
    config.add_argument(
        "--host", default="127.0.0.1", help="where the simulator's servers are reached"
    )
    config.add_argument("--modbus-port", type=int, default=5020)
    config.add_argument("--opcua-port", type=int, default=4840)
    config.add_argument(
        "--speed", type=float, default=1.0, help="poll intervals are divided by this"
    )
    config.add_argument("--poll", type=float, default=1.0, help="poll interval in plant seconds")
    config.add_argument(
        "--state-poll",
        type=float,
        default=None,
        help="poll state, PLC clock and product this often (plant s), in a group of their own",
    )
    config.add_argument(
        "--counter-poll",
        type=float,
        default=None,
        help="poll counters and energy meter this often (plant s), in a group of their own",
    )
    config.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    config.add_argument("--influx-url", default=None)
    config.set_defaults(handler=run_config)

    registers = actions.add_parser(
        "registers", help="print the Modbus register map of every machine"
    )
    registers.add_argument("scenario", nargs="?", default="binh_duong")
    registers.set_defaults(handler=run_registers)

    link = actions.add_parser(
        "link", help="a TCP proxy with 5G-like latency, jitter, bandwidth and outages"
    )
    link.add_argument("--listen", required=True, help="HOST:PORT to accept connections on")
    link.add_argument("--target", required=True, help="HOST:PORT to forward them to")
    link.add_argument(
        "--profile",
        default="5g-embb",
        help="link profile (5g-urllc, 5g-embb, lte, lte-degraded, ...)",
    )
    link.add_argument(
        "--schedule", default=None, help="YAML file of timed outages and profile changes"
    )
    link.add_argument("--seed", type=int, default=None)
    link.set_defaults(handler=run_link_command)


def _plant_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario",
        default="binh_duong",
        help="scenario file or bundled name (default: binh_duong)",
    )
    parser.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="plant seconds per wall second (e.g. 60)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--modbus-port", type=int, default=5020, help="0 turns Modbus off")
    parser.add_argument("--opcua-port", type=int, default=4840, help="0 turns OPC UA off")
    parser.add_argument(
        "--opcua-security", choices=["None", "Sign", "SignAndEncrypt"], default="None"
    )
    parser.add_argument(
        "--cert-dir", type=Path, default=Path("plantwire-sim-pki"), help="server certificate folder"
    )
    parser.add_argument(
        "--trust-client",
        type=Path,
        action="append",
        default=[],
        help="client certificate to accept",
    )
    parser.add_argument(
        "--opcua-user",
        default=None,
        help="require this user; its password comes from $PLANTWIRE_SIM_OPCUA_PASSWORD",
    )
    parser.add_argument(
        "--truth", type=Path, default=None, help="write the ground truth (JSON) here"
    )
    parser.add_argument(
        "--duration", default=None, help="stop after this much plant time (e.g. 8h)"
    )


class _ScenarioRefusedError(Exception):
    """A scenario that could not be loaded (already reported)."""


def _scenario(name: str, command: str) -> Scenario:
    """Load a scenario file, or a bundled one by name; report a refusal on stderr."""
    from simulators.scenario import bundled_scenario, load_scenario

    path = Path(name)
    if not path.exists() and bundled_scenario(name).exists():
        path = bundled_scenario(name)
    try:
        return load_scenario(path)
    except (OSError, ValueError) as exc:
        print(f"plantwire {command}: {exc}", file=sys.stderr)
        raise _ScenarioRefusedError from None


def run_plant(args: argparse.Namespace) -> int:
    from simulators.modbus_server import ModbusPlantServer
    from simulators.opcua_server import OpcuaPlantServer
    from simulators.plant import Plant
    from simulators.runner import SimRunner

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        scenario = _scenario(args.scenario, "sim")
    except _ScenarioRefusedError:
        return 2
    try:
        duration = parse_duration(args.duration) if args.duration else None
    except ValueError as exc:
        print(f"plantwire sim: {exc}", file=sys.stderr)
        return 2
    users = None
    if args.opcua_user:
        password = os.environ.get("PLANTWIRE_SIM_OPCUA_PASSWORD")
        if not password:
            print(
                "plantwire sim: --opcua-user needs $PLANTWIRE_SIM_OPCUA_PASSWORD", file=sys.stderr
            )
            return 2
        users = {args.opcua_user: password}
    plant = Plant(scenario, seed=args.seed)

    async def main() -> None:
        # The servers bind to the running event loop, so they are made inside it.
        modbus = ModbusPlantServer(plant, args.host, args.modbus_port) if args.modbus_port else None
        opcua = None
        if args.opcua_port:
            opcua = OpcuaPlantServer(
                plant,
                args.host,
                args.opcua_port,
                security=args.opcua_security,
                cert_dir=args.cert_dir,
                trusted_clients=args.trust_client,
                users=users,
            )
        runner = SimRunner(
            plant, speed=args.speed, modbus=modbus, opcua=opcua, truth_path=args.truth
        )
        await runner.start()
        try:
            await runner.run(duration)
        finally:
            await runner.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0


def run_config(args: argparse.Namespace) -> int:
    from simulators.siteconfig import scenario_site_yaml

    try:
        scenario = _scenario(args.scenario, "sim config")
    except _ScenarioRefusedError:
        return 2
    sys.stdout.write(
        scenario_site_yaml(
            scenario,
            host=args.host,
            modbus_port=args.modbus_port,
            opcua_port=args.opcua_port,
            speed=args.speed,
            poll_s=args.poll,
            state_poll_s=args.state_poll,
            counter_poll_s=args.counter_poll,
            mqtt_url=args.mqtt_url,
            influx_url=args.influx_url,
        )
    )
    return 0


def run_registers(args: argparse.Namespace) -> int:
    from simulators.kinds import KINDS
    from simulators.plant import Plant
    from simulators.registers import machine_map

    try:
        scenario = _scenario(args.scenario, "sim registers")
    except _ScenarioRefusedError:
        return 2
    plant = Plant(scenario)
    for machine in plant.machines:
        print(f"device {machine.index + 1}: {machine.path} ({machine.spec.kind})")
        for slot in machine_map(KINDS[machine.spec.kind], machine.index):
            last = slot.address + max(slot.count, 1) - 1
            span = f"{slot.address}" if last == slot.address else f"{slot.address}-{last}"
            scale = f" x{slot.scale:g}" if slot.scale != 1.0 else ""
            order = f" {slot.order}" if slot.count > 1 and slot.type != "string" else ""
            unit = f" {slot.unit}" if slot.unit else ""
            print(f"  {slot.table:<9} {span:<7} {slot.metric:<20} {slot.type}{order}{scale}{unit}")
    return 0


def run_link_command(args: argparse.Namespace) -> int:
    from simulators.link import run_link

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(run_link(args.listen, args.target, args.profile, args.schedule, seed=args.seed))
    except KeyboardInterrupt:
        pass
    except ValueError as exc:
        print(f"plantwire sim link: {exc}", file=sys.stderr)
        return 2
    return 0
