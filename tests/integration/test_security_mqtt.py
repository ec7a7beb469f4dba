"""TLS to the deployment's broker is checked both ways: a client that does not trust the broker's
CA, or that dials a name the broker's certificate does not carry, is refused at the handshake;
the broker refuses a client certificate from any other CA. An edge agent that cannot trust the
broker keeps its samples, counts the failed attempts, says why once in its log, and runs on.

The broker is deploy/mosquitto with a certificate made as docs/deploy.md makes it: the name
edges dial (``broker.binh-duong.plant``) and, so that a test can reach it, the loopback address --
but not ``localhost``, which stands here for a wrong name that still reaches the broker.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from pw_deploy import SITE_A, DeployedBroker, deployed_broker, make_certs
from pw_mqtt import sim_site
from pydantic import SecretStr

from edge.agent import EdgeAgent
from plantwire.config import load_site
from plantwire.config.models import MqttConfig, TlsFiles
from plantwire.mqtt import AsyncMqtt, MqttUnavailable
from plantwire.testing.servers import free_port
from simulators.modbus_server import ModbusPlantServer
from simulators.plant import Plant
from simulators.runner import SimRunner
from simulators.scenario import bundled_scenario, load_scenario

pytestmark = pytest.mark.servers

BROKER_NAME = f"broker.{SITE_A}.plant"
EDGE_USER = f"edge-{SITE_A}"
VERIFY_FAILED = "certificate verify failed"


@dataclass(frozen=True)
class Pki:
    """The deployment's CA (``broker.tls``) and a rogue one: another CA of the same make, with a
    client certificate of its own, that no part of the deployment trusts."""

    broker: DeployedBroker
    rogue: Path

    @property
    def ca(self) -> Path:
        return self.broker.tls / "ca.crt"

    def client(self) -> tuple[Path, Path]:
        return self.broker.tls / "client.crt", self.broker.tls / "client.key"

    def rogue_client(self) -> tuple[Path, Path]:
        return self.rogue / "client.crt", self.rogue / "client.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    root = tmp_path_factory.mktemp("tls-broker")
    rogue = root / "rogue"
    for args in (["ca"], ["client", "client"]):
        made = make_certs(rogue, *args)
        assert made.returncode == 0, made.stderr
    with deployed_broker(root / "broker", (f"DNS:{BROKER_NAME}", "IP:127.0.0.1")) as broker:
        yield Pki(broker, rogue)


# An MQTT 3.1.1 CONNECT without credentials: whatever the broker answers proves it accepted the
# TLS session; a refused client certificate is reported in its place.
ANONYMOUS_CONNECT = b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04test"
CONNACK = 0x20


def tls_exchange(pki: Pki, *, ca: Path, client: tuple[Path, Path], server_hostname: str) -> bytes:
    """A bare TLS connection to the broker (TCP to the loopback address, ``server_hostname`` as
    the name checked and sent) and the broker's first answer to an anonymous CONNECT. A refusal
    by either side raises: with TLS 1.3 the broker's verdict on the client certificate arrives
    after the handshake, so the client reads it with that first answer."""
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(*map(str, client))
    with (
        socket.create_connection(("127.0.0.1", pki.broker.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        tls.sendall(ANONYMOUS_CONNECT)
        return tls.recv(4)


def mqtt_config(pki: Pki, host: str, *, ca: Path, check_hostname: bool = True) -> MqttConfig:
    cert, key = pki.client()
    return MqttConfig(
        url=f"mqtts://{host}:{pki.broker.port}",
        username=EDGE_USER,
        password=SecretStr(pki.broker.password("edge", SITE_A)),
        tls=TlsFiles(ca_file=ca, cert_file=cert, key_file=key, check_hostname=check_hostname),
    )


async def try_connect(config: MqttConfig) -> str:
    """'connected', or the reason PlantWire's MQTT client gives for not connecting."""
    client = AsyncMqtt(config, f"tls-test-{uuid.uuid4().hex[:8]}")
    try:
        await client.connect(timeout_s=10)
    except MqttUnavailable as exc:
        return str(exc)
    await client.disconnect()
    return "connected"


def test_the_broker_and_its_clients_check_each_others_certificates(pki: Pki) -> None:
    right, rogue = pki.client(), pki.rogue_client()
    # Positive controls: the right CA, client certificate and name get as far as MQTT (whose
    # answer refuses the anonymous login).
    for name in (BROKER_NAME, "127.0.0.1"):
        answer = tls_exchange(pki, ca=pki.ca, client=right, server_hostname=name)
        assert answer[:1] == bytes([CONNACK]), answer

    # The client does not trust the CA that signed the broker's certificate.
    with pytest.raises(ssl.SSLCertVerificationError, match=VERIFY_FAILED):
        tls_exchange(pki, ca=pki.rogue / "ca.crt", client=rogue, server_hostname=BROKER_NAME)
    # The right CA, but the certificate names another broker (the one of site long-an).
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        tls_exchange(pki, ca=pki.ca, client=right, server_hostname="broker.long-an.plant")
    # The broker does not trust the CA that signed the client's certificate: it hangs up (with
    # an "unknown ca" alert, or, as Mosquitto 2.0.11 over TLS 1.3 does, without one) instead
    # of answering the CONNECT.
    try:
        answer = tls_exchange(pki, ca=pki.ca, client=rogue, server_hostname=BROKER_NAME)
    except (ssl.SSLError, ConnectionError):
        answer = b""
    assert answer == b""


