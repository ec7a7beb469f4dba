"""The InfluxDB store: writes through :mod:`plantwire.store.influx_write`, reads with InfluxQL.

Reads go to the v1-compatible ``/query`` endpoint, which InfluxDB 1.x answers natively, 2.x
through a DBRP mapping (``db`` = the bucket, ``Authorization: Token``) and 3.x natively, so one
reader serves all three. Answers are asked for in chunks (``chunked=true``): InfluxDB then streams
one JSON document per line, each with up to 10,000 rows, and each is turned into numpy columns
and dropped before the next is parsed, so a month of one-second data never sits in memory as
text, let alone twice.

Every name and value in a query is quoted with :mod:`plantwire.influxql`; tags are compared with
``::tag`` and fields selected with ``::field``, so a metric that shares a tag's name can neither
match a tag condition nor come back as the tag.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any, Self, cast
from urllib.parse import urlencode

import numpy as np
import orjson
import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from plantwire.config.stores import InfluxConfig
from plantwire.errors import LineProtocolError
from plantwire.influxql import quote_ident, quote_literal
from plantwire.lineprotocol import LineEncoder, Point
from plantwire.store.base import SeriesBlock, StoreError, read_arguments
from plantwire.store.influx_write import (
    DEFAULT_MAX_CONNECTIONS,
    InfluxV1Writer,
    InfluxV2Writer,
    WriteOutcome,
    WriteResult,
    classify_exception,
    classify_response,
    influx_message,
    make_writer,
    parse_retry_after,
)

__all__ = [
    "QUERY_CHUNK_ROWS",
    "WRITE_CHUNK_LINES",
    "InfluxStore",
    "InfluxV1Writer",
    "InfluxV2Writer",
    "WriteOutcome",
    "WriteResult",
    "classify_exception",
    "classify_response",
    "make_writer",
    "parse_retry_after",
]

WRITE_CHUNK_LINES = 5_000
QUERY_CHUNK_ROWS = 10_000


class InfluxStore:
    """The :class:`~plantwire.store.base.Store` backed by InfluxDB 1.x, 2.x or 3.x.

    ``write_points`` is the simple path analytics uses to store results: any outcome but OK
    raises :class:`StoreError` (the gateway uses the writers directly, to retry and spool).
    Thread-safe: the encoder is shared under a lock, connections come from urllib3's pools.
    """

    def __init__(
        self,
        config: InfluxConfig,
        *,
        writer: InfluxV1Writer | InfluxV2Writer | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.url = config.url.rstrip("/")
        self._writer = writer if writer is not None else make_writer(config)
        self._encoder = LineEncoder()
        self._encoder_lock = threading.Lock()
        if config.api == "v1":
            self.database = config.database or ""
            params = {"db": self.database}
            if config.retention_policy:
                params["rp"] = config.retention_policy
        else:
            self.database = config.bucket or ""
            params = {"db": self.database}
        params.update(epoch="ns", chunked="true", chunk_size=str(QUERY_CHUNK_ROWS))
        self._query_url = f"{self.url}/query?{urlencode(params)}"
        self._headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            **_auth_headers(config),
        }
        self._timeout = urllib3.Timeout(connect=config.timeout_s, read=config.timeout_s)
        self._pool = urllib3.PoolManager(num_pools=2, maxsize=max_connections)
        # measurement -> field key -> "string" or another InfluxDB type, from SHOW FIELD KEYS
        self._field_types: dict[str, dict[str, str]] = {}

    # -- writing --------------------------------------------------------------------------
    def write_points(self, points: Iterable[Point]) -> int:
        """Write points in bodies of 5,000 lines; return how many were written.

        Raises :class:`StoreError` at the first chunk InfluxDB does not take (or that cannot be
        encoded); the chunks before it stay written, which is harmless: writing them again
        overwrites them with the same values.
        """
        written = 0
        remaining = iter(points)
        while chunk := list(islice(remaining, WRITE_CHUNK_LINES)):
            try:
                with self._encoder_lock:
                    body = self._encoder.encode(chunk)
            except LineProtocolError as exc:
                raise StoreError(f"{exc} ({written} points before it were written)") from exc
            result = self._writer.write(body)
            if result.outcome is not WriteOutcome.OK:
                status = f"HTTP {result.status}" if result.status is not None else "no answer"
                raise StoreError(
                    f"InfluxDB did not take the write ({result.outcome}, {status}): "
                    f"{result.message} ({written} points before it were written)"
                )
            written += len(chunk)
        return written

    # -- reading --------------------------------------------------------------------------
    def read(
        self,
        measurement: str,
        fields: Sequence[str],
        *,
        tags: Mapping[str, str],
        start_ns: int,
        end_ns: int,
    ) -> SeriesBlock:
        """The points in ``[start_ns, end_ns)`` of the series matching ``tags`` exactly."""
        names, start, end = read_arguments(fields, start_ns, end_ns)
        strings = self._string_fields(measurement, names)
        if start >= end:
            return SeriesBlock.empty(names, strings)
        select = ", ".join(quote_ident(name) + "::field" for name in names)
        conditions = [*_tag_conditions(tags), f"time >= {start}", f"time < {end}"]
        query = f"SELECT {select} FROM {quote_ident(measurement)} WHERE {' AND '.join(conditions)}"
        columns = _Columns(names, strings)
        for document in self._documents(query):
            for series in _series(document):
                columns.add(series, query)
        return columns.block()

    def tag_values(
        self, measurement: str, tag: str, *, where: Mapping[str, str] | None = None
    ) -> list[str]:
        """``SHOW TAG VALUES``: the distinct values of ``tag``, sorted."""
        query = f"SHOW TAG VALUES FROM {quote_ident(measurement)} WITH KEY = {quote_ident(tag)}"
        if where:
            query += " WHERE " + " AND ".join(_tag_conditions(where))
        values: set[str] = set()
        for document in self._documents(query):
            for series in _series(document):
                values.update(row[1] for row in series.get("values") or ())
        return sorted(values)

    def _string_fields(self, measurement: str, names: Sequence[str]) -> set[str]:
        """Which of ``names`` are string fields, so their columns are object arrays even when
        the range holds no value. Cached; looked up again when an unknown field is asked for."""
        known = self._field_types.get(measurement)
        if known is None or any(name not in known for name in names):
            known = {}
            for document in self._documents(f"SHOW FIELD KEYS FROM {quote_ident(measurement)}"):
                for series in _series(document):
                    for key, kind in series.get("values") or ():
                        # One key can have a type per shard; any string makes it a string column.
                        if known.get(key) != "string":
                            known[key] = kind
            self._field_types[measurement] = known
        return {name for name in names if known.get(name) == "string"}

    def _documents(self, query: str) -> Iterator[dict[str, Any]]:
        """Run one InfluxQL statement and yield the JSON documents of its chunked answer,
        raising :class:`StoreError` with InfluxDB's message for any error."""
        try:
            response = self._pool.request(
                "POST",
                self._query_url,
                body=urlencode({"q": query}).encode(),
                headers=self._headers,
                timeout=self._timeout,
                retries=False,
                redirect=False,
                preload_content=False,
            )
        except (Urllib3Error, OSError) as exc:
            message = classify_exception(exc, self.url).message
            raise StoreError(f"InfluxDB query failed: {message}") from exc
        finished = False
        try:
            if response.status != 200:
                message = influx_message(response.read(), response.headers)
                raise StoreError(f"InfluxDB refused {query!r} (HTTP {response.status}): {message}")
            # BufferedReader splits the stream into lines without copying it into one string;
            # auto_close off, or it would read from a response urllib3 had already closed.
            # (urllib3's pools always hand out HTTPResponse, whose type declares auto_close.)
            cast(urllib3.HTTPResponse, response).auto_close = False
            for line in io.BufferedReader(cast(io.RawIOBase, response), 1 << 16):
                if not line.isspace():
                    document = orjson.loads(line)
                    _raise_error(document, query)
                    yield document
            finished = True
        except (Urllib3Error, OSError) as exc:
            raise StoreError(f"reading InfluxDB's answer to {query!r} failed: {exc}") from exc
        except orjson.JSONDecodeError as exc:
            raise StoreError(f"InfluxDB's answer to {query!r} is not JSON: {exc}") from exc
        finally:
            if finished:
                response.release_conn()  # read to the end: the connection can be reused
            else:
                response.close()  # unread data would poison the next request on it

    # -- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:
        self._writer.close()
        self._pool.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"InfluxStore(url={self.url!r}, database={self.database!r})"


