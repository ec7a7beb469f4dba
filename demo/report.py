"""The demo's report: what the edge read beside what the store holds, each line's OEE beside the
simulator's truth, and the anomaly alerts beside the faults the simulator injected.

"Samples read" counts the samples the edge agents took from the PLCs and kept for sending, that
is after report by exception (which drops unchanged values on purpose; the demo's site sets no
deadbands, so it drops none, and the count of suppressed samples is reported beside it).
"Samples stored" counts the telemetry values in the store: per machine, metric and timestamp,
a value or, for a bad-quality sample without one, its quality. Both count each sample once, so
after a clean stop they are equal when nothing was lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from analytics.compute import compute_oee
from plantwire.names import QUALITY_SUFFIX
from plantwire.store.base import Store
from plantwire.store.open import store_name

if TYPE_CHECKING:
    from demo.orchestra import DemoRun
    from plantwire.config import SiteConfig

__all__ = ["build_report", "count_stored"]

NS = 1_000_000_000
FIGURES = ("availability", "performance", "quality", "oee")
ALERT_GRACE_NS = 10 * 60 * NS  # an alert up to 10 plant minutes after a fault ends is its alert


def count_stored(site: SiteConfig, store: Store, start_ns: int, end_ns: int) -> int:
    """Telemetry samples in the store between ``start_ns`` and ``end_ns``, each counted once."""
    total = 0
    for area, line, machine in site.machines():
        metrics = sorted({tag.metric for source in machine.sources for tag in source.tags})
        tags = {"site": site.site.id, "area": area.id, "line": line.id, "machine": machine.id}
        quality = [metric + QUALITY_SUFFIX for metric in metrics]
        block = store.read(
            "telemetry", [*metrics, *quality], tags=tags, start_ns=start_ns, end_ns=end_ns
        )
        for metric in metrics:
            total += int(
                np.count_nonzero(
                    _present(block.fields[metric]) | _present(block.fields[metric + QUALITY_SUFFIX])
                )
            )
    return total


def _present(column: np.ndarray) -> np.ndarray:
    if column.dtype == object:
        return np.array([value is not None for value in column], dtype=bool)
    present: np.ndarray = ~np.isnan(column)
    return present


def _edge(run: DemoRun) -> dict[str, Any]:
    nodes = {}
    for agent in run.agents:
        nodes[agent.node.id] = {
            "samples_read": run.distinct[agent.node.id].samples,
            "reads": agent.samples_read,
            "samples_suppressed": agent.rbe.suppressed,
            "samples_sent": run.distinct[agent.node.id].samples - agent.rbe.suppressed,
            "samples_published": agent.forwarder.samples_published,
            "samples_buffered": agent.buffer.samples,
            "samples_dropped": agent.buffer.dropped_samples,
        }
    return nodes


def _oee(run: DemoRun, truth: dict[str, Any], end_ns: int) -> list[dict[str, Any]]:
    reports = compute_oee(run.site, run.store, start_ns=run.t0_ns, end_ns=end_ns, now_ns=end_ns)
    rows = []
    for row in truth["lines"]:
        computed = next((r for r in reports if r.path == row["line"]), None)
        result = None
        if computed is not None:
            result = next(
                (
                    r
                    for r in computed.results
                    if r.window.start_ns <= row["start_ns"] < r.window.end_ns
                    or row["start_ns"] <= r.window.start_ns < row["end_ns"]
                ),
                None,
            )
        entry: dict[str, Any] = {"line": row["line"], "shift": row["shift"], "day": row["day"]}
        for figure in FIGURES:
            got = getattr(result.figures, figure) if result is not None else None
            entry[figure] = {
                "computed": got,
                "truth": row[figure],
                "difference": _minus(got, row[figure]),
            }
        entry["warnings"] = result.warnings if result is not None else ["no OEE computed"]
        rows.append(entry)
    return rows


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _faults(run: DemoRun, truth: dict[str, Any]) -> list[dict[str, Any]]:
    raised = [a for a in run.events.alerts if a.get("event") == "raised"]
    rows = []
    for fault in truth["faults"]:
        path = fault["machine"]
        alerts = [
            a
            for a in raised
            if a["machine"] == path
            and fault["start_ns"] <= int(a["time_ns"]) <= fault["end_ns"] + ALERT_GRACE_NS
        ]
        first = min((int(a["time_ns"]) for a in alerts), default=None)
        rows.append(
            {
                "machine": path,
                "kind": fault["kind"],
                "signals": fault["signals"],
                "start": fault["start"],
                "end": fault["end"],
                "alerted": bool(alerts),
                "first_alert_after_s": None if first is None else (first - fault["start_ns"]) / NS,
                "model": run.events.trained.get(path),
            }
        )
    return rows


def _false_alerts(run: DemoRun, truth: dict[str, Any]) -> int:
    """Raised alerts that match no injected fault (machine and time window)."""
    windows = [(f["machine"], f["start_ns"], f["end_ns"] + ALERT_GRACE_NS) for f in truth["faults"]]
    return sum(
        1
        for a in run.events.alerts
        if a.get("event") == "raised"
        and not any(
            a["machine"] == machine and start <= int(a["time_ns"]) <= end
            for machine, start, end in windows
        )
    )


def build_report(run: DemoRun, truth: dict[str, Any]) -> dict[str, Any]:
    """The report of a finished (or interrupted) run, as JSON-ready data."""
    end_ns = run.plant_ns() + NS  # the range is end-exclusive: include the last step
    edge = _edge(run)
    read = sum(node["samples_sent"] for node in edge.values())
    stored = count_stored(run.site, run.store, run.t0_ns - NS, end_ns)
    faults = _faults(run, truth)
    events = run.events
    return {
        "plant": {
            "scenario": truth.get("scenario"),
            "start": truth.get("start"),
            "end": truth.get("now"),
            "plant_seconds": run.plant_elapsed_s(),
            "speed": run.settings.speed,
            "interrupted": events.interrupted,
        },
        "store": store_name(run.site),
        "samples_read": read,
        "samples_stored": stored,
        "samples_missing": read - stored,
        "drained": events.drained,
        "edge": edge,
        "outage": None
        if events.outage is None
        else {"from_plant_s": events.outage[0], "to_plant_s": events.outage[1]},
        "oee": _oee(run, truth, end_ns),
        "models": {
            "detector": run.settings.detector,
            "trained": events.trained,
            "errors": events.training_errors,
        },
        "faults": faults,
        "faults_alerted": sum(1 for f in faults if f["alerted"]),
        "false_alerts": _false_alerts(run, truth),
        "alerts": events.alerts,
        "workdir": str(run.workdir),
    }
