"""Logging for every PlantWire process: one line per event, secrets masked, device trouble once.

:func:`setup_logging` gives the root logger one handler, writing either text for a person at a
terminal or JSON lines for a log shipper::

    2026-11-21T09:15:02.390Z INFO plantwire.edge: source connected machine=filler port=5020
    {"ts":"2026-11-21T09:15:02.390Z","level":"INFO","logger":"plantwire.edge","msg":"...",...}

Fields given with ``extra={...}`` follow the message. Every value passed to
:func:`register_secret` (or found by :func:`register_secrets_from` in the site config) is replaced
by ``********`` in everything that handler writes: message, arguments, extras and tracebacks. A
driver error that quotes its connection string therefore cannot leak a broker password.

:class:`LogOnce` keeps a device that stays unreachable from writing a line on every poll: it logs
when the device goes bad and when it recovers, not in between.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Literal, TextIO

import orjson
from pydantic import BaseModel, SecretStr

__all__ = [
    "MASK",
    "LogOnce",
    "clear_secrets",
    "register_secret",
    "register_secrets_from",
    "setup_logging",
]

MASK = "********"
# Shorter values are not masked: a 1-3 character "secret" (a PIN, "on", "1") would also match
# ordinary words and numbers everywhere, making every log line unreadable while protecting
# nothing, since so short a value can be guessed anyway.
MIN_SECRET_LENGTH = 4

_secrets_lock = threading.Lock()
_secrets: set[str] = set()
# Longest first, so a secret containing another one is masked whole; replaced, never mutated,
# so formatting in any thread reads a consistent tuple without taking the lock.
_masking_order: tuple[str, ...] = ()

# Attributes every LogRecord has; anything else on a record came from ``extra={...}``.
_RECORD_ATTRIBUTES = frozenset(
    (*vars(logging.LogRecord("", 0, "", 0, "", (), None)), "message", "asctime", "taskName")
)
_JSON_KEYS = ("ts", "level", "logger", "msg", "exc", "stack")


def register_secret(value: str) -> None:
    """Mask ``value`` in every line written through :func:`setup_logging`'s handler."""
    global _masking_order  # noqa: PLW0603  (the process-wide set is the point)
    if len(value) < MIN_SECRET_LENGTH:
        return
    with _secrets_lock:
        _secrets.add(value)
        _masking_order = tuple(sorted(_secrets, key=len, reverse=True))


def register_secrets_from(obj: object) -> None:
    """Register every :class:`pydantic.SecretStr` in a model (the site config), its nested
    models, lists, tuples and dicts."""
    if isinstance(obj, SecretStr):
        register_secret(obj.get_secret_value())
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            register_secrets_from(getattr(obj, name))
        for value in (obj.model_extra or {}).values():
            register_secrets_from(value)
    elif isinstance(obj, Mapping):
        for value in obj.values():
            register_secrets_from(value)
    elif isinstance(obj, list | tuple | set | frozenset):
        for value in obj:
            register_secrets_from(value)


def clear_secrets() -> None:
    """Forget every registered secret (for tests)."""
    global _masking_order  # noqa: PLW0603
    with _secrets_lock:
        _secrets.clear()
        _masking_order = ()


def _redact(text: str) -> str:
    for secret in _masking_order:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _timestamp(record: logging.LogRecord) -> str:
    """UTC, ISO 8601 with milliseconds: sortable, and the same on every node of a plant."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES}


class _PlantWireFormatter(logging.Formatter):
    """Shared by both formats: the exception text is rebuilt here, not taken from the record's
    cache, so a traceback formatted earlier by another handler cannot bypass the masking."""

    def _exception_text(self, record: logging.LogRecord) -> str:
        if record.exc_info:
            return self.formatException(record.exc_info)
        return record.exc_text or ""


class _TextFormatter(_PlantWireFormatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        fields = [f"{key}={_quote(_redact(str(value)))}" for key, value in _extras(record).items()]
        text = _redact(" ".join([line, *fields]))
        for tail in (self._exception_text(record), record.stack_info):
            if tail:
                text += "\n" + _redact(tail)
        return text


def _quote(value: str) -> str:
    """Quote a value that would not read back as one ``key=value`` token."""
    if value and not any(c.isspace() or c in '"=\\' for c in value):
        return value
    return orjson.dumps(value).decode()


class _JsonFormatter(_PlantWireFormatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": _redact(record.getMessage()),
        }
        for key, value in _extras(record).items():
            # An extra named like a core key is kept under another name, not dropped.
            document[f"extra_{key}" if key in _JSON_KEYS else key] = _redact_value(value)
        if exc := self._exception_text(record):
            document["exc"] = _redact(exc)
        if record.stack_info:
            document["stack"] = _redact(record.stack_info)
        try:
            return orjson.dumps(document, default=_redacted_str).decode()
        except orjson.JSONEncodeError:  # e.g. an int beyond 64 bits; a line is still owed
            return orjson.dumps({k: _redacted_str(v) for k, v in document.items()}).decode()


def _redacted_str(value: object) -> str:
    return _redact(str(value))


def _redact_value(value: object) -> object:
    """Mask secrets inside an extra while keeping numbers, booleans and nesting as JSON types."""
    if isinstance(value, str):
        return _redact(value)
    if isinstance(value, Mapping):
        return {_redacted_str(k): _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    if value is None or isinstance(value, int | float):
        return value
    # Anything else as text: orjson would otherwise write dataclasses and the like field by
    # field, past the masking.
    return _redacted_str(value)


class _PlantWireHandler(logging.StreamHandler[TextIO]):
    """Marks the handler :func:`setup_logging` installed, so calling it again replaces it."""


def setup_logging(
    level: str = "INFO",
    fmt: Literal["text", "json"] = "text",
    stream: TextIO | None = None,
) -> None:
    """Send every log record at ``level`` or above to ``stream`` (default: stderr) in ``fmt``."""
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r} (use DEBUG, INFO, WARNING or ERROR)")
    if fmt not in ("text", "json"):
        raise ValueError(f"unknown log format {fmt!r} (use text or json)")
    handler = _PlantWireHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(_TextFormatter() if fmt == "text" else _JsonFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _PlantWireHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric)


class LogOnce:
    """Log when something (a device, a link) goes bad and when it recovers, not on every poll.

    At most ``max_keys`` bad keys are remembered; past that the one that went bad longest ago
    without being reported again is forgotten (and would be logged again if still bad), so a
    flood of distinct keys cannot grow memory without bound.
    """

    def __init__(self, logger: logging.Logger, *, max_keys: int = 10_000) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys}")
        self._logger = logger
        self._max_keys = max_keys
        self._bad: OrderedDict[str, None] = OrderedDict()

    def problem(self, key: str, message: str, *args: object, level: int = logging.WARNING) -> bool:
        """Log ``message % args`` if ``key`` was not bad yet; True if a line was written."""
        if key in self._bad:
            self._bad.move_to_end(key)  # still failing: keep it among the remembered
            return False
        self._bad[key] = None
        if len(self._bad) > self._max_keys:
            self._bad.popitem(last=False)
        self._logger.log(level, message, *args, stacklevel=2)
        return True

    def recovered(self, key: str, message: str, *args: object) -> bool:
        """Log ``message % args`` at INFO if ``key`` was bad, and clear it; True if logged."""
        if key not in self._bad:
            return False
        del self._bad[key]
        self._logger.info(message, *args, stacklevel=2)
        return True

    def is_bad(self, key: str) -> bool:
        return key in self._bad

    @property
    def bad_keys(self) -> int:
        """How many keys are bad now (a cheap check before per-item recovery checks)."""
        return len(self._bad)
