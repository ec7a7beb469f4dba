"""A simulated ingest into a real influxd that fills every measurement the Grafana boards read.

* ``telemetry``: the bundled Binh Duong plant, stepped second by second through a morning shift
  from 06:00 to 10:25 (before the meal break), each machine stored every
  :data:`SAMPLE_EVERY_S` plant seconds as an edge agent's poll would store it;
* ``oee``: the analytics service's own engine, run once at the end of that plant time;
* ``anomaly`` and ``anomaly_events``: a PCA model fitted on the filler's normal hours (06:10 to
  09:00) and promoted, then the analytics service scoring 09:00 onwards, where the injected
  bearing wear grows and ends in a stop for repair -- which raises an alarm;
* ``pipeline``: a real gateway between Mosquitto and influxd reporting every 0.2 s, with an edge
  agent's stats and status, a sequence gap and a dead letter.

The plant runs in the wall clock's recent past (the latest working-day morning that is over), not
on the scenario's fixed date: the gateway stamps its own reports with the wall clock, and one
dashboard time range must hold everything.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import yaml
from pw_gateway import Publisher, running, stop

from analytics.anomaly.registry import Registry
from analytics.anomaly.training import train
from analytics.history import load_history
from analytics.service import AnalyticsService
from gateway.service import Gateway
from plantwire.codec import encode_batch
from plantwire.config import SiteConfig, parse_site
from plantwire.lineprotocol import Point
from plantwire.model import AssetPath, Batch, Sample
from plantwire.names import QUALITY_SUFFIX
from plantwire.store.influx import InfluxStore
from plantwire.store.influx_async import make_async_writer
from plantwire.testing.servers import Influxd, Mosquitto
from plantwire.topics import data_topic, service_state_topic, service_stats_topic
from simulators.kinds import KINDS
from simulators.plant import Plant
from simulators.scenario import FaultSpec, Scenario, bundled_scenario, load_scenario
from simulators.siteconfig import scenario_site_config

__all__ = ["Ingest", "run_ingest"]

NS = 1_000_000_000
HOUR_NS = 3600 * NS
SHIFT_START_HOUR = 6  # the scenario's morning shift
PLANT_HOURS = 4 + 25 / 60  # 06:00 to 10:25, before the 10:30 meal break
SAMPLE_EVERY_S = 5  # plant seconds between a machine's stored samples
FILLER = "dairy/filling/filler"
WEAR_FROM_H, WEAR_HOURS = 3.0, 1.0  # bearing wear 09:00 to 10:00, then a stop for repair
TRAIN_FROM_H = 1 / 6  # 06:10: the start-up is no normal running to learn from
EDGE_ID = "edge-dairy"
GATEWAY_ID = "gw-boards"


@dataclass(frozen=True)
class Ingest:
    """What was stored: the time range holding every point, and a real value for each template
    variable (the filler's: its model raised an alarm)."""

    site: SiteConfig
    start_ns: int
    end_ns: int
    variables: dict[str, str]


def plant_start(now: datetime, hours: float) -> datetime:
    """The latest 06:00 of a working day (Monday to Saturday) whose ``hours`` are over by
    ``now``: a real morning shift of the recent past."""
    day = now.date()
    while True:
        start = datetime(day.year, day.month, day.day, SHIFT_START_HOUR, tzinfo=now.tzinfo)
        if start.weekday() != 6 and start + timedelta(hours=hours) <= now:
            return start
        day -= timedelta(days=1)


def scenario_with_wear() -> Scenario:
    """The bundled plant with one fault only: the filler's bearing wear, after normal hours."""
    scenario = load_scenario(bundled_scenario())
    wear = FaultSpec(
        machine=FILLER,
        kind="bearing_wear",
        at=WEAR_FROM_H * 3600,
        duration=WEAR_HOURS * 3600,
    )
    return scenario.model_copy(update={"faults": [wear]})


def site_config(
    tmp_path: Path, scenario: Scenario, influxd: Influxd, database: str, mosquitto: Mosquitto
) -> SiteConfig:
    config = scenario_site_config(
        scenario, mqtt_url=f"mqtt://127.0.0.1:{mosquitto.port}", influx_url=influxd.url
    )
    # The session's tests share the broker: a site id of our own keeps the topics apart.
    config["site"]["id"] = f"bd-{uuid.uuid4().hex[:6]}"
    config["store"]["database"] = database
    config["analytics"].update(health_port=0, registry_path=str(tmp_path / "models"))
    config["gateway"] = {
        "spool_path": str(tmp_path / "spool.db"),
        "health_port": 0,
        "pipeline_interval_s": 0.2,
        "batch_max_latency_ms": 50,
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return parse_site(path.read_text(), str(path), environ={}).config


def _fields(values: dict[str, float | int | bool | str]) -> dict[str, Any]:
    """A PLC's values as the gateway stores them: a dropped-out sensor (NaN) is a bad sample."""
    fields: dict[str, Any] = {}
    for metric, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            fields[metric + QUALITY_SUFFIX] = "bad"
        else:
            fields[metric] = value
    return fields


def write_telemetry(store: InfluxStore, site_id: str, plant: Plant, hours: float) -> int:
    """Step the plant through ``hours``, storing every machine's values every few seconds."""
    tags = [
        {"site": site_id, "area": m.area, "line": m.line.id, "machine": m.spec.id}
        for m in plant.machines
    ]
    written = 0
    points: list[Point] = []
    for step in range(round(hours * 3600 / plant.step_s)):
        plant.step()
        if step % SAMPLE_EVERY_S:
            continue
        ts_ns = round(plant.now * NS)
        points += [
            Point("telemetry", tags[i], _fields(plant.values(i)), ts_ns)
            for i in range(len(plant.machines))
        ]
        if len(points) >= 20_000:
            written += store.write_points(points)
            points = []
    return written + store.write_points(points)


def train_filler_model(site: SiteConfig, store: InfluxStore, start_ns: int) -> None:
    """Fit PCA on the filler's process signals over its normal hours, and promote it.

    The signals are the filler kind's own: the site file's tag map also holds counters (cycle
    count, run seconds) that only ever grow, which a PCA fitted on three hours cannot place."""
    history = load_history(
        site,
        store,
        FILLER,
        start=start_ns + round(TRAIN_FROM_H * HOUR_NS),
        end=start_ns + round(WEAR_FROM_H * HOUR_NS),
        signals=KINDS["filler"].signal_names(),
    )
    registry = Registry(site.analytics.registry_path)
    version = train(history, registry, site=site.site.id, detector_name="pca")
    registry.promote(version.machine, version.version)


def run_analytics(site: SiteConfig, store: InfluxStore, start_ns: int, now_ns: int) -> None:
    """OEE of the shift so far; anomaly scores from the start of the wear on."""
    service = AnalyticsService(site, store, clock=lambda: now_ns)
    service.anomaly.lookback_ns = now_ns - start_ns - round(WEAR_FROM_H * HOUR_NS)
    service.run_once()
    assert service.last_error is None, service.last_error


EDGE_STATS: dict[str, float] = {
    # The gateway reports mqtt_connected too: both must land (one field type per shard).
    "mqtt_connected": 1,
    "sources_connected": 4,
    "sources_total": 4,
    "samples_read_total": 1200,
    "samples_published_total": 1100,
    "samples_buffered": 100,
    "samples_dropped_total": 0,
    "buffer_bytes": 8192,
    "reads_per_s": 40.0,
}


def _publish_edge_traffic(publisher: Publisher, site_id: str) -> None:
    """Two batches with a sequence gap between them, a payload that is no batch, the edge's
    status and its stats."""
    asset = AssetPath(site_id, "dairy", "filling", "filler")
    now = time.time_ns()
    for seq in (0, 2):  # batch 1 never arrives
        batch = Batch(EDGE_ID, seq, asset, [Sample(now + seq, "product_temp", 4.2)])
        publisher.publish_raw(data_topic(asset), encode_batch(batch))
    publisher.publish_raw(data_topic(asset), b"{not a batch")
    status = {"status": "online", "edge": EDGE_ID, "ts": now}
    publisher.publish_raw(service_state_topic(site_id, EDGE_ID), orjson.dumps(status))
    stats = {"edge": EDGE_ID, "ts": now + 1, "stats": EDGE_STATS}
    publisher.publish_raw(service_stats_topic(site_id, EDGE_ID), orjson.dumps(stats))


async def run_gateway(site: SiteConfig, mosquitto: Mosquitto, seconds: float = 1.0) -> None:
    """Run a real gateway for ``seconds`` while an edge's traffic arrives."""
    assert site.store is not None
    writer = make_async_writer(site.store)
    gateway = Gateway(site, writer, gateway_id=GATEWAY_ID)  # type: ignore[arg-type]
    task = await running(gateway)
    publisher = Publisher(mosquitto.port, site.site.id, edge=EDGE_ID)
    try:
        _publish_edge_traffic(publisher, site.site.id)
        await asyncio.to_thread(publisher.flush)
        await asyncio.sleep(seconds)  # a few of the gateway's own reports
        assert await gateway.drain(10), "the gateway did not drain"
    finally:
        publisher.close()
        await stop(task)


def run_ingest(tmp_path: Path, influxd: Influxd, database: str, mosquitto: Mosquitto) -> Ingest:
    scenario = scenario_with_wear()
    site = site_config(tmp_path, scenario, influxd, database, mosquitto)
    assert site.store is not None
    start = plant_start(datetime.now(ZoneInfo(site.site.timezone)), PLANT_HOURS)
    plant = Plant(scenario, start=start)
    start_ns = round(plant.t0 * NS)
    with InfluxStore(site.store) as store:
        write_telemetry(store, site.site.id, plant, PLANT_HOURS)
        train_filler_model(site, store, start_ns)
        run_analytics(site, store, start_ns, round(plant.now * NS))
    asyncio.run(run_gateway(site, mosquitto))
    area, line, machine = FILLER.split("/")
    variables = {"site": site.site.id, "area": area, "line": line, "machine": machine}
    return Ingest(site, start_ns, time.time_ns(), variables)
