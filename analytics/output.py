"""OEE results out: as ``oee`` points for the store (what Grafana draws), as JSON, and as the table
``plantwire oee`` prints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from analytics.compute import LineReport
from analytics.oee import OeeResult
from plantwire.lineprotocol import FieldValue, Point

__all__ = ["OEE_MEASUREMENT", "oee_points", "report_json", "report_table"]

OEE_MEASUREMENT = "oee"


def _fields(result: OeeResult, *, final: bool) -> dict[str, FieldValue]:
    f, losses = result.figures, result.losses
    fields: dict[str, FieldValue] = {
        "planned_s": result.planned_s,
        "run_s": result.run_s,
        "stop_s": result.stop_s,
        "ideal_time_s": result.ideal_time_s,
        "total_count": round(result.total),
        "good_count": round(result.good),
        "reject_count": round(result.rejects),
        "energy_kwh": result.energy_kwh,
        "breakdown_s": losses.breakdown_s,
        "breakdowns": losses.breakdowns,
        "setup_s": losses.setup_s,
        "setups": losses.setups,
        "no_data_s": losses.no_data_s,
        "small_stop_s": losses.small_stop_s,
        "small_stops": losses.small_stops,
        "reduced_speed_s": losses.reduced_speed_s,
        "startup_rejects": round(losses.startup_rejects),
        "production_rejects": round(losses.production_rejects),
        "quality_loss_s": losses.quality_loss_s,
        "day": result.window.day.isoformat(),
        "final": final,
        "warnings": "; ".join(result.warnings),
    }
    # Undefined figures are left out (InfluxDB has no null): a panel shows "no value".
    figures = {
        "availability": f.availability,
        "performance": f.performance,
        "quality": f.quality,
        "oee": f.oee,
        "teep": result.teep,
        "energy_per_good_part_kwh": result.energy_per_good_part_kwh,
    }
    fields.update({name: value for name, value in figures.items() if value is not None})
    return fields


def oee_points(reports: Sequence[LineReport], *, final: bool) -> list[Point]:
    """One point per line and window (``level=line``) and per machine and window
    (``level=machine``), stamped with the window's start so a recomputation overwrites it.
    Windows without any data (a shift before the plant was connected) get no point."""
    points = []
    for report in reports:
        base = {"site": report.ref.site, "area": report.ref.area.id, "line": report.ref.line.id}
        for result in report.results:
            if not result.has_data:
                continue
            tags = {**base, "level": "line", "shift": result.window.label}
            points.append(
                Point(
                    OEE_MEASUREMENT,
                    tags,
                    {**_fields(result, final=final), "output_machine": result.output_machine or ""},
                    result.window.start_ns,
                )
            )
        for machine, results in report.machines.items():
            for result in results:
                if not result.has_data:
                    continue
                tags = {
                    **base,
                    "level": "machine",
                    "machine": machine,
                    "shift": result.window.label,
                }
                points.append(
                    Point(
                        OEE_MEASUREMENT, tags, _fields(result, final=final), result.window.start_ns
                    )
                )
    return points


def _result_json(result: OeeResult) -> dict[str, Any]:
    f = result.figures
    return {
        "window": result.window.label,
        "day": result.window.day.isoformat(),
        "start_ns": result.window.start_ns,
        "end_ns": result.window.end_ns,
        "availability": f.availability,
        "performance": f.performance,
        "quality": f.quality,
        "oee": f.oee,
        "teep": result.teep,
        "planned_s": result.planned_s,
        "run_s": result.run_s,
        "ideal_time_s": result.ideal_time_s,
        "total": result.total,
        "good": result.good,
        "rejects": result.rejects,
        "energy_kwh": result.energy_kwh,
        "energy_per_good_part_kwh": result.energy_per_good_part_kwh,
        "losses": {key: getattr(result.losses, key) for key in result.losses.__dataclass_fields__},
        "warnings": result.warnings,
    }


def report_json(reports: Sequence[LineReport]) -> dict[str, Any]:
    return {
        "lines": [
            {
                "line": report.path,
                "output_machine": report.ref.machine.id,
                "windows": [_result_json(r) for r in report.results],
                "machines": {
                    machine: [_result_json(r) for r in results]
                    for machine, results in report.machines.items()
                },
                "skipped_machines": report.skipped,
            }
            for report in reports
        ]
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f}h"


def report_table(reports: Sequence[LineReport]) -> str:
    """A plain table: one row per line and window, losses and warnings below each line."""
    header = (
        "line",
        "day",
        "window",
        "A",
        "P",
        "Q",
        "OEE",
        "planned",
        "run",
        "good",
        "rejects",
        "kWh/part",
    )
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    for report in reports:
        for r in report.results:
            per_part = r.energy_per_good_part_kwh
            rows.append(
                (
                    report.path,
                    r.window.day.isoformat(),
                    r.window.label,
                    _pct(r.figures.availability),
                    _pct(r.figures.performance),
                    _pct(r.figures.quality),
                    _pct(r.figures.oee),
                    _hours(r.planned_s),
                    _hours(r.run_s),
                    f"{r.good:.0f}",
                    f"{r.rejects:.0f}",
                    "-" if per_part is None else f"{per_part:.4f}",
                )
            )
            lo = r.losses
            notes.append(
                f"{report.path} {r.window.day} {r.window.label}: breakdowns {lo.breakdowns} "
                f"({lo.breakdown_s / 60:.1f} min), setups {lo.setups} ({lo.setup_s / 60:.1f} min), "
                f"small stops {lo.small_stops} ({lo.small_stop_s / 60:.1f} min), reduced speed "
                f"{lo.reduced_speed_s / 60:.1f} min, start-up rejects {lo.startup_rejects:.0f}, "
                f"production rejects {lo.production_rejects:.0f}"
                + (f"\n  ! {'; '.join(r.warnings)}" if r.warnings else "")
            )
        if not report.results:
            notes.append(f"{report.path}: no data for its output machine {report.ref.machine.id}")
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join([*lines, "", "losses:", *notes])
