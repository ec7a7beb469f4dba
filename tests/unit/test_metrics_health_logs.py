"""Metrics text, the health endpoint over a real socket, and logging with secrets masked."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import math
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import NoReturn, TypeVar

import orjson
import pytest

from plantwire import logs
from plantwire.config import parse_site
from plantwire.health import METRICS_CONTENT_TYPE, HealthServer, HealthStatus
from plantwire.logs import LogOnce, register_secret, register_secrets_from, setup_logging
from plantwire.metrics import Counter, Gauge, Histogram, Registry

ROOT = Path(__file__).parent.parent.parent
SITE = (ROOT / "tests" / "golden" / "good_site.yaml").read_text()
T = TypeVar("T")

# -- metrics ---------------------------------------------------------------------------------------


def test_every_metric_type_renders_exactly() -> None:
    registry = Registry()
    read = Counter(
        registry, "plantwire_samples_read_total", "Samples read.", ["machine", "protocol"]
    )
    read.inc(machine="filler", protocol="modbus")
    read.inc(2.5, machine="capper", protocol="opcua")
    depth = Gauge(registry, "plantwire_buffer_depth", "Samples waiting\nin the buffer \\ on disk.")
    depth.set(40)
    depth.inc(3)
    depth.dec()
    latency = Histogram(registry, "plantwire_write_seconds", "Write latency.", buckets=(0.5, 1, 5))
    for seconds in (0.25, 0.5, 3, 100):  # 0.5 sits on a bound: le is inclusive
        latency.observe(seconds)
    assert registry.render() == (
        "# HELP plantwire_samples_read_total Samples read.\n"
        "# TYPE plantwire_samples_read_total counter\n"
        'plantwire_samples_read_total{machine="capper",protocol="opcua"} 2.5\n'
        'plantwire_samples_read_total{machine="filler",protocol="modbus"} 1\n'
        "# HELP plantwire_buffer_depth Samples waiting\\nin the buffer \\\\ on disk.\n"
        "# TYPE plantwire_buffer_depth gauge\n"
        "plantwire_buffer_depth 42\n"
        "# HELP plantwire_write_seconds Write latency.\n"
        "# TYPE plantwire_write_seconds histogram\n"
        'plantwire_write_seconds_bucket{le="0.5"} 2\n'
        'plantwire_write_seconds_bucket{le="1"} 2\n'
        'plantwire_write_seconds_bucket{le="5"} 3\n'
        'plantwire_write_seconds_bucket{le="+Inf"} 4\n'
        "plantwire_write_seconds_sum 103.75\n"
        "plantwire_write_seconds_count 4\n"
    )
    assert registry.value("plantwire_samples_read_total", machine="capper", protocol="opcua") == 2.5
    assert registry.value("plantwire_buffer_depth") == 42


def test_unused_metrics_show_zero_without_labels_and_nothing_with_labels() -> None:
    registry = Registry()
    Counter(registry, "a_total", "A.")
    Counter(registry, "b_total", "B.", ["line"])
    Histogram(registry, "c_seconds", "C.", buckets=[1])
    assert registry.render() == (
        "# HELP a_total A.\n# TYPE a_total counter\na_total 0\n"
        "# HELP b_total B.\n# TYPE b_total counter\n"
        '# HELP c_seconds C.\n# TYPE c_seconds histogram\nc_seconds_bucket{le="1"} 0\n'
        'c_seconds_bucket{le="+Inf"} 0\nc_seconds_sum 0\nc_seconds_count 0\n'
    )


def test_label_values_are_escaped_and_histogram_labels_come_before_le() -> None:
    registry = Registry()
    errors = Counter(registry, "errors_total", "Errors.", ["reason"])
    errors.inc(reason='quote " backslash \\ newline \n end')
    sizes = Histogram(registry, "batch_samples", "Batch size.", buckets=[10], labelnames=["edge"])
    sizes.observe(7, edge="edge-dairy")
    assert registry.render().splitlines()[2:] == [
        'errors_total{reason="quote \\" backslash \\\\ newline \\n end"} 1',
        "# HELP batch_samples Batch size.",
        "# TYPE batch_samples histogram",
        'batch_samples_bucket{edge="edge-dairy",le="10"} 1',
        'batch_samples_bucket{edge="edge-dairy",le="+Inf"} 1',
        'batch_samples_sum{edge="edge-dairy"} 7',
        'batch_samples_count{edge="edge-dairy"} 1',
    ]


def test_values_render_as_prometheus_reads_them() -> None:
    registry = Registry()
    gauge = Gauge(registry, "g", "G.", ["case"])
    cases = {"a_int": 3.0, "b_frac": 0.1, "c_neg": -2.0, "d_big": 1e20, "e_inf": math.inf}
    for case, value in {**cases, "f_minf": -math.inf, "g_nan": math.nan}.items():
        gauge.set(value, case=case)
    samples = [line.split(" ")[1] for line in registry.render().splitlines()[2:]]
    assert samples == ["3", "0.1", "-2", "1e+20", "+Inf", "-Inf", "NaN"]


def test_labels_must_match_the_declared_names() -> None:
    registry = Registry()
    polls = Counter(registry, "polls_total", "Polls.", ["machine"])
    plain = Gauge(registry, "up", "Up.")
    with pytest.raises(ValueError, match="takes machine; got none"):
        polls.inc()
    with pytest.raises(ValueError, match="takes machine; got line, machine"):
        polls.inc(machine="filler", line="filling")
    with pytest.raises(ValueError, match="takes no labels; got machine"):
        plain.set(1, machine="filler")
    for amount in (-1, math.nan):
        with pytest.raises(ValueError, match="only goes up"):
            polls.inc(amount, machine="filler")
    assert registry.render().count("polls_total{") == 0


@pytest.mark.parametrize(
    ("name", "labels", "message"),
    [
        ("2fast", (), "metric name"),
        ("plant-wire", (), "metric name"),
        ("ok", ("bad-label",), "label name"),
        ("ok", ("__reserved",), "not start with __"),
        ("ok", ("line", "line"), "twice"),
    ],
)
def test_names_follow_prometheus_rules(name: str, labels: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Counter(Registry(), name, "Help.", labels)


def test_registry_refuses_duplicates_and_bad_histograms() -> None:
    registry = Registry()
    Counter(registry, "x_total", "X.")
    with pytest.raises(ValueError, match="already registered"):
        Gauge(registry, "x_total", "X again.")
    with pytest.raises(ValueError, match="label named le"):
        Histogram(registry, "h1", "H.", labelnames=["le"])
    with pytest.raises(ValueError, match="increase strictly"):
        Histogram(registry, "h2", "H.", buckets=[1, 1])
    with pytest.raises(ValueError, match="at least one"):
        Histogram(registry, "h3", "H.", buckets=[])
    with pytest.raises(ValueError, match="NaN"):
        Histogram(registry, "h4", "H.").observe(math.nan)
    with pytest.raises(KeyError, match="no metric named"):
        registry.value("missing")
    with pytest.raises(TypeError, match="histogram"):
        registry.value("h4")


def test_set_function_is_read_at_scrape_time_and_a_failing_one_reads_nan(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = Registry()
    buffer: list[int] = []
    depth = Gauge(registry, "buffer_depth", "Depth.", ["edge"])
    depth.set_function(lambda: len(buffer), edge="edge-dairy")
    depth.set_function(lambda: 1 / 0, edge="edge-snacks")
    buffer.extend([1, 2, 3])
    assert registry.value("buffer_depth", edge="edge-dairy") == 3
    with pytest.raises(ValueError, match="computed by a function"):
        depth.inc(edge="edge-dairy")
    for _ in range(2):
        rendered = registry.render()
    assert 'buffer_depth{edge="edge-dairy"} 3\n' in rendered
    assert 'buffer_depth{edge="edge-snacks"} NaN\n' in rendered
    assert len([r for r in caplog.records if "function failed" in r.getMessage()]) == 1
    depth.set(5, edge="edge-snacks")  # a plain value replaces the function
    assert registry.value("buffer_depth", edge="edge-snacks") == 5


# -- health endpoint -------------------------------------------------------------------------------


def healthy() -> HealthStatus:
    return HealthStatus(True, {"link": "up", "buffered": 0})


def with_server(
    scenario: Callable[[HealthServer], Awaitable[T]],
    status: Callable[[], HealthStatus] = healthy,
    registry: Registry | None = None,
) -> T:
    async def main() -> T:
        async with HealthServer(registry or Registry(), status, read_timeout_s=0.3) as server:
            return await scenario(server)

    return asyncio.run(main())


async def exchange(server: HealthServer, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes; status 0 means closed without an answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(raw)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 2)
    except ConnectionResetError:
        data = b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionResetError):
            await writer.wait_closed()
    if not data:
        return 0, {}, b""
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("ascii").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    assert headers["Connection"] == "close"
    if body:  # a HEAD answer gives the length of the body it leaves out
        assert int(headers["Content-Length"]) == len(body)
    return int(status_line.split(" ")[1]), headers, body


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: edge\r\nUser-Agent: test\r\n\r\n".encode()


def test_healthz_says_ok_with_details() -> None:
    status, headers, body = with_server(lambda server: exchange(server, get("/healthz?x=1")))
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert orjson.loads(body) == {"status": "ok", "link": "up", "buffered": 0}
    assert next(iter(orjson.loads(body))) == "status"


def test_healthz_says_degraded_with_503() -> None:
    def degraded() -> HealthStatus:
        return HealthStatus(False, {"link": "down", "status": "ignored"})

    status, _, body = with_server(lambda server: exchange(server, get("/healthz")), degraded)
    assert status == 503
    assert orjson.loads(body) == {"status": "degraded", "link": "down"}


def test_a_status_function_that_raises_gives_503(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> HealthStatus:
        raise RuntimeError("buffer database is locked")

    status, _, body = with_server(lambda server: exchange(server, get("/healthz")), broken)
    assert status == 503
    assert orjson.loads(body) == {
        "status": "degraded",
        "error": "RuntimeError: buffer database is locked",
    }
    assert any("status check failed" in record.getMessage() for record in caplog.records)


def test_metrics_are_served_as_prometheus_text() -> None:
    registry = Registry()
    Counter(registry, "plantwire_batches_total", "Batches.").inc(7)

    async def scenario(server: HealthServer) -> None:
        assert server.url == f"http://127.0.0.1:{server.port}"
        status, headers, body = await exchange(server, get("/metrics"))
        assert status == 200
        assert headers["Content-Type"] == METRICS_CONTENT_TYPE
        assert body.decode() == registry.render()
        assert b"plantwire_batches_total 7\n" in body
        status, headers, body = await exchange(server, get("/metrics", "HEAD"))
        assert (status, body) == (200, b"")
        assert int(headers["Content-Length"]) == len(registry.render())

    with_server(scenario, registry=registry)


def test_unknown_pages_and_methods() -> None:
    async def scenario(server: HealthServer) -> None:
        assert (await exchange(server, get("/")))[0] == 404
        status, headers, _ = await exchange(server, get("/healthz", "POST"))
        assert status == 405 and headers["Allow"] == "GET, HEAD"

    with_server(scenario)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS hello
        b"hello\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n",
    ],
)
def test_bad_requests_are_refused_and_the_server_keeps_serving(garbage: bytes) -> None:
    async def scenario(server: HealthServer) -> None:
        assert (await exchange(server, garbage))[0] in (0, 400)
        assert (await exchange(server, get("/healthz")))[0] == 200

    with_server(scenario)


def test_silent_half_open_and_vanishing_clients_do_not_stop_the_server() -> None:
    async def scenario(server: HealthServer) -> None:
        reader, silent = await asyncio.open_connection("127.0.0.1", server.port)
        assert await asyncio.wait_for(reader.read(), 2) == b""  # dropped after the read timeout
        silent.close()
        reader, half = await asyncio.open_connection("127.0.0.1", server.port)
        half.write(b"GET /healthz HTTP/1.1\r\n")
        half.write_eof()
        assert await asyncio.wait_for(reader.read(), 2) == b""
        half.close()
        _, gone = await asyncio.open_connection("127.0.0.1", server.port)
        gone.write(get("/metrics"))
        gone.close()
        assert (await exchange(server, get("/healthz")))[0] == 200

    with_server(scenario)


def test_stop_does_not_wait_for_a_silent_client() -> None:
    async def main() -> float:
        server = HealthServer(Registry(), healthy, read_timeout_s=30)
        await server.start()
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        await asyncio.sleep(0.05)
        started = asyncio.get_running_loop().time()
        await server.stop()
        writer.close()
        return asyncio.get_running_loop().time() - started

    assert asyncio.run(main()) < 1


# -- logging ---------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    """Leave the root logger and the process-wide secrets as they were."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    logs.clear_secrets()
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    logs.clear_secrets()


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


