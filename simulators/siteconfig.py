"""A PlantWire site file for a scenario: the same assets, with tag maps that point at the
simulator's Modbus and OPC UA servers, so an edge agent reads the simulated plant without a
hand-written tag map (``plantwire sim config SCENARIO``)."""

from __future__ import annotations

from typing import Any

import yaml

from plantwire.config.models import DataType, RegisterTable
from simulators.kinds import KINDS
from simulators.modbus_server import modbus_address
from simulators.opcua_server import node_id
from simulators.registers import machine_map
from simulators.scenario import Scenario

__all__ = ["scenario_site_config", "scenario_site_yaml"]

OEE_SIGNALS = {
    "state": "state",
    "good_count": "good_count",
    "reject_count": "reject_count",
    "energy_kwh": "energy_kwh",
    "product": "product",
}


# With separate poll rates (``state_poll_s``/``counter_poll_s``) these metrics get groups of
# their own: OEE needs state changes to the second, counters less often, process signals least.
STATE_METRICS = frozenset({"state", "product_code", "plc_clock_ns", "product"})
COUNTER_METRICS = frozenset(
    {"good_count", "reject_count", "cycle_count", "energy_wh", "energy_kwh", "run_seconds"}
    | {"stop_seconds", "power_w"}
)


def _group_of(metric: str, groups: dict[str, float]) -> str | None:
    if metric in STATE_METRICS and "state" in groups:
        return "state"
    if metric in COUNTER_METRICS and "counters" in groups:
        return "counters"
    return None  # the source's first group, "default"


def _modbus_source(
    kind: str, index: int, host: str, port: int, groups: dict[str, float]
) -> dict[str, Any]:
    tags = []
    for slot in machine_map(KINDS[kind], index):
        tag: dict[str, Any] = {
            "metric": slot.metric,
            "table": str(slot.table),
            "address": slot.address,
        }
        group = _group_of(slot.metric, groups)
        if group is not None:
            tag["group"] = group
        if slot.type is not (
            DataType.BIT
            if slot.table in (RegisterTable.COIL, RegisterTable.DISCRETE)
            else DataType.UINT16
        ):
            tag["type"] = str(slot.type)
        if slot.order != "ABCD" and slot.type not in (
            DataType.BIT,
            DataType.STRING,
            DataType.INT16,
            DataType.UINT16,
        ):
            tag["order"] = str(slot.order)
        if slot.scale != 1.0:
            tag["scale"] = slot.scale
        if slot.length is not None:
            tag["length"] = slot.length
        if slot.unit:
            tag["unit"] = slot.unit
        tags.append(tag)
    return {
        "protocol": "modbus",
        "endpoint": f"tcp://{host}:{modbus_address(index, port)[0]}",
        "device_id": modbus_address(index, port)[1],
        "poll_groups": groups,
        "tags": tags,
    }


def _opcua_source(
    kind: str, path: str, endpoint: str, groups: dict[str, float], metrics: list[str]
) -> dict[str, Any]:
    units = {spec.name: spec.unit for spec in KINDS[kind].signals}
    tags = []
    for metric in metrics:
        tag: dict[str, Any] = {"metric": metric, "node": node_id(path, metric)}
        if metric in units:
            tag["unit"] = units[metric]
        group = _group_of(metric, groups)
        if group is not None:
            tag["sampling_interval_ms"] = groups[group] * 1000
        if group == "state" and metric == "state":
            # The simulated PLC refreshes its state every step: report each refresh, so the
            # history of a state that does not change has no gaps.
            tag["trigger"] = "status_value_timestamp"
        tags.append(tag)
    sample_ms = groups["default"] * 1000
    return {
        "protocol": "opcua",
        "endpoint": endpoint,
        "publishing_interval_ms": min(groups.values()) * 1000,
        "sampling_interval_ms": sample_ms,
        "queue_size": 100,
        "tags": tags,
    }


