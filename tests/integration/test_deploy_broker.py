"""The deployment's Mosquitto config, run by Debian's broker: it shuts out anonymous and
wrong-password clients and keeps each site's clients to that site's topics."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from pw_deploy import LOGIN_REFUSED, SITE_A, SITE_B, DeployedBroker, deployed_broker

from plantwire.model import AssetPath
from plantwire.topics import (
    alert_topic,
    data_subscription,
    data_topic,
    deadletter_topic,
    service_state_topic,
    service_stats_topic,
    service_subscription,
    state_topic,
)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeployedBroker]:
    """deploy/mosquitto with certificates from deploy/certs/make-certs.sh, a password for every
    role of sites A and B, and the ACL extended by a second site."""
    with deployed_broker(tmp_path_factory.mktemp("deployed-broker")) as running:
        yield running


# -- an MQTT client that records the broker's answers ---------------------------------------------


class Session:
    """One MQTT 5 client of the deployed broker. It records the broker's answers (CONNACK,
    SUBACK, PUBACK reason codes) and every message it receives, so tests can assert on both."""

    def __init__(
        self,
        broker: DeployedBroker,
        user: str | None,
        password: str | None = None,
        *,
        tls: bool = True,
        client_certificate: bool = True,
    ) -> None:
        self.port = broker.port
        self._changed = threading.Condition()
        self._connack: str | None = None
        self._closed = False
        self._pubacks: dict[int, str] = {}
        self._subacks: dict[int, list[str]] = {}
        self.messages: list[tuple[str, bytes]] = []
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"deploy-test-{uuid.uuid4().hex[:10]}",
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,  # a refused client must stay refused, not retry
        )
        if tls:
            client.tls_set(
                ca_certs=str(broker.tls / "ca.crt"),
                certfile=str(broker.tls / "client.crt") if client_certificate else None,
                keyfile=str(broker.tls / "client.key") if client_certificate else None,
            )
        if user is not None:
            client.username_pw_set(user, password)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_gone
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self.client = client

    # paho's thread ---------------------------------------------------------------------------
    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self._connack = str(reason)
        self._notify()

    def _on_gone(self, *_args: Any) -> None:
        self._closed = True
        self._notify()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, _reason: ReasonCode, _p: Any) -> None:
        self._on_gone()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        with self._changed:
            self._pubacks[mid] = str(reason)
            self._changed.notify_all()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, reasons: list[ReasonCode], _p: Any) -> None:
        with self._changed:
            self._subacks[mid] = [str(r) for r in reasons]
            self._changed.notify_all()

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self._changed:
            self.messages.append((message.topic, message.payload))
            self._changed.notify_all()

    # the test's thread -----------------------------------------------------------------------
    def _wait(self, done: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
        with self._changed:
            if not self._changed.wait_for(done, timeout_s):
                raise AssertionError(f"no {what} within {timeout_s}s")

    def connect(self) -> str | None:
        """The broker's CONNACK reason ("Success", "Not authorized", ...), or None when the
        connection was dropped before any CONNACK (TLS refused it)."""
        try:
            self.client.connect("127.0.0.1", self.port, keepalive=30)
        except OSError:  # ssl.SSLError included: the handshake itself was refused
            return None
        self.client.loop_start()
        self._wait(lambda: self._connack is not None or self._closed, "CONNACK or close")
        return self._connack

    def subscribe(self, topic_filter: str) -> list[str]:
        result, mid = self.client.subscribe(topic_filter, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS, result
        self._wait(lambda: mid in self._subacks, f"SUBACK for {topic_filter}")
        return self._subacks[mid]

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> str:
        """Publish at QoS 1 and return the broker's PUBACK reason."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        self._wait(lambda: info.mid in self._pubacks, f"PUBACK for {topic}")
        return self._pubacks[info.mid]

    def wait_for(self, payload: bytes, timeout_s: float = 10.0) -> None:
        self._wait(lambda: any(p == payload for _, p in self.messages), f"{payload!r}", timeout_s)

    def payloads(self) -> list[bytes]:
        with self._changed:
            return [payload for _, payload in self.messages]

    def topics(self) -> list[str]:
        with self._changed:
            return [topic for topic, _ in self.messages]

    def close(self) -> None:
        # DISCONNECT first: the network thread then ends at once instead of at its next wake-up.
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def login(broker: DeployedBroker, role: str, site: str) -> Session:
    """A connected session of user <role>-<site> with its right password and certificate."""
    session = Session(broker, f"{role}-{site}", broker.password(role, site))
    assert session.connect() == "Success"
    return session


