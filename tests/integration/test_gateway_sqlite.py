"""The gateway writing the embedded SQLite store: a site file with a ``sqlite`` block instead of
``influxdb``, N samples published, N field values read back through the store interface."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from pw_gateway import Publisher, gateway_site, running, stop

from gateway.service import Gateway
from plantwire.config import SiteConfig, parse_site
from plantwire.config.stores import InfluxConfig
from plantwire.errors import ConfigError
from plantwire.store.open import make_line_writer, open_store, store_name
from plantwire.testing.servers import Mosquitto

pytestmark = pytest.mark.servers


def sqlite_site(tmp_path: Path, mqtt_port: int) -> SiteConfig:
    """The gateway test site with its influxdb block swapped for the embedded store."""
    site = gateway_site(
        tmp_path, mqtt_port=mqtt_port, influx_url="http://127.0.0.1:1", database="x"
    )
    data = site.model_dump(mode="json", exclude_none=True)
    del data["store"]
    data["store"] = {"backend": "sqlite", "path": str(tmp_path / "plant.db")}
    path = tmp_path / "sqlite-site.yaml"
    path.write_text(yaml.safe_dump(data))
    return parse_site(path.read_text(), str(path), environ={}).config


def test_n_samples_published_n_values_in_the_sqlite_store(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    site = sqlite_site(tmp_path, mosquitto.port)
    assert store_name(site) == f"SQLite {tmp_path / 'plant.db'}"
    publisher = Publisher(mosquitto.port, site.site.id)

    async def scenario() -> None:
        gateway = Gateway(site, make_line_writer(site), gateway_id="gw-sqlite")
        task = await running(gateway)
        for i in range(100):
            publisher.publish(publisher.batch(f"m{i % 4}", rows=20))
        await asyncio.to_thread(publisher.flush)
        deadline = time.monotonic() + 30
        while gateway.samples < len(publisher.sent) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await gateway.drain(20)
        await stop(task)

    asyncio.run(scenario())
    publisher.close()
    metrics = ["temp", "count", "on", "product", "pressure"]
    stored = 0
    with open_store(site) as store:
        for machine in ("m0", "m1", "m2", "m3"):
            tags = {"site": site.site.id, "area": "dairy", "line": "filling", "machine": machine}
            block = store.read("telemetry", metrics, tags=tags, start_ns=0, end_ns=2**62)
            for name, column in block.fields.items():
                present = (
                    np.array([v is not None for v in column])
                    if column.dtype == object
                    else ~np.isnan(column)
                )
                stored += int(present.sum())
                for ts, value in zip(block.time_ns[present].tolist(), column[present], strict=True):
                    want = publisher.sent[(machine, name, ts)]
                    assert value == want or float(value) == float(want)
    assert stored == len(publisher.sent) == 100 * 20 * 5


def test_a_site_file_names_one_store() -> None:
    text = """
site: {id: bd}
influxdb: {url: "http://127.0.0.1:8086", database: plantwire}
sqlite: {path: plant.db}
areas: [{id: a, lines: [{id: l, ideal_cycle_time_s: 1, machines: [{id: m, sources: [
  {protocol: modbus, endpoint: "tcp://127.0.0.1:502", tags: [{metric: x, table: input, address: 0}]}]}]}]}]
"""
    with pytest.raises(ConfigError, match="one store only: influxdb and sqlite given"):
        parse_site(text, "both.yaml", environ={})


def test_an_old_store_block_is_read_as_a_store_block_with_a_warning() -> None:
    text = """
site: {id: bd}
influxdb: {url: "http://127.0.0.1:8086", database: plantwire}
areas: [{id: a, lines: [{id: l, ideal_cycle_time_s: 1, machines: [{id: m, sources: [
  {protocol: modbus, endpoint: "tcp://127.0.0.1:502", tags: [{metric: x, table: input, address: 0}]}]}]}]}]
"""
    loaded = parse_site(text, "old.yaml", environ={})
    assert loaded.config.store == InfluxConfig(url="http://127.0.0.1:8086", database="plantwire")
    (warning,) = loaded.warnings
    assert str(warning).startswith("old.yaml:3:")
    assert "influxdb: block is deprecated" in str(warning) and "store:" in str(warning)
    bad = text.replace("database: plantwire", "database: plantwire, retention: x")
    with pytest.raises(ConfigError, match=r"old.yaml:3:\d+: store.retention: unknown key"):
        parse_site(bad, "old.yaml", environ={})
