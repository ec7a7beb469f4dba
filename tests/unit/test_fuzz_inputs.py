"""Bad input: every boundary that reads outside data gets hostile input, and either returns or
raises its own error with a clear, one-line message -- never a KeyError, a RecursionError or a
YAML error (the contract and the checks are in plantwire/testing/fuzz.py; bench/fuzz.py runs the
same targets for minutes). Below the property tests, the inputs that once crashed or confused a
boundary are kept as plain examples."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from edge.sources.modbus_codec import RegisterDecodeError, tag_value
from edge.sources.modbus_fuzz import modbus_fuzz_target
from gateway.ingest.fuzz import ingest_fuzz_targets
from gateway.intake import Intake
from plantwire.codec import decode_batch
from plantwire.config import parse_site, yamlsource
from plantwire.config.models import ByteOrder, ModbusTag
from plantwire.errors import ConfigError, LineProtocolError
from plantwire.lineprotocol import LineEncoder, Point, batch_lines
from plantwire.model import INT64_MAX
from plantwire.testing.fuzz import check_message, fuzz_targets
from plantwire.testing.fuzz_sites import SECRET_ENV

ROOT = Path(__file__).parents[2]
GOOD_SITE = (ROOT / "tests" / "golden" / "good_site.yaml").read_text()
TARGETS = {
    target.name: target
    for target in [
        *fuzz_targets(
            [ROOT / "deploy" / "site.example.yaml", ROOT / "tests" / "golden" / "good_site.yaml"]
        ),
        modbus_fuzz_target(),
        *ingest_fuzz_targets(),
    ]
}
# The default hundred examples each; a site file takes a few milliseconds to read.
FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_every_target_is_tested_here() -> None:
    tested = {name.removeprefix("test_") for name in globals() if name.startswith("test_")}
    assert {name.replace("-", "_") for name in TARGETS} <= tested


# -- the targets -----------------------------------------------------------------------------------


@FUZZ
@given(TARGETS["config-text"].inputs)
def test_config_text(case: object) -> None:
    TARGETS["config-text"].check(case)


@FUZZ
@given(TARGETS["config-bytes"].inputs)
def test_config_bytes(data: bytes) -> None:
    TARGETS["config-bytes"].check(data)


@FUZZ
@given(TARGETS["lineprotocol-encode"].inputs)
def test_lineprotocol_encode(points: list[Point]) -> None:
    TARGETS["lineprotocol-encode"].check(points)


@FUZZ
@given(TARGETS["lineprotocol-parse"].inputs)
def test_lineprotocol_parse(body: bytes) -> None:
    TARGETS["lineprotocol-parse"].check(body)


@FUZZ
@given(TARGETS["native-decode"].inputs)
def test_native_decode(payload: bytes) -> None:
    TARGETS["native-decode"].check(payload)


@FUZZ
@given(TARGETS["sparkplug-decode"].inputs)
def test_sparkplug_decode(payload: bytes) -> None:
    TARGETS["sparkplug-decode"].check(payload)


@FUZZ
@given(TARGETS["ingest-json"].inputs)
def test_ingest_json(payload: bytes) -> None:
    TARGETS["ingest-json"].check(payload)


@FUZZ
@given(TARGETS["ingest-records"].inputs)
def test_ingest_records(payload: bytes) -> None:
    TARGETS["ingest-records"].check(payload)


@FUZZ
@given(TARGETS["ingest-value"].inputs)
def test_ingest_value(payload: bytes) -> None:
    TARGETS["ingest-value"].check(payload)


@FUZZ
@given(TARGETS["ingest-influx"].inputs)
def test_ingest_influx(payload: bytes) -> None:
    TARGETS["ingest-influx"].check(payload)


@FUZZ
@given(TARGETS["modbus-decode"].inputs)
def test_modbus_decode(read: tuple[ModbusTag, ByteOrder, list[int]]) -> None:
    TARGETS["modbus-decode"].check(read)


# -- site files that once crashed the loader -------------------------------------------------------


def refusal(text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_site(text, "site.yaml", environ or {})
    for issue in info.value.issues:
        check_message(str(issue), "issue")
        assert issue.line is not None or issue.path
    return str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # PyYAML resolves a plain 2024-13-45 as a timestamp and datetime refuses month 13.
        ("site: 2024-13-45\n", "site.yaml:1:7: site: the value is not a valid YAML timestamp"),
        ("site: !!int x\n", "site.yaml:1:7: site: the value is not a valid YAML int"),
        ("site: !!timestamp x\n", "site.yaml:1:7: site: the value is not a valid YAML timestamp"),
        ("site: !!int ''\n", "site.yaml:1:7: site: the value is not a valid YAML int"),
        ("site: !!bool x\n", "site.yaml:1:7: site: the value is not a valid YAML bool"),
        ("site: !!set x\n", "site.yaml:1:7: site: the value is not a valid YAML set"),
        ("site: !custom x\n", "site.yaml:1:7: site: unknown YAML tag '!custom'"),
        ("site: !!python/name:os.system x\n", "unknown YAML tag"),
        ("a: &x [*x]\n", "site.yaml:1:4: a[0]: an alias refers to a value that contains it"),
        ("a: &x {b: *x}\n", "site.yaml:1:4: a.b: an alias refers to a value that contains it"),
        ("a: &x\n  b:\n    <<: *x\n", "a.b: an alias refers to a value that contains it"),
        ("site: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 100 levels deep"),
        ("site: a\x00b\n", "site.yaml:1:8: YAML: character #x0000: special characters"),
        ('site: {"a\\nb": 1}\n', "site['a\\nb']: unknown key 'a\\nb'"),
    ],
)
def test_yaml_that_crashed_the_loader_is_refused_with_its_line(text: str, expected: str) -> None:
    assert expected in refusal(text)


def test_aliases_that_nest_too_deep_are_refused() -> None:
    chain = "a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 150))
    assert "nested more than 100 levels deep" in refusal(chain)


def test_aliases_that_expand_beyond_reason_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlsource, "_MAX_VALUES", 10_000)  # the real limit takes seconds
    laughs = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9)
    )
    assert "aliases expand the file to more than 10,000 values" in refusal(laughs)


@pytest.mark.parametrize("zone", ["America", "Etc", "x" * 300])
def test_a_folder_of_the_zone_database_is_an_unknown_time_zone(zone: str) -> None:
    # ZoneInfo("America") raises IsADirectoryError, "x" * 300 a file-name-too-long OSError.
    text = GOOD_SITE.replace("timezone: Asia/Ho_Chi_Minh", f"timezone: {zone}")
    assert "site.yaml:4:13: site.timezone: unknown time zone" in refusal(text)


@pytest.mark.parametrize("path", ['"a\\0b"', '"\\ud800"'])
def test_a_secret_file_path_open_cannot_take_is_refused(path: str) -> None:
    text = GOOD_SITE.replace(
        "  url: mqtt://127.0.0.1:1883\n",
        f"  url: mqtt://127.0.0.1:1883\n  username: edge\n  password_file: {path}\n",
    )
    assert "mqtt.password_file: cannot read secret file" in refusal(text)


def test_a_secret_yaml_cannot_type_is_not_repeated() -> None:
    text = GOOD_SITE.replace(
        "  url: mqtt://127.0.0.1:1883\n",
        "  url: mqtt://127.0.0.1:1883\n  username: edge\n  password: ${PW_SECRET_2}\n",
    )
    message = refusal(text, SECRET_ENV)
    assert "mqtt.password: the value from the environment is not a valid YAML timestamp" in message
    assert SECRET_ENV["PW_SECRET_2"] not in message


# -- line protocol ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("point", "reason"),
    [
        (Point("m", {"k": "v"}, {"f": "lone \ud800"}, 1), "string field value"),
        (Point("m", {"k\udfff": "v"}, {"f": 1}, 1), "tag key"),
        (Point("m\ud800", {}, {"f": 1}, 1), "measurement"),
        (Point("m", {}, {"f\ud800": 1.5}, 1), "field key"),
    ],
)
def test_a_lone_surrogate_is_refused_not_a_unicode_error(point: Point, reason: str) -> None:
    # It has no UTF-8 form: encode() raised UnicodeEncodeError, and the gateway's writer, which
    # encodes lines itself, would have raised it later.
    with pytest.raises(LineProtocolError, match=f"^{reason} .* lone surrogate"):
        LineEncoder().encode([point])


def test_a_refusal_naming_the_fields_stays_on_one_line() -> None:
    point = Point("m", {}, {"x": np.float64(1.0), "a\nb": 1}, 1)  # numpy: the field-by-field path
    with pytest.raises(LineProtocolError) as info:
        LineEncoder().encode([point])
    check_message(str(info.value), "LineProtocolError")


# -- Modbus ----------------------------------------------------------------------------------------


def tag(**fields: object) -> ModbusTag:
    return ModbusTag.model_validate({"metric": "m", "address": 0, **fields})


@pytest.mark.parametrize(
    ("kind", "words", "expected"),
    [
        (tag(table="coil"), [], "0 bits where a bit tag needs 1"),  # was an IndexError
        (tag(table="input", type="string", length=4), [0x6162], "1 registers where a string"),
        (tag(table="input", type="float32"), [0, 0, 0], "3 registers where a float32"),
    ],
)
def test_an_answer_of_the_wrong_size_is_a_decode_problem(
    kind: ModbusTag, words: list[int], expected: str
) -> None:
    with pytest.raises(RegisterDecodeError, match=expected):
        tag_value(kind, ByteOrder.ABCD, words)


def test_bits_decode_to_booleans() -> None:
    assert tag_value(tag(table="discrete"), ByteOrder.ABCD, [1]) == (True, "good")


# -- known, left to the native codec's owner -------------------------------------------------------

FRAME = {
    "version": 1,
    "edge": "edge-dairy",
    "seq": 1,
    "asset": {"site": "s", "area": "a", "line": "l", "machine": "m"},
}


def test_an_unknown_key_with_a_newline_is_ignored_and_logged_on_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    payload = orjson.dumps({**FRAME, "samples": [], "bad\nkey": 1})
    assert decode_batch(payload).unknown_keys == ("bad\nkey",)
    intake = Intake(max_payload_bytes=10**6, site="s")
    with caplog.at_level(logging.WARNING):
        result = intake.process("plantwire/v1/s/a/l/m/data", payload)
    assert result.dead_letters == [] and intake.unknown_keys == 1
    (line,) = [r.getMessage() for r in caplog.records if "does not know" in r.getMessage()]
    check_message(line, "log line")


def test_the_one_stamp_influxdb_refuses_is_rejected_at_decoding_not_at_writing() -> None:
    samples = [{"t": INT64_MAX, "m": "temp", "v": 1.5}, {"t": INT64_MAX - 1, "m": "temp", "v": 2.5}]
    decoded = decode_batch(orjson.dumps({**FRAME, "samples": samples}))
    assert [r.index for r in decoded.rejected] == [0]
    assert len(batch_lines(LineEncoder(), decoded.batch)) == 1  # the other sample is writable
