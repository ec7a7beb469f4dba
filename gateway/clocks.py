"""Edge clocks: spot an edge whose wall clock is minutes off the gateway's.

Sample times cannot tell: a PLC's clock, an accelerated plant or an old backlog make them
legitimately differ from wall time. So each native batch carries ``sent``, the edge's wall clock
when it published, and each Sparkplug payload its ``timestamp``; the gateway compares that with
its own clock when the message arrives::

    offset = sent - received

Delays (the link, the broker's queues, messages the broker kept while the gateway was away) can
only make an offset more negative, never more positive. So an edge's clock error is estimated as
the **largest** offset received from it in the last ``window_s`` seconds: one message that came
promptly is enough. Beyond ``tolerance_s`` either way the edge is flagged -- a gauge, a counter of
its batches received while flagged, one WARNING when it goes out and one INFO when it is back:

* **ahead** is flagged at once: no delay makes a clock look ahead;
* **behind** is flagged only when the gateway has been connected for a full window (what comes
  first is what the broker kept for it, and a backlog looks exactly like a slow clock) and the
  edge's offsets are not still rising by more than the tolerance within the window (a backlog
  still draining); until then the edge's state stays as it was.

A message the gateway read from a backlog -- the broker had more for it than it could take, or
messages waited in its own queue -- is late by the backlog: it can show an edge ahead (no delay
does that) but never flag one behind. The caller says so with ``from_backlog``.

Nothing is done to the data: samples are stored as stamped (docs/gateway.md, "Edge clocks").

>>> watch = ClockWatch(tolerance_s=30)
>>> watch.connected(0)
>>> watch.observe("edge-a", sent_ns=300 * NS, received_ns=NS)  # 299 s ahead
True
>>> round(watch.offset_s("edge-a"))
299
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

from plantwire.lineprotocol import FieldValue
from plantwire.logs import LogOnce
from plantwire.metrics import CounterFunction, Gauge, Registry

__all__ = ["NS", "WINDOW_S", "ClockWatch", "EdgeClock"]

log = logging.getLogger("plantwire.gateway.clocks")

NS = 1_000_000_000
WINDOW_S = 60.0


@dataclass
class EdgeClock:
    """What the gateway knows of one edge's clock."""

    # [second of gateway time, largest offset (ns) received in that second], oldest first
    buckets: deque[list[int]] = field(default_factory=deque)
    estimate_ns: int = 0  # the largest offset in the window (the last one, when it is empty)
    skewed: bool = False
    skewed_batches: int = 0