def scenario_site_config(
    scenario: Scenario,
    *,
    host: str = "127.0.0.1",
    modbus_port: int = 5020,
    opcua_port: int = 4840,
    speed: float = 1.0,
    poll_s: float = 1.0,
    state_poll_s: float | None = None,
    counter_poll_s: float | None = None,
    mqtt_url: str = "mqtt://127.0.0.1:1883",
    influx_url: str | None = None,
) -> dict[str, Any]:
    """The site file (as data) for a scenario served on ``host``; poll intervals are plant
    seconds divided by ``speed``, so the edge keeps pace with accelerated plant time.

    ``state_poll_s`` and ``counter_poll_s`` put the state (with the PLC clock and product) and
    the counters in poll groups of their own, read that often; the rest is read every ``poll_s``.
    """
    from simulators.plant import Plant  # the values tell which metrics a machine serves

    plant = Plant(scenario)
    groups = {"default": poll_s / speed}
    if state_poll_s is not None:
        groups["state"] = state_poll_s / speed
    if counter_poll_s is not None:
        groups["counters"] = counter_poll_s / speed
    areas: dict[str, dict[str, Any]] = {}
    nodes: dict[str, dict[str, Any]] = {}
    for machine in plant.machines:
        line_spec, spec = machine.line, machine.spec
        node = f"edge-{line_spec.area}"
        nodes.setdefault(node, {"id": node, "buffer_path": f"plantwire-{node}.db"})
        area = areas.setdefault(line_spec.area, {"id": line_spec.area, "lines": {}})
        line = area["lines"].setdefault(
            line_spec.id,
            {
                "id": line_spec.id,
                "name": line_spec.name,
                "ideal_cycle_time_s": line_spec.ideal_cycle_time_s,
                **(
                    {"products": [p.model_dump() for p in line_spec.products]}
                    if line_spec.products
                    else {}
                ),
                "output_machine": line_spec.output_machine,
                "machines": [],
            },
        )
        entry: dict[str, Any] = {"id": spec.id, "kind": spec.kind, "edge_node": node}
        if spec.ideal_cycle_time_s is not None:
            entry["ideal_cycle_time_s"] = spec.ideal_cycle_time_s
        oee = dict(OEE_SIGNALS)
        if not line_spec.products:
            oee.pop("product")
        entry["oee"] = oee
        if spec.protocol == "modbus":
            entry["clock_metric"] = "plc_clock_ns"
            entry["sources"] = [_modbus_source(spec.kind, machine.index, host, modbus_port, groups)]
        else:
            metrics = [m for m in plant.values(machine.index) if m != "plc_clock_ns"]
            endpoint = f"opc.tcp://{host}:{opcua_port}/plantwire"
            entry["sources"] = [_opcua_source(spec.kind, machine.path, endpoint, groups, metrics)]
        line["machines"].append(entry)
    config: dict[str, Any] = {
        "version": 1,
        "site": scenario.site.model_dump(),
        "mqtt": {"url": mqtt_url},
        **(
            {"store": {"backend": "influxdb", "url": influx_url, "database": "plantwire"}}
            if influx_url
            else {}
        ),
        "shifts": [
            {
                "name": shift.name,
                "start": f"{shift.start:%H:%M}",
                "end": f"{shift.end:%H:%M}",
                "days": list(shift.days),
                "breaks": [
                    {"name": b.name, "start": f"{b.start:%H:%M}", "minutes": b.minutes}
                    for b in shift.breaks
                ],
            }
            for shift in scenario.shifts
        ],
        "edge_nodes": list(nodes.values()),
        "analytics": {"small_stop_threshold_s": scenario.small_stop_threshold_s},
        "areas": [{**area, "lines": list(area["lines"].values())} for area in areas.values()],
    }
    return config


def scenario_site_yaml(scenario: Scenario, **options: Any) -> str:
    header = (
        f"# PlantWire site file for the simulated plant {scenario.scenario!r}\n"
        f"# made by: plantwire sim config (edit the broker and database settings to taste)\n"
    )
    return header + yaml.safe_dump(
        scenario_site_config(scenario, **options),
        sort_keys=False,
        allow_unicode=True,
        width=120,
        default_flow_style=None,
    )
