"""Write line protocol to InfluxDB and sort the answer into what the caller should do next.

Two writers share one contract, ``write(body) -> WriteResult``, and never raise for anything the
database or the network does; they say what happened, sorted the way Telegraf's InfluxDB output
sorts it, so the gateway can act without knowing HTTP:

=================  =======================================  ===============================
outcome            when                                     what the caller does
=================  =======================================  ===============================
``OK``             2xx                                      acknowledge
``BAD_REQUEST``    400, 422 (unparsable line, type          split the batch, dead-letter the
                   conflict, partial write)                 bad lines; retrying cannot help
``UNAUTHORIZED``   401, 403                                 stop: credentials are wrong
``TOO_LARGE``      413                                      split the batch
``RETRY``          429, 5xx, a timeout waiting for the      wait (``retry_after_s`` when the
                   answer, any status not listed here       server said how long) and retry
``UNREACHABLE``    refused, reset, DNS failure, no          spool and probe until it is back
                   connection within the timeout
=================  =======================================  ===============================

A status this table does not know (404 "database not found", a redirect) is retried rather than
dropped: nothing is lost while a person fixes the cause.

:class:`InfluxV1Writer` talks to InfluxDB 1.x ``/write`` with urllib3; :class:`InfluxV2Writer`
talks to InfluxDB 2.x/3.x through influxdb-client, imported only when one is made (it costs half a
second at start-up). Neither puts a password or token in a message, an exception or ``repr``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlencode

import orjson
import urllib3
from pydantic import SecretStr
from urllib3.exceptions import (
    ConnectTimeoutError,
    EmptyPoolError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    SSLError,
)
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import TimeoutError as Urllib3Timeout

if TYPE_CHECKING:
    from plantwire.config.stores import InfluxConfig

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "InfluxV1Writer",
    "InfluxV2Writer",
    "WriteOutcome",
    "WriteResult",
    "classify_exception",
    "classify_response",
    "influx_message",
    "make_writer",
    "parse_retry_after",
]

# The gateway writes several batches at once (asyncio.to_thread), one connection each (4 by
# default, ``max_writes_in_flight``). Connections open lazily, so a roomy pool costs nothing.
DEFAULT_MAX_CONNECTIONS = 16
# An error body can quote a whole rejected line (up to 64 KiB of string field): keep the start.
_MAX_MESSAGE_CHARS = 4096


class WriteOutcome(StrEnum):
    """What a write came to, and so what the caller should do next (see the module table)."""

    OK = "ok"
    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    TOO_LARGE = "too_large"
    RETRY = "retry"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class WriteResult:
    """One write's outcome, the HTTP status (None when no answer came) and InfluxDB's message."""

    outcome: WriteOutcome
    status: int | None
    message: str
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is WriteOutcome.OK


# -- sorting answers ------------------------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP-date.

    >>> parse_retry_after("7")
    7.0
    >>> parse_retry_after("Thu, 01 Jan 1970 00:01:00 GMT", now=30.0)
    30.0
    >>> parse_retry_after("soon") is None
    True
    """
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:  # "-0000" zones parse naive; HTTP dates are always UTC
            moment = moment.replace(tzinfo=UTC)
        seconds = moment.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """A header's value whatever the mapping's case handling (influxdb-client hands a dict)."""
    if not headers:
        return None
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def _clip(text: str) -> str:
    text = text.strip()
    if len(text) > _MAX_MESSAGE_CHARS:
        return text[:_MAX_MESSAGE_CHARS] + f"... ({len(text)} characters)"
    return text


def influx_message(body: bytes | str | None, headers: Mapping[str, str] | None = None) -> str:
    """InfluxDB's own explanation: ``{"error": ...}`` (1.x), ``{"message": ...}`` (2.x/3.x),
    the ``X-Influxdb-Error`` header, or else the body as text."""
    raw = body.encode() if isinstance(body, str) else (body or b"")
    if raw.lstrip().startswith(b"{"):
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            document = None
        if isinstance(document, dict):
            for key in ("error", "message"):
                text = document.get(key)
                if isinstance(text, str) and text:
                    return _clip(text)
    header = _header(headers, "X-Influxdb-Error")
    if header:
        return _clip(header)
    return _clip(raw.decode("utf-8", "replace"))


