"""The site's shift calendar as time windows: which shift occurrences overlap a range, where their
breaks fall, and the hour or day windows a report groups by.

Times are integer nanoseconds since the epoch (UTC); shift and break times in the site file are
wall-clock times in the site's timezone, so a shift is placed day by day in that zone (a night
shift from 22:00 to 06:00 belongs to the day it starts on).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from plantwire.config.models import ALL_DAYS, Shift
from plantwire.durations import parse_duration

__all__ = ["Grouping", "ShiftCalendar", "Window", "parse_moment"]

NS = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RELATIVE = re.compile(r"^now\s*-\s*(\S+)$|^-(\S+)$")
Grouping = Literal["shift", "hour", "day"]


@dataclass(frozen=True, slots=True)
class Window:
    """A reporting window ``[start_ns, end_ns)``: a shift occurrence, an hour or a day.

    ``label`` names it (``morning``, ``10:00``, the date); ``day`` is the local date it starts on.
    """

    label: str
    day: date
    start_ns: int
    end_ns: int

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / NS


class ShiftCalendar:
    """Shift occurrences and breaks of a site, placed in its timezone.

    >>> from datetime import time
    >>> from plantwire.config.models import Break, Shift
    >>> early = Shift(name="early", start=time(6), end=time(14),
    ...               breaks=[Break(start=time(10), minutes=30)])
    >>> calendar = ShiftCalendar([early], "UTC")
    >>> day = 1_763_683_200 * NS  # 2025-11-21 00:00 UTC
    >>> [(w.label, w.seconds) for w in calendar.shifts(day, day + 24 * 3600 * NS)]
    [('early', 28800.0)]
    >>> [(round((s - day) / NS / 3600, 2), round((e - day) / NS / 3600, 2))
    ...  for s, e in calendar.production(day, day + 24 * 3600 * NS)]
    [(6.0, 10.0), (10.5, 14.0)]
    """

    def __init__(self, shifts: Sequence[Shift], timezone: str) -> None:
        self.shift_specs = list(shifts)
        self.zone = ZoneInfo(timezone)

    # -- local time -----------------------------------------------------------------------------
    def _ns(self, day: date, minutes: float) -> int:
        local = datetime(day.year, day.month, day.day, tzinfo=self.zone) + timedelta(
            minutes=minutes
        )
        return round(local.timestamp() * NS)

    def local_date(self, t_ns: int) -> date:
        return datetime.fromtimestamp(t_ns / NS, self.zone).date()

    def _days(self, start_ns: int, end_ns: int) -> Iterator[date]:
        # A shift that started the day before can reach into the range.
        day = self.local_date(start_ns) - timedelta(days=1)
        last = self.local_date(end_ns)
        while day <= last:
            yield day
            day += timedelta(days=1)

    # -- shifts and breaks ----------------------------------------------------------------------
    def _occurrences(self, start_ns: int, end_ns: int) -> Iterator[tuple[Shift, Window]]:
        for day in self._days(start_ns, end_ns):
            weekday = ALL_DAYS[day.weekday()]
            for shift in self.shift_specs:
                if weekday not in shift.days:
                    continue
                begin = shift.start.hour * 60 + shift.start.minute
                window = Window(
                    shift.name, day, self._ns(day, begin), self._ns(day, begin + shift.length_min)
                )
                if window.start_ns < end_ns and window.end_ns > start_ns:
                    yield shift, window

    def shifts(self, start_ns: int, end_ns: int) -> list[Window]:
        """Every shift occurrence overlapping ``[start_ns, end_ns)``, in time order (whole)."""
        return sorted((w for _, w in self._occurrences(start_ns, end_ns)), key=lambda w: w.start_ns)

    def shift_at(self, t_ns: int) -> Window | None:
        """The shift occurrence running at ``t_ns``, or None between shifts."""
        return next((w for w in self.shifts(t_ns, t_ns + 1)), None)

    def last_shift_before(self, t_ns: int, within_days: int = 7) -> Window | None:
        """The latest shift occurrence that ended at or before ``t_ns``."""
        done = [w for w in self.shifts(t_ns - within_days * 86_400 * NS, t_ns) if w.end_ns <= t_ns]
        return done[-1] if done else None

    def production(self, start_ns: int, end_ns: int) -> list[tuple[int, int]]:
        """Scheduled production time in ``[start_ns, end_ns)``: inside a shift, outside its
        breaks. Sorted, non-overlapping ``(start_ns, end_ns)`` intervals."""
        pieces: list[tuple[int, int]] = []
        for shift, window in self._occurrences(start_ns, end_ns):
            cursor = window.start_ns
            begin = shift.start.hour * 60 + shift.start.minute
            breaks = sorted(
                (
                    self._ns(window.day, begin + shift.offset_min(b.start)),
                    self._ns(window.day, begin + shift.offset_min(b.start) + b.minutes),
                )
                for b in shift.breaks
            )
            for break_start, break_end in breaks:
                if break_start > cursor:
                    pieces.append((cursor, min(break_start, window.end_ns)))
                cursor = max(cursor, min(break_end, window.end_ns))
            if cursor < window.end_ns:
                pieces.append((cursor, window.end_ns))
        clipped = [(max(s, start_ns), min(e, end_ns)) for s, e in pieces]
        return _merge(sorted((s, e) for s, e in clipped if e > s))

    # -- reporting windows ----------------------------------------------------------------------
    def windows(self, start_ns: int, end_ns: int, by: Grouping) -> list[Window]:
        """The windows a report over ``[start_ns, end_ns)`` shows, clipped to the range."""
        if by == "shift":
            found = self.shifts(start_ns, end_ns)
        else:
            found = []
            for day in self._days(start_ns, end_ns):
                if by == "day":
                    found.append(
                        Window(day.isoformat(), day, self._ns(day, 0), self._ns(day, 1440))
                    )
                else:
                    found.extend(
                        Window(
                            f"{hour:02d}:00",
                            day,
                            self._ns(day, hour * 60),
                            self._ns(day, hour * 60 + 60),
                        )
                        for hour in range(24)
                    )
        clipped = [
            Window(w.label, w.day, max(w.start_ns, start_ns), min(w.end_ns, end_ns)) for w in found
        ]
        return [w for w in clipped if w.end_ns > w.start_ns]


def _merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in intervals:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def parse_moment(text: str, timezone: str, now_ns: int) -> int:
    """A time from the command line, as ns since the epoch.

    >>> now = 1_763_712_000 * NS  # 2025-11-21 08:00 UTC
    >>> parse_moment("now-2h", "UTC", now) == now - 7200 * NS
    True
    >>> parse_moment("2025-11-21T15:00", "Asia/Ho_Chi_Minh", now) == now
    True
    >>> parse_moment("2025-11-21T08:00:00Z", "Asia/Ho_Chi_Minh", now) == now
    True
    """
    text = text.strip()
    if text == "now":
        return now_ns
    relative = _RELATIVE.match(text)
    if relative:
        return now_ns - round(parse_duration(relative.group(1) or relative.group(2)) * NS)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: give ISO 8601 (2026-11-16T06:00), 'now' or 'now-8h'"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000