def test_an_mqtt_client_without_the_brokers_ca_is_refused_before_it_logs_in(pki: Pki) -> None:
    """paho, as tools like mosquitto_sub use it: the system's CAs, or another CA, do not vouch
    for the PlantWire broker, so the password is never sent."""
    for ca in (None, pki.rogue / "ca.crt"):
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.tls_set(ca_certs=None if ca is None else str(ca))
        client.username_pw_set(EDGE_USER, pki.broker.password("edge", SITE_A))
        with pytest.raises(ssl.SSLCertVerificationError, match=VERIFY_FAILED):
            client.connect("127.0.0.1", pki.broker.port)


def test_plantwire_refuses_a_broker_it_cannot_trust(pki: Pki) -> None:
    rogue_ca = pki.rogue / "ca.crt"
    outcomes = asyncio.run(
        _outcomes(
            {
                "right CA and name": mqtt_config(pki, "127.0.0.1", ca=pki.ca),
                "rogue CA": mqtt_config(pki, "127.0.0.1", ca=rogue_ca),
                "name not in the certificate": mqtt_config(pki, "localhost", ca=pki.ca),
                # check_hostname: false waives the name only; the CA is still checked.
                "name waived": mqtt_config(pki, "localhost", ca=pki.ca, check_hostname=False),
                "name waived, rogue CA": mqtt_config(
                    pki, "localhost", ca=rogue_ca, check_hostname=False
                ),
            }
        )
    )
    url = f"mqtts://{{}}:{pki.broker.port}"
    assert outcomes["right CA and name"] == "connected"
    assert outcomes["name waived"] == "connected"
    # OpenSSL's own words follow; for a foreign CA they depend on the chain the broker sends.
    for case, host, why in (
        ("rogue CA", "127.0.0.1", VERIFY_FAILED),
        ("name not in the certificate", "localhost", "Hostname mismatch"),
        ("name waived, rogue CA", "localhost", VERIFY_FAILED),
    ):
        assert outcomes[case].startswith(f"cannot reach {url.format(host)}: "), outcomes[case]
        assert VERIFY_FAILED in outcomes[case] and why in outcomes[case], outcomes[case]


async def _outcomes(configs: dict[str, MqttConfig]) -> dict[str, str]:
    return {case: await try_connect(config) for case, config in configs.items()}


def test_an_edge_that_cannot_trust_the_broker_keeps_its_samples_and_says_why(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="plantwire")
    password = pki.broker.password("edge", SITE_A)
    monkeypatch.setenv("EDGE_MQTT_PASSWORD", password)
    cert, key = pki.client()
    plant = Plant(load_scenario(bundled_scenario()))
    modbus = ModbusPlantServer(plant, port=free_port())
    path, config = sim_site(tmp_path, modbus_port=modbus.port, mqtt_port=pki.broker.port)
    config["mqtt"] = {
        "url": f"mqtts://127.0.0.1:{pki.broker.port}",
        "username": EDGE_USER,
        "password": "${EDGE_MQTT_PASSWORD}",
        "tls": {"ca_file": str(pki.rogue / "ca.crt"), "cert_file": str(cert), "key_file": str(key)},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    agent = EdgeAgent(load_site(path), "edge-dairy", health_port=0)

    async def scenario() -> None:
        runner = SimRunner(plant, speed=10.0, modbus=modbus)
        await runner.start()
        plant_task = asyncio.create_task(runner.run())
        task = asyncio.create_task(agent.run())
        try:
            # Backoff starts at 0.1 s: several attempts fail within this time.
            for _ in range(100):
                await asyncio.sleep(0.1)
                if agent.forwarder.connect_failures >= 3 and agent.buffer.samples > 0:
                    break
            assert not task.done(), "the agent stopped instead of retrying"
        finally:
            for running in (task, plant_task):
                running.cancel()
            await asyncio.gather(task, plant_task, return_exceptions=True)
            await runner.stop()

    asyncio.run(scenario())
    assert agent.forwarder.connect_failures >= 3
    assert agent.registry.value("plantwire_edge_mqtt_connect_failures_total") >= 3
    assert agent.registry.value("plantwire_edge_mqtt_connected") == 0
    assert agent.forwarder.samples_published == 0 and agent.buffer.samples > 0
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and "MQTT broker unavailable" in r.getMessage()
    ]
    assert len(warnings) == 1, warnings  # once, not once per attempt
    assert VERIFY_FAILED in warnings[0] and f"127.0.0.1:{pki.broker.port}" in warnings[0]
    assert password not in caplog.text