def publish_as(
    broker: DeployedBroker,
    role: str,
    site: str,
    topic: str,
    payload: bytes,
    *,
    retain: bool = False,
) -> str:
    """Publish once at QoS 1 as user <role>-<site> on a connection of its own; return the PUBACK
    reason. Mosquitto 2.0 closes a client's connection after refusing one of its publishes
    (eclipse-mosquitto issue #2579), so every attempt gets a fresh connection."""
    with login(broker, role, site) as session:
        return session.publish(topic, payload, retain=retain)


def machine(site: str) -> AssetPath:
    return AssetPath(site, "dairy", "filling", "filler")


def marker(what: str) -> bytes:
    """A payload no other test sends (the broker is shared by the module's tests)."""
    return f"{what} {uuid.uuid4().hex}".encode()


# -- the broker -----------------------------------------------------------------------------------


@pytest.mark.servers
def test_the_broker_refuses_anonymous_and_wrong_password_clients(broker: DeployedBroker) -> None:
    right = broker.password("edge", SITE_A)
    attempts = {
        "anonymous": Session(broker, None),
        "wrong password": Session(broker, f"edge-{SITE_A}", "not-the-password"),
        "no password": Session(broker, f"edge-{SITE_A}", None),
        "unknown user": Session(broker, f"edge-{SITE_A}-x", right),
        "no client certificate": Session(broker, f"edge-{SITE_A}", right, client_certificate=False),
        "no TLS": Session(broker, f"edge-{SITE_A}", right, tls=False),
        "right password": Session(broker, f"edge-{SITE_A}", right),
    }
    outcomes: dict[str, str] = {}
    for case, session in attempts.items():
        with session:
            answer = session.connect()
        if answer is None:
            outcomes[case] = "dropped at TLS"
        elif answer in LOGIN_REFUSED:
            outcomes[case] = "refused"
        else:
            outcomes[case] = answer

    assert outcomes == {
        "anonymous": "refused",
        "wrong password": "refused",
        "no password": "refused",
        "unknown user": "refused",
        "no client certificate": "dropped at TLS",
        "no TLS": "dropped at TLS",
        "right password": "Success",
    }


@pytest.mark.servers
def test_an_edge_cannot_publish_into_another_sites_topics(broker: DeployedBroker) -> None:
    forged, own, theirs = marker("forged"), marker("own"), marker("theirs")
    with (
        login(broker, "gateway", SITE_A) as gateway_a,
        login(broker, "gateway", SITE_B) as gateway_b,
    ):
        gateway_a.subscribe(data_subscription(SITE_A))
        gateway_b.subscribe(data_subscription(SITE_B))
        # Site B's gateway also asks for site A's telemetry. Mosquitto 2.0 grants the
        # subscription and filters each message by the ACL, other releases may refuse it:
        # either way nothing of site A may arrive.
        gateway_b.subscribe(data_subscription(SITE_A))

        assert publish_as(broker, "edge", SITE_A, data_topic(machine(SITE_B)), forged) == (
            "Not authorized"
        )
        # Positive control: the same edge user reaches its own site's gateway.
        assert publish_as(broker, "edge", SITE_A, data_topic(machine(SITE_A)), own) == "Success"
        gateway_a.wait_for(own)
        # Site B's own edge publishes after the forged message was refused; the broker hands a
        # subscriber its messages in order, so by the time this one arrives the forged one would
        # have too.
        assert publish_as(broker, "edge", SITE_B, data_topic(machine(SITE_B)), theirs) == (
            "Success"
        )
        gateway_b.wait_for(theirs)

        assert gateway_b.payloads() == [theirs]
        assert gateway_a.payloads() == [own]


