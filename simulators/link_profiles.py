"""Link profiles and outage/profile schedules for the link emulator (:mod:`simulators.link`).

A :class:`LinkProfile` describes one direction of a radio or wired link as the emulator applies
it to every connection through it:

* ``latency_ms`` -- mean one-way delay added to each chunk of bytes.
* ``jitter_ms`` -- standard deviation of that delay. The delay of a chunk is drawn from a normal
  distribution with mean ``latency_ms`` and this deviation, clipped at 0 (a negative draw adds
  no delay). The clip only matters when jitter is large next to latency.
* ``bandwidth_kbps`` -- cap per direction per connection, in kbit/s (1 kbit = 1000 bit);
  ``None`` is unlimited.
* ``loss_reset_per_min`` -- mean number of random resets per minute of each open connection
  (a Poisson process, so resets are memoryless); 0 is none.

The named profiles in :data:`PROFILES` use figures typical of field measurements, not of
marketing sheets::

    name           latency   jitter   bandwidth     resets/min   what it stands for
    ideal            0 ms      0 ms   unlimited     0            no emulation
    5g-urllc         5 ms      1 ms   100 Mbit/s    0            private 5G slice for control
    5g-embb         20 ms      6 ms    50 Mbit/s    0            public 5G, uplink-limited
    5g-degraded     50 ms     25 ms     2 Mbit/s    0.5          5G at the cell edge, indoors
    lte             45 ms     15 ms    10 Mbit/s    0            LTE cat 4 in a factory hall
    lte-degraded   120 ms     60 ms     1 Mbit/s    0.2          LTE at the cell edge, behind steel
    satellite      300 ms     30 ms     2 Mbit/s    0            LEO/GEO backhaul for remote sites

A schedule is a YAML list of events at offsets from the start of :meth:`run_schedule`::

    - {at: 30, outage: 60}            # link down for a minute, 30 s in
    - {at: 2m, profile: lte-degraded} # offsets and durations: 90, "90s", "2m", "1h30m", "500ms"

>>> parse_duration("1h30m")
5400.0
>>> parse_duration("500ms")
0.5
>>> PROFILES["lte"].latency_ms
45.0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from plantwire.config.yamlsource import Path_, YamlDocument, read_yaml
from plantwire.durations import parse_duration

__all__ = [
    "PROFILES",
    "LinkProfile",
    "ScheduleEvent",
    "load_schedule",
    "parse_duration",
    "parse_schedule",
    "resolve_profile",
]

_T = TypeVar("_T")


@dataclass(frozen=True)
class LinkProfile:
    """How one link behaves; see the module docstring for the meaning of each figure."""

    name: str
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    bandwidth_kbps: float | None = None
    loss_reset_per_min: float = 0.0

    def __post_init__(self) -> None:
        figures = {
            "latency_ms": self.latency_ms,
            "jitter_ms": self.jitter_ms,
            "loss_reset_per_min": self.loss_reset_per_min,
        }
        for key, value in figures.items():
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"link profile {self.name!r}: {key} must be >= 0, not {value}")
        bandwidth = self.bandwidth_kbps
        if bandwidth is not None and (not math.isfinite(bandwidth) or bandwidth <= 0):
            raise ValueError(
                f"link profile {self.name!r}: bandwidth_kbps must be > 0 or None (unlimited),"
                f" not {bandwidth}"
            )

    def describe(self) -> str:
        """One line for logs: name and figures."""
        cap = "unlimited" if self.bandwidth_kbps is None else f"{self.bandwidth_kbps:g} kbit/s"
        return (
            f"{self.name} ({self.latency_ms:g} ms ±{self.jitter_ms:g}, {cap},"
            f" {self.loss_reset_per_min:g} resets/min)"
        )

    @property
    def bandwidth_bps(self) -> float | None:
        """The cap in bit/s, or None when unlimited."""
        return None if self.bandwidth_kbps is None else self.bandwidth_kbps * 1000.0


PROFILES: dict[str, LinkProfile] = {
    profile.name: profile
    for profile in (
        LinkProfile("ideal"),
        LinkProfile("5g-urllc", latency_ms=5.0, jitter_ms=1.0, bandwidth_kbps=100_000),
        LinkProfile("5g-embb", latency_ms=20.0, jitter_ms=6.0, bandwidth_kbps=50_000),
        # A weak mid-band cell seen from inside a hall: the uplink is what starves first, and
        # radio link failures and handovers at the edge of coverage drop the TCP connection.
        LinkProfile(
            "5g-degraded",
            latency_ms=50.0,
            jitter_ms=25.0,
            bandwidth_kbps=2_000,
            loss_reset_per_min=0.5,
        ),
        LinkProfile("lte", latency_ms=45.0, jitter_ms=15.0, bandwidth_kbps=10_000),
        LinkProfile(
            "lte-degraded",
            latency_ms=120.0,
            jitter_ms=60.0,
            bandwidth_kbps=1_000,
            loss_reset_per_min=0.2,
        ),
        LinkProfile("satellite", latency_ms=300.0, jitter_ms=30.0, bandwidth_kbps=2_000),
    )
}


def resolve_profile(profile: LinkProfile | str) -> LinkProfile:
    """A profile itself, or the named one from :data:`PROFILES` (ValueError when unknown)."""
    if isinstance(profile, LinkProfile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        known = ", ".join(PROFILES)
        raise ValueError(f"unknown link profile {profile!r}; known: {known}") from None


@dataclass(frozen=True)
class ScheduleEvent:
    """At ``at`` seconds from the schedule's start: an outage of ``outage`` s, or a profile."""

    at: float
    outage: float | None = None
    profile: LinkProfile | None = None

    def __post_init__(self) -> None:
        if (self.outage is None) == (self.profile is None):
            raise ValueError("a schedule event has exactly one of 'outage' or 'profile'")
        if self.at < 0:
            raise ValueError(f"'at' must be >= 0, not {self.at}")
        if self.outage is not None and self.outage <= 0:
            raise ValueError(f"'outage' must last more than 0 s, not {self.outage}")


