"""A flood of foreign-shaped load for the overload tests and benchmarks: publisher processes that
send single-sample native batches at QoS 1 as fast as the broker acknowledges them.

Each publisher is a process of its own (``python -m plantwire.testing.flood``), so four of them
load the broker the way four busy devices would, not one Python interpreter's share of a core.
Publisher ``i`` is edge ``flood-<i>`` and machine ``flood/press/m<i>``; its samples are metric
``v`` with timestamps ``base + seq`` microseconds, so every (machine, metric, timestamp) is distinct
and the broker's acknowledgements are an exact count of what InfluxDB must hold. At the end it
prints one JSON line: ``{"acked": N, "refused": R, "unacked": U}``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

__all__ = ["FLOOD_AREA", "FLOOD_LINE", "FloodResult", "flood_payload", "start_flood", "wait_flood"]

FLOOD_AREA = "press"
FLOOD_LINE = "stamping"
WINDOW = 1000  # QoS 1 publishes in flight per publisher


def flood_payload(site: str, index: int, seq: int, base_ns: int, *, size: int = 0) -> bytes:
    """One single-sample batch; ``size`` > 0 pads it with a string sample to about that size."""
    sample: dict[str, Any] = {"t": base_ns + seq * 1000, "m": "v", "v": float(seq % 1000)}
    samples = [sample]
    if size:
        samples.append({"t": base_ns + seq * 1000, "m": "pad", "v": "x" * size})
    return orjson.dumps(
        {
            "version": 1,
            "edge": f"flood-{index}",
            "seq": seq,
            "sent": time.time_ns(),
            "asset": {"site": site, "area": FLOOD_AREA, "line": FLOOD_LINE, "machine": f"m{index}"},
            "samples": samples,
        }
    )


def flood_topic(site: str, index: int) -> str:
    return f"plantwire/v1/{site}/{FLOOD_AREA}/{FLOOD_LINE}/m{index}/data"


@dataclass(frozen=True)
class FloodResult:
    acked: int
    refused: int
    unacked: int


def _publish(
    port: int, site: str, index: int, *, seconds: float, count: int, size: int, base_ns: int
) -> FloodResult:
    window = threading.Semaphore(WINDOW)
    counts = {"acked": 0, "refused": 0}
    lock = threading.Lock()

    def on_publish(client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with lock:
            counts["refused" if reason.is_failure else "acked"] += 1
        window.release()

    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"flood-{index}-{uuid.uuid4().hex[:6]}",
        protocol=paho.MQTTv5,
    )
    client.on_publish = on_publish
    client.max_inflight_messages_set(WINDOW)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    topic = flood_topic(site, index)
    deadline = time.monotonic() + seconds
    sent = 0
    while (count and sent < count) or (not count and time.monotonic() < deadline):
        window.acquire()
        client.publish(topic, flood_payload(site, index, sent, base_ns, size=size), qos=1)
        sent += 1
    finish = time.monotonic() + 60
    while time.monotonic() < finish:
        with lock:
            if counts["acked"] + counts["refused"] >= sent:
                break
        time.sleep(0.05)
    client.disconnect()
    client.loop_stop()
    with lock:
        done = counts["acked"] + counts["refused"]
        return FloodResult(counts["acked"], counts["refused"], sent - done)


def start_flood(
    port: int,
    site: str,
    *,
    publishers: int,
    seconds: float = 0.0,
    count: int = 0,
    size: int = 0,
    first_index: int = 0,
) -> list[subprocess.Popen[bytes]]:
    """Start ``publishers`` processes: each publishes for ``seconds`` or ``count`` messages."""
    base_ns = time.time_ns() - 3600 * 10**9  # an hour ago: distinct and plausible
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "plantwire.testing.flood",
                "--port",
                str(port),
                "--site",
                site,
                "--index",
                str(index),
                "--seconds",
                str(seconds),
                "--count",
                str(count),
                "--size",
                str(size),
                "--base-ns",
                str(base_ns),
            ],
            stdout=subprocess.PIPE,
        )
        for index in range(first_index, first_index + publishers)
    ]


def wait_flood(processes: Sequence[subprocess.Popen[bytes]], timeout_s: float) -> FloodResult:
    """Wait for the publishers and add up what the broker acknowledged."""
    acked = refused = unacked = 0
    for process in processes:
        out, _ = process.communicate(timeout=timeout_s)
        if process.returncode != 0:
            raise RuntimeError(f"a flood publisher exited with code {process.returncode}")
        figures = orjson.loads(out.strip().splitlines()[-1])
        acked += figures["acked"]
        refused += figures["refused"]
        unacked += figures["unacked"]
    return FloodResult(acked, refused, unacked)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--site", required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=0.0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("--base-ns", type=int, default=0)
    args = parser.parse_args(argv)
    base_ns = args.base_ns or time.time_ns() - 3600 * 10**9
    result = _publish(
        args.port,
        args.site,
        args.index,
        seconds=args.seconds,
        count=args.count,
        size=args.size,
        base_ns=base_ns,
    )
    print(orjson.dumps(result.__dict__).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
