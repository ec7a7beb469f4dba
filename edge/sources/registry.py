"""The source drivers by protocol: one plain table, protocol -> the driver's class.

A driver is named by its import path and imported when a site first uses its protocol, so an
edge that reads only Modbus never imports asyncua. Each protocol here has its source block
model in :mod:`plantwire.config.sources`, whose ``connection_key`` says which machines share one
driver. Adding a protocol: docs/extending.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from edge.sources.base import Source, SourceTarget
from plantwire.registry import load_entry

__all__ = ["DRIVERS", "SourceDriver", "driver_for", "register_driver"]


class SourceDriver(Protocol):
    """What the registry gives: a class that makes one connection's driver from its targets."""

    def __call__(self, targets: Sequence[SourceTarget[Any]]) -> Source: ...


DRIVERS: dict[str, str | SourceDriver] = {
    "modbus": "edge.sources.modbus:ModbusSourceDriver",
    "opcua": "edge.sources.opcua:OpcuaSourceDriver",
}


def driver_for(protocol: str) -> SourceDriver:
    """The driver class of a protocol (imported on first use)."""
    return load_entry(DRIVERS, protocol)


def register_driver(protocol: str, driver: SourceDriver) -> None:
    """Add a driver at run time (a plugin, a test); its model goes to register_source."""
    DRIVERS[protocol] = driver