class ClockWatch:
    """Per edge: the clock offset estimate and whether it is out of tolerance."""

    def __init__(
        self, tolerance_s: float, *, window_s: float = WINDOW_S, registry: Registry | None = None
    ) -> None:
        if not tolerance_s > 0 or not window_s >= 1:
            raise ValueError(f"tolerance {tolerance_s} s must be > 0, window {window_s} s >= 1")
        self.tolerance_s = tolerance_s
        self.window_s = window_s
        self.edges: dict[str, EdgeClock] = {}
        self._behind_judged_from_ns: int | None = None  # None: not connected yet
        self._heard: set[str] = set()  # edges heard from since the last report
        self._once = LogOnce(log)
        self._metrics = _ClockMetrics(registry) if registry is not None else None

    def connected(self, now_ns: int) -> None:
        """The gateway (re)connected: for a window, what arrives may be what the broker kept."""
        self._behind_judged_from_ns = now_ns + int(self.window_s * NS)

    def observe(
        self, edge: str, sent_ns: int, received_ns: int, *, from_backlog: bool = False
    ) -> bool:
        """Take one message's send time (edge clock) and arrival time (gateway clock); True
        while the edge is flagged. A message ``from_backlog`` cannot flag an edge behind."""
        clock = self.edges.get(edge)
        if clock is None:
            clock = self.edges[edge] = EdgeClock()
            if self._metrics is not None:
                self._metrics.add(edge, clock)
        self._add(clock, sent_ns - received_ns, received_ns // NS)
        self._judge(edge, clock, received_ns, from_backlog=from_backlog)
        self._heard.add(edge)
        if clock.skewed:
            clock.skewed_batches += 1
        return clock.skewed

    def offset_s(self, edge: str) -> float:
        return self.edges[edge].estimate_ns / NS

    def report(self) -> dict[str, dict[str, FieldValue]]:
        """``pipeline`` fields per edge heard from since the last report."""
        heard, self._heard = self._heard, set()
        return {
            edge: {
                "clock_offset_s": self.offset_s(edge),
                "clock_skewed": float(self.edges[edge].skewed),
            }
            for edge in sorted(heard)
        }

    def _add(self, clock: EdgeClock, offset_ns: int, second: int) -> None:
        buckets = clock.buckets
        if buckets and second < buckets[-1][0] - self.window_s:
            buckets.clear()  # the gateway's clock stepped back a long way: start over
        if buckets and second <= buckets[-1][0]:  # this second (or a small step back)
            last = buckets[-1]
            last[1] = max(last[1], offset_ns)
            clock.estimate_ns = max(clock.estimate_ns, offset_ns)
            return
        buckets.append([second, offset_ns])
        while buckets[0][0] <= second - self.window_s:
            buckets.popleft()
        clock.estimate_ns = max(bucket[1] for bucket in buckets)

    def _judge(self, edge: str, clock: EdgeClock, now_ns: int, *, from_backlog: bool) -> None:
        tolerance_ns = self.tolerance_s * NS
        estimate = clock.estimate_ns
        if estimate > tolerance_ns:
            skewed = True
        elif estimate >= -tolerance_ns:
            skewed = False
        elif from_backlog or self._settling(now_ns) or self._rising(clock, tolerance_ns):
            return  # behind, or a backlog arriving late: not decided yet
        else:
            skewed = True
        if skewed == clock.skewed:
            return
        clock.skewed = skewed
        if skewed:
            self._once.problem(
                f"clock:{edge}",
                "edge %s: clock %.1f s %s the gateway's (tolerance %g s); its samples are "
                "stored as stamped -- check the edge's time sync (NTP/chrony)",
                edge,
                abs(estimate) / NS,
                "ahead of" if estimate > 0 else "behind",
                self.tolerance_s,
            )
        else:
            self._once.recovered(
                f"clock:{edge}",
                "edge %s: clock back within %g s of the gateway's (offset %+.1f s)",
                edge,
                self.tolerance_s,
                estimate / NS,
            )

    def _settling(self, now_ns: int) -> bool:
        start = self._behind_judged_from_ns
        return start is None or now_ns < start

    @staticmethod
    def _rising(clock: EdgeClock, tolerance_ns: float) -> bool:
        """Offsets climbing within the window: messages arriving faster than they were sent."""
        return clock.buckets[-1][1] - clock.buckets[0][1] > tolerance_ns


class _ClockMetrics:
    """The per-edge series on ``/metrics``, read from the edges' state at scrape time."""

    def __init__(self, registry: Registry) -> None:
        self.offset = Gauge(
            registry,
            "plantwire_gateway_edge_clock_offset_seconds",
            "An edge's clock minus the gateway's: the largest offset of its recent messages.",
            ["edge"],
        )
        self.skewed = Gauge(
            registry,
            "plantwire_gateway_edge_clock_skewed",
            "1 while an edge's clock is out of gateway.clock_tolerance_s.",
            ["edge"],
        )
        self.skewed_batches = CounterFunction(
            registry,
            "plantwire_gateway_clock_skewed_batches_total",
            "Batches received from an edge while its clock was flagged (stored as stamped).",
            ["edge"],
        )

    def add(self, edge: str, clock: EdgeClock) -> None:
        self.offset.set_function(lambda: clock.estimate_ns / NS, edge=edge)
        self.skewed.set_function(lambda: float(clock.skewed), edge=edge)
        self.skewed_batches.set_function(lambda: clock.skewed_batches, edge=edge)
