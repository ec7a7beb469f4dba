"""Test helpers for the gateway: site files, a publisher of batches with known contents, and a
dead-letter collector."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from gateway.service import Gateway
from plantwire.codec import encode_batch
from plantwire.config import SiteConfig, parse_site
from plantwire.model import AssetPath, Batch, Sample
from plantwire.topics import data_topic

T0 = 1_763_712_000_000_000_000


def gateway_site(
    tmp_path: Path, *, mqtt_port: int, influx_url: str, database: str, **gateway: Any
) -> SiteConfig:
    site_id = f"gw-{uuid.uuid4().hex[:8]}"
    config = {
        "site": {"id": site_id},
        "mqtt": {"url": f"mqtt://127.0.0.1:{mqtt_port}", "session_expiry_s": 3600},
        "store": {"backend": "influxdb", "url": influx_url, "database": database},
        "gateway": {"spool_path": str(tmp_path / f"spool-{uuid.uuid4().hex[:6]}.db"), "health_port": 0,
                    "batch_max_latency_ms": 50, **gateway},
        "areas": [{"id": "dairy", "lines": [{"id": "filling", "ideal_cycle_time_s": 1, "machines": [
            {"id": f"m{i}", "sources": [{"protocol": "modbus", "endpoint": "tcp://127.0.0.1:1",
                                         "tags": [{"metric": "x", "table": "input", "address": 0}]}]}
            for i in range(4)]}]}],
    }  # fmt: skip
    path = tmp_path / f"{site_id}.yaml"
    path.write_text(yaml.safe_dump(config))
    return parse_site(path.read_text(), str(path), environ={}).config


class Publisher:
    """Publishes batches of known samples at QoS 1, like an edge would, and remembers them."""

    def __init__(
        self,
        port: int,
        site: str,
        *,
        edge: str = "edge-test",
        seed: int = 1,
        clock_offset_s: float | None = None,
    ) -> None:
        self.site = site
        self.edge = edge
        # None: batches carry no send time (as from an older edge); else this "edge's" wall
        # clock, off by this much, is stamped into each batch as it is published.
        self.clock_offset_s = clock_offset_s
        self.rng = random.Random(seed)
        self.seq = 0
        self.sent: dict[tuple[str, str, int], Any] = {}  # (machine, metric, ts) -> value
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"pub-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._infos: list[mqtt.MQTTMessageInfo] = []

    def batch(self, machine: str, rows: int, fields: int = 5) -> Batch:
        asset = AssetPath(self.site, "dairy", "filling", machine)
        samples = []
        for _ in range(rows):
            ts = T0 + self.seq * 10_000_000 + self.rng.randrange(10_000_000)
            for f in range(fields):
                metric = ("temp", "count", "on", "product", "pressure")[f % 5] + (
                    "" if f < 5 else str(f)
                )
                kind = f % 5
                value: Any = (
                    round(self.rng.uniform(-50, 150), 3)
                    if kind in (0, 4)
                    else self.rng.randrange(1_000_000)
                    if kind == 1
                    else self.rng.random() < 0.5
                    if kind == 2
                    else f"product-{self.rng.randrange(5)}"
                )
                samples.append(Sample(ts, metric, value))
                self.sent[(machine, metric, ts)] = value
        batch = Batch(self.edge, self.seq, asset, samples)
        self.seq += 1
        return batch

    def publish(self, batch: Batch) -> None:
        if self.clock_offset_s is not None:
            batch = replace(batch, sent_ns=time.time_ns() + int(self.clock_offset_s * 1e9))
        self._infos.append(self.client.publish(data_topic(batch.asset), encode_batch(batch), qos=1))

    def publish_raw(self, topic: str, payload: bytes) -> None:
        self._infos.append(self.client.publish(topic, payload, qos=1))

    def flush(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        for info in self._infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        self._infos.clear()

    def close(self) -> None:
        self.flush()
        self.client.loop_stop()
        self.client.disconnect()


class TopicCounter:
    """Counts the messages on a topic filter (dead letters, say)."""

    def __init__(self, port: int, topic_filter: str) -> None:
        self.messages: list[bytes] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"count-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_message = lambda c, u, m: self._add(m.payload)
        self.client.on_subscribe = lambda *args: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic_filter, qos=1)
        self.client.loop_start()
        assert ready.wait(10)

    def _add(self, payload: bytes) -> None:
        with self._lock:
            self.messages.append(payload)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def running(gateway: Gateway) -> asyncio.Task[None]:
    task = asyncio.create_task(gateway.run())
    deadline = time.monotonic() + 10
    while not gateway.connected and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert gateway.connected
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
