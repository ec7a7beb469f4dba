"""The demo's plant and site file: the bundled Binh Duong scenario with its faults moved into the
demo's short run, and a site file that points the edge at the simulator and, through the link
emulator, at the broker.

The bundled faults start an hour or more into the day; a demo shows a plant hour or two. So the
first faults of the scenario are replayed after the training part of the run (anomaly models are
trained on the first minutes, before any fault), one a little after the other.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from simulators.scenario import FaultSpec, Scenario, bundled_scenario, load_scenario
from simulators.siteconfig import scenario_site_config

__all__ = ["TRAIN_SHARE", "demo_scenario", "demo_site_config"]

TRAIN_SHARE = 0.4  # the first part of the run is normal history the models learn from
FIRST_FAULT_SHARE = 0.45
# Faults that show in minutes rather than hours, for a short run (the slow wear and heater
# faults need most of an hour to grow out of the noise).
SHORT_RUN_FAULTS = (
    FaultSpec(machine="snacks/packaging/weigher", kind="stuck_sensor", at=0.0, duration=0.0),
    FaultSpec(machine="machining/cell-1/cnc-2", kind="clogging", at=0.0, duration=0.0),
    FaultSpec(machine="dairy/filling/filler", kind="bearing_wear", at=0.0, duration=0.0),
)
# Plant seconds between state, counter and signal polls: state to the second for OEE, counters
# often enough for the per-shift counts, signals often enough to train on a few minutes.
STATE_POLL_S, COUNTER_POLL_S, SIGNAL_POLL_S = 2.0, 10.0, 5.0


def demo_scenario(plant_seconds: float, *, seed: int | None = None) -> Scenario:
    """The bundled plant, with faults placed after the training part of ``plant_seconds``."""
    scenario = load_scenario(bundled_scenario())
    first = plant_seconds * FIRST_FAULT_SHARE
    remaining = plant_seconds - first
    faults = []
    for i, fault in enumerate(SHORT_RUN_FAULTS):
        at = first + i * remaining / (2 * len(SHORT_RUN_FAULTS))
        faults.append(fault.model_copy(update={"at": at, "duration": plant_seconds - at}))
    update: dict[str, Any] = {"faults": faults}
    if seed is not None:
        update["seed"] = seed
    return scenario.model_copy(update=update)


def demo_site_config(
    scenario: Scenario,
    *,
    workdir: Path,
    speed: float,
    modbus_port: int,
    opcua_port: int,
    mqtt_url: str,
    mqtt_protocol: str,
    influx_url: str | None,
    influx_database: str | None,
) -> dict[str, Any]:
    """The site file (as data) for the demo run; every file it names lives in ``workdir``."""
    config = scenario_site_config(
        scenario,
        modbus_port=modbus_port,
        opcua_port=opcua_port,
        speed=speed,
        poll_s=SIGNAL_POLL_S,
        state_poll_s=STATE_POLL_S,
        counter_poll_s=COUNTER_POLL_S,
        mqtt_url=mqtt_url,
        influx_url=influx_url,
    )
    run = uuid.uuid4().hex[:8]
    # Client ids of this run only: a shared broker must not hand it an older run's session.
    config["mqtt"].update(
        client_id_prefix=f"pw-demo-{run}", session_expiry_s=600, protocol=mqtt_protocol
    )
    if influx_url is not None:
        config["store"]["database"] = influx_database or f"plantwire_demo_{run}"
    else:
        config["store"] = {"backend": "sqlite", "path": str(workdir / "store.db")}
    for node in config["edge_nodes"]:
        node["buffer_path"] = str(workdir / f"{node['id']}.db")
        node["health_port"] = 0
        node["stats_interval_s"] = 5  # the pipeline board's figures (wall seconds)
    config["gateway"] = {
        "spool_path": str(workdir / "gateway-spool.db"),
        "health_port": 0,
        "pipeline_interval_s": 5,
        "batch_max_latency_ms": 100,
    }
    config["analytics"].update(health_port=0, registry_path=str(workdir / "models"))
    return config
