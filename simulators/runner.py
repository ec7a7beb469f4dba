"""Run a plant against the wall clock: ``speed`` plant seconds per wall second, serving Modbus
and OPC UA as it goes and writing the truth file now and then and at the end."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from simulators.modbus_server import ModbusPlantServer
from simulators.opcua_server import OpcuaPlantServer
from simulators.plant import Plant

__all__ = ["SimRunner"]

log = logging.getLogger("plantwire.sim")
MAX_STEPS_PER_TURN = 200  # when behind, catch up in slices so the servers keep answering


class SimRunner:
    def __init__(
        self,
        plant: Plant,
        *,
        speed: float = 1.0,
        modbus: ModbusPlantServer | None = None,
        opcua: OpcuaPlantServer | None = None,
        truth_path: Path | None = None,
        truth_every_s: float = 5.0,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.plant = plant
        self.speed = speed
        self.modbus = modbus
        self.opcua = opcua
        self.truth_path = truth_path
        self.truth_every_s = truth_every_s

    async def start(self) -> None:
        if self.modbus:
            await self.modbus.start()
        if self.opcua:
            await self.opcua.start()

    async def stop(self) -> None:
        self.write_truth()
        if self.opcua:
            await self.opcua.stop()
        if self.modbus:
            await self.modbus.stop()

    def write_truth(self) -> None:
        if self.truth_path is not None:
            self.plant.write_truth(self.truth_path)

    async def run(self, duration_s: float | None = None) -> None:
        """Advance in step with the wall clock for ``duration_s`` plant seconds (None: forever)."""
        plant = self.plant
        wall0, plant0 = time.monotonic(), plant.now
        end = None if duration_s is None else plant0 + duration_s
        next_truth = wall0 + self.truth_every_s
        while end is None or plant.now < end:
            target = plant0 + (time.monotonic() - wall0) * self.speed
            if end is not None:
                target = min(target, end)
            steps = 0
            while plant.now + plant.step_s <= target + 1e-9 and steps < MAX_STEPS_PER_TURN:
                plant.step()
                steps += 1
                if self.opcua:
                    await self.opcua.update()
            if time.monotonic() >= next_truth:
                self.write_truth()
                next_truth = time.monotonic() + self.truth_every_s
            if steps >= MAX_STEPS_PER_TURN:
                await asyncio.sleep(0)
                continue
            wait = (plant.now + plant.step_s - plant0) / self.speed - (time.monotonic() - wall0)
            await asyncio.sleep(max(0.0, wait))
        self.write_truth()
