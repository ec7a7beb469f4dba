"""Read what the OEE engine needs from the store: each machine's state, counters, energy meter and
product, as configured in its ``oee`` block, plus the ideal cycle times that apply to it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics.oee import CycleTimes, MachineData
from plantwire.config.models import Area, Line, Machine, SiteConfig
from plantwire.store.base import SeriesBlock, Store

__all__ = ["MEASUREMENT", "MachineRef", "cycle_times", "line_machines", "read_machine"]

MEASUREMENT = "telemetry"


@dataclass(frozen=True, slots=True)
class MachineRef:
    """Where a machine sits in the site, and its configuration."""

    site: str
    area: Area
    line: Line
    machine: Machine

    @property
    def tags(self) -> dict[str, str]:
        return {
            "site": self.site,
            "area": self.area.id,
            "line": self.line.id,
            "machine": self.machine.id,
        }

    @property
    def path(self) -> str:
        return f"{self.area.id}/{self.line.id}/{self.machine.id}"


def line_machines(site: SiteConfig) -> dict[str, list[MachineRef]]:
    """Machines per line path (``area/line``), in site-file order."""
    lines: dict[str, list[MachineRef]] = {}
    for area, line, machine in site.machines():
        lines.setdefault(f"{area.id}/{line.id}", []).append(
            MachineRef(site.site.id, area, line, machine)
        )
    return lines


def cycle_times(ref: MachineRef) -> CycleTimes:
    return CycleTimes(
        line_s=ref.line.ideal_cycle_time_s,
        by_product={p.id: p.ideal_cycle_time_s for p in ref.line.products},
        machine_s=ref.machine.ideal_cycle_time_s,
    )


def _column(block: SeriesBlock, name: str | None) -> tuple[np.ndarray, np.ndarray] | None:
    if name is None:
        return None
    values = block.fields[name]
    if values.dtype == object:
        present = np.array([v is not None for v in values], dtype=bool)
    else:
        present = ~np.isnan(values)
    return block.time_ns[present], values[present]


def read_machine(store: Store, ref: MachineRef, start_ns: int, end_ns: int) -> MachineData | None:
    """A machine's OEE signals in ``[start_ns, end_ns)``; None when it has no state signal
    configured (without states there is no availability to compute)."""
    signals = ref.machine.oee
    if signals.state is None:
        return None
    wanted = [
        name
        for name in (
            signals.state,
            signals.good_count,
            signals.reject_count,
            signals.total_count,
            signals.energy_kwh,
            signals.product,
        )
        if name is not None
    ]
    block = store.read(MEASUREMENT, wanted, tags=ref.tags, start_ns=start_ns, end_ns=end_ns)
    state = _column(block, signals.state)
    assert state is not None
    return MachineData(
        state=state,
        good=_column(block, signals.good_count),
        reject=_column(block, signals.reject_count),
        total=_column(block, signals.total_count),
        energy_kwh=_column(block, signals.energy_kwh),
        product=_column(block, signals.product),
    )
