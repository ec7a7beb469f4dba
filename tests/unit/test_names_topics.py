"""Names and topics: what would break MQTT or InfluxDB is refused, the rest passes unchanged."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plantwire.errors import InvalidNameError, TopicError
from plantwire.model import AssetPath
from plantwire.names import check_metric_name, check_segment
from plantwire.topics import (
    TopicKind,
    alert_topic,
    data_subscription,
    data_topic,
    deadletter_topic,
    parse_machine_topic,
    service_state_topic,
    state_topic,
)

ASSET = AssetPath("binh-duong", "dairy", "filling", "filler-1")


@pytest.mark.parametrize(
    ("segment", "reason"),
    [
        ("", "empty"),
        ("line/1", "'/'"),
        ("line+", "'+'"),
        ("#all", "'#'"),
        ("tab\there", "control character"),
        ("new\nline", "control character"),
        ("nul\x00", "control character"),
        ("del\x7f", "control character"),
        (" padded", "white space"),
        ("$SYS", "'$'"),
        ("x" * 257, "longer than 256"),
        ("ends\\", "backslash"),
        ("a\\ b", "backslash"),
        ("a\\\\b", "backslash"),
    ],
)
def test_segments_that_would_break_mqtt_or_influx_are_refused(segment: str, reason: str) -> None:
    with pytest.raises(InvalidNameError, match=reason.replace("+", r"\+").replace("$", r"\$")):
        check_segment(segment, "line id")


@pytest.mark.parametrize(
    "segment", ["filling", "Line 1", "Máy chiết rót", "cnc_01.a", "C:\\line", "tank=1,a"]
)
def test_plant_names_pass_unchanged(segment: str) -> None:
    assert check_segment(segment) == segment


def test_non_string_segment_is_refused_clearly() -> None:
    with pytest.raises(InvalidNameError, match="must be a string"):
        check_segment(42, "site id")


@pytest.mark.parametrize("metric", ["time", "site", "machine", "temp__quality", ""])
def test_reserved_metric_names_are_refused(metric: str) -> None:
    with pytest.raises(InvalidNameError):
        check_metric_name(metric)


def test_metric_names_may_hold_slashes_and_hashes() -> None:
    # Metrics are field keys, not topic levels (Sparkplug names look like "Node Control/Rebirth").
    assert check_metric_name("Node Control/Rebirth #2") == "Node Control/Rebirth #2"


def test_topics_are_built_and_parsed_back() -> None:
    assert data_topic(ASSET) == "plantwire/v1/binh-duong/dairy/filling/filler-1/data"
    assert state_topic(ASSET) == "plantwire/v1/binh-duong/dairy/filling/filler-1/state"
    assert parse_machine_topic(data_topic(ASSET)) == (ASSET, TopicKind.DATA)
    assert parse_machine_topic(state_topic(ASSET)) == (ASSET, TopicKind.STATE)
    assert alert_topic(ASSET) == "plantwire/v1/binh-duong/alerts/dairy/filling/filler-1"
    assert deadletter_topic("binh-duong", "edge-1") == "plantwire/v1/binh-duong/deadletter/edge-1"
    assert (
        service_state_topic("binh-duong", "gw-1") == "plantwire/v1/binh-duong/services/gw-1/state"
    )
    assert data_subscription() == "plantwire/v1/+/+/+/+/data"


def test_building_a_topic_refuses_a_bad_asset() -> None:
    with pytest.raises(InvalidNameError, match="machine id"):
        data_topic(AssetPath("s", "a", "l", "m/x"))
    with pytest.raises(InvalidNameError, match="reserved"):
        data_topic(AssetPath("s", "alerts", "l", "m"))


@pytest.mark.parametrize(
    "topic",
    [
        "plantwire/v1/s/a/l/m/other",
        "plantwire/v2/s/a/l/m/data",
        "plantwire/v1/s/a/l/data",
        "plantwire/v1/s/a/l/m/x/data",
        "plantwire/v1/s//l/m/data",
        "plantwire/v1/s/alerts/l/m/data",
        "",
    ],
)
def test_foreign_topics_are_refused(topic: str) -> None:
    with pytest.raises(TopicError):
        parse_machine_topic(topic)


@given(st.text(max_size=300))
def test_check_segment_either_accepts_unchanged_or_raises_its_own_error(text: str) -> None:
    try:
        assert check_segment(text) == text
    except InvalidNameError:
        return
    # Whatever passes is safe in a topic level and an InfluxDB tag.
    assert text and not any(c in text for c in "/+#\n\r\x00")
