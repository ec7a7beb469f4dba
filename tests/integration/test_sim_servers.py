"""The simulated plant over real sockets: a plain pymodbus client reads the whole register map and
decodes it (with a decoder written here, independent of the server's encoder) to the values the
model holds; an asyncua client subscribes, sees plant-time stamps and Bad status in a dropout;
security refuses clients without the right certificate or password."""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID
from pymodbus.client import AsyncModbusTcpClient

from plantwire.testing.servers import free_port
from simulators.kinds import KINDS
from simulators.modbus_server import Misbehaviour, ModbusPlantServer
from simulators.opcua_server import OpcuaPlantServer, node_id
from simulators.plant import Plant
from simulators.registers import machine_map
from simulators.scenario import bundled_scenario, load_scenario

DEMO = load_scenario(bundled_scenario())

# -- an independent decoder ------------------------------------------------------------------------
FORMATS = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "uint64": "Q",
    "float32": "f",
    "float64": "d",
}


def decode(registers: list[int], kind: str, order: str) -> Any:
    """Registers as sent, to a value: undo the byte order, then unpack big-endian."""
    words = list(registers)
    if order in ("CDAB", "DCBA"):
        words.reverse()
    raw = b"".join(w.to_bytes(2, "big") for w in words)
    if order in ("BADC", "DCBA"):
        raw = b"".join(raw[i : i + 2][::-1] for i in range(0, len(raw), 2))
    if kind == "string":
        return raw.rstrip(b"\0").decode()
    return struct.unpack(">" + FORMATS[kind], raw)[0]


