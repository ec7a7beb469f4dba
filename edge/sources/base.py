"""What every source driver offers the edge runtime, and the one error it raises.

A driver connects, delivers readings and closes. It sorts device trouble three ways:

* the transport is gone (refused, reset, timed out at the socket): raise :class:`NotConnected`;
  the runtime closes the driver, waits with jittered exponential backoff and connects again;
* the device is busy: the driver retries a bounded number of times itself;
* the device refuses a tag (illegal address or value, bad status): that tag's sample gets bad
  quality, the driver logs it once (and once more when it recovers), the connection stays.

Readings go to a :data:`SampleSink` -- a plain function the runtime provides, called in the event
loop with one machine's samples at a time. It must be fast and must not block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from plantwire.config.common import SourceConfig
from plantwire.model import AssetPath, Sample

__all__ = ["NotConnected", "SampleSink", "Source", "SourceStats", "SourceTarget"]

ConfigT_co = TypeVar("ConfigT_co", bound=SourceConfig, covariant=True)

SampleSink = Callable[[AssetPath, Sequence[Sample]], None]


class NotConnected(Exception):  # noqa: N818 - the name drivers and runtime share, as in Benthos
    """The source's transport is gone; the runtime reconnects."""


@dataclass(frozen=True)
class SourceTarget(Generic[ConfigT_co]):
    """One machine's part of a source: which asset its samples belong to and its source block
    (a ``ModbusSource``, an ``OpcuaSource``: the driver's own config model)."""

    asset: AssetPath
    config: ConfigT_co
    clock_metric: str | None = None  # a PLC clock tag stamping this machine's samples


@dataclass
class SourceStats:
    """Counters a driver keeps for the health endpoint."""

    reads: int = 0  # requests sent (Modbus) or notifications handled (OPC UA)
    samples: int = 0  # samples delivered to the sink
    errors: dict[str, int] = field(default_factory=dict)  # by kind: transport, busy, illegal, ...
    connected: bool = False

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class Source(Protocol):
    """A connection to one endpoint, serving one or more machines."""

    name: str  # for logs and metrics, e.g. "modbus tcp://10.20.1.11:502"
    stats: SourceStats

    async def connect(self) -> None:
        """Open the connection; raise NotConnected if it cannot be opened."""

    async def run(self, sink: SampleSink) -> None:
        """Deliver readings until cancelled; raise NotConnected when the transport is lost."""

    async def close(self) -> None:
        """Release the connection; never raises."""
