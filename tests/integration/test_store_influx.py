"""The InfluxDB store and writers against a real influxd (Debian's 1.6.7): reads in chunks, the
errors InfluxDB gives, and every write outcome the gateway acts on as influxd really produces it.
The store contract both backends keep is in test_store_conformance.py."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import urllib3

from plantwire.config.stores import InfluxConfig
from plantwire.influxql import quote_ident
from plantwire.lineprotocol import Point
from plantwire.store import InfluxStore, SeriesBlock, Store, StoreError
from plantwire.store.influx import QUERY_CHUNK_ROWS
from plantwire.store.influx_write import InfluxV1Writer, WriteOutcome
from plantwire.testing.servers import InfluxClient, Influxd, free_port

pytestmark = pytest.mark.servers

T0 = 1_763_712_000_000_000_000  # 2025-11-21T08:00:00Z
SECOND = 1_000_000_000
FILLER = {"site": "binh-duong", "area": "dairy", "line": "filling", "machine": "filler"}
CAPPER = {**FILLER, "machine": "capper"}


def v1_config(server: Influxd, database: str, **extra: object) -> InfluxConfig:
    return InfluxConfig(url=f"http://127.0.0.1:{server.port}", api="v1", database=database, **extra)


@pytest.fixture
def store(influxd: Influxd, influx: InfluxClient) -> Iterator[InfluxStore]:
    with InfluxStore(v1_config(influxd, influx.database)) as opened:
        yield opened


def read(
    store: Store, fields: list[str], tags: dict[str, str] = FILLER, **bounds: int
) -> SeriesBlock:
    start = bounds.get("start_ns", T0 - 3600 * SECOND)
    end = bounds.get("end_ns", T0 + 3600 * SECOND)
    return store.read("telemetry", fields, tags=tags, start_ns=start, end_ns=end)


# -- writing and reading back ---------------------------------------------------------------


# The contract every backend keeps (values, tags, time ranges, types) is in
# test_store_conformance.py, which runs on this store too; here: what is InfluxDB's own.


def test_a_large_read_comes_back_whole_through_many_chunks(
    store: InfluxStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    documents = 0
    original = store._documents

    def counting(query: str) -> Iterator[dict[str, object]]:
        nonlocal documents
        for document in original(query):
            documents += query.startswith("SELECT")
            yield document

    monkeypatch.setattr(store, "_documents", counting)
    count = 60_000
    points = [
        Point(
            "telemetry",
            FILLER,
            {"temp": i / 8, "state": "run" if i % 2 else "idle"},
            T0 + i * SECOND,
        )
        for i in range(count)
    ]
    assert store.write_points(points) == count  # 12 bodies of 5,000 lines
    block = read(store, ["temp", "state"], end_ns=T0 + count * SECOND)  # 6 chunks of 10,000
    assert len(block) == count
    assert (np.diff(block.time_ns) == SECOND).all() and block.time_ns[0] == T0
    np.testing.assert_array_equal(block.fields["temp"], np.arange(count) / 8)
    assert block.fields["state"][:3].tolist() == ["idle", "run", "idle"]
    assert (block.fields["state"] == "run").sum() == count // 2
    assert documents == count // QUERY_CHUNK_ROWS


# -- errors ---------------------------------------------------------------------------------


def test_a_query_error_carries_influxdb_message(influxd: Influxd) -> None:
    with InfluxStore(v1_config(influxd, "no_such_database")) as missing:
        with pytest.raises(StoreError, match="database not found: no_such_database"):
            read(missing, ["temp"])
        with pytest.raises(StoreError, match="database not found"):
            missing.tag_values("telemetry", "machine")


def test_a_refused_write_raises_with_influxdb_message(store: InfluxStore) -> None:
    store.write_points([Point("telemetry", FILLER, {"temp": 1.0}, T0)])
    with pytest.raises(StoreError, match=r"bad_request, HTTP 400.*field type conflict"):
        store.write_points([Point("telemetry", FILLER, {"temp": "warm"}, T0 + 1)])
    with pytest.raises(StoreError, match="not finite"):
        store.write_points([Point("telemetry", FILLER, {"temp": math.nan}, T0 + 2)])


def test_an_unreachable_store_raises(influxd: Influxd) -> None:
    config = InfluxConfig(url=f"http://127.0.0.1:{free_port()}", api="v1", database="x")
    with InfluxStore(config) as gone:
        with pytest.raises(StoreError, match="refused"):
            read(gone, ["temp"])
        with pytest.raises(StoreError, match="unreachable"):
            gone.write_points([Point("telemetry", FILLER, {"temp": 1.0}, T0)])


def test_v2_mode_reads_the_bucket_through_the_v1_query_api(
    influxd: Influxd, store: InfluxStore
) -> None:
    """influxd 1.6 has no /api/v2 (so no v2 writes here), but answers /query for db=bucket; with
    auth off it ignores the token, which is enough to check the read path of v2 mode."""
    store.write_points([Point("telemetry", FILLER, {"temp": 7.5}, T0)])
    config = InfluxConfig(
        url=influxd.url, api="v2", org="acme", bucket=store.database, token="t0ken-for-test"
    )
    with InfluxStore(config) as v2:
        assert read(v2, ["temp"]).fields["temp"].tolist() == [7.5]
        assert v2.tag_values("telemetry", "machine") == ["filler"]


# -- the writer's outcomes against influxd --------------------------------------------------


@pytest.fixture
def writer(influxd: Influxd, influx: InfluxClient) -> Iterator[InfluxV1Writer]:
    with InfluxV1Writer(influxd.url, influx.database, timeout_s=5) as opened:
        yield opened


def test_a_good_write_is_ok(writer: InfluxV1Writer, influx: InfluxClient) -> None:
    result = writer.write(b"telemetry,machine=filler temp=4.5 1763712000000000000")
    assert (result.outcome, result.status) == (WriteOutcome.OK, 204)
    assert influx.count("telemetry", "temp") == 1


def test_a_malformed_line_is_a_bad_request_with_influxd_message(writer: InfluxV1Writer) -> None:
    result = writer.write(b"telemetry,machine=filler temp= 1763712000000000000")
    assert (result.outcome, result.status) == (WriteOutcome.BAD_REQUEST, 400)
    assert "unable to parse 'telemetry,machine=filler temp= 1763712000000000000'" in result.message


def test_a_partial_write_keeps_the_good_line_and_is_a_bad_request(
    writer: InfluxV1Writer, influx: InfluxClient
) -> None:
    body = b"telemetry,machine=filler temp=4.5 1763712000000000000\ntelemetry,machine=filler temp=oops 1763712000000000001"
    result = writer.write(body)
    assert (result.outcome, result.status) == (WriteOutcome.BAD_REQUEST, 400)
    assert result.message.startswith("partial write: unable to parse")
    assert "dropped=" in result.message
    assert influx.rows('SELECT "temp" FROM "telemetry"') == [
        {"time": 1763712000000000000, "temp": 4.5, "_measurement": "telemetry"}
    ]


def test_a_type_conflict_is_a_bad_request(writer: InfluxV1Writer) -> None:
    assert writer.write(b"telemetry temp=1 1").outcome is WriteOutcome.OK
    result = writer.write(b'telemetry temp="warm" 2')
    assert result.outcome is WriteOutcome.BAD_REQUEST
    assert "field type conflict" in result.message


def test_a_missing_database_is_retried_not_dropped(influxd: Influxd) -> None:
    with InfluxV1Writer(influxd.url, "never_created") as writer:
        result = writer.write(b"telemetry temp=1 1")
    assert (result.outcome, result.status) == (WriteOutcome.RETRY, 404)
    assert "database not found" in result.message


def test_nothing_listening_is_unreachable() -> None:
    with InfluxV1Writer(f"http://127.0.0.1:{free_port()}", "plantwire", timeout_s=2) as writer:
        result = writer.write(b"telemetry temp=1 1")
    assert (result.outcome, result.status) == (WriteOutcome.UNREACHABLE, None)


def test_a_killed_influxd_is_unreachable_and_the_writer_recovers(influxd_private: Influxd) -> None:
    with InfluxV1Writer(influxd_private.url, "plantwire", timeout_s=2) as writer:
        assert writer.write(b"telemetry temp=1 1").outcome is WriteOutcome.OK  # a pooled connection
        influxd_private.kill()
        down = [writer.write(b"telemetry temp=2 2") for _ in range(3)]
        assert {result.outcome for result in down} == {WriteOutcome.UNREACHABLE}
        influxd_private.start()
        assert writer.write(b"telemetry temp=3 3").outcome is WriteOutcome.OK
    assert influxd_private.client.count("telemetry", "temp") == 2


# -- influxd with authentication ------------------------------------------------------------

ADMIN, ADMIN_PASSWORD = "admin", "Adm1n-pa55-for-tests"


class _FirstUserClient(InfluxClient):
    """With auth on, the one query influxd takes without credentials creates the first admin;
    Influxd.start() calls create_database, so that is where it goes."""

    def create_database(self, name: str) -> InfluxClient:
        self.query(
            f"CREATE USER {quote_ident(ADMIN)} WITH PASSWORD '{ADMIN_PASSWORD}' WITH ALL PRIVILEGES"
        )
        return self


class AuthInfluxd(Influxd):
    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.client = _FirstUserClient(self.port, "plantwire")

    def _config_text(self) -> str:
        return super()._config_text().replace("[http]\n", "[http]\n  auth-enabled = true\n")


@pytest.fixture(scope="module")
def auth_influxd(
    influxd: Influxd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AuthInfluxd]:
    """Depends on ``influxd`` so a missing binary is skipped (or failed in CI) the usual way."""
    server = AuthInfluxd(tmp_path_factory.mktemp("influxd-auth"))
    server.start()
    try:
        http = urllib3.PoolManager()
        headers = urllib3.make_headers(basic_auth=f"{ADMIN}:{ADMIN_PASSWORD}")
        response = http.request(
            "POST",
            f"{server.url}/query",
            fields={"q": "CREATE DATABASE plant"},
            headers=headers,
            encode_multipart=False,
        )
        assert response.status == 200, response.data
        yield server
    finally:
        server.stop()


def test_wrong_credentials_are_unauthorized_and_never_quoted(auth_influxd: AuthInfluxd) -> None:
    wrong = "not-the-Password-42"
    with InfluxV1Writer(auth_influxd.url, "plant", username=ADMIN, password=wrong) as writer:
        result = writer.write(b"telemetry temp=1 1")
        assert (result.outcome, result.status) == (WriteOutcome.UNAUTHORIZED, 401)
        assert result.message == "authorization failed"
        assert wrong not in repr(writer) and wrong not in str(result)
    config = v1_config(auth_influxd, "plant", username=ADMIN, password=wrong)
    with InfluxStore(config) as store:
        with pytest.raises(StoreError, match="HTTP 401") as refused:
            read(store, ["temp"])
        assert wrong not in str(refused.value) and wrong not in repr(store)
    with InfluxV1Writer(auth_influxd.url, "plant") as anonymous:
        assert anonymous.write(b"telemetry temp=1 1").outcome is WriteOutcome.UNAUTHORIZED


def test_right_credentials_write_and_read(auth_influxd: AuthInfluxd) -> None:
    config = v1_config(auth_influxd, "plant", username=ADMIN, password=ADMIN_PASSWORD)
    with InfluxStore(config) as store:
        assert store.write_points([Point("telemetry", FILLER, {"temp": 3.5}, T0)]) == 1
        assert read(store, ["temp"]).fields["temp"].tolist() == [3.5]
