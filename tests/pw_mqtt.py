"""Test helpers: a subscriber that collects PlantWire batches from a real broker, and site files
for the simulated plant."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from plantwire.codec import decode_batch
from plantwire.model import AssetPath, Sample
from simulators.scenario import bundled_scenario, load_scenario
from simulators.siteconfig import scenario_site_config

DEMO = load_scenario(bundled_scenario())

SampleKey = tuple[AssetPath, str, int]


class BatchCollector:
    """Subscribes to a site's telemetry and keeps every sample, in arrival order."""

    def __init__(
        self,
        port: int,
        site: str,
        *,
        tls: tuple[Path, Path, Path] | None = None,  # (ca, client cert, client key)
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.samples: list[tuple[AssetPath, Sample]] = []
        self.batches: list[tuple[str, int]] = []  # (edge, seq)
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"collector-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        if tls is not None:
            self.client.tls_set(ca_certs=str(tls[0]), certfile=str(tls[1]), keyfile=str(tls[2]))
        if credentials is not None:
            self.client.username_pw_set(*credentials)
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"plantwire/v1/{site}/+/+/+/data", qos=1)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscription not acknowledged"

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        decoded = decode_batch(message.payload)
        assert not decoded.rejected, decoded.rejected
        with self._lock:
            self.batches.append((decoded.batch.edge_id, decoded.batch.seq))
            self.samples.extend((decoded.batch.asset, s) for s in decoded.batch.samples)

    def keys(self) -> list[SampleKey]:
        with self._lock:
            return [(asset, s.metric, s.ts_ns) for asset, s in self.samples]

    def wait_for(self, wanted: set[SampleKey], timeout_s: float) -> set[SampleKey]:
        """Wait until every wanted sample arrived; return those still missing."""
        deadline = time.monotonic() + timeout_s
        while True:
            missing = wanted - set(self.keys())
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.2)

    def per_tag_in_order(self) -> bool:
        last: dict[tuple[AssetPath, str], int] = {}
        seen: set[SampleKey] = set()
        for asset, sample in list(self.samples):
            key = (asset, sample.metric)
            if (asset, sample.metric, sample.ts_ns) in seen:
                continue  # a redelivered duplicate (at least once) is allowed, not a reordering
            seen.add((asset, sample.metric, sample.ts_ns))
            if sample.ts_ns < last.get(key, -1):
                return False
            last[key] = sample.ts_ns
        return True

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def sim_site(
    tmp_path: Path,
    *,
    modbus_port: int,
    mqtt_port: int,
    speed: float = 1.0,
    opcua_port: int = 4840,
    wait_for_gateway: bool = False,
    **changes: Any,
) -> tuple[Path, dict[str, Any]]:
    """A site file for the simulated plant with a unique site id (tests share one broker).

    Edges send without waiting for a gateway unless ``wait_for_gateway``: most edge tests read
    what they send with a plain subscriber, not a gateway.
    """
    config = scenario_site_config(
        DEMO,
        modbus_port=modbus_port,
        opcua_port=opcua_port,
        speed=speed,
        mqtt_url=f"mqtt://127.0.0.1:{mqtt_port}",
    )
    config["site"]["id"] = f"bd-{uuid.uuid4().hex[:8]}"
    for node in config["edge_nodes"]:
        node["buffer_path"] = str(tmp_path / f"{node['id']}.db")
        node["health_port"] = 0
        node["batch_max_latency_ms"] = 100
        node["wait_for_gateway"] = wait_for_gateway
    config.update(changes)
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, config


class RecordingClient:
    """Stands in for the MQTT client: keeps what the forwarder publishes."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes, **options: object) -> int:
        self.published.append((topic, payload))
        return len(self.published)