def fail(exc: Exception) -> NoReturn:
    raise exc


TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def test_text_lines_carry_utc_time_level_logger_and_extras(stream: io.StringIO) -> None:
    setup_logging("DEBUG", "text", stream)
    logging.getLogger("plantwire.edge").info(
        "source %s connected", "modbus", extra={"machine": "filler", "note": "two words", "n": 3}
    )
    line = stream.getvalue()
    assert line.endswith("\n") and line.count("\n") == 1
    pattern = (
        TIMESTAMP
        + ' INFO plantwire.edge: source modbus connected machine=filler note="two words" n=3\n'
    )
    assert re.fullmatch(pattern, line)


def test_json_lines_carry_the_same_and_the_traceback(stream: io.StringIO) -> None:
    setup_logging("INFO", "json", stream)
    log = logging.getLogger("plantwire.gateway")
    log.debug("not shown")
    try:
        fail(ValueError("bad batch"))
    except ValueError:
        log.exception("batch %d refused", 7, extra={"edge": "edge-dairy", "ts": "extra"})
    (line,) = stream.getvalue().splitlines()
    document = orjson.loads(line)
    assert list(document)[:4] == ["ts", "level", "logger", "msg"]
    assert document["level"] == "ERROR" and document["logger"] == "plantwire.gateway"
    assert document["msg"] == "batch 7 refused" and document["edge"] == "edge-dairy"
    assert document["extra_ts"] == "extra"
    assert document["exc"].startswith("Traceback") and "ValueError: bad batch" in document["exc"]


