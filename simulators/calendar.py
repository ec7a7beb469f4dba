"""The production calendar of a line: when shifts run, when breaks, changeovers and planned
maintenance happen, in plant time (seconds since the epoch, UTC)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from plantwire.config.models import ALL_DAYS, Shift
from simulators.scenario import LineSpec

__all__ = ["CalendarKind", "LineCalendar", "Segment", "ShiftSlot"]


class CalendarKind(StrEnum):
    OFF = "off"  # no shift
    PRODUCTION = "production"
    BREAK = "break"
    MAINTENANCE = "maintenance"  # planned: not planned production time
    CHANGEOVER = "changeover"  # planned production time, an availability loss


@dataclass(frozen=True, slots=True)
class ShiftSlot:
    """One occurrence of a shift: its name and the day it started on."""

    name: str
    day: date
    start: float
    end: float

    @property
    def key(self) -> str:
        return f"{self.day.isoformat()}/{self.name}"


@dataclass(frozen=True, slots=True)
class Segment:
    start: float
    end: float
    kind: CalendarKind
    slot: ShiftSlot | None


class LineCalendar:
    """Segments of one line's calendar, generated a few days at a time as plant time moves on."""

    def __init__(self, shifts: list[Shift], line: LineSpec, timezone: str) -> None:
        self.shifts = shifts
        self.line = line
        self.zone = ZoneInfo(timezone)
        self._segments: list[Segment] = []
        self._starts: list[float] = []
        self._generated_until: date | None = None
        self._generated_from: date | None = None

    def _epoch(self, day: date, minutes: float) -> float:
        local = datetime(day.year, day.month, day.day, tzinfo=self.zone) + timedelta(
            minutes=minutes
        )
        return local.timestamp()

    def _shift_segments(self, shift: Shift, day: date) -> list[Segment]:
        start_min = shift.start.hour * 60 + shift.start.minute
        slot = ShiftSlot(
            shift.name,
            day,
            self._epoch(day, start_min),
            self._epoch(day, start_min + shift.length_min),
        )
        weekday = ALL_DAYS[day.weekday()]
        cuts: list[tuple[float, float, CalendarKind]] = []
        for brk in shift.breaks:
            offset = float(shift.offset_min(brk.start))
            cuts.append((offset, offset + brk.minutes, CalendarKind.BREAK))
        for events, kind in (
            (self.line.changeovers, CalendarKind.CHANGEOVER),
            (self.line.maintenance, CalendarKind.MAINTENANCE),
        ):
            for event in events:
                if event.shift == shift.name and (event.days is None or weekday in event.days):
                    offset = event.after / 60
                    cuts.append((offset, min(offset + event.minutes, shift.length_min), kind))
        cuts.sort()
        segments: list[Segment] = []
        cursor = 0.0
        for cut_begin, end, kind in cuts:
            begin = max(cut_begin, cursor)
            if begin > cursor:
                segments.append(
                    Segment(
                        self._epoch(day, start_min + cursor),
                        self._epoch(day, start_min + begin),
                        CalendarKind.PRODUCTION,
                        slot,
                    )
                )
            if end > begin:
                segments.append(
                    Segment(
                        self._epoch(day, start_min + begin),
                        self._epoch(day, start_min + end),
                        kind,
                        slot,
                    )
                )
            cursor = max(cursor, end)
        if cursor < shift.length_min:
            segments.append(
                Segment(
                    self._epoch(day, start_min + cursor), slot.end, CalendarKind.PRODUCTION, slot
                )
            )
        return segments

    def _generate(self, first: date, last: date) -> None:
        """Rebuild the segments for shifts starting from ``first`` to ``last`` (inclusive)."""
        segments: list[Segment] = []
        day = first
        while day <= last:
            weekday = ALL_DAYS[day.weekday()]
            for shift in self.shifts:
                if weekday in shift.days:
                    segments.extend(self._shift_segments(shift, day))
            day += timedelta(days=1)
        segments.sort(key=lambda s: s.start)
        window_start = self._epoch(first, 0)
        window_end = self._epoch(last + timedelta(days=1), 0)
        filled: list[Segment] = []
        cursor = window_start
        for segment in segments:
            if segment.start > cursor:
                filled.append(Segment(cursor, segment.start, CalendarKind.OFF, None))
            filled.append(segment)
            cursor = max(cursor, segment.end)
        if cursor < window_end:
            filled.append(Segment(cursor, window_end, CalendarKind.OFF, None))
        self._segments = filled
        self._starts = [s.start for s in filled]
        self._generated_from, self._generated_until = first, last

    def segment_at(self, t: float) -> Segment:
        """The calendar segment holding plant time ``t``."""
        today = datetime.fromtimestamp(t, self.zone).date()
        first, last = self._generated_from, self._generated_until
        if first is None or last is None or not first < today < last:
            # Yesterday's night shift can reach into today: generate from the day before.
            self._generate(today - timedelta(days=2), today + timedelta(days=5))
        index = bisect.bisect_right(self._starts, t) - 1
        segment = self._segments[index]
        if (
            not segment.start <= t < segment.end
        ):  # overlapping shifts are refused by the site checks
            segment = next(s for s in self._segments if s.start <= t < s.end)
        return segment
