"""How both InfluxDB writers sort what a server answers, against a scripted local HTTP server:
statuses, Retry-After, slow and vanishing servers, the exact request each writer sends, and that
no password or token ever shows in a message or a repr. (tests/integration/test_store_influx.py
checks the same against a real influxd.)"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import Message
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np
import orjson
import pytest
from urllib3.exceptions import (
    ConnectTimeoutError,
    EmptyPoolError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from plantwire.config.stores import InfluxConfig
from plantwire.store import InfluxStore, StoreError
from plantwire.store.influx_write import (
    InfluxV1Writer,
    InfluxV2Writer,
    WriteOutcome,
    WriteResult,
    classify_exception,
    make_writer,
    parse_retry_after,
)
from plantwire.testing.servers import free_port

PASSWORD = "s3cret-Pa55word!"
TOKEN = "tok3n-S3CRET-abcdef0123456789=="
SECRETS = (PASSWORD, TOKEN, base64.b64encode(f"ingest:{PASSWORD}".encode()).decode())
BODY = b'telemetry,machine=filler temp=4.5,product="milk 1L" 1763712000000000000'


@dataclass
class Reply:
    status: int = 204
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    hang_up: bool = False  # close the connection without answering


@dataclass
class Request:
    method: str
    path: str
    headers: Message  # case-insensitive, as HTTP headers are
    body: bytes


class Scripted:
    """A local HTTP server that answers every request with ``reply`` (or ``respond(request)``)
    and remembers what it was sent."""

    def __init__(self) -> None:
        self.reply = Reply()
        self.respond: Callable[[Request], Reply] | None = None
        self.requests: list[Request] = []
        self.released = threading.Event()  # ends slow replies when the test is over
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Request("POST", self.path, self.headers, self.rfile.read(length))
                scripted.requests.append(request)
                reply = scripted.respond(request) if scripted.respond else scripted.reply
                if reply.delay_s:
                    scripted.released.wait(reply.delay_s)
                if reply.hang_up:
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server() -> Iterator[Scripted]:
    scripted = Scripted()
    yield scripted
    scripted.close()


Writer = InfluxV1Writer | InfluxV2Writer


def v1_writer(url: str, timeout_s: float = 5.0) -> InfluxV1Writer:
    return InfluxV1Writer(
        url,
        "plant db",
        retention_policy="one year",
        username="ingest",
        password=PASSWORD,
        timeout_s=timeout_s,
    )


def v2_writer(url: str, timeout_s: float = 5.0) -> InfluxV2Writer:
    return InfluxV2Writer(
        url, org="acme dairy", bucket="plant/telemetry", token=TOKEN, timeout_s=timeout_s
    )


@pytest.fixture(params=["v1", "v2"])
def make(request: pytest.FixtureRequest) -> Iterator[Callable[..., Writer]]:
    made: list[Writer] = []

    def factory(url: str, timeout_s: float = 5.0) -> Writer:
        writer = (v1_writer if request.param == "v1" else v2_writer)(url, timeout_s)
        made.append(writer)
        return writer

    yield factory
    for writer in made:
        writer.close()


def assert_no_secret(*texts: object) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in str(text)
            assert secret not in repr(text)


# -- sorting statuses ---------------------------------------------------------------------


def test_2xx_is_ok(server: Scripted, make: Callable[..., Writer]) -> None:
    result = make(server.url).write(BODY)
    assert result.outcome is WriteOutcome.OK and result.status == 204 and result.ok


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (400, WriteOutcome.BAD_REQUEST),
        (422, WriteOutcome.BAD_REQUEST),
        (401, WriteOutcome.UNAUTHORIZED),
        (403, WriteOutcome.UNAUTHORIZED),
        (413, WriteOutcome.TOO_LARGE),
        (429, WriteOutcome.RETRY),
        (500, WriteOutcome.RETRY),
        (503, WriteOutcome.RETRY),
        (404, WriteOutcome.RETRY),  # unknown to the table: retried, never dropped
    ],
)
def test_statuses_are_sorted_like_telegraf(
    server: Scripted, make: Callable[..., Writer], status: int, outcome: WriteOutcome
) -> None:
    server.reply = Reply(
        status, b'{"error":"what influxd said"}', {"Content-Type": "application/json"}
    )
    result = make(server.url).write(BODY)
    assert result == WriteResult(outcome, status, "what influxd said", None)
    assert_no_secret(result)


def test_a_bad_request_keeps_influxdb_1x_message(
    server: Scripted, make: Callable[..., Writer]
) -> None:
    message = "partial write: unable to parse 'telemetry temp=': missing field value dropped=1"
    server.reply = Reply(400, orjson.dumps({"error": message}))
    result = make(server.url).write(BODY)
    assert (result.outcome, result.message) == (WriteOutcome.BAD_REQUEST, message)


def test_a_bad_request_keeps_influxdb_2x_message(
    server: Scripted, make: Callable[..., Writer]
) -> None:
    server.reply = Reply(
        400, b'{"code":"invalid","message":"unable to parse line 1: bad timestamp"}'
    )
    result = make(server.url).write(BODY)
    assert (result.outcome, result.message) == (
        WriteOutcome.BAD_REQUEST,
        "unable to parse line 1: bad timestamp",
    )


def test_a_plain_text_error_body_is_the_message(
    server: Scripted, make: Callable[..., Writer]
) -> None:
    server.reply = Reply(502, b"<html>bad gateway</html>\n")
    result = make(server.url).write(BODY)
    assert (result.outcome, result.message) == (WriteOutcome.RETRY, "<html>bad gateway</html>")


def test_a_huge_error_body_is_clipped(server: Scripted, make: Callable[..., Writer]) -> None:
    server.reply = Reply(400, orjson.dumps({"error": "unable to parse '" + "x" * 100_000 + "'"}))
    result = make(server.url).write(BODY)
    assert result.outcome is WriteOutcome.BAD_REQUEST
    assert result.message.startswith("unable to parse 'xxx") and len(result.message) < 5000


def test_429_honours_retry_after_in_seconds(server: Scripted, make: Callable[..., Writer]) -> None:
    server.reply = Reply(429, b'{"error":"too many requests"}', {"Retry-After": "7"})
    result = make(server.url).write(BODY)
    assert (result.outcome, result.status, result.retry_after_s) == (WriteOutcome.RETRY, 429, 7.0)


def test_429_honours_retry_after_as_an_http_date(
    server: Scripted, make: Callable[..., Writer]
) -> None:
    server.reply = Reply(429, b"", {"Retry-After": formatdate(time.time() + 30, usegmt=True)})
    result = make(server.url).write(BODY)
    assert result.outcome is WriteOutcome.RETRY
    assert result.retry_after_s is not None and 25 <= result.retry_after_s <= 31


def test_503_with_retry_after(server: Scripted, make: Callable[..., Writer]) -> None:
    server.reply = Reply(503, b"", {"Retry-After": "120"})
    result = make(server.url).write(BODY)
    assert (result.outcome, result.retry_after_s, result.message) == (
        WriteOutcome.RETRY,
        120.0,
        "HTTP 503",
    )


def test_a_slow_server_times_out_as_retry(server: Scripted, make: Callable[..., Writer]) -> None:
    server.reply = Reply(204, delay_s=5.0)
    started = time.monotonic()
    result = make(server.url, timeout_s=0.3).write(BODY)
    assert time.monotonic() - started < 3
    assert (result.outcome, result.status) == (WriteOutcome.RETRY, None)
    assert "in time" in result.message


def test_a_server_that_hangs_up_is_unreachable(
    server: Scripted, make: Callable[..., Writer]
) -> None:
    server.reply = Reply(hang_up=True)
    result = make(server.url).write(BODY)
    assert (result.outcome, result.status) == (WriteOutcome.UNREACHABLE, None)


def test_nothing_listening_is_unreachable(make: Callable[..., Writer]) -> None:
    result = make(f"http://127.0.0.1:{free_port()}").write(BODY)
    assert (result.outcome, result.status) == (WriteOutcome.UNREACHABLE, None)
    assert "refused" in result.message.lower()


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (
            NameResolutionError("influxdb.invalid", None, OSError("Name or service not known")),
            WriteOutcome.UNREACHABLE,
        ),
        (
            NewConnectionError(
                None, "Failed to establish a new connection: [Errno 111] Connection refused"
            ),
            WriteOutcome.UNREACHABLE,
        ),
        (
            ProtocolError(
                "Connection aborted.", ConnectionResetError(104, "Connection reset by peer")
            ),
            WriteOutcome.UNREACHABLE,
        ),
        (ConnectTimeoutError("connect timed out"), WriteOutcome.UNREACHABLE),
        (ConnectionRefusedError(111, "Connection refused"), WriteOutcome.UNREACHABLE),
        (ReadTimeoutError(None, "/write", "Read timed out."), WriteOutcome.RETRY),
        (TimeoutError("timed out"), WriteOutcome.RETRY),
        (EmptyPoolError(None, "pool is empty"), WriteOutcome.RETRY),
    ],
)
def test_transport_failures_are_sorted(error: Exception, outcome: WriteOutcome) -> None:
    result = classify_exception(error, "http://influxdb:8086")
    assert (result.outcome, result.status) == (outcome, None)
    assert "http://influxdb:8086" in result.message or outcome is WriteOutcome.RETRY
    wrapped = classify_exception(MaxRetryError(None, "/write", error), "http://influxdb:8086")
    assert wrapped == result


def test_a_refused_connection_names_the_reason() -> None:
    error = NewConnectionError(
        None, "Failed to establish a new connection: [Errno 111] Connection refused"
    )
    message = classify_exception(error, "http://influxdb:8086").message
    assert message == "cannot connect to http://influxdb:8086: [Errno 111] Connection refused"


def test_an_empty_body_sends_nothing(server: Scripted, make: Callable[..., Writer]) -> None:
    assert make(server.url).write(b"").outcome is WriteOutcome.OK
    assert server.requests == []


# -- what goes over the wire ----------------------------------------------------------------


def test_v1_posts_to_write_with_basic_auth_and_the_exact_body(server: Scripted) -> None:
    with v1_writer(server.url + "/") as writer:
        assert writer.write(BODY).outcome is WriteOutcome.OK
    (request,) = server.requests
    url = urlsplit(request.path)
    assert url.path == "/write"
    assert parse_qs(url.query) == {"db": ["plant db"], "rp": ["one year"], "precision": ["ns"]}
    assert PASSWORD not in request.path
    assert (
        request.headers["Authorization"]
        == "Basic " + base64.b64encode(f"ingest:{PASSWORD}".encode()).decode()
    )
    assert request.body == BODY
    assert "gzip" not in request.headers.get("Content-Encoding", "")


def test_v1_without_credentials_sends_no_authorization(server: Scripted) -> None:
    with InfluxV1Writer(server.url, "plantwire") as writer:
        writer.write(BODY)
    assert "Authorization" not in server.requests[0].headers


def test_v2_posts_to_api_v2_write_with_the_token_and_the_exact_body(server: Scripted) -> None:
    with v2_writer(server.url) as writer:
        assert writer.write(BODY).outcome is WriteOutcome.OK
    (request,) = server.requests
    url = urlsplit(request.path)
    assert url.path == "/api/v2/write"
    assert parse_qs(url.query) == {
        "org": ["acme dairy"],
        "bucket": ["plant/telemetry"],
        "precision": ["ns"],
    }
    assert request.headers["Authorization"] == f"Token {TOKEN}"
    assert request.body == BODY


def test_make_writer_picks_the_api(server: Scripted) -> None:
    v1 = make_writer(InfluxConfig(url=server.url, api="v1", database="plantwire"))
    v2 = make_writer(
        InfluxConfig(url=server.url, api="v2", org="acme", bucket="plant", token=TOKEN)
    )
    try:
        assert isinstance(v1, InfluxV1Writer) and isinstance(v2, InfluxV2Writer)
    finally:
        v1.close()
        v2.close()


def test_many_threads_write_at_once(server: Scripted, make: Callable[..., Writer]) -> None:
    server.reply = Reply(204, delay_s=0.05)
    writer = make(server.url)
    bodies = [BODY + str(index).encode() for index in range(32)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(writer.write, bodies))
    assert all(result.outcome is WriteOutcome.OK for result in results)
    assert sorted(request.body for request in server.requests) == sorted(bodies)


# -- secrets --------------------------------------------------------------------------------


def test_no_secret_in_repr_messages_or_logs(
    server: Scripted, make: Callable[..., Writer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    writer = make(server.url, timeout_s=0.3)
    results = []
    for reply in (Reply(401, b'{"error":"authorization failed"}'), Reply(500), Reply(delay_s=2)):
        server.reply = reply
        results.append(writer.write(BODY))
    results.append(make(f"http://127.0.0.1:{free_port()}").write(BODY))
    assert [r.outcome for r in results] == [
        WriteOutcome.UNAUTHORIZED,
        WriteOutcome.RETRY,
        WriteOutcome.RETRY,
        WriteOutcome.UNREACHABLE,
    ]
    assert_no_secret(writer, *results, caplog.text)
    assert "ingest" in repr(writer) or "acme dairy" in repr(writer)


def test_a_password_without_a_username_is_refused() -> None:
    with pytest.raises(ValueError, match="username") as caught:
        InfluxV1Writer("http://127.0.0.1:8086", "db", password=PASSWORD)
    assert_no_secret(caught.value)


# -- reading through /query (v2 mode: the bucket, a token) ----------------------------------


def chunked(*documents: object) -> bytes:
    return b"".join(orjson.dumps(document) + b"\n" for document in documents)


def test_a_v2_store_reads_with_the_token_and_the_bucket(server: Scripted) -> None:
    columns = ["time", "temp", "product"]

    def respond(request: Request) -> Reply:
        query = parse_qs(request.body.decode())["q"][0]
        if query.startswith("SHOW FIELD KEYS"):
            values = [["temp", "float"], ["product", "string"]]
            series = {"name": "telemetry", "columns": ["fieldKey", "fieldType"], "values": values}
            return Reply(200, chunked({"results": [{"statement_id": 0, "series": [series]}]}))
        first = {
            "name": "telemetry",
            "columns": columns,
            "values": [[1, 4.5, None], [2, None, "a"]],
        }
        second = {"name": "telemetry", "columns": columns, "values": [[3, 5, "b"]]}
        return Reply(
            200,
            chunked(
                {"results": [{"statement_id": 0, "series": [first], "partial": True}]},
                {"results": [{"statement_id": 0, "series": [second]}]},
            ),
        )

    server.respond = respond
    config = InfluxConfig(url=server.url, api="v2", org="acme", bucket="plant", token=TOKEN)
    with InfluxStore(config) as store:
        block = store.read(
            "telemetry", ["temp", "product"], tags={"machine": "filler"}, start_ns=0, end_ns=10
        )
    np.testing.assert_array_equal(block.time_ns, [1, 2, 3])
    np.testing.assert_array_equal(block.fields["temp"], [4.5, np.nan, 5.0])
    assert block.fields["product"].tolist() == [None, "a", "b"]
    for request in server.requests:
        url = urlsplit(request.path)
        assert url.path == "/query"
        assert parse_qs(url.query) == {
            "db": ["plant"],
            "epoch": ["ns"],
            "chunked": ["true"],
            "chunk_size": ["10000"],
        }
        assert request.headers["Authorization"] == f"Token {TOKEN}"
    select = parse_qs(server.requests[-1].body.decode())["q"][0]
    assert select == (
        'SELECT "temp"::field, "product"::field FROM "telemetry" '
        "WHERE \"machine\"::tag = 'filler' AND time >= 0 AND time < 10"
    )


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            Reply(401, b'{"code":"unauthorized","message":"unauthorized access"}'),
            "unauthorized access",
        ),
        (
            Reply(200, chunked({"results": [{"statement_id": 0, "error": "bucket not found"}]})),
            "bucket not found",
        ),
        (Reply(200, b"not json\n"), "not JSON"),
        (Reply(204, delay_s=3), "in time"),
    ],
)
def test_query_errors_raise_store_error_without_the_token(
    server: Scripted, reply: Reply, expected: str
) -> None:
    server.reply = reply
    config = InfluxConfig(
        url=server.url, api="v2", org="acme", bucket="plant", token=TOKEN, timeout_s=0.3
    )
    with InfluxStore(config) as store, pytest.raises(StoreError, match=expected) as caught:
        store.tag_values("telemetry", "machine")
    assert_no_secret(caught.value, store)


def test_retry_after_parsing() -> None:
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=0.0) == 1445412480.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert parse_retry_after("nan") is None
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None