def test_setting_up_twice_does_not_duplicate_lines(stream: io.StringIO) -> None:
    first = io.StringIO()
    setup_logging("INFO", "text", first)
    setup_logging("INFO", "json", stream)
    logging.getLogger("plantwire").warning("once")
    assert first.getvalue() == ""
    assert len(stream.getvalue().splitlines()) == 1
    with pytest.raises(ValueError, match="unknown log level"):
        setup_logging("LOUD")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secrets_are_masked_everywhere(stream: io.StringIO, fmt: str) -> None:
    setup_logging("INFO", fmt, stream)  # type: ignore[arg-type]
    register_secret('hunter2-"quoted"')
    register_secret("abc")  # too short to mask: it would match ordinary text
    log = logging.getLogger("plantwire.edge")
    log.info('password hunter2-"quoted" and %s, abc', 'arg:hunter2-"quoted"')
    log.info("extra", extra={"url": 'mqtt://u:hunter2-"quoted"@h', "nested": ['hunter2-"quoted"']})
    try:
        fail(ConnectionError('login refused for hunter2-"quoted"'))
    except ConnectionError:
        log.exception("connect failed")
    output = stream.getvalue()
    assert "hunter2" not in output
    assert output.count(logs.MASK) >= 5 and "abc" in output


def test_secrets_of_a_site_config_are_found(stream: io.StringIO) -> None:
    text = SITE.replace(
        "  url: mqtt://127.0.0.1:1883\n",
        "  url: mqtt://127.0.0.1:1883\n  username: edge\n  password: ${MQTT_PASSWORD}\n",
    ).replace(
        "  database: plantwire\n",
        "  database: plantwire\n  username: writer\n  password: ${INFLUX_PASSWORD}\n",
    )
    site = parse_site(text, environ={"MQTT_PASSWORD": "s3cret-Σ", "INFLUX_PASSWORD": "influx-pw"})
    register_secrets_from(site.config)
    setup_logging("INFO", "text", stream)
    logging.getLogger("plantwire").error("mqtt s3cret-Σ, influx influx-pw")
    assert "s3cret" not in stream.getvalue() and "influx-pw" not in stream.getvalue()
    assert stream.getvalue().count(logs.MASK) == 2


