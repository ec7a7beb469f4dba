"""The source registry: every registered protocol passes the same conformance checks, and a new
protocol is one module -- here a toy one, registered from this test alone -- read through the
site file, the config summary and the edge's driver grouping without touching anything else."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import ClassVar, Literal

import pytest
import yaml

from edge.agent import make_drivers, node_machines
from edge.sources import registry
from edge.sources.base import NotConnected, SampleSink, SourceStats, SourceTarget
from plantwire.config import parse_site, sources
from plantwire.config.common import SourceConfig, SourceTag
from plantwire.config.summary import describe_site
from plantwire.model import AssetPath, Quality, Sample

PROTOCOLS = sorted(sources.SOURCE_MODELS)


def site_text(*source_blocks: dict[str, object]) -> str:
    machines = [{"id": f"m{i}", "sources": [block]} for i, block in enumerate(source_blocks)]
    return yaml.safe_dump(
        {
            "site": {"id": "plant"},
            "areas": [
                {"id": "a", "lines": [{"id": "l", "ideal_cycle_time_s": 1, "machines": machines}]}
            ],
        }
    )


def parsed_sources(*blocks: dict[str, object]) -> list[SourceConfig]:
    site = parse_site(site_text(*blocks)).config
    return [source for _, _, machine in site.machines() for source in machine.sources]


# -- conformance: every registered protocol ---------------------------------------------------------
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_protocol_names_itself_and_parses_its_example(protocol: str) -> None:
    model = sources.SOURCE_MODELS[protocol]
    assert model.model_fields["protocol"].annotation == Literal[protocol]  # type: ignore[valid-type]
    assert model.example["protocol"] == protocol, "the example is the docs' and this suite's"
    (source,) = parsed_sources(model.example)
    assert type(source) is model
    assert source.describe().startswith(f"{protocol} ")
    assert list(source.problems()) == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_blocks_on_one_endpoint_share_a_connection_and_others_do_not(protocol: str) -> None:
    example = sources.SOURCE_MODELS[protocol].example
    elsewhere = {**example, "endpoint": str(example["endpoint"]).replace("127.0.0.1", "127.0.0.2")}
    first, second, third = parsed_sources(example, example, elsewhere)
    assert first.connection_key() == second.connection_key() != third.connection_key()
    assert len(make_drivers(node_machines(parse_site(site_text(example, example)).config, "edge")))
    drivers = make_drivers(
        node_machines(parse_site(site_text(example, example, elsewhere)).config, "edge")
    )
    assert len(drivers) == 2


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_driver_that_cannot_connect_says_not_connected_and_closes_quietly(
    protocol: str,
) -> None:
    """The runtime's contract (edge/sources/base.py): a transport that cannot be opened is
    NotConnected, never another exception; close never raises."""
    (source,) = parsed_sources(sources.SOURCE_MODELS[protocol].example)  # port 1: refused
    driver = registry.driver_for(protocol)([SourceTarget(AssetPath("p", "a", "l", "m"), source)])
    assert isinstance(driver.name, str) and protocol in driver.name
    assert isinstance(driver.stats, SourceStats)

    async def scenario() -> None:
        with pytest.raises(NotConnected):
            await asyncio.wait_for(driver.connect(), 30)
        await driver.close()
        await driver.close()

    asyncio.run(scenario())
    assert driver.stats.connected is False


def test_every_protocol_has_a_driver_and_every_driver_a_protocol() -> None:
    assert set(registry.DRIVERS) == set(sources.SOURCE_MODELS)


# -- a new protocol: one module, registered here ----------------------------------------------------
class CounterTag(SourceTag):
    start: int = 0


class CounterSource(SourceConfig):
    """A toy protocol: counters that count up, one per tag."""

    protocol: Literal["counter"]
    endpoint: str
    tags: list[CounterTag]
    example: ClassVar[dict[str, object]] = {
        "protocol": "counter",
        "endpoint": "counter://line-1",
        "tags": [{"metric": "parts", "start": 100}],
    }


class CounterDriver:
    def __init__(self, targets: Sequence[SourceTarget[CounterSource]]) -> None:
        self.targets = list(targets)
        self.name = f"counter {targets[0].config.endpoint}"
        self.stats = SourceStats()

    async def connect(self) -> None:
        self.stats.connected = True

    async def run(self, sink: SampleSink) -> None:
        for step in range(3):
            for target in self.targets:
                samples = [
                    Sample(step, tag.metric, tag.start + step, Quality.GOOD)
                    for tag in target.config.tags
                ]
                sink(target.asset, samples)
                self.stats.samples += len(samples)
            await asyncio.sleep(0)

    async def close(self) -> None:
        self.stats.connected = False


@pytest.fixture
def counter_protocol() -> Iterator[None]:
    sources.register_source("counter", CounterSource)
    registry.register_driver("counter", CounterDriver)
    try:
        yield
    finally:
        sources.unregister_source("counter")
        del registry.DRIVERS["counter"]


def test_a_new_protocol_is_one_module_and_two_registry_lines(counter_protocol: None) -> None:
    modbus = sources.SOURCE_MODELS["modbus"].example
    loaded = parse_site(site_text(CounterSource.example, CounterSource.example, modbus))
    site = loaded.config
    summary = describe_site(loaded)
    assert "counter counter://line-1: 1 tags" in summary
    drivers = make_drivers(node_machines(site, "edge"))
    counters = [driver for driver in drivers if isinstance(driver, CounterDriver)]
    assert len(drivers) == 2 and len(counters) == 1  # two machines share the counter endpoint
    received: list[tuple[AssetPath, list[Sample]]] = []

    async def read() -> None:
        await counters[0].connect()
        await counters[0].run(lambda asset, samples: received.append((asset, list(samples))))

    asyncio.run(read())
    assert [samples[0].value for _, samples in received] == [100, 100, 101, 101, 102, 102]
    assert {asset.machine for asset, _ in received} == {"m0", "m1"}


def test_a_bad_block_of_a_new_protocol_is_refused_with_its_path(counter_protocol: None) -> None:
    from plantwire.errors import ConfigError

    bad = {**CounterSource.example, "tags": [{"metric": "parts", "start": "many"}]}
    with pytest.raises(ConfigError, match=r"sources\[0\]\.tags\[0\]\.start"):
        parse_site(site_text(bad))
