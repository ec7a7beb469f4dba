"""The demo's live terminal view (rich): per line OEE with A / P / Q, machine states, samples per
second, samples buffered at the edge (they pile up during the link outage and drain after it),
and anomaly alerts beside the faults the simulator injected."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

from rich.console import Group
from rich.live import Live
from rich.table import Table

from demo.orchestra import DemoRun
from plantwire.states import MachineState

__all__ = ["render", "run_with_view"]

REFRESH_S = 0.5


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _lines(demo: DemoRun) -> Table:
    table = Table(title="OEE of the current shift (analytics)")
    for column in ("line", "A", "P", "Q", "OEE", "machines"):
        table.add_column(column)
    reports = {r.path: r for r in (demo.analytics.last_reports if demo.analytics else [])}
    plant = demo.plant
    for line in plant.scenario.lines:
        report = reports.get(line.path)
        figures = report.results[-1].figures if report is not None and report.results else None
        states = [
            f"{m.spec.id} {MachineState(int(plant.values(m.index)['state'])).name.lower()}"
            for m in plant.machines
            if m.line is line
        ]
        table.add_row(
            line.path,
            _pct(figures.availability if figures else None),
            _pct(figures.performance if figures else None),
            _pct(figures.quality if figures else None),
            _pct(figures.oee if figures else None),
            ", ".join(states),
        )
    return table


def _faults(demo: DemoRun) -> Table:
    table = Table(title="injected faults and anomaly alerts")
    for column in ("machine", "fault (simulator)", "alerts (analytics)"):
        table.add_column(column)
    plant = demo.plant
    alerts = demo.events.alerts
    machines = {e.path for e in plant.faults.episodes if e.start <= plant.now}
    machines |= {a["machine"] for a in alerts}
    for machine in sorted(machines):
        faults = [
            f"{e.kind} from {_clock(e.start, demo)}"
            for e in plant.faults.episodes
            if e.path == machine and e.start <= plant.now
        ]
        raised = [
            f"{a['event']} {_clock(int(a['time_ns']) / 1e9, demo)}"
            for a in alerts
            if a["machine"] == machine
        ]
        table.add_row(machine, ", ".join(faults) or "-", ", ".join(raised) or "-")
    return table


def _clock(seconds: float, demo: DemoRun) -> str:
    return datetime.fromtimestamp(seconds, demo.plant.zone).strftime("%H:%M:%S")


def render(demo: DemoRun, peak_buffered: int) -> Group:
    rate = sum(agent.reads_per_second() for agent in demo.agents)
    buffered = sum(agent.buffer.samples for agent in demo.agents)
    link = demo.link
    state = "OUTAGE" if link is not None and link.in_outage else "up"
    header = Table.grid(padding=(0, 3))
    header.add_row(
        f"plant time {_clock(demo.plant.now, demo)} ({demo.settings.speed:g}x)",
        f"link {demo.settings.link_profile}: {state}",
        f"{rate:,.0f} samples/s",
        f"buffered at the edge {buffered:,} (peak {peak_buffered:,})",
        f"models {len(demo.events.trained)}",
    )
    return Group(header, _lines(demo), _faults(demo))


async def run_with_view(demo: DemoRun) -> None:
    """Run the demo with the live view until it ends or is cancelled (Ctrl-C)."""
    task = asyncio.create_task(demo.run())
    peak = 0
    with Live(render(demo, peak), refresh_per_second=2) as live:
        try:
            while not task.done():
                peak = max(peak, sum(agent.buffer.samples for agent in demo.agents))
                live.update(render(demo, peak))
                await asyncio.wait({task}, timeout=REFRESH_S)
        finally:
            if not task.done():
                task.cancel()  # Ctrl-C: the demo stops cleanly on cancellation
            with contextlib.suppress(asyncio.CancelledError):
                await task
