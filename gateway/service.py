"""The gateway: subscribes to a site's telemetry with a persistent MQTT 5 session, turns batches
into line protocol, writes InfluxDB, and acknowledges each message only when its points are
accepted by InfluxDB or committed to the disk spool -- so a crash, a broker restart or an
InfluxDB outage never loses data. Bad messages go to dead-letter topics with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path

import orjson

from gateway.ack import AckTracker, Delivery
from gateway.clocks import ClockWatch
from gateway.deadletter_link import DeadLetterLink
from gateway.deadletters import DeadLetter, dead_letter
from gateway.intake import Intake
from gateway.metrics import register_metrics
from gateway.pipeline import PipelinePoints
from gateway.routes import site_routes
from gateway.sparkplug_host import SparkplugIngest
from gateway.sparkplug_state import HostStateLink
from gateway.spool import Spool
from gateway.writer import InfluxUnauthorizedError, Writer
from plantwire.backoff import Backoff
from plantwire.config.models import SiteConfig
from plantwire.health import HealthServer, HealthStatus
from plantwire.lifecycle import cancel_and_wait
from plantwire.lineprotocol import FieldValue, LineEncoder, Point
from plantwire.logs import LogOnce
from plantwire.memory import release_free_memory
from plantwire.metrics import Histogram, Registry
from plantwire.mqtt import AsyncMqtt, InboundWindow, Message, MqttUnavailable
from plantwire.names import check_segment
from plantwire.store.base import LineWriter
from plantwire.topics import (
    GATEWAY_ROLE,
    parse_service_topic,
    service_state_topic,
    service_subscription,
)

__all__ = ["Gateway", "default_gateway_id"]

log = logging.getLogger("plantwire.gateway")

# Retained on services/<id>/state (offline is also the last will). Edges that wait for a gateway
# look for the role (edge/gateway_watch.py): edges and analytics publish states there too.
GATEWAY_ONLINE = orjson.dumps({"status": "online", "role": GATEWAY_ROLE})
GATEWAY_OFFLINE = orjson.dumps({"status": "offline", "role": GATEWAY_ROLE})
# MQTT 5 Maximum Packet Size, in payloads of mqtt.max_payload_bytes: a message up to this size
# reaches the gateway and is dead-lettered (truncated) if over the payload limit, so it is seen;
# a larger one the broker discards for us (Mosquitto without a word: deploy/mosquitto refuses
# such packets from publishers instead, with max_packet_size). It bounds one message's memory.
MAX_PACKET_PAYLOADS = 4
# The consumer lets other tasks run at least this often while messages wait.
YIELD_EVERY_S = 0.005
# Free memory is handed back to the system when idle after receiving this much (a burst).
TRIM_AFTER_BYTES = 16_000_000
# Connections lost this many times within the window below: a reconnect loop, degraded.
RECONNECT_LOOP_COUNT = 3
RECONNECT_LOOP_WINDOW_S = 300.0


def default_gateway_id() -> str:
    """The host name, made a valid topic level."""
    name = (
        "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname()) or "gateway"
    )
    return check_segment(name[:64], "gateway id")


class Gateway:
    def __init__(
        self,
        site: SiteConfig,
        influx: LineWriter,
        *,
        gateway_id: str,
        spool_path: Path | None = None,
        health_port: int | None = None,
        health_host: str = "127.0.0.1",
    ) -> None:
        self.site = site
        self.id = check_segment(gateway_id, "gateway id")
        settings = site.gateway
        self.settings = settings
        path = spool_path or settings.spool_path or Path(f"plantwire-gateway-{self.id}.db")
        self.spool = Spool(path, max_bytes=int(settings.spool_max_mb * 1_000_000))
        self.intake = Intake(
            max_payload_bytes=site.mqtt.max_payload_bytes,
            site=site.site.id,
            dead_letter_max_bytes=settings.dead_letter_max_bytes,
        )
        # The Sparkplug B host application, beside the native format (docs/sparkplug.md).
        self.sparkplug: SparkplugIngest | None = None
        self.host_state: HostStateLink | None = None
        self._subscribed = asyncio.Event()
        if site.sparkplug is not None and site.sparkplug.host:
            self.sparkplug = SparkplugIngest(
                site.site.id,
                max_payload_bytes=site.mqtt.max_payload_bytes,
                state_path=path.with_name(path.name + ".sparkplug.json"),
            )
            self.host_state = HostStateLink(
                site.mqtt, host_id=site.sparkplug.host_id, group_id=site.sparkplug_group
            )
        self.tracker = AckTracker(self._ack)
        self.registry = Registry()
        self._latency = Histogram(
            self.registry, "plantwire_gateway_write_seconds", "InfluxDB write latency."
        )
        self.writer = Writer(
            influx,
            self.spool,
            release=self.tracker.release,
            dead_line=self._dead_line,
            max_lines=settings.batch_max_lines,
            max_latency_s=settings.batch_max_latency_ms / 1000,
            max_in_flight=settings.max_writes_in_flight,
            on_write=self._wrote,
        )
        self.pipeline = PipelinePoints(site.site.id)
        self.clocks = ClockWatch(settings.clock_tolerance_s, registry=self.registry)
        # Which decoder reads which topics (native batches, Sparkplug B): gateway/routes.py.
        self.routes = site_routes(site, self.intake, self.sparkplug, self._request_rebirth)
        self._encoder = LineEncoder()
        self._report_marks = (time.monotonic(), 0)  # (when, points written) at the last report
        self._interval_writes = (0, 0.0)  # writes and their seconds since the last report
        # (received ns, judge its clock, message): see _received
        self._queue: asyncio.Queue[tuple[int, bool, Message]] = asyncio.Queue()
        self.window = InboundWindow(
            settings.receive_maximum, int(settings.inflight_max_mb * 1_000_000)
        )
        self._losses: list[float] = []  # monotonic times the connection was lost, recent ones
        self.connections_lost = 0
        self._client: AsyncMqtt | None = None
        self._lost: asyncio.Event = asyncio.Event()
        self.dead_letter_link = DeadLetterLink(site.mqtt, f"{self._client_id()}-deadletters")
        self.connected = False
        self.messages = 0
        self.samples = 0
        self.rejected_samples = 0
        self.dead_letters: dict[str, int] = {}
        self._once = LogOnce(log)
        register_metrics(self, self.registry)
        port = settings.health_port if health_port is None else health_port  # 0: no endpoint
        self.health = HealthServer(self.registry, self.status, health_host, port) if port else None

    # -- MQTT -------------------------------------------------------------------------------------
    def _client_id(self) -> str:
        return f"{self.site.mqtt.client_id_prefix}-gateway-{self.id}"

    async def _connect(self) -> None:
        mqtt = self.site.mqtt
        # A persistent session: the broker keeps what arrives while the gateway is away, and
        # redelivers what it had sent but the gateway had not acknowledged.
        client = AsyncMqtt(
            mqtt, self._client_id(), clean_start=False, manual_ack=True, window=self.window
        )
        client.on_message = self._received
        client.on_lost = lambda reason: self._lost.set()
        self._lost.clear()
        self._client = client  # before the CONNACK: a resumed session's messages follow it
        await client.connect(
            session_expiry_s=mqtt.session_expiry_s,
            receive_maximum=self.settings.receive_maximum,
            maximum_packet_size=MAX_PACKET_PAYLOADS * mqtt.max_payload_bytes,
            will=(service_state_topic(self.site.site.id, self.id), GATEWAY_OFFLINE),
        )
        self.tracker.new_connection()
        self.clocks.connected(time.time_ns())
        self.connected = True

    async def _subscribe(self, client: AsyncMqtt) -> None:
        """Subscribe (again): a resumed session's backlog is already flowing meanwhile."""
        mqtt, group = self.site.mqtt, self.settings.shared_group
        topics = [route.subscription(group) for route in self.routes]
        for route, topic in zip(self.routes, topics, strict=True):
            await client.subscribe(topic, qos=route.qos)
        await client.subscribe(service_subscription(self.site.site.id, group), qos=1)
        self._subscribed.set()  # the Sparkplug host's STATE waits for its subscription
        client.publish(service_state_topic(self.site.site.id, self.id), GATEWAY_ONLINE, retain=True)
        self._once.recovered(
            "mqtt", "subscribed to %s on %s as %s", ", ".join(topics), mqtt.url, self._client_id()
        )

    def _received(self, message: Message) -> None:
        # Stamped on arrival, before any wait in the queue: the edge clock check's reference.
        # Only a message that found the gateway keeping up is judged: one read from a backlog
        # (at the broker, or in our own queue) is late by the backlog, not by a clock.
        client = self._client
        caught_up = self._queue.empty() and not (client and client.received_from_backlog)
        self._queue.put_nowait((time.time_ns(), caught_up, message))

    def _ack(self, message: Message) -> None:
        client = self._client
        if client is not None and self.connected:
            client.ack(message)  # and its room in the window

    def _publish_dead_letter(self, letter: DeadLetter, delivery: Delivery | None) -> None:
        self.dead_letters[letter.kind] = self.dead_letters.get(letter.kind, 0) + 1
        if delivery is None:
            self.dead_letter_link.send(letter)
            return
        delivery.hold()  # the original is acknowledged once its dead letter is safe
        self.dead_letter_link.send(letter, lambda: self.tracker.release(delivery))

    def _dead_line(self, line: str, reason: str) -> None:
        letter = dead_letter(self.site.site.id, "influx", "influx", reason, topic="", line=line)
        self._publish_dead_letter(letter, None)

    # -- the pipeline -----------------------------------------------------------------------------
    async def _consume(self) -> None:
        yielded = time.monotonic()
        while True:
            received_ns, caught_up, message = await self._queue.get()
            await self.writer.wait_for_room()
            delivery = self.tracker.receive(message)
            service = parse_service_topic(message.topic)
            if service is not None:  # a service's state or stats: the pipeline board's data
                points = self.pipeline.from_message(service, message.payload)
                if points:
                    self.writer.add(self._encoder.lines(points), delivery)
                self.tracker.release(delivery)
                continue
            result = self.routes.decode(message.topic, bytes(message.payload))
            if result.edge is not None and result.sent_ns is not None:
                self.clocks.observe(
                    result.edge, result.sent_ns, received_ns, from_backlog=not caught_up
                )
            self.messages += 1
            self.samples += result.samples
            self.rejected_samples += result.rejected
            for letter in result.dead_letters:
                self._publish_dead_letter(letter, delivery)
            if result.lines:
                self.writer.add(result.lines, delivery)
            self.tracker.release(delivery)
            if self._queue.empty() and self.window.full:
                self.writer.flush()  # nothing more comes until these are acknowledged
            # Queue.get does not yield while messages wait: let the writes and acks run, every
            # few milliseconds rather than after every message (each turn of the loop costs).
            if time.monotonic() - yielded > YIELD_EVERY_S:
                await asyncio.sleep(0)
                yielded = time.monotonic()

    def _request_rebirth(self, edge_node: str) -> None:
        if self.host_state is not None:
            self.host_state.request_rebirth(edge_node)

    async def _session(self) -> None:
        """One MQTT connection: consume until it is lost.

        Consuming starts at the CONNACK, before the subscriptions are answered: a resumed
        session's backlog comes first, and it must be worked off for the SUBACK to be read.
        """
        await self._connect()
        client = self._client
        assert client is not None
        consumer = asyncio.create_task(self._consume())
        subscriber = asyncio.create_task(self._subscribe(client))
        lost = asyncio.create_task(self._lost.wait())
        try:
            await asyncio.wait({consumer, lost, subscriber}, return_when=asyncio.FIRST_COMPLETED)
            if subscriber.done() and subscriber.exception() is None:
                await asyncio.wait({consumer, lost}, return_when=asyncio.FIRST_COMPLETED)
            for task in (subscriber, consumer):
                if task.done():
                    task.result()
            raise MqttUnavailable("connection lost")
        finally:
            await cancel_and_wait([consumer, subscriber, lost])

    async def _mqtt_loop(self) -> None:
        backoff = Backoff(0.1, 10.0)
        while True:
            try:
                await self._session()
            except MqttUnavailable as exc:
                if self.connected:
                    self._losses.append(time.monotonic())
                    self.connections_lost += 1
                self._once.problem(
                    "mqtt", "MQTT broker unavailable (%s); retrying with backoff", exc
                )
                if self.reconnecting_in_a_loop:
                    self._once.problem(
                        "mqtt-loop",
                        "MQTT connection lost %d times in %.0f s (last: %s); degraded",
                        len(self._losses),
                        RECONNECT_LOOP_WINDOW_S,
                        exc,
                    )
            finally:
                self.connected = False
                # What was received but not acknowledged will come again on the next session.
                while not self._queue.empty():
                    self._queue.get_nowait()
                client, self._client = self._client, None
                if client is not None:
                    client.abandon()
            await backoff.sleep()

    async def run(self) -> None:
        """Run until cancelled, or until InfluxDB refuses the credentials (raised)."""
        if self.health is not None:
            await self.health.start()
        if self.spool.batches:
            log.info(
                "spool %s holds %d lines from before; replaying them first",
                self.spool.path,
                self.spool.lines,
            )
        tasks = [
            asyncio.create_task(self._mqtt_loop(), name="mqtt"),
            asyncio.create_task(self.writer.run(), name="writer"),
            asyncio.create_task(self.dead_letter_link.run(), name="dead letters"),
            asyncio.create_task(self._watch_loop(), name="health watch"),
        ]
        if self.settings.pipeline_interval_s > 0:
            tasks.append(asyncio.create_task(self._report_loop(), name="pipeline report"))
        if self.host_state is not None:
            tasks.append(
                asyncio.create_task(self.host_state.run(self._subscribed), name="sparkplug state")
            )
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        except InfluxUnauthorizedError as exc:
            log.critical("%s; stopping (the broker keeps the messages)", exc)
            raise
        finally:
            await cancel_and_wait(tasks)
            await self._stop()

    # -- the pipeline report ----------------------------------------------------------------------
    def _wrote(self, seconds: float) -> None:
        self._latency.observe(seconds)
        writes, total = self._interval_writes
        self._interval_writes = (writes + 1, total + seconds)

    def report(self) -> Point:
        """The gateway's own ``pipeline`` point, covering the time since the last report."""
        now = time.monotonic()
        written = self.writer.stats.lines_written
        since, written_before = self._report_marks
        writes, seconds = self._interval_writes
        self._report_marks, self._interval_writes = (now, written), (0, 0.0)
        fields: dict[str, FieldValue] = {
            "mqtt_connected": int(self.connected),
            "influx_up": int(self.writer.influx_up),
            "messages_total": self.messages,
            "samples_total": self.samples,
            "points_written_total": written,
            "points_per_s": (written - written_before) / max(now - since, 1e-9),
            "spool_lines": self.spool.lines,
            "spool_bytes": self.spool.bytes,
            "dead_letters_total": sum(self.dead_letters.values()),
            "sequence_gaps_total": self.intake.sequences.gaps,
            "messages_unacked": self.tracker.unacked,
            "messages_unrouted_total": self.routes.unrouted,
        }
        for decoder in self.routes.ingest_decoders():  # per rule: the plant's own MQTT data
            fields[f"ingest_{decoder.name}_messages_total"] = decoder.messages
            fields[f"ingest_{decoder.name}_refused_total"] = decoder.refused_messages
        if writes:
            fields["write_latency_ms"] = 1000 * seconds / writes
        # Floats throughout, as edge stats are: a field keeps one type per shard in InfluxDB,
        # and an edge and a gateway both report mqtt_connected.
        fields = {name: float(value) for name, value in fields.items()}
        return self.pipeline.point(self.id, fields, time.time_ns())

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.pipeline_interval_s)
            now_ns = time.time_ns()
            clocks = [
                self.pipeline.point(edge, fields, now_ns)
                for edge, fields in self.clocks.report().items()
            ]
            self.writer.add_own(self._encoder.lines([self.report(), *clocks]))

    async def drain(self, timeout_s: float) -> bool:
        """Write and acknowledge what is in hand (for tests and clean stops)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            await self.writer.drain(max(0.0, deadline - time.monotonic()))
            if self._queue.empty() and self.tracker.unacked == 0 and not self.writer.in_flight:
                return True
            await asyncio.sleep(0.05)
        return False

    async def _stop(self) -> None:
        if self.host_state is not None:
            await self.host_state.stop()
        await self.dead_letter_link.stop()
        client, self._client = self._client, None
        if client is not None and client.connected:
            client.publish(
                service_state_topic(self.site.site.id, self.id),
                GATEWAY_OFFLINE,
                retain=True,
            )
            await asyncio.sleep(0.1)
            await client.disconnect()
        self.connected = False
        self.spool.close()
        if self.health is not None:
            await self.health.stop()

    # -- health -----------------------------------------------------------------------------------
    @property
    def reconnecting_in_a_loop(self) -> bool:
        """Lost the connection RECONNECT_LOOP_COUNT times within RECONNECT_LOOP_WINDOW_S."""
        since = time.monotonic() - RECONNECT_LOOP_WINDOW_S
        self._losses = [at for at in self._losses if at > since]
        return len(self._losses) >= RECONNECT_LOOP_COUNT

    async def _watch_loop(self) -> None:
        """Log when the write path stalls or the connection keeps dropping, and when not; give
        memory back after a burst."""
        trimmed_at = 0  # window.received_bytes at the last release of free memory
        while True:
            await asyncio.sleep(1.0)
            received = self.window.received_bytes
            if not self.window.messages and received - trimmed_at > TRIM_AFTER_BYTES:
                release_free_memory()  # idle after a burst: back near the baseline
                trimmed_at = received
            stalled = self.writer.stalled_s()
            if stalled > self.settings.write_stall_s:
                self._once.problem(
                    "write-stall",
                    "no write to the store has completed for %.0f s (%d writes waiting, "
                    "%d messages unacknowledged); degraded",
                    stalled,
                    self.writer.in_flight,
                    self.tracker.unacked,
                )
            else:
                self._once.recovered("write-stall", "writes complete again")
            if not self.reconnecting_in_a_loop:
                self._once.recovered("mqtt-loop", "MQTT connection stable again")

    def status(self) -> HealthStatus:
        looping = self.reconnecting_in_a_loop
        stalled = self.writer.stalled_s()
        healthy = (
            self.connected
            and self.writer.influx_up
            and self.writer.fatal is None
            and stalled <= self.settings.write_stall_s
            and not looping
        )
        return HealthStatus(
            healthy,
            {
                "gateway": self.id,
                "mqtt_connected": self.connected,
                "mqtt_reconnect_loop": looping,
                "influx_up": self.writer.influx_up,
                "write_stalled_s": round(stalled, 1),
                "reading_paused": self.window.full,
                "unacked_messages": self.window.messages,
                "unacked_bytes": self.window.bytes,
                "spool_lines": self.spool.lines,
                "messages": self.messages,
                "samples": self.samples,
                "points_written": self.writer.stats.lines_written,
                "dead_letters": sum(self.dead_letters.values()),
                "sequence_gaps": self.intake.sequences.gaps,
            },
        )
