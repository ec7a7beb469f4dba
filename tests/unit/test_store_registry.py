"""The store registry: a new backend is one module and two registry lines -- here a toy one,
registered from this test alone, named by a site file's store: block, opened by analytics' and
the gateway's own functions, and described in the config summary."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
import yaml

from plantwire.config import parse_site, stores
from plantwire.config.stores import StoreConfig
from plantwire.config.summary import describe_site
from plantwire.lineprotocol import Point
from plantwire.store import registry
from plantwire.store.base import LineWriter, Store
from plantwire.store.open import make_line_writer, open_store, store_name
from plantwire.store.sqlite import SqliteStore
from plantwire.store.sqlite_write import make_sqlite_writer

TAGS = {"site": "plant", "area": "a", "line": "l", "machine": "m"}


# -- a toy backend: a store kept in one folder, on the embedded store's code ------------------------
class ScratchConfig(StoreConfig):
    backend: Literal["scratch"]
    folder: Path

    def describe(self) -> str:
        return f"scratch store in {self.folder}"


class ScratchBackend:
    def open_store(self, config: ScratchConfig) -> Store:
        return SqliteStore(config.folder / "scratch.db")

    def line_writer(self, config: ScratchConfig, *, max_connections: int) -> LineWriter:
        return make_sqlite_writer(config.folder / "scratch.db")


@pytest.fixture
def scratch_backend() -> Iterator[None]:
    stores.register_store_model("scratch", ScratchConfig)
    registry.register_backend("scratch", ScratchBackend())
    try:
        yield
    finally:
        stores.unregister_store_model("scratch")
        del registry.STORE_BACKENDS["scratch"]


def site_text(store: dict[str, object]) -> str:
    tags = [{"metric": "x", "table": "input", "address": 0}]
    machine = {
        "id": "m",
        "sources": [{"protocol": "modbus", "endpoint": "tcp://127.0.0.1:1", "tags": tags}],
    }
    line = {"id": "l", "ideal_cycle_time_s": 1, "machines": [machine]}
    return yaml.safe_dump(
        {"site": {"id": "plant"}, "store": store, "areas": [{"id": "a", "lines": [line]}]}
    )


def test_every_backend_has_a_block_and_every_block_a_backend() -> None:
    assert set(registry.STORE_BACKENDS) == set(stores.STORE_MODELS)


def test_a_new_backend_is_one_module_and_two_registry_lines(
    scratch_backend: None, tmp_path: Path
) -> None:
    loaded = parse_site(site_text({"backend": "scratch", "folder": str(tmp_path)}))
    site = loaded.config
    assert store_name(site) == f"scratch store in {tmp_path}"
    assert f"scratch store in {tmp_path}" in describe_site(loaded)

    async def gateway_writes() -> int | None:
        writer = make_line_writer(site)
        result = await writer.write(b"telemetry,area=a,line=l,machine=m,site=plant x=4.5 1000")
        await writer.close()
        return result.status

    assert asyncio.run(gateway_writes()) == 204
    with open_store(site) as store:
        store.write_points([Point("telemetry", TAGS, {"x": 5.5}, 2000)])
        block = store.read("telemetry", ["x"], tags=TAGS, start_ns=0, end_ns=10_000)
    assert block.time_ns.tolist() == [1000, 2000] and block.fields["x"].tolist() == [4.5, 5.5]


def test_an_unknown_backend_is_refused_with_the_known_ones(scratch_backend: None) -> None:
    from plantwire.errors import ConfigError

    with pytest.raises(ConfigError, match=r"store\.backend.*'influxdb', 'scratch', 'sqlite'"):
        parse_site(site_text({"backend": "cassandra"}))
