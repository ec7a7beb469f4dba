"""Third-party MQTT data through the gateway's ingest rules, with real Mosquitto and influxd:
each format published by ``mosquitto_pub`` as a foreign device would, read back by InfluxQL
(values, types, times, asset tags), and 10,000 mixed good and bad messages -- every good value
stored, every bad message dead-lettered, the counts equal."""

from __future__ import annotations

import asyncio
import math
import random
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from pw_gateway import Publisher, TopicCounter, running, stop

from analytics.compute import compute_oee
from gateway.service import Gateway
from plantwire.config import SiteConfig, parse_site
from plantwire.store.influx_async import make_async_writer
from plantwire.store.open import open_store
from plantwire.testing.servers import InfluxClient, Influxd, Mosquitto
from simulators.plant import Plant
from simulators.scenario import bundled_scenario, load_scenario
from simulators.siteconfig import scenario_site_config

pytestmark = pytest.mark.servers

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "deploy" / "site.ingest-example.yaml"
T_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def ingest_site(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, database: str
) -> SiteConfig:
    """The shipped example, pointed at the test's servers, with topics of its own (the broker
    is shared by the whole session)."""
    config: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    config["mqtt"] = {"url": f"mqtt://127.0.0.1:{mosquitto.port}", "session_expiry_s": 3600}
    config["store"] = {"backend": "influxdb", "url": influxd.url, "database": database}
    config["gateway"] = {"spool_path": str(tmp_path / "spool.db"), "health_port": 0,
                         "batch_max_latency_ms": 50}  # fmt: skip
    prefix = f"t{uuid.uuid4().hex[:6]}"
    for rule in config["ingest"]:
        rule["topic"] = f"{prefix}/{rule['topic']}"
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return parse_site(path.read_text(), str(path), environ={}).config


def prefix_of(site: SiteConfig) -> str:
    return site.ingest[0].topic.split("/")[0]


def mosquitto_pub(port: int, topic: str, payload: str) -> None:
    binary = shutil.which("mosquitto_pub")
    assert binary, "mosquitto_pub (Debian's mosquitto-clients) is needed: scripts/install-servers"
    subprocess.run(
        [binary, "-p", str(port), "-q", "1", "-V", "mqttv5", "-t", topic, "-m", payload],
        check=True,
        timeout=20,
    )


