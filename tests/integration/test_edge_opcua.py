"""The OPC UA source driver against the simulated plant's real asyncua server, over real sockets:
subscriptions with plant-time stamps, Bad status in a sensor dropout, a server restart survived
by reconnecting, large tag sets split across subscriptions, poll mode, message security and
identity, refused nodes, heartbeats, and ``plantwire edge browse``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from asyncua import ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from edge.browse import add_browse_arguments, browse, main_browse
from edge.sources.base import NotConnected, SourceTarget
from edge.sources.opcua import OpcuaSourceDriver
from plantwire.config.models import OpcuaSource, OpcuaTag
from plantwire.model import AssetPath, Quality, Sample
from plantwire.names import check_metric_name
from plantwire.testing.servers import free_port
from simulators.opcua_server import OpcuaPlantServer, node_id
from simulators.plant import Plant
from simulators.scenario import bundled_scenario, load_scenario

DEMO = load_scenario(bundled_scenario())
SITE = DEMO.site.id
CNC1 = "machining/cell-1/cnc-1"
FILLER = "dairy/filling/filler"
CAPPER = "dairy/filling/capper"
PASSWORD = "pw-Xq93-only-here"


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


def asset(path: str) -> AssetPath:
    area, line, machine = path.split("/")
    return AssetPath(SITE, area, line, machine)


def target(endpoint: str, path: str, metrics: Sequence[str], **extra: Any) -> SourceTarget:
    """A machine read over OPC UA, with short intervals so tests are quick."""
    tags = [{"metric": metric, "node": node_id(path, metric)} for metric in metrics]
    config = {
        "protocol": "opcua",
        "endpoint": endpoint,
        "publishing_interval_ms": 100,
        "sampling_interval_ms": 100,
        "timeout_s": 3,
        "tags": tags,
        **extra,
    }
    return SourceTarget(asset=asset(path), config=OpcuaSource.model_validate(config))


class Recorder:
    """The sink: every call, as it came."""

    def __init__(self) -> None:
        self.calls: list[tuple[AssetPath, list[Sample]]] = []

    def __call__(self, asset: AssetPath, samples: Sequence[Sample]) -> None:
        self.calls.append((asset, list(samples)))

    def samples(self, path: str, metric: str) -> list[Sample]:
        return [
            s for a, batch in self.calls if a == asset(path) for s in batch if s.metric == metric
        ]

    def count(self) -> int:
        return sum(len(batch) for _, batch in self.calls)


async def pump(plant: Plant, server: OpcuaPlantServer, seconds: float, every: float = 0.1) -> None:
    """Run the plant one step per ``every`` seconds of wall time, serving each step."""
    for _ in range(round(seconds / every)):
        plant.step()
        await server.update()
        await asyncio.sleep(every)


async def started(plant: Plant, port: int | None = None, **options: Any) -> OpcuaPlantServer:
    server = OpcuaPlantServer(plant, port=port or free_port(), **options)
    await server.start()
    return server


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    for _ in range(round(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def stop(task: asyncio.Task[None], driver: OpcuaSourceDriver) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await driver.close()


def test_subscription_delivers_plant_time_grouped_per_machine() -> None:
    plant = Plant(DEMO)
    metrics = ["state", "good_count", "motor_current", "running", "product"]

    async def scenario() -> None:
        server = await started(plant)
        paths = [FILLER, CAPPER, CNC1]
        driver = OpcuaSourceDriver([target(server.endpoint, p, metrics) for p in paths])
        sink = Recorder()
        try:
            await driver.connect()
            task = asyncio.create_task(driver.run(sink))
            await pump(plant, server, 1.5)
            await stop(task, driver)
        finally:
            await server.stop()
        for path in paths:
            for metric in metrics:
                assert sink.samples(path, metric), (path, metric)
            first = next(batch for a, batch in sink.calls if a == asset(path))
            assert [s.metric for s in first] == metrics  # one call per machine, in tag order
        for _, batch in sink.calls:
            for sample in batch:
                assert sample.quality is Quality.GOOD
                assert plant.t0 <= sample.ts_ns / 1e9 <= plant.now  # plant time, not wall time
        assert isinstance(sink.samples(FILLER, "good_count")[0].value, int)
        assert isinstance(sink.samples(FILLER, "running")[0].value, bool)
        assert isinstance(sink.samples(FILLER, "product")[0].value, str)
        assert driver.stats.samples == sink.count()
        assert driver.stats.reads >= 2 and driver.subscription_count == 0  # closed

    run(scenario)


def test_dropout_arrives_as_bad_quality_and_recovers() -> None:
    plant = Plant(DEMO)
    plant.advance(6 * 3600 - 4)  # cnc-1's coolant_temp drops out at 6h for 20 minutes

    async def scenario() -> None:
        server = await started(plant)
        driver = OpcuaSourceDriver([target(server.endpoint, CNC1, ["coolant_temp", "state"])])
        sink = Recorder()
        try:
            await driver.connect()
            task = asyncio.create_task(driver.run(sink))
            await pump(plant, server, 1.0)  # through 6h
            plant.advance(20 * 60 + 5)  # past the dropout
            await pump(plant, server, 0.5)
            await stop(task, driver)
        finally:
            await server.stop()
        qualities = [s.quality for s in sink.samples(CNC1, "coolant_temp")]
        assert qualities[0] is Quality.GOOD and qualities[-1] is Quality.GOOD
        assert Quality.BAD in qualities
        for sample in sink.samples(CNC1, "coolant_temp"):
            if sample.quality is Quality.BAD:
                assert sample.value is None
            else:
                assert isinstance(sample.value, float) and math.isfinite(sample.value)
        assert {s.quality for s in sink.samples(CNC1, "state")} == {Quality.GOOD}

    run(scenario)


def test_a_server_restart_is_survived_with_new_subscriptions() -> None:
    plant = Plant(DEMO)

    async def supervise(driver: OpcuaSourceDriver, sink: Recorder, lost: list[str]) -> None:
        while True:
            try:
                await driver.connect()
                await driver.run(sink)
            except NotConnected as exc:
                lost.append(str(exc))
                await driver.close()
                await asyncio.sleep(0.2)

    async def scenario() -> None:
        port = free_port()
        server = await started(plant, port)
        driver = OpcuaSourceDriver([target(server.endpoint, FILLER, ["state", "motor_current"])])
        sink, lost = Recorder(), []
        task = asyncio.create_task(supervise(driver, sink, lost))
        try:
            await pump(plant, server, 0.8)
            assert sink.count() and not lost
            await server.stop()
            await until(lambda: bool(lost))
            before = len(sink.samples(FILLER, "motor_current"))
            stopped_at = plant.now
            server = await started(plant, port)  # a new server process, as after a PLC reboot
            await until(lambda: driver.stats.connected and driver.subscription_count == 1)
            await pump(plant, server, 0.8)
            after = sink.samples(FILLER, "motor_current")[before:]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await driver.close()
            await server.stop()
        assert len(after) >= 5  # values flow again, through new subscriptions
        assert after[-1].ts_ns / 1e9 == pytest.approx(plant.now, abs=1.0)
        assert all(s.ts_ns / 1e9 >= stopped_at for s in after)
        assert "lost" in lost[0] or "refused" in lost[0]

    run(scenario)


def test_many_tags_are_split_across_subscriptions() -> None:
    plant = Plant(DEMO)
    values = plant.values(0)
    filler = [m for m in values if m != "plc_clock_ns"]
    capper = [m for m in plant.values(1) if m != "plc_clock_ns"][: 40 - len(filler)]

    async def scenario() -> None:
        server = await started(plant)
        options = {"max_items_per_subscription": 7}
        driver = OpcuaSourceDriver(
            [
                target(server.endpoint, FILLER, filler, **options),
                target(server.endpoint, CAPPER, capper, **options),
            ]
        )
        sink = Recorder()
        try:
            await driver.connect()
            task = asyncio.create_task(driver.run(sink))
            await pump(plant, server, 0.8)
            count = driver.subscription_count
            await stop(task, driver)
        finally:
            await server.stop()
        assert len(filler) + len(capper) == 40
        assert count == math.ceil(40 / 7)
        for path, metrics in ((FILLER, filler), (CAPPER, capper)):
            for metric in metrics:
                assert sink.samples(path, metric), (path, metric)

    run(scenario)


def test_poll_mode_reads_every_tag_each_interval_in_one_request() -> None:
    plant = Plant(DEMO)
    metrics = ["state", "good_count", "motor_current", "estop_ok"]

    async def scenario() -> None:
        server = await started(plant)
        options = {"mode": "poll", "poll_interval_s": 0.25}
        driver = OpcuaSourceDriver(
            [
                target(server.endpoint, FILLER, metrics, **options),
                target(server.endpoint, CNC1, metrics, **options),
            ]
        )
        sink = Recorder()
        try:
            await driver.connect()
            task = asyncio.create_task(driver.run(sink))
            await pump(plant, server, 1.2)
            await stop(task, driver)
        finally:
            await server.stop()
        polls = driver.stats.reads  # one Read request per poll for all 8 tags
        assert 4 <= polls <= 7
        assert driver.stats.samples == sink.count() == polls * 8
        assert [len(batch) for _, batch in sink.calls] == [4] * (2 * polls)
        assert all(s.quality is Quality.GOOD for _, batch in sink.calls for s in batch)

    run(scenario)


async def _certificate(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}-key.pem", folder / f"{name}-cert.der"
    await setup_self_signed_certificate(
        key, cert, f"urn:plantwire:{name}", "localhost", [ExtendedKeyUsageOID.CLIENT_AUTH],
        {"commonName": name},
    )  # fmt: skip
    return key, cert


def test_security_trust_and_identity(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="asyncua")
    plant = Plant(DEMO)
    errors: list[NotConnected] = []

    async def attempt(
        endpoint: str, key: Path, cert: Path, trust: list[Path], password: str
    ) -> list[Sample]:
        config = {
            "security": {
                "mode": "SignAndEncrypt",
                "cert_file": str(cert),
                "key_file": str(key),
                "trust": [str(p) for p in trust],
            },
            "username": "plantwire",
            "password": password,
        }
        driver = OpcuaSourceDriver([target(endpoint, FILLER, ["state"], **config)])
        sink = Recorder()
        try:
            await driver.connect()
        except NotConnected as exc:
            errors.append(exc)
            raise
        task = asyncio.create_task(driver.run(sink))
        await until(lambda: bool(sink.calls))
        await stop(task, driver)
        return sink.samples(FILLER, "state")

    async def scenario() -> None:
        key, cert = await _certificate(tmp_path, "edge")
        stranger_key, stranger_cert = await _certificate(tmp_path, "stranger")
        server = await started(
            plant,
            security="SignAndEncrypt",
            cert_dir=tmp_path / "pki",
            trusted_clients=[cert],
            users={"plantwire": PASSWORD},
        )
        assert server.certificate_path is not None
        trusted = tmp_path / "trusted"  # a folder holding the server certificate as PEM
        trusted.mkdir()
        pem = x509.load_der_x509_certificate(server.certificate_path.read_bytes())
        (trusted / "simulator.pem").write_bytes(pem.public_bytes(Encoding.PEM))
        try:
            samples = await attempt(server.endpoint, key, cert, [trusted], PASSWORD)
            assert samples and samples[0].quality is Quality.GOOD
            with pytest.raises(NotConnected, match="server certificate is not trusted") as info:
                await attempt(server.endpoint, key, cert, [stranger_cert], PASSWORD)
            assert "PlantWire simulator" in str(info.value) and "thumbprint" in str(info.value)
            with pytest.raises(NotConnected, match="client certificate"):
                await attempt(server.endpoint, stranger_key, stranger_cert, [trusted], PASSWORD)
            with pytest.raises(NotConnected, match="refused user 'plantwire'"):
                await attempt(server.endpoint, key, cert, [trusted], "wrong-" + PASSWORD)
        finally:
            await server.stop()
        # An unencrypted channel sends the password in plain text; it must not reach the logs.
        server = await started(plant, users={"plantwire": PASSWORD})
        try:
            driver = OpcuaSourceDriver(
                [
                    target(
                        server.endpoint, FILLER, ["state"], username="plantwire", password=PASSWORD
                    )
                ]
            )
            await driver.connect()
            await driver.close()
        finally:
            await server.stop()

    run(scenario)
    assert len(errors) == 3
    for error in errors:
        chain = f"{error} {error.__cause__!r} {error.__cause__}"
        assert PASSWORD not in chain
    assert "ActivateSessionRequest" in caplog.text  # asyncua's DEBUG output was captured
    assert PASSWORD not in caplog.text


def test_sign_and_encrypt_is_negotiated_and_an_unknown_server_gets_no_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An unknown server is refused before a session is opened (so before the password is sent),
    with a message that says where its certificate goes; done as it says, the same settings
    connect, over a channel that really is Basic256Sha256 SignAndEncrypt. A server offering no
    such endpoint is refused too: no quiet fallback to a weaker one."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="asyncua")
    plant = Plant(DEMO)
    trusted = tmp_path / "trusted"  # empty at first: the server is unknown
    trusted.mkdir()

    def sessions_opened() -> int:
        """ActivateSession requests asyncua logged at DEBUG: the one request with the password."""
        return sum("ActivateSessionRequest" in r.getMessage() for r in caplog.records)

    async def scenario() -> None:
        key, cert = await _certificate(tmp_path, "edge")
        settings = {
            "security": {
                "mode": "SignAndEncrypt",
                "cert_file": str(cert),
                "key_file": str(key),
                "trust": [str(trusted)],
            },
            "username": "plantwire",
            "password": PASSWORD,
        }
        secure = await started(
            plant,
            security="SignAndEncrypt",
            cert_dir=tmp_path / "pki",
            trusted_clients=[cert],
            users={"plantwire": PASSWORD},
        )
        plain = await started(plant, users={"plantwire": PASSWORD})
        try:
            for server in (secure, plain):
                driver = OpcuaSourceDriver([target(server.endpoint, FILLER, ["state"], **settings)])
                with pytest.raises(NotConnected) as refused:
                    await driver.connect()
                if server is secure:
                    assert "the server certificate is not trusted" in str(refused.value)
                    assert f"copy its certificate (DER or PEM) into {trusted}" in str(refused.value)
                else:
                    assert "offers no Basic256Sha256 SignAndEncrypt endpoint" in str(refused.value)
                    assert "(it offers: None None)" in str(refused.value)
                assert sessions_opened() == 0, f"a session was opened with {server.endpoint}"

            # As the refusal says: the server's certificate (as it sends it, DER) into the folder.
            assert secure.certificate_path is not None
            (trusted / "simulator.der").write_bytes(secure.certificate_path.read_bytes())
            driver = OpcuaSourceDriver([target(secure.endpoint, FILLER, ["state"], **settings)])
            sink = Recorder()
            await driver.connect()
            # The channel asyncua sends on, not just what was asked for.
            channel = driver._client.uaclient.protocol._connection.security_policy  # type: ignore[union-attr]
            assert channel.Mode == ua.MessageSecurityMode.SignAndEncrypt
            assert channel.URI.endswith("#Basic256Sha256")
            task = asyncio.create_task(driver.run(sink))
            await pump(plant, secure, 0.5)
            await until(lambda: bool(sink.samples(FILLER, "state")))
            await stop(task, driver)
            assert sessions_opened() == 1
        finally:
            await secure.stop()
            await plain.stop()

    run(scenario)
    assert PASSWORD not in caplog.text


def test_an_unknown_node_is_bad_once_and_the_rest_keeps_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="plantwire.edge.opcua")
    plant = Plant(DEMO)

    async def scenario() -> None:
        server = await started(plant)
        config = target(server.endpoint, FILLER, ["motor_current"]).config
        assert isinstance(config, OpcuaSource)
        tags = [*config.tags, OpcuaTag(metric="ghost", node="ns=2;s=dairy.filling.filler.ghost")]
        bad = SourceTarget(asset(FILLER), config.model_copy(update={"tags": tags}))
        driver = OpcuaSourceDriver([bad])
        sink = Recorder()
        try:
            for _ in range(2):  # the log line comes once, across reconnects too
                await driver.connect()
                task = asyncio.create_task(driver.run(sink))
                await pump(plant, server, 0.6)
                await stop(task, driver)
        finally:
            await server.stop()
        ghost = sink.samples(FILLER, "ghost")
        assert [(s.value, s.quality) for s in ghost] == [(None, Quality.BAD)] * 2
        assert len(sink.samples(FILLER, "motor_current")) >= 8
        warnings = [r.getMessage() for r in caplog.records if "ghost" in r.getMessage()]
        assert len(warnings) == 1
        assert (
            "BadNodeIdUnknown" in warnings[0] and "ns=2;s=dairy.filling.filler.ghost" in warnings[0]
        )

    run(scenario)


def test_heartbeat_repeats_a_value_that_does_not_change() -> None:
    plant = Plant(DEMO)

    async def scenario() -> None:
        server = await started(plant)
        config = target(server.endpoint, FILLER, ["estop_ok"]).config
        assert isinstance(config, OpcuaSource)
        tags = [config.tags[0].model_copy(update={"max_interval_s": 1.0})]
        driver = OpcuaSourceDriver(
            [SourceTarget(asset(FILLER), config.model_copy(update={"tags": tags}))]
        )
        sink = Recorder()
        try:
            await driver.connect()
            task = asyncio.create_task(driver.run(sink))
            await pump(plant, server, 3.5)
            await stop(task, driver)
        finally:
            await server.stop()
        samples = sink.samples(FILLER, "estop_ok")
        assert 3 <= len(samples) <= 5  # the first value, then one about every second
        assert all(s.value is True and s.quality is Quality.GOOD for s in samples)
        stamps = [s.ts_ns for s in samples]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)  # server time moves
        assert plant.t0 <= stamps[-1] / 1e9 <= plant.now

    run(scenario)


def test_the_timestamp_trigger_reports_every_refresh_of_an_unchanged_value() -> None:
    plant = Plant(DEMO)

    async def scenario() -> tuple[int, int]:
        server = await started(plant)
        config = target(server.endpoint, FILLER, ["estop_ok"]).config
        assert isinstance(config, OpcuaSource)
        every = config.tags[0].model_copy(update={"trigger": "status_value_timestamp"})
        on_change = config.tags[0].model_copy(update={"metric": "estop_again"})
        driver = OpcuaSourceDriver(
            [
                SourceTarget(
                    asset(FILLER),
                    config.model_copy(
                        update={"tags": [every, on_change], "sampling_interval_ms": 0.0}
                    ),
                )
            ]
        )
        sink = Recorder()
        steps_before = plant.version
        try:
            await driver.connect()
            task = asyncio.create_task(driver.run(sink))
            await pump(plant, server, 2.0)
            await stop(task, driver)
        finally:
            await server.stop()
        assert all(s.value is True for s in sink.samples(FILLER, "estop_ok"))
        steps = plant.version - steps_before
        return (
            len(sink.samples(FILLER, "estop_ok")),
            len(sink.samples(FILLER, "estop_again")),
            steps,
        )

    every_refresh, on_change_only, steps = asyncio.run(scenario())
    assert on_change_only == 1  # the value never changed: only the first report
    assert every_refresh >= steps * 0.9  # one per plant step the server wrote (the rest queued)


def test_browse_lists_tags_ready_for_a_site_file(capsys: pytest.CaptureFixture[str]) -> None:
    plant = Plant(DEMO)

    async def scenario() -> str:
        server = await started(plant)
        try:
            return await browse(server.endpoint)
        finally:
            await server.stop()

    text = asyncio.run(scenario())
    tags = yaml.safe_load(text)
    assert {"metric": "state", "node": "ns=2;s=dairy.filling.filler.state"} in tags
    served = sum(len(plant.values(i)) - 1 for i in range(len(plant.machines)))  # no plc clock
    assert len(tags) == served
    for tag in tags:
        check_metric_name(tag["metric"])
        OpcuaTag.model_validate(tag)
    assert "# binh-duong/dairy/filling/filler" in text
    assert {"metric": "good_count", "node": node_id(FILLER, "good_count"), "unit": "parts"} in tags

    parser = argparse.ArgumentParser()
    add_browse_arguments(parser)
    nobody = f"opc.tcp://127.0.0.1:{free_port()}/plantwire"
    assert main_browse(parser.parse_args([nobody, "--timeout", "2"])) == 2
    assert "connection refused" in capsys.readouterr().err
    assert main_browse(parser.parse_args([nobody, "--security", "Sign"])) == 2
    assert "needs cert_file and key_file" in capsys.readouterr().err


def test_close_without_connect_and_twice_is_harmless() -> None:
    driver = OpcuaSourceDriver([target("opc.tcp://127.0.0.1:1/x", FILLER, ["state"])])

    async def scenario() -> None:
        await driver.close()
        await driver.close()
        with pytest.raises(NotConnected, match="not connected"):
            await driver.run(Recorder())
        with pytest.raises(NotConnected, match="refused"):
            await driver.connect()
        await driver.close()

    run(scenario)
    assert driver.name == "opcua opc.tcp://127.0.0.1:1/x" and not driver.stats.connected
