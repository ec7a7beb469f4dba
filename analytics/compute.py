"""OEE of a site's lines and machines over a time range, read from the store.

Data is read wider than the range asked for (``margin``) so a state that began before it is known
at its start and a stop that crosses its edge is judged by its whole length; nothing after
``now_ns`` is read or counted, and nothing after the newest state sample read: that is where
knowledge ends (an edge that is still catching up after an outage fills it in later).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from analytics.calendar import Grouping, ShiftCalendar
from analytics.oee import OeeResult, OeeSettings, line_oee, machine_oee
from analytics.telemetry import MachineRef, cycle_times, line_machines, read_machine
from plantwire.config.models import SiteConfig
from plantwire.store.base import Store

__all__ = ["LineReport", "compute_oee", "settings_of"]

NS = 1_000_000_000
MARGIN_NS = 3600 * NS


@dataclass(slots=True)
class LineReport:
    """A line's OEE per window, with its machines' beside it."""

    path: str  # area/line
    ref: MachineRef  # the output machine (its area and line are the line's)
    results: list[OeeResult]
    machines: dict[str, list[OeeResult]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # machines without a state signal


def settings_of(site: SiteConfig) -> OeeSettings:
    rules = site.analytics
    return OeeSettings(
        small_stop_s=rules.small_stop_threshold_s,
        startup_s=rules.startup_s,
        max_gap_s=rules.max_gap_s,
    )


def _output_ref(refs: Sequence[MachineRef]) -> MachineRef:
    wanted = refs[0].line.output_machine
    return next((r for r in refs if r.machine.id == wanted), refs[-1])


def compute_oee(
    site: SiteConfig,
    store: Store,
    *,
    start_ns: int,
    end_ns: int,
    by: Grouping = "shift",
    lines: Sequence[str] | None = None,
    now_ns: int | None = None,
    margin_ns: int = MARGIN_NS,
) -> list[LineReport]:
    """OEE per line (``area/line`` or just the line id in ``lines``; all when None) and window."""
    calendar = ShiftCalendar(site.shifts, site.site.timezone)
    windows = calendar.windows(start_ns, end_ns if now_ns is None else min(end_ns, now_ns), by)
    read_from, read_to = start_ns - margin_ns, end_ns + margin_ns
    if now_ns is not None:
        read_to = min(read_to, now_ns)
    production = calendar.production(read_from, read_to)
    settings = settings_of(site)
    chosen = {
        path: refs
        for path, refs in line_machines(site).items()
        if not lines or path in lines or refs[0].line.id in lines
    }
    data = {
        ref.path: read_machine(store, ref, read_from, read_to)
        for refs in chosen.values()
        for ref in refs
    }
    # "Now" is the newest state sample read: past it nothing is known, and an open stop is
    # judged by its length so far (not stretched to the end of the range by missing data).
    newest = [int(d.state[0].max()) for d in data.values() if d is not None and len(d.state[0])]
    known_until = min(read_to, max(newest)) if newest else read_from
    reports = []
    for path, refs in chosen.items():
        output = _output_ref(refs)
        report = LineReport(path, output, [])
        for ref in refs:
            machine = data[ref.path]
            if machine is None:
                report.skipped.append(ref.machine.id)
                continue
            report.machines[ref.machine.id] = machine_oee(
                machine,
                windows,
                production,
                cycle_times(ref),
                settings=settings,
                from_ns=read_from,
                to_ns=known_until,
            )
        if output.machine.id in report.machines:
            report.results = line_oee(
                report.machines[output.machine.id], report.machines, output.machine.id
            )
        reports.append(report)
    return reports