def wait_rows(
    influx: InfluxClient, query: str, count: int, timeout_s: float = 60
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    rows = influx.rows(query)
    while len(rows) < count and time.monotonic() < deadline:
        time.sleep(0.25)
        rows = influx.rows(query)
    return rows


def test_each_format_from_mosquitto_pub_lands_in_the_telemetry_schema(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, influx: InfluxClient
) -> None:
    site = ingest_site(tmp_path, mosquitto, influxd, influx.database)
    p = prefix_of(site)
    site_id = site.site.id
    messages = [
        (f"{p}/factory/filling/press-3/telemetry",
         '{"temperature": 21.5, "pressure": {"inlet": 2}, "running": true, "recipe": "A-12", "ts": 1700000000000}'),
        (f"{p}/plant/dairy/filling/press-4/speed", "120.5"),
        (f"{p}/plant/dairy/filling/press-4/alarm", "true"),
        (f"{p}/plant/dairy/filling/press-4/state", "running"),
        (f"{p}/telegraf/press-5", "cpu,host=edge-pc usage_idle=97.5,count=3i 1700000001000000000"),
        (f"{p}/kepware/filling/press-6",
         ('{"timestamp": 1700000002500, "values": ['
         '{"id": "Channel1.Device1.Temp", "v": 30.5, "q": true, "t": 1700000002000},'
         '{"id": "Channel1.Device1.Fault", "v": false, "q": true, "t": 1700000002000},'
         '{"id": "Channel1.Device1.Level", "v": 0, "q": false, "t": 1700000002000}]}')),
    ]  # fmt: skip

    async def scenario() -> tuple[int, int]:
        assert site.store is not None
        gateway = Gateway(
            site, make_async_writer(site.store), gateway_id=f"gw-{uuid.uuid4().hex[:6]}"
        )
        task = await running(gateway)
        before = time.time_ns()
        for topic, payload in messages:
            await asyncio.to_thread(mosquitto_pub, mosquitto.port, topic, payload)
        rows = await asyncio.to_thread(
            wait_rows, influx, 'SELECT * FROM "telemetry"', 6
        )  # press-3, press-4 x3, press-5, press-6 (one time each)
        # The broker's acknowledgement to mosquitto_pub comes before the gateway has the
        # message: a receipt stamp lies between the first publish and the stored rows.
        after = time.time_ns()
        assert len(rows) >= 6, rows
        assert await gateway.drain(10)
        assert gateway.dead_letters == {}, gateway.dead_letters
        await stop(task)
        return before, after

    before, after = asyncio.run(scenario())
    by_machine: dict[str, list[dict[str, Any]]] = {}
    for row in influx.rows('SELECT * FROM "telemetry"'):
        assert row["site"] == site_id and row["area"] == "dairy" and row["line"] == "filling"
        by_machine.setdefault(row["machine"], []).append(row)

    (press3,) = by_machine["press-3"]
    assert press3["time"] == T_MS * 1_000_000
    assert press3["temperature"] == 21.5 and press3["pressure_inlet"] == 2.0
    assert press3["running"] is True and press3["recipe"] == "A-12"

    press4 = by_machine["press-4"]
    assert all(before <= row["time"] <= after for row in press4)  # stamped on receipt
    values = {
        k: v
        for row in press4
        for k, v in row.items()
        if k in ("speed", "alarm", "state") and v is not None
    }
    assert values == {"speed": 120.5, "alarm": True, "state": "running"}

    (press5,) = by_machine["press-5"]
    assert press5["time"] == 1_700_000_001_000_000_000
    assert press5["cpu_usage_idle"] == 97.5 and press5["cpu_count"] == 3.0

    (press6,) = by_machine["press-6"]
    assert press6["time"] == 1_700_000_002_000_000_000
    assert press6["Channel1.Device1.Temp"] == 30.5 and press6["Channel1.Device1.Fault"] is False
    assert press6["Channel1.Device1.Level"] == 0.0
    assert press6["Channel1.Device1.Level__quality"] == "bad"

    # Types as InfluxDB keeps them: numbers are floats whatever the device sent.
    kinds = {
        (row["fieldKey"], row["fieldType"])
        for row in influx.rows('SHOW FIELD KEYS FROM "telemetry"')
    }
    assert ("pressure_inlet", "float") in kinds and ("cpu_count", "float") in kinds
    assert ("running", "boolean") in kinds and ("recipe", "string") in kinds


GOOD, BAD = "good", "bad"


def mixed_messages(prefix: str, count: int, seed: int = 7) -> list[tuple[str, bytes, str, int]]:
    """(topic, payload, good or bad, values it carries when good), every format, one in five
    bad in one of the ways a real device gets it wrong."""
    rng = random.Random(seed)
    out: list[tuple[str, bytes, str, int]] = []
    for i in range(count):
        machine = f"m{i % 7}"
        ts = T_MS + i
        kind = i % 4
        bad = rng.random() < 0.2
        if kind == 0:
            topic = f"{prefix}/factory/filling/{machine}/telemetry"
            body = {"temperature": rng.uniform(0, 90), "count": i, "ts": ts}
            if bad:
                payload = rng.choice(
                    [
                        b"not json",
                        b"[1, 2]",
                        b'{"temperature": 1}',
                        orjson.dumps({**body, "ts": "yesterday"}),
                    ]
                )
            else:
                payload = orjson.dumps(body)
            out.append((topic, payload, BAD if bad else GOOD, 2))
        elif kind == 1:
            topic = f"{prefix}/plant/dairy/filling/{machine}/level"
            payload = b"" if bad else f"{rng.uniform(0, 100):.3f}".encode()
            out.append((topic, payload, BAD if bad else GOOD, 1))
        elif kind == 2:
            topic = f"{prefix}/telegraf/{machine}"
            payload = (
                b"mem used="
                if bad
                else f"mem used_percent={rng.uniform(0, 100)},free={i}i {ts * 1_000_000}".encode()
            )
            out.append((topic, payload, BAD if bad else GOOD, 2))
        else:
            topic = f"{prefix}/kepware/filling/{machine}"
            records = [
                {"id": "Temp", "v": rng.uniform(0, 50), "q": True, "t": ts},
                {"id": "Run", "v": True, "q": True, "t": ts},
            ]
            payload = b'{"values": 3}' if bad else orjson.dumps({"values": records})
            out.append((topic, payload, BAD if bad else GOOD, 2))
    return out


def stored_values(influx: InfluxClient) -> int:
    rows = influx.rows('SELECT COUNT(*) FROM "telemetry"')
    return sum(
        int(v) for row in rows for k, v in row.items() if k.startswith("count_") and v is not None
    )


def test_10000_mixed_third_party_messages_good_stored_bad_dead_lettered(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, influx: InfluxClient
) -> None:
    site = ingest_site(tmp_path, mosquitto, influxd, influx.database)
    messages = mixed_messages(prefix_of(site), 10_000)
    good_values = sum(values for _, _, kind, values in messages if kind == GOOD)
    bad_messages = sum(kind == BAD for _, _, kind, _ in messages)
    dead = TopicCounter(mosquitto.port, f"plantwire/v1/{site.site.id}/deadletter/#")
    publisher = Publisher(mosquitto.port, site.site.id)

    async def scenario() -> Gateway:
        assert site.store is not None
        gateway = Gateway(
            site, make_async_writer(site.store), gateway_id=f"gw-{uuid.uuid4().hex[:6]}"
        )
        task = await running(gateway)
        for topic, payload, _, _ in messages:
            publisher.publish_raw(topic, payload)
        await asyncio.to_thread(publisher.flush, 60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
            gateway.messages < len(messages)
            or stored_values(influx) < good_values
            or len(dead.messages) < bad_messages
        ):
            await asyncio.sleep(0.5)
        assert await gateway.drain(20)
        await stop(task)
        return gateway

    try:
        gateway = asyncio.run(scenario())
    finally:
        publisher.close()
        dead.close()
    assert gateway.messages == len(messages)
    assert stored_values(influx) == good_values
    assert len(dead.messages) == bad_messages == sum(gateway.dead_letters.values())
    reasons = {orjson.loads(m)["reason"].split(":")[0] for m in dead.messages}
    assert "not JSON" in reasons and "the message is empty" in reasons
    refused = sum(d.refused_messages for d in gateway.routes.ingest_decoders())
    assert refused == bad_messages


OEE_TOLERANCE = 0.005  # half a percentage point, as for the edges' path (test_oee_end_to_end)
DEVICE_PERIOD_S = 2  # plant seconds between a JSON device's messages
PLANT_HOURS = 2.0  # the machining cell breaks down for 42 minutes in the second hour


def json_only_site(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, database: str
) -> SiteConfig:
    """The simulated plant's site file with no sources at all: every machine is a device that
    publishes its own JSON on ``<prefix>/json-plant/<area>/<line>/<machine>``."""
    config = scenario_site_config(
        load_scenario(bundled_scenario()), mqtt_url=f"mqtt://127.0.0.1:{mosquitto.port}",
        influx_url=influxd.url,
    )  # fmt: skip
    config["site"]["id"] = f"bd-{uuid.uuid4().hex[:6]}"
    config["store"]["database"] = database
    config["gateway"] = {"spool_path": str(tmp_path / "spool.db"), "health_port": 0,
                         "batch_max_latency_ms": 50}  # fmt: skip
    for area in config["areas"]:
        for line in area["lines"]:
            for machine in line["machines"]:
                machine.pop("sources")
                machine.pop("clock_metric", None)
                machine.pop("edge_node", None)
    config["edge_nodes"] = [{"id": "unused"}]
    prefix = f"t{uuid.uuid4().hex[:6]}"
    config["ingest"] = [
        {"name": "json-devices", "topic": f"{prefix}/json-plant/{{area}}/{{line}}/{{machine}}",
         "format": "json", "timestamp": {"path": "ts", "unit": "ms"}}
    ]  # fmt: skip
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return parse_site(path.read_text(), str(path), environ={}).config


def test_oee_from_machines_that_only_publish_json_matches_the_truth(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, influx: InfluxClient
) -> None:
    site = json_only_site(tmp_path, mosquitto, influxd, influx.database)
    assert all(not machine.sources for _, _, machine in site.machines())
    prefix = site.ingest[0].topic.split("/")[0]
    plant = Plant(load_scenario(bundled_scenario()))
    start_ns = round(plant.now * 1e9)
    publisher = Publisher(mosquitto.port, site.site.id)
    sent = 0

    async def scenario() -> Gateway:
        nonlocal sent
        assert site.store is not None
        gateway = Gateway(
            site, make_async_writer(site.store), gateway_id=f"gw-{uuid.uuid4().hex[:6]}"
        )
        task = await running(gateway)
        for step in range(round(PLANT_HOURS * 3600 / plant.step_s)):
            plant.step()
            if step % DEVICE_PERIOD_S:
                continue
            for index, machine in enumerate(plant.machines):
                values = {
                    k: v for k, v in plant.values(index).items()
                    if k != "plc_clock_ns" and not (isinstance(v, float) and math.isnan(v))
                }  # fmt: skip
                values["ts"] = round(plant.now * 1000)
                topic = f"{prefix}/json-plant/{machine.area}/{machine.line.id}/{machine.spec.id}"
                publisher.publish_raw(topic, orjson.dumps(values))
                sent += 1
            if step % 600 == 0:
                await asyncio.to_thread(publisher.flush, 60)
        await asyncio.to_thread(publisher.flush, 60)
        deadline = time.monotonic() + 120
        while gateway.messages < sent and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        assert await gateway.drain(30)
        await stop(task)
        return gateway

    try:
        gateway = asyncio.run(scenario())
    finally:
        publisher.close()
    assert gateway.messages == sent and gateway.dead_letters == {}
    end_ns = round(plant.now * 1e9)
    with open_store(site) as store:
        reports = compute_oee(site, store, start_ns=start_ns, end_ns=end_ns, by="shift")
    truth = {(row["line"], row["shift"]): row for row in plant.truth()["lines"]}
    checked = 0
    for report in reports:
        for result in report.results:
            want = truth[(report.path, result.window.label)]
            for figure in ("availability", "performance", "quality", "oee"):
                got, true = getattr(result.figures, figure), want[figure]
                assert got is not None and abs(got - true) <= OEE_TOLERANCE, (
                    f"{report.path} {result.window.label} {figure}: {got} vs truth {true}"
                )
            checked += 1
            print(report.path, result.window.label, "computed/truth:", "  ".join(
                f"{f[0].upper()} {getattr(result.figures, f):.4f}/{want[f]:.4f}"
                for f in ("availability", "performance", "quality", "oee")
            ))  # fmt: skip
    assert checked == 3, reports  # three lines, the morning shift