def test_log_once_logs_a_problem_and_its_recovery_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "plantwire.test.once")
    once = LogOnce(logging.getLogger("plantwire.test.once"))
    assert once.problem("filler", "filler unreachable: %s", "timeout")
    assert not once.problem("filler", "filler unreachable: %s", "timeout")
    assert once.is_bad("filler") and not once.is_bad("capper")
    assert not once.recovered("capper", "capper back")
    assert once.recovered("filler", "filler back after %d s", 12)
    assert not once.recovered("filler", "filler back")
    assert once.problem("filler", "filler refused", level=logging.ERROR)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "filler unreachable: timeout"),
        ("INFO", "filler back after 12 s"),
        ("ERROR", "filler refused"),
    ]
    assert {r.funcName for r in caplog.records} == {
        "test_log_once_logs_a_problem_and_its_recovery_once"
    }


def test_log_once_remembers_a_bounded_number_of_keys() -> None:
    once = LogOnce(logging.getLogger("plantwire.test.once"), max_keys=3)
    for key in "abcd":
        once.problem(key, "down")
    assert not once.is_bad("a") and all(once.is_bad(key) for key in "bcd")
    once.problem("b", "down")  # still failing: b is now the most recent
    once.problem("e", "down")
    assert not once.is_bad("c") and once.is_bad("b")
    with pytest.raises(ValueError, match="max_keys"):
        LogOnce(logging.getLogger("x"), max_keys=0)
