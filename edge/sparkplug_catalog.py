"""The bookkeeping of a Sparkplug B edge node, kept free of MQTT so it can be tested alone.

* :func:`device_id` names a machine as a Sparkplug device: ``"<area>:<line>:<machine>"``.
* :class:`MetricCatalog` knows every metric of every device: its alias (assigned once per
  process, unique across the node), its declared datatype and its last value. Learning a batch
  says whether the births are out of date (a new metric, or a datatype that changed).
* :class:`SeqCounter` is the message sequence number: 0 in an NBIRTH, +1 on every other message.
* :class:`BdSeqFile` is the birth/death sequence number, persisted next to the disk buffer so it
  grows across restarts as well as reconnections.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from plantwire.codec.sparkplug import (
    MAX_SEQ,
    DataType,
    Metric,
    datatype_for,
    metric_from_sample,
    next_seq,
)
from plantwire.config.models import DataType as TagType
from plantwire.config.models import Machine, ModbusTag
from plantwire.model import AssetPath, Sample, Value

__all__ = [
    "BdSeqFile",
    "MetricCatalog",
    "MetricInfo",
    "SeqCounter",
    "declared_datatype",
    "device_id",
    "machine_datatypes",
]

log = logging.getLogger("plantwire.edge.sparkplug")

# Before a metric's first value is seen: what a Modbus tag type reads as (scale or offset
# make every number a float). Other sources declare Double until a value says otherwise.
_TAG_DATATYPES = {
    TagType.BIT: DataType.Boolean,
    TagType.STRING: DataType.String,
    TagType.FLOAT32: DataType.Double,
    TagType.FLOAT64: DataType.Double,
}


def device_id(asset: AssetPath) -> str:
    """The Sparkplug device id of a machine; the gateway maps it back to the asset path.

    >>> device_id(AssetPath("bd", "dairy", "filling", "filler-1"))
    'dairy:filling:filler-1'
    """
    return f"{asset.area}:{asset.line}:{asset.machine}"


def declared_datatype(tag: object) -> DataType:
    """The datatype a configured tag is born with before any of its values is seen."""
    if not isinstance(tag, ModbusTag):
        return DataType.Double
    known = _TAG_DATATYPES.get(tag.data_type)
    if known is not None:
        return known
    scaled = tag.scale != 1.0 or tag.offset != 0.0
    return DataType.Double if scaled else DataType.Int64


def machine_datatypes(machine: Machine) -> dict[str, DataType]:
    """Every configured metric of a machine with the datatype it is born with."""
    return {tag.metric: declared_datatype(tag) for source in machine.sources for tag in source.tags}


def _fits(datatype: DataType, value: Value) -> bool:
    """Whether a value can be sent as ``datatype`` (an int goes out as a Double as well)."""
    if value is None:
        return True
    actual = datatype_for(value)
    return actual is datatype or (actual is DataType.Int64 and datatype is DataType.Double)


@dataclass(slots=True)
class MetricInfo:
    """What the node has told (or will tell) the host about one metric."""

    name: str
    alias: int
    datatype: DataType
    confirmed: bool = False  # the datatype came from a value, not from the configuration
    last: Sample | None = None


class MetricCatalog:
    """Metrics per device, in the order they became known (that is the order of the births)."""

    def __init__(self) -> None:
        self._devices: dict[str, dict[str, MetricInfo]] = {}
        self._next_alias = 1

    def add_device(self, device: str, datatypes: dict[str, DataType] | None = None) -> None:
        """Declare a device and its configured metrics (before any value is seen)."""
        metrics = self._devices.setdefault(device, {})
        for name, datatype in (datatypes or {}).items():
            if name not in metrics:
                metrics[name] = self._new(name, datatype)

    def _new(self, name: str, datatype: DataType) -> MetricInfo:
        alias, self._next_alias = self._next_alias, self._next_alias + 1
        return MetricInfo(name, alias, datatype)

    @property
    def devices(self) -> list[str]:
        return list(self._devices)

    def metrics(self, device: str) -> list[MetricInfo]:
        return list(self._devices.get(device, {}).values())

    def get(self, device: str, name: str) -> MetricInfo | None:
        return self._devices.get(device, {}).get(name)

    def learn(self, device: str, samples: Iterable[Sample]) -> bool:
        """Take in the metrics and datatypes of samples about to be sent; True when the births
        no longer describe them (a new device or metric, or a datatype that changed)."""
        changed = device not in self._devices
        metrics = self._devices.setdefault(device, {})
        for sample in samples:
            info = metrics.get(sample.metric)
            value = sample.value
            if info is None:
                datatype = DataType.Double if value is None else datatype_for(value)
                info = metrics[sample.metric] = self._new(sample.metric, datatype)
                info.confirmed = value is not None
                changed = True
            elif value is None:
                continue
            elif not info.confirmed:
                # The first value decides; the configuration was only a guess.
                info.confirmed = True
                if datatype_for(value) is not info.datatype:
                    info.datatype = datatype_for(value)
                    changed = True
            elif not _fits(info.datatype, value):
                info.datatype = datatype_for(value)
                changed = True
        return changed

    def remember(self, device: str, samples: Iterable[Sample]) -> None:
        """Keep the latest sample of each metric for the next births."""
        metrics = self._devices.get(device, {})
        for sample in samples:
            info = metrics.get(sample.metric)
            if info is not None and (info.last is None or sample.ts_ns >= info.last.ts_ns):
                info.last = sample

    def birth_metrics(self, device: str, timestamp_ms: int) -> tuple[Metric, ...]:
        """Every metric of a device with name, alias, datatype and last value (null if none)."""
        born: list[Metric] = []
        for info in self.metrics(device):
            last = info.last
            if last is not None and _fits(info.datatype, last.value):
                born.append(metric_from_sample(last, datatype=info.datatype, alias=info.alias))
            else:
                born.append(
                    Metric(
                        name=info.name,
                        alias=info.alias,
                        datatype=info.datatype,
                        value=None,
                        timestamp=timestamp_ms,
                    )
                )
        return tuple(born)

    def data_metrics(self, device: str, samples: Sequence[Sample]) -> tuple[Metric, ...]:
        """Samples as DDATA metrics: alias only, the declared datatype. Learn them first."""
        metrics = self._devices[device]
        out: list[Metric] = []
        for sample in samples:
            info = metrics[sample.metric]
            out.append(
                metric_from_sample(
                    sample, datatype=info.datatype, alias=info.alias, with_name=False
                )
            )
        return tuple(out)


class SeqCounter:
    """The ``seq`` of the node's messages: 0 in an NBIRTH, then +1 each message, 255 -> 0.

    >>> seq = SeqCounter()
    >>> seq.birth(), seq.next(), seq.next()
    (0, 1, 2)
    """

    def __init__(self) -> None:
        self._seq = 0

    def birth(self) -> int:
        self._seq = 0
        return 0

    def next(self) -> int:
        self._seq = next_seq(self._seq)
        return self._seq


class BdSeqFile:
    """The bdSeq of the connection being made, and of the last one that succeeded, on disk.

    :meth:`upcoming` is the value for the next CONNECT's will; :meth:`commit` records it once
    the broker has accepted the connection, so failed attempts do not use numbers up.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.last = self._read()

    def _read(self) -> int | None:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read bdSeq file %s (%s); starting from 0", self.path, exc)
            return None
        if text.isdigit() and int(text) <= MAX_SEQ:
            return int(text)
        log.warning("bdSeq file %s holds %r, not 0..255; starting from 0", self.path, text[:20])
        return None

    @property
    def upcoming(self) -> int:
        return 0 if self.last is None else next_seq(self.last)

    def commit(self, bdseq: int) -> None:
        """The connection with this bdSeq is up: remember it (atomically) for the next one."""
        self.last = bdseq
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            temporary.write_text(f"{bdseq}\n")
            os.replace(temporary, self.path)
        except OSError as exc:  # the session still works; only the next restart may repeat it
            log.warning("cannot write bdSeq file %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                temporary.unlink()