@pytest.mark.servers
def test_each_role_publishes_and_reads_what_the_topic_tree_gives_it(
    broker: DeployedBroker,
) -> None:
    asset = machine(SITE_A)
    allowed = {
        ("edge", data_topic(asset)),
        ("edge", state_topic(asset)),
        ("edge", service_state_topic(SITE_A, "edge-dairy")),  # also its last will
        ("edge", service_stats_topic(SITE_A, "edge-dairy")),
        ("gateway", deadletter_topic(SITE_A, "edge-dairy")),
        ("gateway", service_state_topic(SITE_A, "gw-1")),
        ("analytics", alert_topic(asset)),
        ("analytics", alert_topic(asset) + "/events"),
        ("analytics", service_state_topic(SITE_A, "analytics")),
    }
    # A machine may be called "state": its alert topic then has the shape of a machine's state
    # topic, which edges may write.
    state_machine = AssetPath(SITE_A, "dairy", "filling", "state")
    refused = {
        ("edge", alert_topic(asset)),  # only analytics raises alerts
        ("edge", alert_topic(state_machine)),
        ("edge", deadletter_topic(SITE_A, "edge-dairy")),  # only the gateway dead-letters
        ("gateway", data_topic(asset)),  # only edges send telemetry
        ("analytics", data_topic(asset)),
        ("viewer", data_topic(asset)),  # people only look
        ("viewer", service_state_topic(SITE_A, "viewer")),
    }
    with (
        login(broker, "gateway", SITE_A) as gateway,
        login(broker, "viewer", SITE_A) as viewer,
        login(broker, "edge", SITE_A) as edge,
    ):
        # Edges watch the services' states for a gateway that is online (wait_for_gateway).
        assert edge.subscribe(f"plantwire/v1/{SITE_A}/services/+/state") == ["Granted QoS 1"]
        # The gateway subscribes as it does with gateway.shared_group set.
        assert gateway.subscribe(data_subscription(SITE_A, shared_group="gateways")) == [
            "Granted QoS 1"
        ]
        assert gateway.subscribe(service_subscription(SITE_A, shared_group="gateways")) == [
            "Granted QoS 1"
        ]
        assert viewer.subscribe(f"plantwire/v1/{SITE_A}/#") == ["Granted QoS 1"]

        sent: dict[tuple[str, str], bytes] = {}
        answers: dict[tuple[str, str], str] = {}
        for role, topic in sorted(allowed | refused):
            sent[role, topic] = marker(topic)
            answers[role, topic] = publish_as(broker, role, SITE_A, topic, sent[role, topic])
        assert answers == {
            pair: "Success" if pair in allowed else "Not authorized" for pair in allowed | refused
        }

        # Everything allowed reached a reader of the site, nothing refused did: the last
        # message below arrives after all of them would have.
        last = marker("last")
        assert publish_as(broker, "analytics", SITE_A, alert_topic(asset), last) == "Success"
        viewer.wait_for(last)
        assert set(viewer.payloads()) == {sent[pair] for pair in allowed} | {last}

        # The gateway's two subscriptions bring it the telemetry and every service's messages.
        for_gateway = {
            sent[role, topic]
            for role, topic in allowed
            if topic == data_topic(asset) or "/services/" in topic
        }
        for payload in for_gateway:
            gateway.wait_for(payload)
        assert set(gateway.payloads()) == for_gateway

        # The edge sees every service state of its site, the gateway's among them, and nothing else.
        states = {
            sent[role, topic]
            for role, topic in allowed
            if "/services/" in topic and topic.endswith("/state")
        }
        for payload in states:
            edge.wait_for(payload)
        assert set(edge.payloads()) == states


