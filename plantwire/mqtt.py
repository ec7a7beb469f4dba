"""MQTT for every part of PlantWire: one place that configures paho (protocol, TLS, credentials,
client id) and bridges its network thread to asyncio.

MQTT 5 is the default. ``protocol: "3.1.1"`` in the site's ``mqtt`` block serves brokers that speak
only 3.1.1 (such as amqtt, the demo's embedded broker): clean start becomes clean session, and the
MQTT 5 CONNECT properties (session expiry, receive maximum) are left out, so a persistent session
lasts as long as the broker keeps it and the gateway's back-pressure bound is not sent.

paho runs its own thread; its callbacks are handed to the event loop with
``call_soon_threadsafe``, so the rest of PlantWire only ever sees them in the loop's thread.
paho never reconnects on its own here (``reconnect_on_failure=False``): the part that owns the
connection decides when to try again, with backoff, and what to resend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from plantwire.config.models import MqttConfig

__all__ = ["AsyncMqtt", "Message", "MqttUnavailable"]

log = logging.getLogger("plantwire.mqtt")

Message = paho.MQTTMessage


class MqttUnavailable(Exception):  # noqa: N818 - reads as the state it reports
    """The broker could not be reached, refused the connection, or the connection was lost."""


class AsyncMqtt:
    """One MQTT connection, used from an asyncio loop.

    ``clean_start`` False asks the broker to keep the session (subscriptions and QoS>0 messages
    queued for us) across connections. It is fixed here, not at :meth:`connect`, because MQTT
    3.1.1's clean session is part of paho's client, not of its connect call.

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
    ) -> None:
        self.config = config
        self.client_id = client_id
        self.clean_start = clean_start
        self.mqtt5 = config.protocol == "5"
        self.on_ack: Callable[[int, bool], None] = lambda mid, ok: None
        self.on_message: Callable[[paho.MQTTMessage], None] = lambda message: None
        self.on_lost: Callable[[str], None] = lambda reason: None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected: asyncio.Future[None] | None = None
        self.connected = False
        client = paho.Client(
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

    # -- paho's thread -> the loop ----------------------------------------------------------------
    def _post(self, function: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
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
        self._post(self.on_message, message)

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
        will: tuple[str, bytes] | None = None,
        will_retain: bool = True,
        timeout_s: float = 10.0,
    ) -> None:
        """Connect and wait for the broker's CONNACK; raise MqttUnavailable with the reason.

        ``session_expiry_s`` and ``receive_maximum`` are MQTT 5 properties; over 3.1.1 they are
        not sent. The ``will`` (topic, payload) goes out at QoS 1, retained unless
        ``will_retain`` is False (a Sparkplug NDEATH must not be retained).
        """
        self._loop = asyncio.get_running_loop()
        self._connected = self._loop.create_future()
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1, retain=will_retain)
        options: dict[str, Any] = {"keepalive": self.config.keepalive_s}
        if self.mqtt5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = session_expiry_s
            if receive_maximum is not None:
                # At most this many unacknowledged QoS>0 messages from the broker: back-pressure.
                properties.ReceiveMaximum = receive_maximum
            options.update(clean_start=self.clean_start, properties=properties)
        config = self.config
        try:
            # connect() blocks for the TCP (and TLS) handshake: keep it off the loop.
            await asyncio.wait_for(
                asyncio.to_thread(self.client.connect, config.host, config.port, **options),
                timeout_s,
            )
            self.client.loop_start()
            await asyncio.wait_for(self._connected, timeout_s)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            self._stop_thread()
            reason = str(exc) or type(exc).__name__
            raise MqttUnavailable(f"cannot reach {config.url}: {reason}") from exc
        except MqttUnavailable:
            self._stop_thread()
            raise
        self.connected = True

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> int:
        """Queue a publish; returns its message id (acknowledged through ``on_ack``)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise MqttUnavailable(f"publish to {topic} failed: {paho.error_string(info.rc)}")
        return int(info.mid)

    async def subscribe(self, topic_filter: str, qos: int = 1, timeout_s: float = 10.0) -> None:
        """Subscribe and wait for the broker's SUBACK; a refusal raises MqttUnavailable."""
        assert self._loop is not None, "connect first"
        result, mid = self.client.subscribe(topic_filter, qos=qos)
        if result != paho.MQTT_ERR_SUCCESS or mid is None:
            raise MqttUnavailable(
                f"subscribe to {topic_filter} failed: {paho.error_string(result)}"
            )
        future: asyncio.Future[list[str]] = self._loop.create_future()
        self._subscribed[mid] = future
        try:
            failures = await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise MqttUnavailable(f"no answer to the subscription to {topic_filter}") from None
        if failures:
            reasons = ", ".join(failures)
            raise MqttUnavailable(f"broker refused the subscription to {topic_filter}: {reasons}")

    def ack(self, message: paho.MQTTMessage) -> None:
        """Acknowledge a received QoS>0 message (with ``manual_ack``)."""
        self.client.ack(message.mid, message.qos)

    async def disconnect(self) -> None:
        """Leave cleanly (no last will); never raises."""
        if self.connected:
            self.connected = False
            self.client.disconnect()
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
        # From paho's own thread loop_stop raises; that thread is stopping by itself anyway.
        with contextlib.suppress(RuntimeError):
            self.client.loop_stop()
