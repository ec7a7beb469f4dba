"""The plant served over Modbus TCP: one device per machine, registers as in
:mod:`simulators.registers`, refreshed from the model whenever a request reads them.

Devices can also be told to misbehave (answer busy, or an exception code) so the edge agent's
error handling can be tested against a real server.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Literal

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from plantwire.config.models import RegisterTable
from simulators.kinds import KINDS
from simulators.plant import Plant
from simulators.registers import RegisterImage, RegisterSlot, encode_image, machine_map, table_sizes

__all__ = ["DEVICES_PER_PORT", "Misbehaviour", "ModbusPlantServer", "modbus_address"]

STOP_TIMEOUT_S = 5.0
log = logging.getLogger("plantwire.sim.modbus")
# pymodbus logs every frame at debug level and a traceback for unknown device ids.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

_TABLE_OF_FUNCTION = {
    1: RegisterTable.COIL,
    2: RegisterTable.DISCRETE,
    3: RegisterTable.HOLDING,
    4: RegisterTable.INPUT,
}
EXCEPTION_CODES = {
    "illegal_function": ExcCodes.ILLEGAL_FUNCTION,
    "illegal_address": ExcCodes.ILLEGAL_ADDRESS,
    "illegal_value": ExcCodes.ILLEGAL_VALUE,
    "device_failure": ExcCodes.DEVICE_FAILURE,
    "busy": ExcCodes.DEVICE_BUSY,
}


@dataclass
class Misbehaviour:
    """Answer requests to a device (optionally only those touching ``addresses`` of ``table``)
    with an exception; ``remaining`` limits how many times (None: until cleared)."""

    code: str
    table: RegisterTable | None = None
    addresses: range | None = None
    remaining: int | None = None

    def applies(self, table: RegisterTable, start: int, count: int) -> bool:
        if self.table is not None and table != self.table:
            return False
        if self.addresses is not None and not (
            start < self.addresses.stop and self.addresses.start < start + count
        ):
            return False
        return self.remaining is None or self.remaining > 0


# Modbus unit ids run 1..247; a plant with more machines is served as several PLCs on
# consecutive ports, as a real site has several.
DEVICES_PER_PORT = 247


def modbus_address(machine: int, base_port: int) -> tuple[int, int]:
    """(port, device id) of a machine: 247 to a port, from ``base_port`` up."""
    return base_port + machine // DEVICES_PER_PORT, machine % DEVICES_PER_PORT + 1


class ModbusPlantServer:
    """Serve a :class:`Plant` on ``host:port`` (and the next ports beyond 247 machines); see
    :func:`modbus_address` for where each machine is."""

    def __init__(
        self,
        plant: Plant,
        host: str = "127.0.0.1",
        port: int = 5020,
        *,
        framer: Literal["socket", "rtu"] = "socket",
        serial_port: str | None = None,
        serial_parity: Literal["N", "E", "O"] = "E",
    ) -> None:
        """``framer="rtu"`` serves RTU framing over TCP (as serial gateways do); ``serial_port``
        serves RTU over that serial device instead of TCP (the first 247 machines)."""
        self.plant = plant
        self.host = host
        self.port = port
        self.framer = FramerType.RTU if framer == "rtu" else FramerType.SOCKET
        self.serial_port = serial_port
        self.serial_parity = serial_parity
        self.maps: list[list[RegisterSlot]] = [
            machine_map(KINDS[machine.spec.kind], machine.index) for machine in plant.machines
        ]
        self._images: dict[int, tuple[int, RegisterImage]] = {}
        self.misbehaviour: dict[int, Misbehaviour] = {}
        self.requests = 0
        self._servers: list[ModbusTcpServer | ModbusSerialServer] = []

    def _device(self, index: int) -> SimDevice:
        sizes = table_sizes(self.maps[index])

        def bits(count: int) -> list[SimData]:
            # Bit tables are packed 16 to a register; size them in whole registers of bits.
            return [SimData(0, values=[False] * (16 * ((count + 15) // 16)), datatype=SimType.BITS)]

        def registers(count: int) -> list[SimData]:
            return [SimData(0, count=count, values=0, datatype=SimType.REGISTERS)]

        return SimDevice(
            modbus_address(index, self.port)[1],
            simdata=(
                bits(sizes[RegisterTable.COIL]),
                bits(sizes[RegisterTable.DISCRETE]),
                registers(sizes[RegisterTable.HOLDING]),
                registers(sizes[RegisterTable.INPUT]),
            ),
            action=functools.partial(self._serve, index),
        )

    def image(self, index: int) -> RegisterImage:
        """The machine's registers for the plant's current step (encoded once per step)."""
        cached = self._images.get(index)
        if cached is not None and cached[0] == self.plant.version:
            return cached[1]
        image = encode_image(self.maps[index], self.plant.values(index))
        self._images[index] = (self.plant.version, image)
        return image

    async def _serve(  # noqa: PLR0917 (pymodbus calls actions with these positional arguments)
        self,
        index: int,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        self.requests += 1
        table = _TABLE_OF_FUNCTION.get(function_code)
        if table is None or set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION  # a simulated plant is read-only
        trouble = self.misbehaviour.get(index + 1)  # keyed by machine position + 1
        if trouble is not None and trouble.applies(table, address, count):
            if trouble.remaining is not None:
                trouble.remaining -= 1
            return EXCEPTION_CODES[trouble.code]
        source = self.image(index).table(table)
        if table in (RegisterTable.COIL, RegisterTable.DISCRETE):
            # Pack bits 16 to a register, lowest address in the lowest bit.
            for word in range(len(registers)):
                chunk = source[word * 16 : word * 16 + 16]
                registers[word] = sum(bit << position for position, bit in enumerate(chunk))
        else:
            offset = address - start_address
            registers[offset : offset + count] = source[address : address + count]
        return None

    async def start(self) -> None:
        # pymodbus binds its server to the running loop, so it is made here, not in __init__.
        machines = len(self.plant.machines)
        if self.serial_port is not None:
            devices = [self._device(index) for index in range(min(machines, DEVICES_PER_PORT))]
            serial = ModbusSerialServer(
                devices,
                port=self.serial_port,
                framer=FramerType.RTU,
                baudrate=19200,
                parity=self.serial_parity,
            )
            await serial.serve_forever(background=True)
            self._servers.append(serial)
            log.info("Modbus RTU on %s: %d devices", self.serial_port, len(devices))
            return
        for first in range(0, machines, DEVICES_PER_PORT):
            devices = [
                self._device(index)
                for index in range(first, min(machines, first + DEVICES_PER_PORT))
            ]
            address = (self.host, modbus_address(first, self.port)[0])
            server = ModbusTcpServer(devices, address=address, framer=self.framer)
            await server.serve_forever(background=True)
            self._servers.append(server)
        log.info(
            "Modbus TCP on %s port %s: %d devices (ids 1-%d per port)",
            self.host,
            ", ".join(
                str(modbus_address(i, self.port)[0])
                for i in range(0, len(self.maps), DEVICES_PER_PORT)
            ),
            len(self.maps),
            min(len(self.maps), DEVICES_PER_PORT),
        )

    async def stop(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            try:
                # pymodbus can wait on a half-closed client connection: a stop must not hang.
                await asyncio.wait_for(server.shutdown(), STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("Modbus server did not shut down within %.0f s", STOP_TIMEOUT_S)
