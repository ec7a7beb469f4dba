"""``plantwire analytics``: OEE of the current shift, recomputed every ``interval_s`` and written
to the store as ``oee`` points; each shift's final figures once it has ended and late data (an
edge's buffer after an outage) has had ``finalize_after_s`` to arrive. In the same rounds, every
machine with a promoted anomaly model is scored (:mod:`analytics.anomaly.scoring`) and its alerts
are published over MQTT.

A recomputation writes points with the same series and time as the last one, so it overwrites
them: a Grafana panel always shows the latest figures, and restarting the service is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Callable

from analytics.anomaly.scoring import Alert, AnomalyScoring
from analytics.calendar import ShiftCalendar, Window
from analytics.compute import LineReport, compute_oee
from analytics.output import oee_points
from plantwire.config.models import SiteConfig
from plantwire.errors import PlantWireError
from plantwire.health import HealthServer, HealthStatus
from plantwire.metrics import Counter, Gauge, Registry
from plantwire.mqtt import AsyncMqtt, MqttUnavailable
from plantwire.store.base import Store

__all__ = ["AnalyticsService"]

log = logging.getLogger("plantwire.analytics")
NS = 1_000_000_000
MAX_PENDING_ALERTS = 10_000  # alerts kept while the broker is unreachable (oldest dropped first)


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
        self.anomaly = AnomalyScoring(site, store, self.settings.registry_path)
        self.pending_alerts: deque[Alert] = deque(maxlen=MAX_PENDING_ALERTS)
        self._mqtt: AsyncMqtt | None = None
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
        self._alerts = Counter(
            self.registry, "plantwire_analytics_alerts_total", "Alert messages (raised, cleared)."
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
            scored, alerts = self.anomaly.run_once(now)
            written += scored
            self.pending_alerts.extend(alerts)
            self._alerts.inc(len(alerts))
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
                await self.publish_alerts()
                await asyncio.sleep(self.settings.interval_s)
        finally:
            await self.disconnect()
            if self.health is not None:
                await self.health.stop()

    async def disconnect(self) -> None:
        """Leave the broker (alerts not yet sent stay pending)."""
        if self._mqtt is not None:
            await self._mqtt.disconnect()
            self._mqtt = None

    async def publish_alerts(self) -> int:
        """Publish pending alerts (QoS 1); while the broker is unreachable they wait."""
        if not self.pending_alerts:
            return 0
        if self._mqtt is None or not self._mqtt.connected:
            client = AsyncMqtt(
                self.site.mqtt,
                f"{self.site.mqtt.client_id_prefix}-analytics-{socket.gethostname()}",
            )
            try:
                await client.connect()
            except MqttUnavailable as exc:
                log.warning("alerts wait for the broker: %s", exc)
                return 0
            self._mqtt = client
        sent = 0
        with contextlib.suppress(MqttUnavailable):
            while self.pending_alerts:
                alert = self.pending_alerts[0]
                self._mqtt.publish(alert.topic, alert.payload, retain=alert.retain)
                self.pending_alerts.popleft()
                sent += 1
        return sent
