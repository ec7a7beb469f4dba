"""A machine's signal history from the store, as arrays or a pandas DataFrame: what data
scientists train and study anomaly models on.

    from plantwire.config import load_site
    from plantwire.store.open import open_store
    from analytics.history import load_history

    site = load_site("site.yaml")
    with open_store(site) as store:
        history = load_history(site, store, "dairy/filling/filler",
                               start="2026-11-16T06:00", end="2026-11-16T22:00")
    history.values        # rows x signals, float64, gaps filled forward
    history.signals       # the column names
    history.to_dataframe()  # with a DatetimeIndex (needs pandas)

The signals are the machine's numeric process signals: its tags minus its OEE signals (state,
counters, energy meter, product), its PLC clock and its on/off bits. Samples of different poll
groups arrive at different times; each row carries every signal's latest value (filled forward),
and rows before every signal has been seen once are left out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from analytics.anomaly.base import fill_forward
from analytics.calendar import parse_moment
from analytics.telemetry import MEASUREMENT, MachineRef, line_machines
from plantwire.config.models import DataType, ModbusTag, RegisterTable, SiteConfig
from plantwire.errors import PlantWireError
from plantwire.store.base import Store

__all__ = ["History", "HistoryError", "find_machine", "load_history", "signal_names"]


class HistoryError(PlantWireError):
    """No such machine, or no usable history in the range."""


@dataclass(frozen=True, eq=False)
class History:
    machine: str  # area/line/machine
    signals: list[str]
    time_ns: np.ndarray
    values: np.ndarray  # rows x signals
    # Per signal, the time of its last sample in the range (before filling forward): how far
    # each signal's data has arrived.
    last_seen_ns: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.time_ns)

    def to_dataframe(self) -> Any:
        """A pandas DataFrame indexed by UTC time (pandas is not a PlantWire dependency)."""
        try:
            import pandas as pd  # type: ignore[import-untyped]  # optional, not a dependency
        except ImportError:
            raise HistoryError("to_dataframe needs pandas: pip install pandas") from None
        index = pd.to_datetime(self.time_ns, unit="ns", utc=True)
        return pd.DataFrame(self.values, index=index, columns=self.signals)


def find_machine(site: SiteConfig, path: str) -> MachineRef:
    """A machine by ``area/line/machine`` (or its id alone, when that is unique)."""
    refs = [ref for refs in line_machines(site).values() for ref in refs]
    matches = [r for r in refs if path in (r.path, r.machine.id)]
    if len(matches) != 1:
        known = ", ".join(r.path for r in refs)
        what = "is ambiguous" if matches else "is not in the site file"
        raise HistoryError(f"machine {path!r} {what} (machines: {known})")
    return matches[0]


def signal_names(ref: MachineRef) -> list[str]:
    """The machine's numeric process signals (see the module docstring)."""
    oee = ref.machine.oee
    excluded = {
        oee.state,
        oee.good_count,
        oee.reject_count,
        oee.total_count,
        oee.energy_kwh,
        oee.product,
        ref.machine.clock_metric,
    }
    names: list[str] = []
    for source in ref.machine.sources:
        for tag in source.tags:
            if tag.metric in excluded or tag.metric in names:
                continue
            if isinstance(tag, ModbusTag) and _not_a_process_value(tag):
                continue
            names.append(tag.metric)
    return names


def _not_a_process_value(tag: ModbusTag) -> bool:
    """An on/off bit or a text register: nothing an anomaly model learns from."""
    bits = (RegisterTable.COIL, RegisterTable.DISCRETE)
    return tag.table in bits or tag.type in (DataType.STRING, DataType.BIT)


def load_history(
    site: SiteConfig,
    store: Store,
    machine: str,
    *,
    start: str | int,
    end: str | int,
    signals: list[str] | None = None,
) -> History:
    """The machine's signals over ``[start, end)`` (ns, or text as ``plantwire oee`` takes it)."""
    ref = find_machine(site, machine)
    now = time.time_ns()
    zone = site.site.timezone
    start_ns = start if isinstance(start, int) else parse_moment(start, zone, now)
    end_ns = end if isinstance(end, int) else parse_moment(end, zone, now)
    names = signals or signal_names(ref)
    if not names:
        raise HistoryError(f"{ref.path} has no numeric process signals to learn from")
    block = store.read(MEASUREMENT, names, tags=ref.tags, start_ns=start_ns, end_ns=end_ns)
    numeric = [n for n in names if block.fields[n].dtype != object]
    if not numeric:
        raise HistoryError(f"{ref.path}: none of {', '.join(names)} holds numbers")
    values = (
        np.column_stack([block.fields[n] for n in numeric])
        if len(block)
        else np.empty((0, len(numeric)))
    )
    # Signals never seen in the range carry no information: leave them out.
    seen = (
        np.asarray(~np.isnan(values).all(axis=0)) if len(values) else np.zeros(len(numeric), bool)
    )
    numeric = [n for n, keep in zip(numeric, seen.tolist(), strict=True) if keep]
    values = values[:, seen]
    last_seen = _last_seen(block.time_ns, values)
    values = fill_forward(values)
    complete = ~np.isnan(values).any(axis=1)
    if not complete.any():
        raise HistoryError(
            f"{ref.path}: no history between the given times (read {len(block)} points)"
        )
    return History(ref.path, numeric, block.time_ns[complete], values[complete], last_seen)


def _last_seen(time_ns: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each column, the time of its last non-missing value (every column has one)."""
    if not len(values):
        return np.zeros(values.shape[1], dtype=np.int64)
    present = ~np.isnan(values)
    last_row = len(values) - 1 - np.argmax(present[::-1], axis=0)
    return np.asarray(np.asarray(time_ns)[last_row])
