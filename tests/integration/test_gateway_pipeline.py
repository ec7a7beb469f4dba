"""The pipeline's own health lands in InfluxDB: the gateway's periodic report, an edge's stats and
the services' status, with malformed service messages refused and counted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from pw_gateway import Publisher, gateway_site, running, stop

from gateway.service import Gateway
from plantwire.store.influx_async import make_async_writer
from plantwire.testing.servers import InfluxClient, Influxd, Mosquitto
from plantwire.topics import service_state_topic, service_stats_topic

pytestmark = pytest.mark.servers

EDGE_STATS = {
    "mqtt_connected": 1,
    "sources_connected": 2,
    "sources_total": 3,
    "samples_read_total": 12_345,
    "samples_published_total": 12_000,
    "samples_buffered": 345,
    "samples_dropped_total": 0,
    "buffer_bytes": 40_960,
    "reads_per_s": 101.5,
}


def pipeline_rows(influx: InfluxClient, service: str) -> list[dict[str, Any]]:
    return influx.rows(f"SELECT * FROM \"pipeline\" WHERE service = '{service}'")


def test_gateway_report_edge_stats_and_states_are_written(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, influx: InfluxClient
) -> None:
    site = gateway_site(
        tmp_path,
        mqtt_port=mosquitto.port,
        influx_url=influxd.url,
        database=influx.database,
        pipeline_interval_s=0.3,
    )
    assert site.store is not None
    publisher = Publisher(mosquitto.port, site.site.id)
    sid = site.site.id
    # Now, not long ago: the edge's and the gateway's points share a shard, where a field (such
    # as mqtt_connected, reported by both) must keep one type.
    t0 = time.time_ns()

    async def scenario() -> Gateway:
        gateway = Gateway(site, make_async_writer(site.store), gateway_id="gw-1")  # type: ignore[arg-type]
        task = await running(gateway)
        publisher.publish(publisher.batch("m0", rows=10))
        stats = {"edge": "edge-a", "ts": t0, "stats": EDGE_STATS}
        publisher.publish_raw(service_stats_topic(sid, "edge-a"), orjson.dumps(stats))
        state = {"status": "offline", "edge": "edge-a", "ts": t0 + 1}
        publisher.publish_raw(service_state_topic(sid, "edge-a"), orjson.dumps(state))
        bad = {"edge": "edge-b", "stats": {"samples_read_total": "many"}}
        publisher.publish_raw(service_stats_topic(sid, "edge-b"), orjson.dumps(bad))
        publisher.publish_raw(service_stats_topic(sid, "edge-c"), b"{not json")
        await asyncio.to_thread(publisher.flush)
        await asyncio.sleep(1.5)  # a few reports
        assert await gateway.drain(10)
        await stop(task)
        return gateway

    gateway = asyncio.run(scenario())
    publisher.close()
    edge = [row for row in pipeline_rows(influx, "edge-a") if row["time"] == t0]
    assert len(edge) == 1
    assert {k: edge[0][k] for k in EDGE_STATS} == pytest.approx(EDGE_STATS)
    status = [row for row in pipeline_rows(influx, "edge-a") if row["time"] == t0 + 1]
    assert len(status) == 1 and status[0]["online"] == 0
    assert pipeline_rows(influx, "edge-b") == [] and pipeline_rows(influx, "edge-c") == []
    assert gateway.pipeline.refused == 2
    reports = [row for row in pipeline_rows(influx, "gw-1") if row["points_written_total"]]
    assert len(reports) >= 2
    last = reports[-1]
    assert last["mqtt_connected"] == 1 and last["influx_up"] == 1
    assert last["points_written_total"] >= 10 and last["write_latency_ms"] is not None  # 10 rows
    assert last["dead_letters_total"] == 0 and last["sequence_gaps_total"] == 0
    # the gateway's own online status, from its retained state message
    assert any(row["online"] == 1 for row in pipeline_rows(influx, "gw-1"))