def load_schedule(path: str | Path) -> list[ScheduleEvent]:
    """Read a schedule file; ValueError naming the file, line and problem when it is bad."""
    text = Path(path).read_text(encoding="utf-8")
    if not text.strip():
        raise ValueError(f"{path}: the schedule file is empty; expected a list of events")
    doc, issues = read_yaml(text, str(path))
    if issues:
        raise ValueError("\n".join(str(issue) for issue in issues))
    return parse_schedule(doc)


def parse_schedule(
    source: YamlDocument | list[Any], name: str = "<schedule>"
) -> list[ScheduleEvent]:
    """Events from already-loaded data, sorted by offset; every problem is reported at once."""
    doc = source if isinstance(source, YamlDocument) else YamlDocument(name, source)
    if not isinstance(doc.data, list):
        # A bad file is a ValueError to callers, whatever its shape.
        raise ValueError(  # noqa: TRY004
            str(doc.issue((), "a schedule is a list of events like {at: 30, outage: 60}"))
        )
    events: list[ScheduleEvent] = []
    problems: list[str] = []
    for index, entry in enumerate(doc.data):
        try:
            events.append(_parse_event(entry))
        except (ValueError, TypeError) as exc:
            problems.append(str(doc.issue(_where(entry, index, exc), str(exc))))
    if problems:
        raise ValueError("\n".join(problems))
    return sorted(events, key=lambda event: event.at)


class _EventError(ValueError):
    """A bad value in an event; ``key`` says which, so the message can point at its line."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _where(entry: object, index: int, exc: Exception) -> Path_:
    if isinstance(exc, _EventError) and isinstance(entry, dict) and exc.key in entry:
        return (index, exc.key)
    return (index,)


def _parse_event(entry: object) -> ScheduleEvent:
    if not isinstance(entry, dict):
        raise TypeError(f"an event is a mapping like {{at: 30, outage: 60}}, not {entry!r}")
    unknown = sorted(set(entry) - {"at", "outage", "profile"}, key=str)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown}; an event has 'at' and 'outage' or 'profile'")
    if "at" not in entry:
        raise ValueError("missing 'at' (seconds from the start, or like '90s', '2m')")
    at = _field(entry, "at", parse_duration)
    outage = _field(entry, "outage", parse_duration) if "outage" in entry else None
    profile = _field(entry, "profile", _profile_by_name) if "profile" in entry else None
    return ScheduleEvent(at=at, outage=outage, profile=profile)


def _field(entry: dict[Any, Any], key: str, parse: Callable[[object], _T]) -> _T:
    try:
        return parse(entry[key])
    except (ValueError, TypeError) as exc:
        raise _EventError(key, str(exc)) from exc


def _profile_by_name(value: object) -> LinkProfile:
    if not isinstance(value, str):
        raise TypeError(f"expected a profile name ({', '.join(PROFILES)}), not {value!r}")
    return resolve_profile(value)
