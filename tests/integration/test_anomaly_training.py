"""Training from a real influxd: history loaded through the store, a model fitted, evaluated
against a truth file, saved with its plot, then listed, shown, promoted and rolled back."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import yaml

from analytics.history import HistoryError, load_history
from analytics.service import AnalyticsService
from plantwire.cli import main
from plantwire.config import load_site
from plantwire.lineprotocol import Point
from plantwire.store.influx import InfluxStore
from plantwire.testing.servers import InfluxClient, Influxd, Mosquitto

pytestmark = pytest.mark.servers
NS = 1_000_000_000
T0 = 1_794_787_200  # 2026-11-16 00:00 UTC
HOURS = 4
FAULT = (T0 + 3 * 3600 + 1200, T0 + 3 * 3600 + 2400)  # 20 min in the last hour
MACHINE = "dairy/filling/filler"


class MessageLog:
    """Every message on a topic filter, as (topic, payload, retained)."""

    def __init__(self, port: int, topic_filter: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_connect = lambda c, *_: c.subscribe(topic_filter, qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscription not acknowledged"

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload, bool(message.retain)))

    def wait_for(self, count: int, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(self.messages) < count:
            time.sleep(0.05)
        assert len(self.messages) >= count, self.messages

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def publish_then_leave(service: AnalyticsService) -> None:
    await service.publish_alerts()
    await asyncio.sleep(1.0)  # QoS 1 messages leave before the goodbye
    await service.disconnect()


def site_file(tmp_path: Path, influxd: Influxd, database: str) -> Path:
    tags = [
        {"metric": name, "table": "input", "address": 2 * i, "type": "float32"}
        for i, name in enumerate(["motor_current", "bearing_temp", "vibration_rms"])
    ]
    tags += [
        {"metric": "state", "table": "holding", "address": 0},
        {"metric": "good_count", "table": "input", "address": 10, "type": "uint32"},
        {"metric": "door_open", "table": "coil", "address": 0},
    ]
    config = {
        "site": {"id": "bd"},
        "store": {"backend": "influxdb", "url": influxd.url, "database": database},
        "areas": [
            {
                "id": "dairy",
                "lines": [
                    {
                        "id": "filling",
                        "ideal_cycle_time_s": 1.0,
                        "machines": [
                            {
                                "id": "filler",
                                "oee": {"state": "state", "good_count": "good_count"},
                                "sources": [
                                    {
                                        "protocol": "modbus",
                                        "endpoint": "tcp://127.0.0.1:5020",
                                        "tags": tags,
                                    }
                                ],
                            }
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def telemetry() -> list[Point]:
    """1 Hz: current follows a slowly varying load, temperature lags it, vibration with speed; in
    the fault the bearing heats and vibrates without more load."""
    rng = np.random.default_rng(4)
    seconds = HOURS * 3600
    t = np.arange(seconds)
    load = 0.7 + 0.15 * np.sin(t / 900.0) + rng.normal(0, 0.01, seconds)
    fault = (T0 + t >= FAULT[0]) & (T0 + t < FAULT[1])
    current = 12 + 10 * load + rng.normal(0, 0.1, seconds)
    temp = 45 + 8 * load + rng.normal(0, 0.1, seconds) + np.where(fault, 6.0, 0.0)
    vibration = 1.5 + 2 * load + rng.normal(0, 0.05, seconds) + np.where(fault, 1.5, 0.0)
    tags = {"site": "bd", "area": "dairy", "line": "filling", "machine": "filler"}
    return [
        Point(
            "telemetry",
            tags,
            {
                "motor_current": float(current[i]),
                "bearing_temp": float(temp[i]),
                "vibration_rms": float(vibration[i]),
                "state": 1,
                "good_count": int(i),
                "door_open": False,
            },
            (T0 + i) * NS,
        )
        for i in range(seconds)
    ]


@pytest.fixture
def site_path(tmp_path: Path, influxd: Influxd, influx: InfluxClient) -> Path:
    path = site_file(tmp_path, influxd, influx.database)
    site = load_site(path)
    assert site.store is not None
    with InfluxStore(site.store) as store:
        store.write_points(telemetry())
    return path


def test_history_holds_the_process_signals_only(site_path: Path) -> None:
    site = load_site(site_path)
    assert site.store is not None
    with InfluxStore(site.store) as store:
        history = load_history(site, store, "filler", start=T0 * NS, end=(T0 + 600) * NS)
        assert history.signals == ["motor_current", "bearing_temp", "vibration_rms"]
        assert history.values.shape == (600, 3) and np.isfinite(history.values).all()
        with pytest.raises(HistoryError, match="no history between"):
            load_history(site, store, MACHINE, start=0, end=NS)
        with pytest.raises(HistoryError, match="is not in the site file"):
            load_history(site, store, "dairy/filling/capper", start=0, end=NS)


def test_train_evaluate_save_then_promote_and_roll_back(
    site_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "models"
    truth = tmp_path / "truth.json"
    truth.write_text(
        json.dumps(
            {"faults": [{"machine": MACHINE, "start_ns": FAULT[0] * NS, "end_ns": FAULT[1] * NS}]}
        )
    )
    train = [
        "train", "--config", str(site_path), "--machine", MACHINE,
        "--from", "2026-11-16T00:00Z", "--to", "2026-11-16T03:00Z",
        "--evaluate-from", "2026-11-16T03:00Z", "--evaluate-to", "2026-11-16T04:00Z",
        "--truth", str(truth), "--registry", str(registry),
    ]  # fmt: skip
    assert main([*train, "--promote"]) == 0
    out, err = capsys.readouterr()
    assert "bd/dairy/filling/filler v1 saved" in out
    assert "fitting virtual" in err and "evaluating on 3,600 rows" in err  # progress
    folder = registry / "bd" / "dairy" / "filling" / "filler" / "v0001"
    assert (folder / "evaluation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((folder / "metadata.json").read_text())
    metrics = meta["evaluation"]["metrics"]
    assert metrics["episodes"] == 1 and metrics["episodes_alerted"] == 1
    assert metrics["false_alerts"] == 0 and metrics["mean_detection_delay_s"] < 120
    assert meta["signals"] == ["motor_current", "bearing_temp", "vibration_rms"]
    assert meta["training"]["rows"] == 3 * 3600 and len(meta["training"]["data_sha256"]) == 64
    assert set(meta["versions"]) >= {"numpy", "scikit-learn", "skops"}

    assert main([*train, "--detector", "iforest"]) == 0
    capsys.readouterr()
    models = ["models", "--registry", str(registry)]
    assert main([*models, "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].startswith("* bd/dairy/filling/filler v1 virtual")
    assert listing[1].startswith("  bd/dairy/filling/filler v2 iforest")
    assert main([*models, "promote", f"bd/{MACHINE}", "2"]) == 0
    assert main([*models, "show", f"bd/{MACHINE}"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["detector"] == "iforest"
    assert main([*models, "rollback", f"bd/{MACHINE}"]) == 0
    assert "v1 is promoted" in capsys.readouterr().out
    assert main([*models, "promote", f"bd/{MACHINE}", "7"]) == 3
    assert "no model version 7" in capsys.readouterr().err


def test_the_service_scores_with_the_promoted_model_and_alerts_once_per_episode(
    tmp_path: Path, influxd: Influxd, influx: InfluxClient, mosquitto: Mosquitto
) -> None:
    registry = tmp_path / "models"
    config = yaml.safe_load(site_file(tmp_path, influxd, influx.database).read_text())
    config["site"]["id"] = f"bd-{uuid.uuid4().hex[:6]}"  # the broker is shared between tests
    config["mqtt"] = {"url": f"mqtt://127.0.0.1:{mosquitto.port}"}
    config["analytics"] = {"registry_path": str(registry), "health_port": 0}
    site_id = config["site"]["id"]
    path = tmp_path / "scored.yaml"
    path.write_text(yaml.safe_dump(config))
    site = load_site(path)
    assert site.store is not None
    with InfluxStore(site.store) as store:
        store.write_points([p._replace(tags={**p.tags, "site": site_id}) for p in telemetry()])
    train = [
        "train", "--config", str(path), "--machine", MACHINE, "--registry", str(registry),
        "--from", "2026-11-16T00:00Z", "--to", "2026-11-16T03:00Z",
    ]  # fmt: skip
    assert main([*train, "--promote"]) == 0
    topic = f"plantwire/v1/{site_id}/alerts/dairy/filling/filler"
    received = MessageLog(mosquitto.port, f"{topic}/#")
    try:
        with InfluxStore(site.store) as store:
            service = AnalyticsService(site, store, clock=lambda: (T0 + HOURS * 3600) * NS)
            service.anomaly.lookback_ns = 3600 * NS  # score the last hour, where the fault is
            service.run_once()
            assert service.last_error is None
            asyncio.run(publish_then_leave(service))
            assert main([*train, "--detector", "baseline", "--promote"]) == 0
            service.run_once()  # the promotion is picked up without a restart
            assert service.anomaly.machines[MACHINE].version == 2
        received.wait_for(4)
    finally:
        received.close()
    rows = influx.rows(f"SELECT * FROM anomaly WHERE site = '{site_id}'")
    # After 03:00:00 (the lookback start itself is taken as scored) up to 03:59:59.
    assert len(rows) == 3599 and {row["model"] for row in rows} == {"v1"}
    flagged = [row for row in rows if row["alarm"]]
    assert flagged and FAULT[0] * NS <= flagged[0]["time"] < FAULT[0] * NS + 120 * NS
    events = influx.rows(f"SELECT * FROM anomaly_events WHERE site = '{site_id}'")
    assert [e["event"] for e in events] == ["raised", "cleared"]
    states = [json.loads(m) for t, m, retained in received.messages if t == topic]
    kinds = [json.loads(m)["event"] for t, m, _ in received.messages if t == f"{topic}/events"]
    assert kinds == ["raised", "cleared"]
    assert [s["active"] for s in states] == [True, False]


def test_rows_are_scored_once_every_signal_has_arrived(
    tmp_path: Path, influxd: Influxd, influx: InfluxClient
) -> None:
    """An edge's backlog arrives late after an outage: its rows wait (up to max lateness), and
    are scored once, when they have arrived, not earlier with stale values."""
    registry = tmp_path / "models"
    config = yaml.safe_load(site_file(tmp_path, influxd, influx.database).read_text())
    config["analytics"] = {"registry_path": str(registry), "health_port": 0}
    path = tmp_path / "late.yaml"
    path.write_text(yaml.safe_dump(config))
    site = load_site(path)
    assert site.store is not None
    end = T0 + HOURS * 3600
    late_from = end - 300  # bearing_temp of the last 5 minutes is still on its way
    points = telemetry()
    on_time = [
        p._replace(fields={k: v for k, v in p.fields.items() if k != "bearing_temp"})
        if p.ts_ns >= late_from * NS
        else p
        for p in points
    ]
    late = [
        p._replace(fields={"bearing_temp": p.fields["bearing_temp"]})
        for p in points
        if p.ts_ns >= late_from * NS
    ]
    train = [
        "train", "--config", str(path), "--machine", MACHINE, "--registry", str(registry),
        "--from", "2026-11-16T00:00Z", "--to", "2026-11-16T03:00Z", "--promote",
    ]  # fmt: skip
    with InfluxStore(site.store) as store:
        store.write_points(on_time)
        assert main(train) == 0
        service = AnalyticsService(site, store, clock=lambda: end * NS)
        service.anomaly.lookback_ns = 3600 * NS
        service.run_once()
        first = influx.rows("SELECT score FROM anomaly")
        assert len(first) == 3600 - 1 - 300  # up to the last row every signal has reached
        assert first[-1]["time"] == (late_from - 1) * NS
        store.write_points(late)
        service.run_once()
    rows = influx.rows("SELECT score FROM anomaly")
    assert len(rows) == 3599  # the late rows are scored now, each once
    assert [r["time"] for r in rows] == [(end - 3600 + 1 + i) * NS for i in range(3599)]


def test_a_silent_signal_holds_scoring_back_for_max_lateness_only() -> None:
    from analytics.anomaly.scoring import AnomalyScoring
    from analytics.history import History

    scoring = AnomalyScoring.__new__(AnomalyScoring)
    scoring.max_lateness_ns = 600 * NS
    times = np.arange(0, 3600, dtype=np.int64) * NS
    history = History(
        MACHINE, ["a", "b"], times, np.zeros((3600, 2)), np.array([3599 * NS, 100 * NS])
    )
    # "b" went quiet at 100 s: rows wait for it until they are 600 s old, then are scored.
    assert scoring._arrived(history, now_ns=3600 * NS).time_ns[-1] == 3000 * NS
    assert len(scoring._arrived(history, now_ns=10_000 * NS)) == 3600
