"""The payload-format seam: every format an edge may publish in is read back by the gateway's
routes into the same samples, and a new format -- a toy one, registered from this test alone --
goes through the site file, the forwarder and the gateway's route table without touching any
other module."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import yaml
from pw_mqtt import RecordingClient

from edge import publish
from edge.agent import node_machines
from edge.buffer import DiskBuffer, OutgoingBatch
from edge.forwarder import Forwarder
from gateway.intake import Intake, Processed
from gateway.routes import Route, Routes, site_routes, topic_matches
from gateway.sparkplug_host import SparkplugIngest
from plantwire.codec import formats
from plantwire.config import parse_site
from plantwire.config.models import EdgeNode, Machine, SiteConfig
from plantwire.lineprotocol_parse import parse_line
from plantwire.model import AssetPath, Quality, Sample
from plantwire.mqtt import AsyncMqtt, Message

FORMATS = sorted(formats.EDGE_FORMATS)
MACHINES = ("filler", "capper")


def site_for(payload: str) -> SiteConfig:
    tag = {"metric": "temperature", "table": "input", "address": 0, "type": "float32"}
    machines = [
        {
            "id": m,
            "sources": [{"protocol": "modbus", "endpoint": "tcp://127.0.0.1:1", "tags": [tag]}],
        }
        for m in MACHINES
    ]
    text = yaml.safe_dump(
        {
            "site": {"id": "plant"},
            "sparkplug": {"host_id": "host", "wait_for_host": False},
            "edge_nodes": [{"id": "edge", "payload": payload, "wait_for_gateway": False}],
            "areas": [{"id": "a", "lines": [{"id": "l", "ideal_cycle_time_s": 1, "machines": machines}]}],
        }
    )  # fmt: skip
    return parse_site(text).config


def buffered_batches(buffer: DiskBuffer, site: SiteConfig) -> list[OutgoingBatch]:
    base = time.time_ns() - 10**9
    for index, (asset, _) in enumerate(node_machines(site, "edge")):
        samples = [Sample(base + i * 10**6, "temperature", 20.5 + i + index) for i in range(5)]
        samples.append(Sample(base + 9 * 10**6, "temperature", None, Quality.BAD))
        buffer.append(asset, samples)
    buffer.flush()
    return buffer.take(100, 10)


def routes_for(site: SiteConfig, tmp_path: Path) -> Routes:
    intake = Intake(max_payload_bytes=10**6, site=site.site.id)
    host = SparkplugIngest(site.site.id, max_payload_bytes=10**6, state_path=None)
    return site_routes(site, intake, host, lambda node: None)


def written(routes: Routes, messages: Sequence[tuple[str, bytes]]) -> tuple[list[str], int]:
    lines: list[str] = []
    refused = 0
    for topic, payload in messages:
        result = routes.decode(topic, payload)
        refused += len(result.dead_letters)
        lines += result.lines
    return lines, refused


# -- conformance: every registered format ---------------------------------------------------------
def test_the_site_file_and_the_edge_know_the_same_formats() -> None:
    assert set(formats.EDGE_FORMATS) == set(publish.PUBLISH_FORMATS)


@pytest.mark.parametrize("name", FORMATS)
def test_a_format_s_batches_reach_the_gateway_as_the_same_samples(
    name: str, tmp_path: Path
) -> None:
    site = site_for(name)
    node = site.edge_nodes[0]
    buffer = DiskBuffer(tmp_path / "edge.db", "edge", max_bytes=10**8)
    try:
        machines = node_machines(site, "edge")
        form = publish.make_format(site, node, buffer, machines)
        topic, will, retained = form.will()
        assert isinstance(topic, str) and isinstance(will, bytes) and isinstance(retained, bool)
        assert form.may_send()  # nothing to wait for: wait_for_host and wait_for_gateway false
        batches = buffered_batches(buffer, site)
        publications = form.publications(batches)
        carried = [batch for _, _, batch in publications if batch is not None]
        assert carried == batches, "every batch once, in order"
        routes = routes_for(site, tmp_path)
        lines, refused = written(routes, [(t, p) for t, p, _ in publications])
        assert refused == 0
        temperatures = [parse_line(line) for line in lines if line.startswith("telemetry,")]
        values = sorted(p.fields["temperature"] for p in temperatures if "temperature" in p.fields)
        expected = sorted(20.5 + i + m for m in range(len(MACHINES)) for i in range(5))
        assert values == pytest.approx(expected)
        for asset, _ in machines:
            assert routes.route_for(form.data_topic(asset)) is not None
    finally:
        buffer.close()


def test_a_topic_no_route_reads_is_dead_lettered_and_counted(tmp_path: Path) -> None:
    routes = routes_for(site_for("native"), tmp_path)
    result = routes.decode("factory/line1/press3/telemetry", b'{"temperature": 21.5}')
    (letter,) = result.dead_letters
    assert routes.unrouted == 1 and letter.kind == "route"
    assert b"no payload format" in letter.payload and b"factory/line1" in letter.payload


def test_topic_filters_match_as_mqtt_does() -> None:
    assert topic_matches("a/+/c", "a/b/c") and not topic_matches("a/+/c", "a/b/c/d")
    assert topic_matches("a/#", "a") and topic_matches("a/#", "a/b/c")
    assert not topic_matches("a/b", "a/b/c") and not topic_matches("a/b/c", "a/b")


# -- a toy format, registered from here --------------------------------------------------------------
class LinesFormat:
    """Each sample a line of its own: ``<asset>/<metric> <value>`` on ``toy/<machine>``."""

    extra_inflight = 0

    def __init__(self, buffer: DiskBuffer) -> None:
        self.buffer = buffer

    def will(self) -> tuple[str, bytes, bool]:
        return "toy/edge", b"gone", False

    async def connected(self, client: AsyncMqtt) -> None:
        return None

    def message(self, message: Message) -> bool:
        return False

    def may_send(self) -> bool:
        return True

    def waiting_message(self) -> str | None:
        return None

    def publications(self, batches: Sequence[OutgoingBatch]) -> list[publish.Publication]:
        from plantwire.codec.native import decode_fragments

        out: list[publish.Publication] = []
        for batch in batches:
            text = "\n".join(f"{s.metric} {s.value}" for s in decode_fragments(batch.fragments))
            out.append((self.data_topic(batch.asset), text.encode(), batch))
        return out

    def data_topic(self, asset: AssetPath) -> str:
        return f"toy/{asset.site}/{asset.area}/{asset.line}/{asset.machine}"

    async def goodbye(self, client: AsyncMqtt) -> None:
        return None


def make_lines(
    site: SiteConfig, node: EdgeNode, buffer: DiskBuffer, machines: Sequence[tuple[AssetPath, Machine]]
) -> LinesFormat:  # fmt: skip
    return LinesFormat(buffer)


def decode_lines(topic: str, payload: bytes) -> Processed:
    _, site, _area, _line, machine = topic.split("/")
    out = Processed()
    for text in payload.decode().splitlines():
        metric, value = text.split(" ")
        out.lines.append(f"telemetry,site={site},machine={machine} {metric}={value}")
        out.samples += 1
    return out


@pytest.fixture
def toy_format() -> Iterator[None]:
    formats.register_edge_format("lines", "a sample per text line (a test's toy)")
    publish.register_format("lines", make_lines)
    try:
        yield
    finally:
        formats.EDGE_FORMATS.pop("lines")
        publish.PUBLISH_FORMATS.pop("lines")


def test_a_toy_format_goes_from_the_site_file_through_the_forwarder_to_a_route(
    toy_format: None, tmp_path: Path
) -> None:
    site = site_for("lines")
    buffer = DiskBuffer(tmp_path / "edge.db", "edge", max_bytes=10**8)
    try:
        machines = node_machines(site, "edge")
        form = publish.make_format(site, site.edge_nodes[0], buffer, machines)
        forwarder = Forwarder(
            buffer, site.mqtt, form, edge_id="edge", site="plant", max_samples=100,
            max_latency_s=0.1,
        )  # fmt: skip
        client = RecordingClient()
        forwarder._client = client  # type: ignore[assignment]
        forwarder._send(buffered_batches(buffer, site))
        routes = Routes(
            "plant", [Route("lines", "toy/#", decode_lines)], dead_letter_max_bytes=4096
        )
        lines, refused = written(routes, client.published)
        assert refused == 0 and len(lines) == 2 * 6
        assert sum("temperature=20.5" in line for line in lines) == 1
    finally:
        buffer.close()


def test_an_unknown_format_in_the_site_file_names_the_known_ones() -> None:
    with pytest.raises(Exception, match=r"unknown payload format 'lines'.*'native', 'sparkplug'"):
        site_for("lines")