class _Columns:
    """Gathers the rows of a chunked answer as numpy columns, one chunk at a time.

    Each chunk's rows are transposed with ``zip`` and handed to numpy per column, which turns
    JSON nulls into NaN for float64 and keeps them as None for object columns.
    """

    def __init__(self, names: list[str], strings: set[str]) -> None:
        self.names = names
        self.strings = strings
        self.times: list[np.ndarray] = []
        self.values: list[list[np.ndarray]] = [[] for _ in names]

    def add(self, series: Mapping[str, Any], query: str) -> None:
        rows = series.get("values")
        if not rows:
            return
        if len(series.get("columns") or ()) != len(self.names) + 1:
            raise StoreError(f"InfluxDB answered {query!r} with columns {series.get('columns')}")
        columns = list(zip(*rows, strict=True))
        self.times.append(np.array(columns[0], dtype=np.int64))
        for name, parts, column in zip(self.names, self.values, columns[1:], strict=True):
            parts.append(self._array(name, column))

    def _array(self, name: str, column: tuple[Any, ...]) -> np.ndarray:
        if name in self.strings:
            return np.array(column, dtype=object)
        try:
            return np.array(column, dtype=np.float64)
        except (TypeError, ValueError):
            # A field that took strings after we looked its type up: keep what InfluxDB sent.
            return np.array(column, dtype=object)

    def block(self) -> SeriesBlock:
        if not self.times:
            return SeriesBlock.empty(self.names, self.strings)
        fields: dict[str, np.ndarray] = {}
        for name, parts in zip(self.names, self.values, strict=True):
            if all(part.dtype == parts[0].dtype for part in parts):
                fields[name] = np.concatenate(parts)
            else:
                fields[name] = np.concatenate([part.astype(object) for part in parts])
        return SeriesBlock(time_ns=np.concatenate(self.times), fields=fields)


def _tag_conditions(tags: Mapping[str, str]) -> list[str]:
    return [f"{quote_ident(key)}::tag = {quote_literal(tags[key])}" for key in sorted(tags)]


def _series(document: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for result in document.get("results") or ():
        yield from result.get("series") or ()


def _raise_error(document: Mapping[str, Any], query: str) -> None:
    """InfluxDB reports a failed statement inside a 200 answer; turn it into a StoreError."""
    errors = [document["error"]] if document.get("error") else []
    errors += [r["error"] for r in document.get("results") or () if r.get("error")]
    if errors:
        raise StoreError(f"InfluxDB could not run {query!r}: {'; '.join(map(str, errors))}")


def _auth_headers(config: InfluxConfig) -> dict[str, str]:
    """Basic auth for 1.x (never ``u``/``p`` in the URL, where errors would quote it), a token
    for the 2.x/3.x v1-compatible endpoint."""
    if config.api == "v2" and config.token is not None:
        return {"Authorization": f"Token {config.token.get_secret_value()}"}
    if config.username is not None:
        password = config.password.get_secret_value() if config.password else ""
        return urllib3.make_headers(basic_auth=f"{config.username}:{password}")
    return {}