@pytest.mark.servers
def test_no_client_of_one_site_reads_another_sites_messages(broker: DeployedBroker) -> None:
    """Reading is kept apart as well as writing: every role of site A subscribes as widely as it
    can (all of site B, every site at once, the whole tree, a shared subscription) and receives
    nothing of site B -- neither what B retained before nor what B sends while A listens."""
    theirs, ours = machine(SITE_B), machine(SITE_A)
    # Retained before anyone of site A subscribes: a new subscription is handed the retained
    # messages it matches, and the broker must hold those to the ACL as well.
    retained = {
        ("edge", state_topic(theirs)): marker("B machine state"),
        ("edge", service_state_topic(SITE_B, "edge-b")): marker("B edge state"),
        ("analytics", alert_topic(theirs)): marker("B alert"),
    }
    live = {
        ("edge", data_topic(theirs)): marker("B telemetry"),
        ("edge", service_stats_topic(SITE_B, "edge-b")): marker("B edge stats"),
        ("gateway", deadletter_topic(SITE_B, "edge-b")): marker("B dead letter"),
        ("gateway", service_state_topic(SITE_B, "gw-b")): marker("B gateway state"),
        ("analytics", alert_topic(theirs) + "/events"): marker("B alert event"),
    }
    everything = ["#", "plantwire/v1/+/#", f"plantwire/v1/{SITE_B}/#"]
    filters = {
        "edge": [*everything, data_subscription(SITE_B)],
        "gateway": [
            *everything,
            data_subscription(SITE_B),
            data_subscription(SITE_B, shared_group="gateways"),
            service_subscription(SITE_B),
            "plantwire/v1/+/+/+/+/data",
        ],
        "analytics": everything,
        "viewer": everything,
    }
    try:
        for (role, topic), payload in retained.items():
            # Nobody listens yet: the broker keeps the message and says so (a success code).
            answer = publish_as(broker, role, SITE_B, topic, payload, retain=True)
            assert answer == "No matching subscribers"
        with contextlib.ExitStack() as stack:
            readers = {role: stack.enter_context(login(broker, role, SITE_A)) for role in filters}
            their_viewer = stack.enter_context(login(broker, "viewer", SITE_B))
            answers = {
                (role, wanted): readers[role].subscribe(wanted)
                for role, wanted_filters in filters.items()
                for wanted in wanted_filters
            }
            assert their_viewer.subscribe(f"plantwire/v1/{SITE_B}/#") == ["Granted QoS 1"]
            for (role, topic), payload in live.items():
                assert publish_as(broker, role, SITE_B, topic, payload) == "Success"
            # Positive controls: site B's own viewer got all of it, retained and live; then one
            # message of site A reaches A's readers, after B's would have reached them too.
            for payload in [*retained.values(), *live.values()]:
                their_viewer.wait_for(payload)
            last = marker("A telemetry")
            assert publish_as(broker, "edge", SITE_A, data_topic(ours), last) == "Success"
            readers["gateway"].wait_for(last)
            readers["viewer"].wait_for(last)

            # Mosquitto 2.0 grants such subscriptions and filters every message by the ACL;
            # other releases may refuse them. Either way nothing of site B may arrive.
            assert set(map(tuple, answers.values())) <= {("Granted QoS 1",), ("Not authorized",)}
            leaked = {
                role: [t for t in session.topics() if not t.startswith(f"plantwire/v1/{SITE_A}/")]
                for role, session in readers.items()
            }
            assert leaked == {role: [] for role in filters}
            # Edges and analytics read nothing at all over MQTT, not even their own site.
            assert readers["edge"].topics() == readers["analytics"].topics() == []
    finally:
        for role, topic in retained:  # other tests share the broker: clear them
            publish_as(broker, role, SITE_B, topic, b"", retain=True)
