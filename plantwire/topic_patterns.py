"""Topic patterns of ingest rules: an MQTT topic filter whose levels may be named captures.

``factory/{line}/{machine}/telemetry`` subscribes to ``factory/+/+/telemetry`` and reads the
second and third levels of each topic as the line and the machine. A level is a literal, a
capture ``{name}`` (one whole level), ``+`` (any one level, not kept) or, last, ``#`` (the rest).

>>> pattern = parse_pattern("factory/{line}/{machine}/telemetry")
>>> pattern.filter
'factory/+/+/telemetry'
>>> pattern.match("factory/line1/press3/telemetry")
{'line': 'line1', 'machine': 'press3'}
>>> pattern.match("factory/line1/press3/status") is None
True
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["CAPTURE_NAMES", "TopicPattern", "filters_overlap", "parse_pattern"]

# What a capture may name: the asset's levels below the site, and the metric.
CAPTURE_NAMES = ("area", "line", "machine", "metric")
_CAPTURE = re.compile(r"^\{([^{}]*)\}$")
MAX_LEVELS = 32


@dataclass(frozen=True)
class TopicPattern:
    text: str
    levels: tuple[str, ...]  # the filter's levels: literals, '+' and '#'
    captures: Mapping[int, str]  # level index -> capture name

    @property
    def filter(self) -> str:
        return "/".join(self.levels)

    def match(self, topic: str) -> dict[str, str] | None:
        """The captured levels of a topic this pattern matches, else None."""
        parts = topic.split("/")
        levels = self.levels
        if levels[-1] == "#":
            if len(parts) < len(levels) - 1:
                return None
        elif len(parts) != len(levels):
            return None
        for index, wanted in enumerate(levels):
            if wanted == "#":
                break
            if wanted != "+" and wanted != parts[index]:
                return None
        return {name: parts[index] for index, name in self.captures.items()}


def parse_pattern(text: str) -> TopicPattern:
    """Read a rule's topic; a ValueError says what is wrong with it in one line."""
    if not text or len(text) > 1024:
        raise ValueError("a topic pattern is 1 to 1024 characters")
    if text.startswith("$"):
        raise ValueError("topics starting with '$' are the broker's own (and $share is ours)")
    parts = text.split("/")
    if len(parts) > MAX_LEVELS:
        raise ValueError(f"a topic pattern has at most {MAX_LEVELS} levels")
    levels: list[str] = []
    captures: dict[int, str] = {}
    for index, part in enumerate(parts):
        capture = _CAPTURE.match(part)
        if capture is not None:
            name = capture.group(1)
            if name not in CAPTURE_NAMES:
                known = ", ".join("{" + n + "}" for n in CAPTURE_NAMES)
                raise ValueError(f"unknown capture {part} (captures are {known})")
            if name in captures.values():
                raise ValueError(f"capture {part} appears twice")
            captures[index] = name
            levels.append("+")
            continue
        if "{" in part or "}" in part:
            raise ValueError(f"level {part!r}: a capture is a whole level, as {{machine}}")
        if part == "#" and index != len(parts) - 1:
            raise ValueError("'#' may only be the last level")
        if ("#" in part or "+" in part) and part not in ("#", "+"):
            raise ValueError(f"level {part!r}: '+' and '#' stand alone in a level")
        if "\x00" in part:
            raise ValueError("a topic has no NUL characters")
        levels.append(part)
    return TopicPattern(text, tuple(levels), captures)


def filters_overlap(first: str, second: str) -> bool:
    """Whether some topic matches both MQTT filters.

    >>> filters_overlap("plant/+/press/#", "plant/line1/+/temperature")
    True
    >>> filters_overlap("factory/+/+/telemetry", "factory/+/+/status")
    False
    """
    a, b = first.split("/"), second.split("/")
    for index in range(max(len(a), len(b))):
        left = a[index] if index < len(a) else None
        right = b[index] if index < len(b) else None
        if left == "#" or right == "#":
            return True
        if left is None or right is None:
            return False
        if left != right and "+" not in (left, right):
            return False
    return True
