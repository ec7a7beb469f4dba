"""Ingest rules, unit by unit: topic patterns, times and values, each format's reader, and the
decoder's promise -- any bytes on a rule's topic become samples or dead letters, never an
exception and never nothing."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ingest.decoder import IngestDecoder
from gateway.ingest.readings import plain_value, time_ns
from gateway.intake import Intake
from gateway.routes import site_routes
from plantwire.config import parse_site
from plantwire.config.models import SiteConfig
from plantwire.lineprotocol import LineEncoder
from plantwire.model import AssetPath, Quality, Sample
from plantwire.topic_patterns import filters_overlap, parse_pattern

T_MS = 1_700_000_000_000
T_NS = T_MS * 1_000_000


def site_with(*rules: dict[str, Any]) -> SiteConfig:
    text = yaml.safe_dump(
        {
            "site": {"id": "plant"},
            "ingest": list(rules),
            "areas": [{"id": "dairy", "lines": [
                {"id": "filling", "ideal_cycle_time_s": 1, "machines": [{"id": "filler"}]}]}],
        }
    )  # fmt: skip
    return parse_site(text).config


def decoder_for(rule: dict[str, Any]) -> IngestDecoder:
    site = site_with(rule)
    return IngestDecoder(
        site.ingest[0], "rule", site="plant", encoder=LineEncoder(), max_payload_bytes=10_000,
        dead_letter_max_bytes=4096,
    )  # fmt: skip


FILLER = AssetPath("plant", "dairy", "filling", "filler")
JSON_RULE = {"topic": "f/{line}/{machine}", "format": "json", "asset": {"area": "dairy"}}


# -- topic patterns ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("a/#/b", "'#' may only be the last level"),
        ("a/x{machine}", "a capture is a whole level"),
        ("a/{machine}/{machine}", "appears twice"),
        ("a/{site}", "unknown capture {site}"),
        ("a/b+", "stand alone"),
        ("$SYS/#", "the broker's own"),
        ("", "1 to 1024"),
    ],
)
def test_a_bad_pattern_says_what_is_wrong(pattern: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_pattern(pattern)


def test_a_pattern_matches_as_its_mqtt_filter_would() -> None:
    pattern = parse_pattern("plant/{area}/+/{machine}/#")
    assert pattern.filter == "plant/+/+/+/#"
    assert pattern.match("plant/dairy/x/filler") == {"area": "dairy", "machine": "filler"}
    assert pattern.match("plant/dairy/x/filler/a/b") == {"area": "dairy", "machine": "filler"}
    assert pattern.match("plant/dairy/x") is None
    assert pattern.match("other/dairy/x/filler") is None


@pytest.mark.parametrize(
    ("first", "second", "overlap"),
    [
        ("a/+/c", "a/b/c", True),
        ("a/#", "a", True),
        ("a/+/c", "a/+/d", False),
        ("a/b", "a/b/c", False),
        ("#", "anything/at/all", True),
        ("telegraf/+", "kepware/+/+", False),
    ],
)
def test_filters_overlap_when_one_topic_could_match_both(
    first: str, second: str, overlap: bool
) -> None:
    assert filters_overlap(first, second) is overlap
    assert filters_overlap(second, first) is overlap


# -- times and values ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "unit", "ns"),
    [
        (1_700_000_000, "s", T_NS),
        (1_700_000_000.25, "s", T_NS + 250_000_000),
        (T_MS, "ms", T_NS),
        (T_MS * 1000, "us", T_NS),
        (T_NS, "ns", T_NS),
        ("2023-11-14T22:13:20Z", "rfc3339", T_NS),
        ("2023-11-15T05:13:20.5+07:00", "rfc3339", T_NS + 500_000_000),
    ],
)
def test_times_convert_exactly(raw: object, unit: Any, ns: int) -> None:
    assert time_ns(raw, unit) == ns


@pytest.mark.parametrize(
    ("raw", "unit", "problem"),
    [
        (True, "ms", "number of ms"),
        ("1700000000000", "ms", "number of ms"),
        (-1, "ms", "outside 1970..2262"),
        (10**20, "ms", "outside 1970..2262"),
        ("2023-11-14 22:13:20", "rfc3339", "no UTC offset"),
        ("yesterday", "rfc3339", "not RFC 3339"),
        (float("nan"), "s", "not finite"),
    ],
)
def test_a_time_that_is_not_one_is_refused(raw: object, unit: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        time_ns(raw, unit)


def test_numbers_become_floats_and_the_rest_is_refused_by_kind() -> None:
    assert plain_value(3) == 3.0 and isinstance(plain_value(3), float)
    assert plain_value(True) is True and plain_value("run") == "run"
    for bad, why in ((None, "null"), ([1], "a list"), ({}, "an object"), (2**64, "64 bits")):
        with pytest.raises(ValueError, match=why):
            plain_value(bad)


# -- the readers -----------------------------------------------------------------------------------
def test_json_leaves_flatten_and_refused_leaves_are_named() -> None:
    decoder = decoder_for({**JSON_RULE, "timestamp": {"path": "meta.ts", "unit": "ms"}})
    payload = orjson.dumps(
        {"meta": {"ts": T_MS, "fw": "1.2"}, "temp": 21.5, "state": {"run": True}, "x": None}
    )
    readings = decoder.read("f/filling/filler", payload)
    assert readings.samples == {
        FILLER: [
            Sample(T_NS, "meta_fw", "1.2"),
            Sample(T_NS, "temp", 21.5),
            Sample(T_NS, "state_run", True),
        ]
    }
    (refused,) = readings.rejected
    assert refused.where == "x" and "null" in refused.reason


def test_json_listed_metrics_rename_and_report_what_is_missing() -> None:
    rule = {**JSON_RULE, "metrics": [{"path": "a.b", "name": "speed"}, {"path": "gone"}]}
    readings = decoder_for(rule).read("f/filling/filler", b'{"a": {"b": 7}, "c": 1}', T_NS)
    assert readings.samples == {FILLER: [Sample(T_NS, "speed", 7.0)]}
    assert [(r.where, r.reason) for r in readings.rejected] == [("gone", "not in the message")]


def test_records_read_opc_qualities_and_refuse_what_has_no_id() -> None:
    decoder = decoder_for({**JSON_RULE, "records": {"time": "t", "unit": "s"}})
    payload = orjson.dumps({"values": [
        {"id": "a", "v": 1, "q": 192, "t": 1_700_000_000},
        {"id": "b", "v": 2, "q": 64, "t": 1_700_000_000},
        {"id": "c", "v": 3, "q": "bad", "t": 1_700_000_000},
        {"id": 17, "v": 4, "t": 1_700_000_000},
        {"v": 5},
        "junk",
    ]})  # fmt: skip
    readings = decoder.read("f/filling/filler", payload)
    assert readings.samples[FILLER] == [
        Sample(T_NS, "a", 1.0),
        Sample(T_NS, "b", 2.0, Quality.UNCERTAIN),
        Sample(T_NS, "c", 3.0, Quality.BAD),
        Sample(T_NS, "17", 4.0),
    ]
    assert [r.where for r in readings.rejected] == ["values[4]", "values[5]"]


@pytest.mark.parametrize(
    ("text", "value"),
    [(b"21.5", 21.5), (b" -1.5e3\n", -1500.0), (b"TRUE", True), (b'"on"', "on"), (b"run", "run")],
)
def test_plain_values_read_as_what_they_are(text: bytes, value: object) -> None:
    decoder = decoder_for({"topic": "p/{area}/{line}/{machine}/{metric}", "format": "value"})
    readings = decoder.read("p/dairy/filling/filler/temp", text, T_NS)
    assert readings.samples == {FILLER: [Sample(T_NS, "temp", value)]}  # type: ignore[arg-type]


def test_line_protocol_takes_its_precision_and_asset_from_tags() -> None:
    decoder = decoder_for({
        "topic": "tg/{machine}", "format": "influx", "asset": {"area": "dairy"},
        "asset_tags": {"line": "ln"}, "precision": "ms", "metric_name": "field",
    })  # fmt: skip
    body = f"m,ln=filling a=1,b=true {T_MS}\nm a=2 {T_MS}\nm,ln=filling c= 1\n".encode()
    readings = decoder.read("tg/filler", body)
    assert readings.samples == {FILLER: [Sample(T_NS, "a", 1.0), Sample(T_NS, "b", True)]}
    assert sorted(r.reason for r in readings.rejected) == ["missing field value", "no tag 'ln'"]


# -- the decoder's promise -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("f/filling/filler", b"", "not JSON"),
        ("f/filling/filler", b"[1]", "must be a JSON object"),
        ("f/filling/filler", b"{}", "holds no values"),
        ("f/filling/filler", b"x" * 10_001, "more than the limit"),
        ("f/filling/alerts+", b'{"a": 1}', "machine id"),
    ],
)
def test_a_message_that_cannot_be_read_is_dead_lettered_whole(
    topic: str, payload: bytes, reason: str
) -> None:
    decoder = decoder_for(JSON_RULE)
    result = decoder(topic, payload)
    assert result.lines == [] and decoder.refused_messages == 1
    (letter,) = result.dead_letters
    assert letter.kind == "payload" and reason in orjson.loads(letter.payload)["reason"]
    assert letter.topic == "plantwire/v1/plant/deadletter/rule"


def test_a_topic_no_rule_reads_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    site = site_with(JSON_RULE)
    routes = site_routes(site, Intake(max_payload_bytes=10_000, site="plant"), None, print)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            routes.decode("stray/topic", b"1")
    assert routes.unrouted == 3
    assert sum("stray/topic" in r.getMessage() for r in caplog.records) == 1


RULES = [
    JSON_RULE,
    {**JSON_RULE, "records": {}},
    {**JSON_RULE, "timestamp": {"path": "ts", "unit": "rfc3339"}},
    {"topic": "f/{line}/{machine}/{metric}", "format": "value", "asset": {"area": "dairy"}},
    {"topic": "f/{line}/{machine}", "format": "influx", "asset": {"area": "dairy"}},
]
JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    rule=st.sampled_from(RULES),
    payload=st.one_of(st.binary(max_size=300), JSONISH.map(orjson.dumps)),
)
def test_any_bytes_become_samples_or_dead_letters_never_an_exception(
    rule: dict[str, Any], payload: bytes
) -> None:
    decoder = decoder_for(rule)
    topic = "f/filling/filler/temp" if rule["format"] == "value" else "f/filling/filler"
    try:
        result = decoder(topic, payload)
    except Exception as exc:
        pytest.fail(f"{type(exc).__name__}: {exc}")
    assert result.lines or result.dead_letters, "a message became nothing"
    for letter in result.dead_letters:
        reason = orjson.loads(letter.payload)["reason"]
        assert reason and "\n" not in reason
