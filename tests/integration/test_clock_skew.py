"""Edge clocks that are wrong, with real Mosquitto and influxd: one edge's clock 5 minutes ahead,
one 5 minutes behind, one right. The two are flagged (metrics, one log line each, the offset in
the ``pipeline`` measurement), the right one is not, and every sample of all three is stored
with its timestamp unchanged -- the gateway never drops or shifts data for a clock."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from pw_gateway import Publisher, gateway_site, running, stop

from gateway.service import Gateway
from plantwire.model import AssetPath, Batch, Sample
from plantwire.store.influx_async import make_async_writer
from plantwire.testing.servers import InfluxClient, Influxd, Mosquitto

pytestmark = pytest.mark.servers

EDGES = {"edge-ahead": +300.0, "edge-behind": -300.0, "edge-ok": 0.0}  # clock offsets, s
MACHINES = {"edge-ahead": "m0", "edge-behind": "m1", "edge-ok": "m2"}
METRICS = ("temp", "count", "on", "product", "pressure")
WINDOW_S = 2.0  # the estimator's window, short to keep the test short (60 s in service)


def edge_clock_batch(publisher: Publisher, machine: str, offset_s: float) -> Batch:
    """A batch stamped by the edge's own (wrong) clock, as a Modbus poll without a PLC clock
    would be: these samples are off by the skew, and are still stored exactly as stamped."""
    ts = time.time_ns() + int(offset_s * 1e9)
    asset = AssetPath(publisher.site, "dairy", "filling", machine)
    value = float(publisher.seq)
    publisher.sent[(machine, "temp", ts)] = value
    batch = Batch(publisher.edge, publisher.seq, asset, [Sample(ts, "temp", value)])
    publisher.seq += 1
    return batch


def stored_samples(influx: InfluxClient, machine: str) -> dict[tuple[str, str, int], Any]:
    rows = influx.rows(f"SELECT * FROM \"telemetry\" WHERE machine = '{machine}'")
    return {
        (machine, metric, row["time"]): row[metric]
        for row in rows
        for metric in METRICS
        if row.get(metric) is not None
    }


def same(stored: Any, sent: Any) -> bool:
    return float(stored) == sent if isinstance(sent, float) else stored == sent


def test_wrong_edge_clocks_are_flagged_and_their_samples_stored_as_stamped(
    tmp_path: Path,
    mosquitto: Mosquitto,
    influxd: Influxd,
    influx: InfluxClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="plantwire.gateway.clocks")
    site = gateway_site(
        tmp_path,
        mqtt_port=mosquitto.port,
        influx_url=influxd.url,
        database=influx.database,
        pipeline_interval_s=0.3,
    )
    assert site.store is not None and site.gateway.clock_tolerance_s == 30
    publishers = {
        edge: Publisher(mosquitto.port, site.site.id, edge=edge, seed=i, clock_offset_s=offset)
        for i, (edge, offset) in enumerate(EDGES.items())
    }

    async def scenario() -> Gateway:
        gateway = Gateway(site, make_async_writer(site.store), gateway_id="gw-1")  # type: ignore[arg-type]
        gateway.clocks.window_s = WINDOW_S
        task = await running(gateway)
        deadline = time.monotonic() + 2 * WINDOW_S + 1
        while time.monotonic() < deadline:  # ten batches a second per edge
            for edge, publisher in publishers.items():
                machine = MACHINES[edge]
                publisher.publish(publisher.batch(machine, rows=4))
                publisher.publish(edge_clock_batch(publisher, machine, EDGES[edge]))
            await asyncio.sleep(0.1)
        for publisher in publishers.values():
            await asyncio.to_thread(publisher.flush)
        assert await gateway.drain(30)
        await asyncio.sleep(0.5)  # one more pipeline report after the last batch
        assert await gateway.drain(10)
        await stop(task)
        return gateway

    gateway = asyncio.run(scenario())
    for publisher in publishers.values():
        publisher.close()

    metric = gateway.registry.value
    batches = {edge: publisher.seq for edge, publisher in publishers.items()}
    print("\nedge          offset_s  skewed  batches  skewed_batches  samples in  samples out")
    for edge, publisher in publishers.items():
        machine = MACHINES[edge]
        stored = stored_samples(influx, machine)
        offset = metric("plantwire_gateway_edge_clock_offset_seconds", edge=edge)
        skewed = metric("plantwire_gateway_edge_clock_skewed", edge=edge)
        counted = metric("plantwire_gateway_clock_skewed_batches_total", edge=edge)
        print(
            f"{edge:12}  {offset:8.2f}  {skewed:6.0f}  {batches[edge]:7}  {counted:14.0f}  "
            f"{len(publisher.sent):10}  {len(stored):11}"
        )
        # Every sample stored, with the timestamp and value it was sent with.
        assert stored.keys() == publisher.sent.keys()
        assert all(same(stored[key], value) for key, value in publisher.sent.items())
        assert offset == pytest.approx(EDGES[edge], abs=5)
        assert skewed == (edge != "edge-ok")

    ahead = metric("plantwire_gateway_clock_skewed_batches_total", edge="edge-ahead")
    assert ahead == batches["edge-ahead"]  # ahead: flagged from the first batch
    behind = metric("plantwire_gateway_clock_skewed_batches_total", edge="edge-behind")
    assert 0 < behind < batches["edge-behind"]  # behind: once the gateway was connected a window
    assert metric("plantwire_gateway_clock_skewed_batches_total", edge="edge-ok") == 0

    logs = [(r.levelname, r.getMessage()) for r in caplog.records if "clock" in r.getMessage()]
    assert [level for level, _ in logs] == ["WARNING", "WARNING"]
    assert any(m.startswith("edge edge-ahead: clock 30") and "s ahead of" in m for _, m in logs)
    assert any(m.startswith("edge edge-behind: clock 30") and "s behind" in m for _, m in logs)

    # The offsets the pipeline board can draw: per edge, in the gateway's reports.
    for edge, offset_s in EDGES.items():
        rows = influx.rows(
            f"SELECT clock_offset_s, clock_skewed FROM \"pipeline\" WHERE service = '{edge}'"
        )
        print(f"{edge}: {len(rows)} pipeline rows, last {rows[-1] if rows else None}")
        assert len(rows) >= 3
        assert all(row["clock_offset_s"] == pytest.approx(offset_s, abs=5) for row in rows)
        assert rows[-1]["clock_skewed"] == (edge != "edge-ok")
        if edge == "edge-ok":
            assert all(row["clock_skewed"] == 0 for row in rows)
