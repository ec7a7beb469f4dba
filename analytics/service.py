"""``plantwire analytics``: OEE of the current shift, recomputed every ``interval_s`` and written
to the store as ``oee`` points; each shift's final figures once it has ended and late data (an
edge's buffer after an outage) has had ``finalize_after_s`` to arrive.

A recomputation writes points with the same series and time as the last one, so it overwrites
them: a Grafana panel always shows the latest figures, and restarting the service is harmless.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from analytics.calendar import ShiftCalendar, Window
from analytics.compute import LineReport, compute_oee
from analytics.output import oee_points
from plantwire.config.models import SiteConfig
from plantwire.errors import PlantWireError
from plantwire.health import HealthServer, HealthStatus
from plantwire.metrics import Counter, Gauge, Registry
from plantwire.store.base import Store

__all__ = ["AnalyticsService"]

log = logging.getLogger("plantwire.analytics")
NS = 1_000_000_000


class AnalyticsService:
    def __init__(
        self,
        site: SiteConfig,
        store: Store,
        *,
        clock: Callable[[], int] = time.time_ns,
        health_port: int | None = None,
        health_host: str = "127.0.0.1",
    ) -> None:
        self.site = site
        self.store = store
        self.clock = clock  # ns; the demo passes the simulated plant's clock
        self.settings = site.analytics
        self.calendar = ShiftCalendar(site.shifts, site.site.timezone)
        self.finalized: set[tuple[str, int]] = set()
        self.last_error: str | None = None
        self.last_reports: list[LineReport] = []
        self.registry = Registry()
        self._runs = Counter(
            self.registry,
            "plantwire_analytics_runs_total",
            "OEE computations by outcome.",
            ["outcome"],
        )
        self._points = Counter(
            self.registry, "plantwire_analytics_points_written_total", "oee points written."
        )
        self._finals = Counter(
            self.registry, "plantwire_analytics_shifts_finalized_total", "Shifts finalized."
        )
        self._seconds = Gauge(
            self.registry, "plantwire_analytics_compute_seconds", "Time the last run took."
        )
        port = self.settings.health_port if health_port is None else health_port
        self.health = HealthServer(self.registry, self.status, health_host, port) if port else None

    def status(self) -> HealthStatus:
        return HealthStatus(
            self.last_error is None,
            {"last_error": self.last_error, "shifts_finalized": len(self.finalized)},
        )

    # -- one round ------------------------------------------------------------------------------
    def run_once(self) -> int:
        """Recompute the current shift and finalize the shift that ended; return points written.

        A failed read or write is logged and counted; the next round tries again.
        """
        started = time.monotonic()
        now = self.clock()
        written = 0
        self.last_error = None
        try:
            current = self.calendar.shift_at(now)
            if current is not None:
                written += self._write(current, now, final=False)
            done = self.calendar.last_shift_before(now - round(self.settings.finalize_after_s * NS))
            if done is not None and (done.label, done.start_ns) not in self.finalized:
                written += self._write(done, now, final=True)
                self.finalized.add((done.label, done.start_ns))
                self._finals.inc()
                log.info("shift %s of %s finalized", done.label, done.day)
        except PlantWireError as exc:
            self.last_error = str(exc)
        if self.last_error is not None:
            self._runs.inc(outcome="error")
            log.error(
                "OEE not computed: %s (next try in %.0f s)",
                self.last_error,
                self.settings.interval_s,
            )
            return written
        self._runs.inc(outcome="ok")
        self._points.inc(written)
        self._seconds.set(time.monotonic() - started)
        return written

    def _write(self, shift: Window, now: int, *, final: bool) -> int:
        reports = compute_oee(
            self.site, self.store, start_ns=shift.start_ns, end_ns=shift.end_ns, now_ns=now
        )
        self.last_reports = reports
        points = oee_points(reports, final=final)
        return self.store.write_points(points)

    # -- lifecycle ------------------------------------------------------------------------------
    async def run(self) -> None:
        """Run until cancelled; the computation runs in a thread so health stays responsive."""
        if self.health is not None:
            await self.health.start()
        log.info(
            "analytics for %s: OEE every %.0f s, small stops under %.0f s",
            self.site.site.id,
            self.settings.interval_s,
            self.settings.small_stop_threshold_s,
        )
        try:
            while True:
                await asyncio.to_thread(self.run_once)
                await asyncio.sleep(self.settings.interval_s)
        finally:
            if self.health is not None:
                await self.health.stop()
