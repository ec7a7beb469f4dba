"""The gateway with real Mosquitto and influxd: N samples published, N points stored, exactly --
through a kill -9, two gateways sharing the load, and a flood of bad input."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from pw_gateway import Publisher, TopicCounter, gateway_site, running, stop

from gateway.service import Gateway
from plantwire.config import SiteConfig
from plantwire.store.influx_async import make_async_writer
from plantwire.testing.servers import InfluxClient, Influxd, Mosquitto

pytestmark = pytest.mark.servers


def stored(influx: InfluxClient) -> int:
    """Every field value in the telemetry measurement (a sample is one field value)."""
    rows = influx.rows('SELECT COUNT(*) FROM "telemetry"')
    return sum(
        int(v) for row in rows for k, v in row.items() if k.startswith("count_") and v is not None
    )


def wait_stored(influx: InfluxClient, want: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    got = stored(influx)
    while got < want and time.monotonic() < deadline:
        time.sleep(0.25)
        got = stored(influx)
    return got


def gateway_for(site: SiteConfig, gateway_id: str = "gw-1") -> Gateway:
    assert site.store is not None
    return Gateway(site, make_async_writer(site.store), gateway_id=gateway_id)


def test_n_samples_published_n_points_stored_exactly(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, influx: InfluxClient
) -> None:
    site = gateway_site(
        tmp_path, mqtt_port=mosquitto.port, influx_url=influxd.url, database=influx.database
    )
    publisher = Publisher(mosquitto.port, site.site.id)

    async def scenario() -> None:
        gateway = gateway_for(site)
        task = await running(gateway)
        for i in range(200):
            publisher.publish(publisher.batch(f"m{i % 4}", rows=20))
        await asyncio.to_thread(publisher.flush)
        await asyncio.to_thread(wait_stored, influx, len(publisher.sent), 30)
        assert await gateway.drain(10)
        assert gateway.intake.sequences.gaps == 0
        await stop(task)

    asyncio.run(scenario())
    publisher.close()
    assert stored(influx) == len(publisher.sent) == 200 * 20 * 5
    rows = influx.rows('SELECT * FROM "telemetry"')
    seen = 0
    for row in rows:
        for metric in ("temp", "count", "on", "product", "pressure"):
            value = row.get(metric)
            if value is None:
                continue
            want = publisher.sent[(row["machine"], metric, row["time"])]
            if isinstance(want, float):
                assert float(value) == want  # InfluxDB's JSON writes 2.0 as 2
            else:
                assert value == want and type(value) is type(want)
            seen += 1
    assert seen == len(publisher.sent)


def test_gateway_killed_with_kill_9_mid_stream_loses_nothing(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, influx: InfluxClient
) -> None:
    site = gateway_site(
        tmp_path, mqtt_port=mosquitto.port, influx_url=influxd.url, database=influx.database
    )
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site.model_dump(mode="json", exclude_none=True)))
    command = [
        sys.executable,
        "-m",
        "plantwire.cli",
        "gateway",
        "--config",
        str(path),
        "--id",
        "gw-kill",
    ]
    publisher = Publisher(mosquitto.port, site.site.id)
    log = (tmp_path / "gateway.log").open("wb")
    gateway = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(2)
        for second in range(20):
            for i in range(4):
                publisher.publish(publisher.batch(f"m{i}", rows=25))
            if second == 8:
                os.kill(gateway.pid, signal.SIGKILL)
                gateway.wait()
            if second == 14:
                gateway = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            time.sleep(0.5)
        publisher.flush()
        assert (
            wait_stored(influx, len(publisher.sent), 60) == len(publisher.sent) == 20 * 4 * 25 * 5
        )
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(20)
        publisher.close()
        log.close()


def test_two_gateways_in_one_shared_group_split_the_load(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, influx: InfluxClient
) -> None:
    site = gateway_site(
        tmp_path,
        mqtt_port=mosquitto.port,
        influx_url=influxd.url,
        database=influx.database,
        shared_group="writers",
    )
    publisher = Publisher(mosquitto.port, site.site.id)

    async def scenario() -> tuple[int, int]:
        first, second = (
            gateway_for(site, "gw-a"),
            gateway_for(
                site.model_copy(
                    update={
                        "gateway": site.gateway.model_copy(update={"spool_path": tmp_path / "b.db"})
                    }
                ),
                "gw-b",
            ),
        )
        tasks = [await running(first), await running(second)]
        for i in range(400):
            publisher.publish(publisher.batch(f"m{i % 4}", rows=5))
        await asyncio.to_thread(publisher.flush)
        await asyncio.to_thread(wait_stored, influx, len(publisher.sent), 30)
        for gateway in (first, second):
            assert await gateway.drain(10)
        for task in tasks:
            await stop(task)
        return first.messages, second.messages

    a, b = asyncio.run(scenario())
    publisher.close()
    assert a + b == 400 and a > 50 and b > 50  # split, if not evenly
    assert stored(influx) == len(publisher.sent)


def test_ten_thousand_malformed_messages_are_dead_lettered_and_good_ones_written(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, influx: InfluxClient
) -> None:
    site = gateway_site(
        tmp_path, mqtt_port=mosquitto.port, influx_url=influxd.url, database=influx.database
    )
    publisher = Publisher(mosquitto.port, site.site.id, seed=7)
    dead = TopicCounter(mosquitto.port, f"plantwire/v1/{site.site.id}/deadletter/#")
    topic = f"plantwire/v1/{site.site.id}/dairy/filling/m0/data"
    frame = orjson.loads(
        orjson.dumps(
            {
                "version": 1,
                "edge": "e",
                "seq": 1,
                "asset": {
                    "site": site.site.id,
                    "area": "dairy",
                    "line": "filling",
                    "machine": "m0",
                },
            }
        )
    )
    bad_payloads: list[tuple[str, bytes]] = []
    oversize = b"[" + b"1," * 2_200_000 + b"1]"  # 4.4 MB: over the 4 MiB limit
    for i in range(10_000):
        kind = i % 5
        if i % 500 == 499:
            payload = oversize  # 20 of these: enough to prove the limit, not to flood the broker
        elif kind == 0:
            payload = os.urandom(64)
        elif kind == 1:
            payload = orjson.dumps({"version": 99, "samples": []})
        elif kind == 2:
            payload = (
                b'{"version": 1, "edge": "e", "seq": 1, "samples": [{"t": 1, "m": "x", "v": NaN}]}'
            )
        elif kind == 3:  # a sample of the wrong type: that sample is dead-lettered
            payload = orjson.dumps({**frame, "samples": [{"t": 1, "m": "x", "v": [1, 2]}]})
        else:  # a batch for another machine than its topic's
            payload = orjson.dumps(
                {**frame, "asset": {**frame["asset"], "machine": "m9"}, "samples": []}
            )
        bad_payloads.append((topic, payload))

    async def scenario() -> dict[str, Any]:
        gateway = gateway_for(site)
        task = await running(gateway)
        for i, (bad_topic, payload) in enumerate(bad_payloads):
            publisher.publish_raw(bad_topic, payload)
            if i % 20 == 0:
                publisher.publish(publisher.batch(f"m{(i // 20) % 4}", rows=2))
            if i % 500 == 0:
                await asyncio.to_thread(publisher.flush)
        await asyncio.to_thread(publisher.flush)
        stored_count = await asyncio.to_thread(wait_stored, influx, len(publisher.sent), 60)
        assert await gateway.drain(20)
        deadline = time.monotonic() + 30
        while len(dead.messages) < 10_000 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        status = gateway.status()
        await stop(task)
        return {"stored": stored_count, "status": status, "dead": dict(gateway.dead_letters)}

    figures = asyncio.run(scenario())
    publisher.close()
    dead.close()
    assert figures["stored"] == len(publisher.sent) == 500 * 2 * 5
    assert len(dead.messages) == 10_000
    reasons = [orjson.loads(m)["reason"] for m in dead.messages]
    assert any("not JSON" in r for r in reasons) and any("schema version 99" in r for r in reasons)
    assert any("more than the limit" in r for r in reasons) and any(
        "invalid samples" in r for r in reasons
    )
    assert any("came on the topic of" in r for r in reasons)
    assert figures["status"].healthy


def test_a_gateway_that_keeps_losing_its_broker_says_degraded_until_it_is_stable(
    tmp_path: Path,
    mosquitto_private: Mosquitto,
    influxd: Influxd,
    influx: InfluxClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Three lost connections within five minutes: /healthz says degraded, whatever the socket
    says the moment it is asked (the gateway reconnects each time), and logs it once."""
    site = gateway_site(
        tmp_path,
        mqtt_port=mosquitto_private.port,
        influx_url=influxd.url,
        database=influx.database,
    )

    async def scenario() -> list[tuple[bool, bool, bool]]:
        gateway = gateway_for(site)
        task = await running(gateway)
        seen = []
        for _ in range(3):
            await asyncio.to_thread(mosquitto_private.restart)
            deadline = time.monotonic() + 30
            while not gateway.connected or gateway.connections_lost == len(seen):
                assert time.monotonic() < deadline, "the gateway did not reconnect"
                await asyncio.sleep(0.1)
            status = gateway.status()
            seen.append((gateway.connected, status.healthy, gateway.reconnecting_in_a_loop))
        await stop(task)
        return seen

    seen = asyncio.run(scenario())
    # Connected each time; healthy after one and two losses, degraded at the third.
    assert seen == [(True, True, False), (True, True, False), (True, False, True)]
    loops = [r.getMessage() for r in caplog.records if "MQTT connection lost" in r.getMessage()]
    assert len(loops) == 1 and loops[0].startswith("MQTT connection lost 3 times in 300 s")