def run(coroutine_factory: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(coroutine_factory())  # type: ignore[arg-type]


def test_every_type_and_byte_order_decodes_to_the_model_value() -> None:
    plant = Plant(DEMO)
    plant.advance(2 * 3600 + 17)  # mid-morning, faults under way (a stuck sensor, bearing wear)

    async def scenario() -> None:
        server = ModbusPlantServer(plant, port=free_port())
        await server.start()
        client = AsyncModbusTcpClient("127.0.0.1", port=server.port)
        await client.connect()
        seen: set[tuple[str, str]] = set()
        try:
            for machine in plant.machines:
                expected = plant.values(machine.index)
                device = machine.index + 1
                holding = (
                    await client.read_holding_registers(0, count=14, device_id=device)
                ).registers
                slots = machine_map(KINDS[machine.spec.kind], machine.index)
                inputs_count = max(s.address + s.count for s in slots if s.table == "input")
                inputs = (
                    await client.read_input_registers(0, count=inputs_count, device_id=device)
                ).registers
                coils = (await client.read_coils(0, count=2, device_id=device)).bits
                discrete = (await client.read_discrete_inputs(0, count=2, device_id=device)).bits
                for slot in slots:
                    want = expected[slot.metric]
                    if slot.type == "bit":
                        got: Any = (coils if slot.table == "coil" else discrete)[slot.address]
                        assert got is want, slot
                        continue
                    table = holding if slot.table == "holding" else inputs
                    got = decode(
                        table[slot.address : slot.address + slot.count],
                        str(slot.type),
                        str(slot.order),
                    )
                    seen.add((str(slot.type), str(slot.order) if slot.count > 1 else "-"))
                    if slot.type == "float32":
                        assert got == struct.unpack(">f", struct.pack(">f", want))[0] or (
                            math.isnan(got) and math.isnan(want)
                        ), slot
                    elif slot.scale != 1.0:
                        assert abs(got * slot.scale - want) <= slot.scale / 2 + 1e-9, (
                            slot,
                            got,
                            want,
                        )
                    else:
                        assert got == want, (slot, got, want)
        finally:
            client.close()
            await server.stop()
        for kind in ("int32", "uint32", "float32"):
            assert {order for k, order in seen if k == kind} == {"ABCD", "CDAB", "BADC", "DCBA"}, (
                kind
            )
        assert {"int16", "uint16", "float64", "uint64", "string"} <= {k for k, _ in seen}

    run(scenario)


def test_modbus_counters_agree_with_the_truth() -> None:
    plant = Plant(DEMO)
    plant.advance(16 * 3600)  # both shifts of Monday
    truth = plant.truth()

    async def scenario() -> None:
        server = ModbusPlantServer(plant, port=free_port())
        await server.start()
        client = AsyncModbusTcpClient("127.0.0.1", port=server.port)
        await client.connect()
        try:
            for machine in plant.machines:
                registers = (
                    await client.read_input_registers(0, count=14, device_id=machine.index + 1)
                ).registers
                good = decode(registers[0:2], "uint32", "ABCD")
                rejects = decode(registers[2:4], "uint32", "CDAB")
                run_seconds = decode(registers[10:12], "int32", "CDAB")
                rows = [r for r in truth["machines"] if r["machine"] == machine.path]
                start = machine.spec.counter_start
                assert good == (start + sum(r["good"] for r in rows)) % 2**32, machine.path
                assert rejects == (start // 97 + sum(r["rejects"] for r in rows)) % 2**32, (
                    machine.path
                )
                assert run_seconds == sum(
                    r["planned_s"] - r["long_stop_s"] - r["small_stop_s"] for r in rows
                )
        finally:
            client.close()
            await server.stop()

    run(scenario)


def test_devices_can_answer_busy_and_with_exceptions() -> None:
    plant = Plant(DEMO)

    async def scenario() -> None:
        server = ModbusPlantServer(plant, port=free_port())
        await server.start()
        client = AsyncModbusTcpClient("127.0.0.1", port=server.port, retries=0)
        await client.connect()
        try:
            server.misbehaviour[1] = Misbehaviour("busy", remaining=2)
            answers = [
                await client.read_holding_registers(0, count=2, device_id=1) for _ in range(3)
            ]
            assert [a.isError() for a in answers] == [True, True, False]
            assert answers[0].exception_code == 6  # server device busy
            server.misbehaviour[2] = Misbehaviour(
                "illegal_address", table="input", addresses=range(20, 30)
            )  # type: ignore[arg-type]
            bad = await client.read_input_registers(18, count=6, device_id=2)
            assert bad.isError() and bad.exception_code == 2
            fine = await client.read_input_registers(0, count=10, device_id=2)
            assert not fine.isError()
            beyond = await client.read_input_registers(0, count=125, device_id=3)
            assert beyond.isError() and beyond.exception_code == 2  # past the end of the map
        finally:
            client.close()
            await server.stop()

    run(scenario)


def test_opcua_subscription_sees_plant_time_and_bad_status_in_a_dropout() -> None:
    plant = Plant(DEMO)
    plant.advance(6 * 3600 - 20)  # cnc-1's coolant_temp drops out at 12:00 for 20 minutes

    async def scenario() -> None:
        server = OpcuaPlantServer(plant, port=free_port())
        await server.start()
        received: list[ua.DataValue] = []

        class Handler:
            def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
                received.append(data.monitored_item.Value)

        try:
            async with Client(server.endpoint) as client:
                node = client.get_node(node_id("machining/cell-1/cnc-1", "coolant_temp"))
                subscription = await client.create_subscription(50, Handler())
                await subscription.subscribe_data_change(node)
                for _ in range(60):  # 40 s of plant time through 12:00, in real time slices
                    plant.step()
                    await server.update()
                    await asyncio.sleep(0.06)
                await asyncio.sleep(0.3)
        finally:
            await server.stop()
        statuses = [dv.StatusCode.is_good() for dv in received]
        assert True in statuses and False in statuses
        first_bad = next(dv for dv in received if not dv.StatusCode.is_good())
        assert first_bad.StatusCode.value == ua.StatusCodes.BadSensorFailure
        stamps = [dv.SourceTimestamp.timestamp() for dv in received]
        assert stamps == sorted(stamps)
        assert plant.t0 + 6 * 3600 - 30 < stamps[-1] <= plant.now  # plant time, not wall time

    run(scenario)


async def _client_cert(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}-key.pem", folder / f"{name}-cert.der"
    await setup_self_signed_certificate(
        key,
        cert,
        f"urn:plantwire:{name}",
        "localhost",
        [ExtendedKeyUsageOID.CLIENT_AUTH],
        {"commonName": name},
    )
    return key, cert


def test_opcua_security_refuses_clients_without_the_certificate(tmp_path: Path) -> None:
    plant = Plant(DEMO)

    async def scenario() -> None:
        key, cert = await _client_cert(tmp_path, "edge")
        stranger_key, stranger_cert = await _client_cert(tmp_path, "stranger")
        server = OpcuaPlantServer(
            plant,
            port=free_port(),
            security="SignAndEncrypt",
            cert_dir=tmp_path / "pki",
            trusted_clients=[cert],
            users={"plantwire": "s3cret"},
        )
        await server.start()
        try:
            # No security at all: the server offers no such endpoint.
            with pytest.raises(Exception):  # noqa: B017 - asyncua raises several kinds here
                async with Client(server.endpoint, timeout=5):
                    pass

            async def secured(key: Path, cert: Path, password: str) -> Any:
                client = Client(server.endpoint, timeout=5)
                client.set_user("plantwire")
                client.set_password(password)
                await client.set_security_string(
                    f"Basic256Sha256,SignAndEncrypt,{cert},{key},{server.certificate_path}"
                )
                async with client:
                    return await client.get_node(
                        node_id("dairy/filling/filler", "state")
                    ).read_value()

            assert await secured(key, cert, "s3cret") in range(9)
            with pytest.raises(Exception):  # noqa: B017
                await secured(stranger_key, stranger_cert, "s3cret")  # untrusted certificate
            with pytest.raises(Exception):  # noqa: B017
                await secured(key, cert, "wrong")  # wrong password
        finally:
            await server.stop()

    run(scenario)
