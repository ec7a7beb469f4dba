"""The MQTT client library's own ceiling, for the benchmarks: a bare paho client that drains a
queued backlog of a persistent session and does nothing else -- acknowledges each QoS 1 message
as paho does by itself, counts it, and stops at ``--count`` (or after ``--idle-s`` with nothing).

    python -m plantwire.testing.drain_client --port P --client-id ID --topic FILTER \\
        [--subscribe-only] [--count N]

With ``--subscribe-only`` it makes the persistent session (subscribes, then disconnects) for the
backlog to queue in. Otherwise it drains it, ends the session, and prints one JSON line:
messages, seconds from the first message to the last, and its own CPU seconds.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def _client(port: int, client_id: str) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", port, keepalive=60, clean_start=False, properties=properties)
    return client


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--subscribe-only", action="store_true")
    args = parser.parse_args()
    client = _client(args.port, args.client_id)
    subscribed = threading.Event()
    client.on_subscribe = lambda *_: subscribed.set()
    client.loop_start()
    client.subscribe(args.topic, qos=1)
    if args.subscribe_only:
        subscribed.wait(10)
        client.disconnect()
        client.loop_stop()
        return
    counts = {"n": 0, "first": 0.0, "last": 0.0}

    def on_message(client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        now = time.monotonic()
        if not counts["n"]:
            counts["first"] = now
        counts["n"] += 1
        counts["last"] = now

    client.on_message = on_message
    while True:
        time.sleep(0.2)
        quiet = time.monotonic() - (counts["last"] or time.monotonic())
        if (args.count and counts["n"] >= args.count) or quiet > args.idle_s:
            break
    # End the session with the connection: the broker must not queue the next phases' messages
    # for a client that is gone.
    goodbye = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
    goodbye.SessionExpiryInterval = 0
    client.disconnect(properties=goodbye)
    client.loop_stop()
    seconds = max(counts["last"] - counts["first"], 1e-9)
    sys.stdout.write(
        orjson.dumps(
            {"messages": counts["n"], "seconds": seconds, "cpu_s": time.process_time()}
        ).decode()
        + "\n"
    )


if __name__ == "__main__":
    main()