def classify_response(
    status: int, body: bytes | str | None, headers: Mapping[str, str] | None = None
) -> WriteResult:
    """Sort an HTTP answer to a write (see the module table)."""
    if 200 <= status < 300:
        return WriteResult(WriteOutcome.OK, status, "")
    message = influx_message(body, headers) or f"HTTP {status}"
    if status in (400, 422):
        outcome = WriteOutcome.BAD_REQUEST
    elif status in (401, 403):
        outcome = WriteOutcome.UNAUTHORIZED
    elif status == 413:
        outcome = WriteOutcome.TOO_LARGE
    else:  # 429, 5xx, and statuses we do not know: retried, never dropped
        retry_after = parse_retry_after(_header(headers, "Retry-After"))
        return WriteResult(WriteOutcome.RETRY, status, message, retry_after)
    return WriteResult(outcome, status, message)


def classify_exception(exc: BaseException, url: str) -> WriteResult:
    """Sort a transport failure: no connection is UNREACHABLE, no answer in time is RETRY.

    A connect timeout counts as unreachable (nothing was reached: a link that is down drops
    packets rather than refusing them); a read timeout means the request went out, so the write
    may even have happened, and retrying it is safe because points overwrite themselves.
    """
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    unreachable = WriteOutcome.UNREACHABLE
    # NewConnectionError subclasses ConnectTimeoutError in urllib3 2.x: test it first.
    if isinstance(exc, NewConnectionError):
        return WriteResult(unreachable, None, f"cannot connect to {url}: {_reason(exc)}")
    if isinstance(exc, ConnectTimeoutError):
        return WriteResult(unreachable, None, f"no connection to {url} in time: {_reason(exc)}")
    if isinstance(exc, Urllib3Timeout | TimeoutError):
        return WriteResult(WriteOutcome.RETRY, None, f"no answer from {url} in time")
    if isinstance(exc, EmptyPoolError):
        return WriteResult(WriteOutcome.RETRY, None, "every connection to InfluxDB stayed busy")
    if isinstance(exc, ProtocolError | SSLError | ProxyError | OSError):
        return WriteResult(unreachable, None, f"connection to {url} failed: {_reason(exc)}")
    return WriteResult(WriteOutcome.RETRY, None, f"write to {url} failed: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    """The innermost readable cause ("Connection refused"), not urllib3's nested reprs."""
    while isinstance(exc, ProtocolError) and len(exc.args) > 1:
        inner = exc.args[1]
        if not isinstance(inner, BaseException):
            break
        exc = inner
    if isinstance(exc, NewConnectionError):
        return str(exc).rsplit(": ", 1)[-1]
    return str(exc) or type(exc).__name__


def _secret(value: SecretStr | str | None) -> str | None:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


# -- InfluxDB 1.x -----------------------------------------------------------------------------


def v1_settings(config: InfluxConfig) -> dict[str, Any]:
    """The settings of an InfluxDB 1.x writer, from the site file (both write paths use them)."""
    if not config.database:
        raise ValueError("an InfluxDB 1.x writer needs a database")
    return {
        "url": config.url,
        "database": config.database,
        "retention_policy": config.retention_policy,
        "username": config.username,
        "password": config.password,
        "timeout_s": config.timeout_s,
    }


class InfluxV1Writer:
    """POSTs line protocol to InfluxDB 1.x ``/write?db=..&rp=..&precision=ns``.

    Thread-safe: urllib3's pool hands each concurrent write its own keep-alive connection, up to
    ``max_connections``; a write that waits longer than the timeout for one gets RETRY.
    Credentials travel as HTTP basic auth, never in the URL, so no error text can quote them.
    """

    def __init__(
        self,
        url: str,
        database: str,
        *,
        retention_policy: str | None = None,
        username: str | None = None,
        password: SecretStr | str | None = None,
        timeout_s: float = 10.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        if password is not None and username is None:
            raise ValueError("a password without a username cannot be used; add username")
        self.url = url.rstrip("/")
        self.database = database
        self.retention_policy = retention_policy
        self.username = username
        params = {"db": database, "precision": "ns"}
        if retention_policy:
            params["rp"] = retention_policy
        self._write_url = f"{self.url}/write?{urlencode(params)}"
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if username is not None:
            credentials = f"{username}:{_secret(password) or ''}"
            self._headers.update(urllib3.make_headers(basic_auth=credentials))
        self._timeout_s = timeout_s
        self._timeout = urllib3.Timeout(connect=timeout_s, read=timeout_s)
        self._pool = urllib3.PoolManager(num_pools=2, maxsize=max_connections, block=True)

    @classmethod
    def from_config(
        cls, config: InfluxConfig, *, max_connections: int = DEFAULT_MAX_CONNECTIONS
    ) -> InfluxV1Writer:
        return cls(**v1_settings(config), max_connections=max_connections)

    def write(self, body: bytes) -> WriteResult:
        """Write one body of lines; never raises for what the network or InfluxDB does."""
        if not body:
            return WriteResult(WriteOutcome.OK, None, "nothing to write")
        # Bodies go uncompressed. Measured against influxd 1.6.7 on loopback (median of 15,
        # gzip level 1, compression time included): 72 KiB 2.2 ms plain / 2.9 ms gzip,
        # 910 KiB (5,000 lines) 18.1 / 25.5 ms, 3.6 MiB 79.5 / 105.4 ms. Compressing on our
        # side and inflating on influxd's costs more than the bytes it saves on a fast link.
        try:
            response = self._pool.request(
                "POST",
                self._write_url,
                body=body,
                headers=self._headers,
                timeout=self._timeout,
                retries=False,  # the gateway owns retries and backoff
                redirect=False,
                pool_timeout=self._timeout_s,
            )
        except (Urllib3Error, OSError) as exc:
            return classify_exception(exc, self.url)
        return classify_response(response.status, response.data, response.headers)

    def close(self) -> None:
        self._pool.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"InfluxV1Writer(url={self.url!r}, database={self.database!r}, "
            f"retention_policy={self.retention_policy!r}, username={self.username!r})"
        )


# -- InfluxDB 2.x / 3.x -----------------------------------------------------------------------


class InfluxV2Writer:
    """Writes line protocol to InfluxDB 2.x/3.x ``/api/v2/write`` through influxdb-client.

    Its synchronous write API keeps no per-call state, so several threads may write at once
    through the client's urllib3 pool. The library's errors are translated here, the one place
    that knows them: ``ApiException`` carries the status, headers and body; connection problems
    arrive as urllib3 errors, since the client is made without retries.
    """

    def __init__(
        self,
        url: str,
        *,
        org: str,
        bucket: str,
        token: SecretStr | str,
        timeout_s: float = 10.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        from influxdb_client import InfluxDBClient, WritePrecision
        from influxdb_client.client.write_api import SYNCHRONOUS
        from influxdb_client.rest import ApiException

        self.url = url.rstrip("/")
        self.org = org
        self.bucket = bucket
        self._api_exception: type[Exception] = ApiException
        self._precision: Any = WritePrecision.NS
        self._client: Any = InfluxDBClient(
            url=self.url,
            token=_secret(token),
            org=org,
            timeout=round(timeout_s * 1000),  # milliseconds
            connection_pool_maxsize=max_connections,
        )
        self._write_api: Any = self._client.write_api(write_options=SYNCHRONOUS)

    @classmethod
    def from_config(
        cls, config: InfluxConfig, *, max_connections: int = DEFAULT_MAX_CONNECTIONS
    ) -> InfluxV2Writer:
        if not (config.org and config.bucket and config.token):
            raise ValueError("an InfluxDB 2.x/3.x writer needs org, bucket and token")
        return cls(
            config.url,
            org=config.org,
            bucket=config.bucket,
            token=config.token,
            timeout_s=config.timeout_s,
            max_connections=max_connections,
        )

    def write(self, body: bytes) -> WriteResult:
        """Write one body of lines; never raises for what the network or InfluxDB does."""
        if not body:
            return WriteResult(WriteOutcome.OK, None, "nothing to write")
        try:
            self._write_api.write(
                self.bucket, self.org, record=body, write_precision=self._precision
            )
        except (Urllib3Error, OSError) as exc:
            return classify_exception(exc, self.url)
        except self._api_exception as exc:
            return self._from_api_exception(exc)
        return WriteResult(WriteOutcome.OK, 204, "")

    def _from_api_exception(self, exc: Any) -> WriteResult:
        status = getattr(exc, "status", None)
        if not status:  # influxdb-client reports TLS and similar failures as status 0
            reason = getattr(exc, "reason", None) or "no answer"
            return WriteResult(WriteOutcome.UNREACHABLE, None, f"{self.url}: {reason}")
        return classify_response(
            int(status), getattr(exc, "body", None), getattr(exc, "headers", None)
        )

    def close(self) -> None:
        self._write_api.close()
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"InfluxV2Writer(url={self.url!r}, org={self.org!r}, bucket={self.bucket!r})"


def make_writer(
    config: InfluxConfig, *, max_connections: int = DEFAULT_MAX_CONNECTIONS
) -> InfluxV1Writer | InfluxV2Writer:
    """The writer for a site's ``influxdb`` block: 1.x ``/write`` or influxdb-client.

    ``max_connections`` should be at least the number of writes the caller runs at once.
    """
    if config.api == "v1":
        return InfluxV1Writer.from_config(config, max_connections=max_connections)
    return InfluxV2Writer.from_config(config, max_connections=max_connections)
