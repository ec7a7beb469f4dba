"""MQTT for every part of PlantWire: one place that configures paho (protocol, TLS, credentials,
client id) and bridges its network thread to asyncio.

MQTT 5 is the default. ``protocol: "3.1.1"`` in the site's ``mqtt`` block serves brokers that speak
only 3.1.1 (such as amqtt, the demo's embedded broker): clean start becomes clean session, and the
MQTT 5 CONNECT properties (session expiry, receive maximum) are left out, so a persistent session
lasts as long as the broker keeps it and the gateway's back-pressure bound is not sent.

The network runs in a thread of ours (:mod:`plantwire.mqtt_network`), because paho's own thread
cannot stop reading: a broker that ignores Receive Maximum (Mosquitto 2.0.11 does) could
otherwise push a whole backlog into memory. Received messages count against an
:class:`InboundWindow` (messages and bytes not yet acknowledged); while it is full the thread
leaves the socket unread, so TCP holds the rest at the broker. Callbacks are handed to the event
loop in bursts (one wake-up for many messages), so the rest of PlantWire only ever sees them in
the loop's thread. paho never reconnects on its own here (``reconnect_on_failure=False``): the
part that owns the connection decides when to try again, with backoff, and what to resend.

Keepalive, behind a backlog: the broker queues its PINGRESP after every message it already has
for us, so a PINGRESP can be minutes late on a connection that is plainly alive. Bytes arriving
after a PINGREQ count as its answer, and while reading is paused the kernel judges the
connection instead (``TCP_USER_TIMEOUT``: unacknowledged bytes, our PINGREQs included, for two
keepalive periods end it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from plantwire.config.models import MqttConfig
from plantwire.mqtt_network import BACKLOG_AFTER_S, Client, InboundWindow, NetworkLoop

__all__ = ["AsyncMqtt", "InboundWindow", "Message", "MqttUnavailable"]

log = logging.getLogger("plantwire.mqtt")

Message = paho.MQTTMessage


class MqttUnavailable(Exception):  # noqa: N818 - reads as the state it reports
    """The broker could not be reached, refused the connection, or the connection was lost."""


class AsyncMqtt:
    """One MQTT connection, used from an asyncio loop.

    ``clean_start`` False asks the broker to keep the session (subscriptions and QoS>0 messages
    queued for us) across connections. It is fixed here, not at :meth:`connect`, because MQTT
    3.1.1's clean session is part of paho's client, not of its connect call.

    ``window`` bounds what the broker can push into this process: each received message counts
    against it until :meth:`ack` (QoS 0 messages too), and while it is full the socket is not
    read. The default window has no limits.

    Set the callbacks before :meth:`connect`; they run in the loop's thread:
    ``on_ack(mid, ok)`` when a QoS>0 publish is acknowledged (``ok`` False if the broker refused
    it, e.g. not authorized), ``on_message(message)``, ``on_lost(reason)`` when the connection
    drops.
    """

    def __init__(
        self,
        config: MqttConfig,
        client_id: str,
        *,
        clean_start: bool = True,
        manual_ack: bool = False,
        max_inflight: int = 64,
        window: InboundWindow | None = None,
    ) -> None:
        self.config = config
        self.client_id = client_id
        self.clean_start = clean_start
        self.mqtt5 = config.protocol == "5"
        self.window = window or InboundWindow()
        self.on_ack: Callable[[int, bool], None] = lambda mid, ok: None
        self.on_message: Callable[[paho.MQTTMessage], None] = lambda message: None
        self.on_lost: Callable[[str], None] = lambda reason: None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected: asyncio.Future[None] | None = None
        self._network: NetworkLoop | None = None
        # Messages from the network thread, handed over in bursts: one wake-up of the event
        # loop for however many arrived meanwhile, not one per message.
        self._inbox: deque[tuple[paho.MQTTMessage, bool]] = deque()  # (message, from backlog)
        self._inbox_posted = False
        self.from_backlog = False  # see the property below
        self._closed = False  # abandoned or disconnected: deliver nothing more
        self.last_message_at = 0.0  # monotonic; what a slow SUBACK is judged against
        self.connected = False
        client = Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5 if self.mqtt5 else paho.MQTTv311,
            # paho accepts clean_session only for 3.1.1; MQTT 5 sends clean start in connect().
            clean_session=None if self.mqtt5 else clean_start,
            reconnect_on_failure=False,
            manual_ack=manual_ack,
        )
        if config.username:
            password = config.password.get_secret_value() if config.password else None
            client.username_pw_set(config.username, password)
        if config.use_tls:
            tls = config.tls
            client.tls_set(
                ca_certs=str(tls.ca_file) if tls and tls.ca_file else None,
                certfile=str(tls.cert_file) if tls and tls.cert_file else None,
                keyfile=str(tls.key_file) if tls and tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            client.tls_insecure_set(bool(tls and not tls.check_hostname))
        client.max_inflight_messages_set(max_inflight)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._subscribed: dict[int, asyncio.Future[list[str]]] = {}
        self.client = client

    # -- the network thread -> the loop -----------------------------------------------------------
    def _post(self, function: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(function, *args)

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        self._post(self._connect_result, reason.is_failure, str(reason))

    def _connect_result(self, failed: bool, reason: str) -> None:
        future = self._connected
        if future is not None and not future.done():
            if failed:
                future.set_exception(MqttUnavailable(f"broker refused the connection: {reason}"))
            else:
                future.set_result(None)

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        self._post(self._lost, str(reason))

    def _lost(self, reason: str) -> None:
        was_connected, self.connected = self.connected, False
        self._connect_result(True, reason)
        if was_connected:
            self.on_lost(reason)

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Any
    ) -> None:
        self._post(self.on_ack, mid, not reason.is_failure)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self.window.admit(len(message.payload))
        now = self.last_message_at = time.monotonic()
        network = self._network
        backlog = self.window.half_full or (
            network is not None and now - network.caught_up_at > BACKLOG_AFTER_S
        )
        self._inbox.append((message, backlog))
        if not self._inbox_posted:
            self._inbox_posted = True
            self._post(self._deliver_inbox)

    def _deliver_inbox(self) -> None:
        # Cleared before draining: a message appended meanwhile posts another delivery.
        self._inbox_posted = False
        inbox = self._inbox
        if self._closed:  # unacknowledged, so the broker sends them again next time
            inbox.clear()
            return
        while inbox:
            message, self.from_backlog = inbox.popleft()
            self.on_message(message)
        self.from_backlog = False

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Any,
    ) -> None:
        self._post(self._suback, mid, [str(r) for r in reasons if r.is_failure])

    def _suback(self, mid: int, failures: list[str]) -> None:
        future = self._subscribed.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(failures)

    # -- the loop's side --------------------------------------------------------------------------
    async def connect(
        self,
        *,
        session_expiry_s: int = 0,
        receive_maximum: int | None = None,
        maximum_packet_size: int | None = None,
        will: tuple[str, bytes] | None = None,
        will_retain: bool = True,
        timeout_s: float = 10.0,
    ) -> None:
        """Connect and wait for the broker's CONNACK; raise MqttUnavailable with the reason.

        ``session_expiry_s``, ``receive_maximum`` and ``maximum_packet_size`` are MQTT 5
        properties; over 3.1.1 they are not sent. A broker keeps a larger message from us (MQTT 5
        says it must discard it). The ``will`` (topic, payload) goes out at QoS 1, retained
        unless ``will_retain`` is False (a Sparkplug NDEATH must not be retained).
        """
        self._loop = asyncio.get_running_loop()
        self._connected = self._loop.create_future()
        self.window.reset()
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=will_retain)
        options: dict[str, Any] = {"keepalive": self.config.keepalive_s}
        if self.mqtt5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = session_expiry_s
            if receive_maximum is not None:
                # At most this many unacknowledged QoS>0 messages from the broker: back-pressure
                # on brokers that honour it; the window enforces it on those that do not.
                properties.ReceiveMaximum = receive_maximum
            if maximum_packet_size is not None:
                properties.MaximumPacketSize = maximum_packet_size
            options.update(clean_start=self.clean_start, properties=properties)
        config = self.config
        try:
            # connect() blocks for the TCP (and TLS) handshake: keep it off the loop.
            await asyncio.wait_for(
                asyncio.to_thread(self.client.connect, config.host, config.port, **options),
                timeout_s,
            )
            self._start_network()
            await asyncio.wait_for(self._connected, timeout_s)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            self._stop_thread()
            reason = str(exc) or type(exc).__name__
            raise MqttUnavailable(f"cannot reach {config.url}: {reason}") from exc
        except MqttUnavailable:
            self._stop_thread()
            raise
        self.connected = True

    def _start_network(self) -> None:
        sock = self.client.socket()
        if isinstance(sock, socket.socket) and hasattr(socket, "TCP_USER_TIMEOUT"):
            # While reading is paused no PINGRESP can be read; the kernel then ends a connection
            # whose bytes go unacknowledged for two keepalive periods.
            timeout_ms = 2 * self.config.keepalive_s * 1000
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, timeout_ms)
        self._network = NetworkLoop(self.client, self.window, self.client_id)
        self._network.start()

    @property
    def received_from_backlog(self) -> bool:
        """While ``on_message`` runs: True if the message was read when the socket had not been
        empty for ``BACKLOG_AFTER_S``, or with the window past half full -- the broker was
        sending what it had queued, so the message is late by however long it waited there."""
        return self.from_backlog

    @property
    def reading_paused(self) -> bool:
        """True while the window is full and the socket is left unread."""
        return self.window.full

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> int:
        """Queue a publish; returns its message id (acknowledged through ``on_ack``)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise MqttUnavailable(f"publish to {topic} failed: {paho.error_string(info.rc)}")
        self._wake()
        return int(info.mid)

    async def subscribe(self, topic_filter: str, qos: int = 1, timeout_s: float = 10.0) -> None:
        """Subscribe and wait for the broker's SUBACK; a refusal raises MqttUnavailable.

        A resumed session's backlog arrives before the SUBACK, however long it takes to read:
        the wait gives up only after ``timeout_s`` in which nothing arrived at all (and the
        socket was being read).
        """
        assert self._loop is not None, "connect first"
        result, mid = self.client.subscribe(topic_filter, qos=qos)
        if result != paho.MQTT_ERR_SUCCESS or mid is None:
            raise MqttUnavailable(
                f"subscribe to {topic_filter} failed: {paho.error_string(result)}"
            )
        self._wake()
        future: asyncio.Future[list[str]] = self._loop.create_future()
        self._subscribed[mid] = future
        while True:
            done, _ = await asyncio.wait({future}, timeout=timeout_s)
            if done:
                break
            if not self.connected:
                raise MqttUnavailable(f"connection lost before the subscription to {topic_filter}")
            busy = self.reading_paused or time.monotonic() - self.last_message_at < timeout_s
            if not busy:
                self._subscribed.pop(mid, None)
                raise MqttUnavailable(f"no answer to the subscription to {topic_filter}")
        failures = future.result()
        if failures:
            reasons = ", ".join(failures)
            raise MqttUnavailable(f"broker refused the subscription to {topic_filter}: {reasons}")

    def ack(self, message: paho.MQTTMessage) -> None:
        """Done with a received message: acknowledge it (QoS>0, with ``manual_ack``) and give its
        room in the window back."""
        if message.qos > 0:
            self.client.ack(message.mid, message.qos)
        if self.window.release(len(message.payload)) or message.qos > 0:
            self._wake()

    def _wake(self) -> None:
        network = self._network
        if network is not None:
            network.wake()

    async def disconnect(self) -> None:
        """Leave cleanly (no last will); never raises."""
        if self.connected:
            self.connected = False
            self.client.disconnect()
            self._wake()
            network = self._network
            if network is not None:  # let it send the DISCONNECT
                await asyncio.to_thread(network.join, 5.0)
        self._stop_thread()

    def abandon(self) -> None:
        """Drop the connection without goodbye (the broker publishes the last will)."""
        self.connected = False
        sock = self.client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        self._stop_thread()

    def _stop_thread(self) -> None:
        self._closed = True
        network, self._network = self._network, None
        if network is not None:
            network.stop()
