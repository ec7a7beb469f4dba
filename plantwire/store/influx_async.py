"""The gateway's write path to InfluxDB 1.x, in the event loop itself.

The gateway decodes and encodes in its event loop; a write in a worker thread would fight that
loop for the interpreter lock on every few bytes it sends, and under load a 1 MB write then takes
hundreds of milliseconds. Here a write is a plain HTTP/1.1 request on one of a few keep-alive
connections, awaited like anything else. The answers are sorted by the same rules as the
threaded writers (:mod:`plantwire.store.influx_write`). InfluxDB 2.x/3.x go through
influxdb-client in a thread (:class:`ThreadedWriter`).
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from urllib.parse import urlencode, urlsplit

from pydantic import SecretStr

from plantwire.config.stores import InfluxConfig
from plantwire.store.influx_write import (
    InfluxV2Writer,
    WriteOutcome,
    WriteResult,
    classify_response,
    v1_settings,
)

__all__ = ["AsyncInfluxV1Writer", "AsyncLineWriter", "ThreadedWriter", "make_async_writer"]

_MAX_HEADER_LINE = 16 * 1024


class _ProtocolError(Exception):
    """An answer that is not HTTP as expected."""


class AsyncInfluxV1Writer:
    """``POST /write`` with asyncio streams; at most ``max_connections`` requests at once."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        retention_policy: str | None = None,
        username: str | None = None,
        password: SecretStr | str | None = None,
        timeout_s: float = 10.0,
        max_connections: int = 8,
    ) -> None:
        parts = urlsplit(url)
        self.url = url.rstrip("/")
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if parts.scheme == "https" else 8086)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        params = {"db": database, "precision": "ns"}
        if retention_policy:
            params["rp"] = retention_policy
        head = [
            f"POST {parts.path.rstrip('/')}/write?{urlencode(params)} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Content-Type: text/plain; charset=utf-8",
        ]
        if username is not None:
            secret = (
                password.get_secret_value() if isinstance(password, SecretStr) else password or ""
            )
            token = base64.b64encode(f"{username}:{secret}".encode()).decode()
            head.append(f"Authorization: Basic {token}")
        self._head = "\r\n".join(head) + "\r\n"
        self.timeout_s = timeout_s
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._slots = asyncio.Semaphore(max_connections)

    @classmethod
    def from_config(cls, config: InfluxConfig, *, max_connections: int = 8) -> AsyncInfluxV1Writer:
        return cls(**v1_settings(config), max_connections=max_connections)

    def __repr__(self) -> str:
        return f"AsyncInfluxV1Writer(url={self.url!r})"  # never the credentials

    async def write(self, body: bytes) -> WriteResult:
        """Write one body of lines; never raises for what the network or InfluxDB does."""
        if not body:
            return WriteResult(WriteOutcome.OK, None, "nothing to write")
        async with self._slots:
            try:
                connection = await self._connection()
            except (OSError, TimeoutError) as exc:
                return WriteResult(
                    WriteOutcome.UNREACHABLE,
                    None,
                    f"cannot connect to {self.url}: {exc or type(exc).__name__}",
                )
            try:
                status, headers, answer, keep = await asyncio.wait_for(
                    self._exchange(connection, body), self.timeout_s
                )
            except TimeoutError:
                connection[1].close()
                return WriteResult(WriteOutcome.RETRY, None, f"no answer from {self.url} in time")
            except (OSError, _ProtocolError, asyncio.IncompleteReadError) as exc:
                connection[1].close()
                return WriteResult(
                    WriteOutcome.UNREACHABLE,
                    None,
                    f"connection to {self.url} failed: {exc or type(exc).__name__}",
                )
            if keep:
                self._idle.append(connection)
            else:
                connection[1].close()
            return classify_response(status, answer, headers)

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self._idle:
            reader, writer = self._idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer
            writer.close()
        return await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=self._ssl, limit=_MAX_HEADER_LINE),
            self.timeout_s,
        )

    async def _exchange(
        self, connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], body: bytes
    ) -> tuple[int, dict[str, str], bytes, bool]:
        reader, writer = connection
        writer.write(f"{self._head}Content-Length: {len(body)}\r\n\r\n".encode())
        writer.write(body)
        await writer.drain()
        status_line = (await reader.readline()).decode("latin-1").strip()
        pieces = status_line.split(" ", 2)
        if len(pieces) < 2 or not pieces[0].startswith("HTTP/") or not pieces[1].isdigit():
            raise _ProtocolError(f"not an HTTP answer: {status_line[:80]!r}")
        status = int(pieces[1])
        headers: dict[str, str] = {}
        while True:
            line = (await reader.readline()).decode("latin-1")
            if line in ("\r\n", "\n", ""):
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        answer = await self._body(reader, headers)
        keep = headers.get("connection", "").lower() != "close" and pieces[0] != "HTTP/1.0"
        return status, headers, answer, keep

    @staticmethod
    async def _body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    await reader.readline()
                    return b"".join(chunks)
                chunks.append(await reader.readexactly(size))
                await reader.readline()
        length = int(headers.get("content-length", "0") or 0)
        return await reader.readexactly(length) if length else b""

    async def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


class ThreadedWriter:
    """A blocking writer (influxdb-client for 2.x/3.x) run in a worker thread."""

    def __init__(self, writer: InfluxV2Writer) -> None:
        self._writer = writer

    def __repr__(self) -> str:
        return f"ThreadedWriter({self._writer!r})"

    async def write(self, body: bytes) -> WriteResult:
        return await asyncio.to_thread(self._writer.write, body)

    async def close(self) -> None:
        self._writer.close()


AsyncLineWriter = AsyncInfluxV1Writer | ThreadedWriter


def make_async_writer(config: InfluxConfig, *, max_connections: int = 8) -> AsyncLineWriter:
    """The gateway's writer for a site's InfluxDB: asyncio for 1.x, influxdb-client for 2.x/3.x."""
    if config.api == "v1":
        return AsyncInfluxV1Writer.from_config(config, max_connections=max_connections)
    return ThreadedWriter(InfluxV2Writer.from_config(config, max_connections=max_connections))
