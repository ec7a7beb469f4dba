"""The exceptions PlantWire raises, in one tree.

Third-party errors are translated at the boundary (``raise OurError(...) from exc``) so callers
only ever need to catch these::

    PlantWireError
    ├── InvalidNameError      a site/area/line/machine id, edge id or metric name that would
    │                         break an MQTT topic or an InfluxDB series (also a ValueError)
    ├── TopicError            a topic outside PlantWire's namespace (also a ValueError)
    ├── PayloadError          bytes that are not a valid batch, with the reason (a ValueError)
    ├── LineProtocolError     a point InfluxDB cannot store: NaN, ±inf, a bad name (a ValueError)
    └── ConfigError           a site file refused at load, with file, line and what is wrong
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "InvalidNameError",
    "LineProtocolError",
    "PayloadError",
    "PlantWireError",
    "TopicError",
]


class PlantWireError(Exception):
    """Base of every error PlantWire raises on purpose."""


class InvalidNameError(PlantWireError, ValueError):
    """A name that cannot be used as a topic segment, tag or field key."""


class TopicError(PlantWireError, ValueError):
    """A topic that is not in PlantWire's namespace or is malformed."""


class PayloadError(PlantWireError, ValueError):
    """A payload that cannot be decoded into a batch; ``reason`` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LineProtocolError(PlantWireError, ValueError):
    """A point that cannot be written as InfluxDB line protocol."""


class ConfigError(PlantWireError):
    """A site configuration that was refused; ``issues`` holds one entry per problem."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))


class ConfigIssue:
    """One problem in a site file: where it is and what is wrong."""

    __slots__ = ("column", "file", "line", "message", "path")

    def __init__(
        self,
        file: str,
        line: int | None,
        message: str,
        *,
        path: str = "",
        column: int | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.path = path
        self.message = message

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        subject = f"{self.path}: " if self.path else ""
        return f"{where}: {subject}{self.message}"

    def __repr__(self) -> str:
        return f"ConfigIssue({str(self)!r})"
