"""``/healthz`` and ``/metrics`` over HTTP for every PlantWire process, in asyncio.

A supervisor (systemd, Kubernetes, a plant engineer with curl) asks ``/healthz`` whether the part
works: 200 with ``{"status": "ok", ...}`` or 503 with ``{"status": "degraded", ...}`` and the
details the part reports (link down, buffer filling). Prometheus scrapes ``/metrics``.

This is a deliberately tiny HTTP/1.1 server, not a web framework: one request per connection,
``GET`` (and ``HEAD``) only, bounded request lines, a read timeout, and every answer carries
``Content-Length`` and ``Connection: close``. It runs on the part's own event loop, so it must
never be the thing that takes the part down: garbage, silent or vanishing clients and a failing
status function all end in an error answer or a closed connection, never in an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from plantwire.lifecycle import cancel_and_wait
from plantwire.metrics import Registry

__all__ = ["METRICS_CONTENT_TYPE", "HealthServer", "HealthStatus"]

log = logging.getLogger(__name__)

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_JSON_CONTENT_TYPE = "application/json"
_MAX_LINE = 8 * 1024  # request line or one header line
_MAX_HEADERS = 100
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class HealthStatus:
    """What a part says about itself; ``details`` must be JSON-serializable."""

    healthy: bool
    details: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    extra_headers: tuple[tuple[str, str], ...] = ()

    def encode(self, *, with_body: bool) -> bytes:
        lines = [
            f"HTTP/1.1 {self.status} {_REASONS[self.status]}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Connection: close",
            *(f"{name}: {value}" for name, value in self.extra_headers),
        ]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
        return head + self.body if with_body else head


def _text(status: int, message: str) -> _Response:
    return _Response(status, (message + "\n").encode())


class _BadRequestError(Exception):
    """The client sent something that is not an HTTP request we can read."""


class HealthServer:
    """Serves ``/healthz`` from ``status()`` and ``/metrics`` from ``registry`` until stopped.

    ``port=0`` picks a free port (see :attr:`port`). Give ``host`` as one address: a name such as
    ``localhost`` may bind several sockets, each to a different free port.
    """

    def __init__(
        self,
        registry: Registry,
        status: Callable[[], HealthStatus],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        read_timeout_s: float = 5.0,
    ) -> None:
        self._registry = registry
        self._status = status
        self._host = host
        self._requested_port = port
        self._read_timeout_s = read_timeout_s
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the health server is already started")
        self._server = await asyncio.start_server(
            self._serve, self._host, self._requested_port, limit=_MAX_LINE
        )
        log.info("health endpoint listening on %s", self.url)

    async def stop(self) -> None:
        """Stop listening and drop connections still being read (a silent client)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await cancel_and_wait(list(self._connections))
        await server.wait_closed()

    async def __aenter__(self) -> HealthServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the health server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # start_server runs each connection in its own task
        self._connections.add(task)
        try:
            await self._exchange(reader, writer)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the client went away or never spoke: nothing to answer
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self._read_timeout_s):
                method, path = await _read_request(reader)
        except _BadRequestError as exc:
            method, response = "GET", _text(400, f"bad request: {exc}")
        else:
            response = self._respond(method, path)
        writer.write(response.encode(with_body=method != "HEAD"))
        # A client that never reads must not hold the connection open forever either.
        async with asyncio.timeout(self._read_timeout_s):
            await writer.drain()

    def _respond(self, method: str, path: str) -> _Response:
        if method not in ("GET", "HEAD"):
            return _Response(
                405, b"only GET is served here\n", extra_headers=(("Allow", "GET, HEAD"),)
            )
        try:
            if path == "/healthz":
                return self._healthz()
            if path == "/metrics":
                body = self._registry.render().encode()
                return _Response(200, body, METRICS_CONTENT_TYPE)
        except Exception:  # a bug behind one page must not stop the endpoint serving the next
            log.exception("health endpoint failed to answer %s", path)
            return _text(500, "internal error; see the process log")
        return _text(404, f"no such page: {path} (try /healthz or /metrics)")

    def _healthz(self) -> _Response:
        try:
            status = self._status()
            body = _health_body(status)
        except Exception as exc:  # a broken status check means the part is not known to be ok
            log.warning("health status check failed: %s", exc, exc_info=True)
            status = HealthStatus(False, {"error": f"{type(exc).__name__}: {exc}"})
            body = _health_body(status)
        return _Response(200 if status.healthy else 503, body, _JSON_CONTENT_TYPE)


def _health_body(status: HealthStatus) -> bytes:
    document: dict[str, object] = {"status": "ok" if status.healthy else "degraded"}
    # "status" is the endpoint's own word; a detail of the same name must not overwrite it.
    document.update((key, value) for key, value in status.details.items() if key != "status")
    return orjson.dumps(document, option=orjson.OPT_NON_STR_KEYS) + b"\n"


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    """The method and path of one request; headers are read (bounded) and ignored."""
    request_line = await _read_line(reader)
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[2].startswith("HTTP/1."):
        raise _BadRequestError("expected 'METHOD /path HTTP/1.1'")
    method, target, _version = parts
    for _ in range(_MAX_HEADERS):
        header = await _read_line(reader)
        if not header:
            return method, target.split("?", 1)[0]
        if ":" not in header:
            raise _BadRequestError("a header line without ':'")
    raise _BadRequestError(f"more than {_MAX_HEADERS} header lines")


async def _read_line(reader: asyncio.StreamReader) -> str:
    try:
        raw = await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        raise _BadRequestError(f"a line longer than {_MAX_LINE} bytes") from None
    try:
        return raw.decode("ascii").rstrip("\r\n")
    except UnicodeDecodeError:
        raise _BadRequestError("bytes that are not ASCII in the request head") from None
