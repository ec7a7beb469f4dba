"""Site file loading: the example, environment references, secrets, and typed access."""

from __future__ import annotations

from pathlib import Path

import pytest

from plantwire.config import load_site, load_site_file, parse_site
from plantwire.config.models import ByteOrder, DataType, RegisterTable
from plantwire.errors import ConfigError

ROOT = Path(__file__).parent.parent.parent
BASE = (ROOT / "tests" / "golden" / "good_site.yaml").read_text()


def test_the_shipped_example_is_valid() -> None:
    site = load_site(ROOT / "deploy" / "site.example.yaml", environ={})
    assert site.site.id == "binh-duong"
    assert [line.id for _, line, _ in site.machines()] == [
        "filling",
        "filling",
        "packaging",
        "cell-1",
    ]
    assert len(site.shifts) == 2
    assert {node.id for node in site.edge_nodes} == {"edge-dairy", "edge-snacks", "edge-machining"}


def test_defaults_follow_the_table() -> None:
    site = parse_site(BASE, environ={}).config
    source = site.areas[0].lines[0].machines[0].sources[0]
    state, count, temp = source.tags  # type: ignore[union-attr]
    assert state.data_type is DataType.UINT16 and state.table is RegisterTable.HOLDING
    assert count.count == 2 and temp.order is ByteOrder.CDAB
    assert source.group_of(state) == "default"  # type: ignore[union-attr]
    assert site.edge_node_of(site.areas[0].lines[0].machines[0]) == "edge"


def test_environment_references_are_substituted_and_typed() -> None:
    text = BASE.replace(
        "mqtt://127.0.0.1:1883", "mqtt://${BROKER_HOST:-localhost}:${BROKER_PORT}"
    ).replace("ideal_cycle_time_s: 0.25", "ideal_cycle_time_s: ${CYCLE:-0.5}")
    site = parse_site(text, environ={"BROKER_PORT": "18830"}).config
    assert site.mqtt.url == "mqtt://localhost:18830"
    assert site.mqtt.port == 18830
    assert site.areas[0].lines[0].ideal_cycle_time_s == 0.5


def test_a_dollar_can_be_written_literally() -> None:
    site = parse_site(
        BASE.replace("id: binh-duong\n  timezone", "id: binh-duong\n  name: price $$5\n  timezone"),
        environ={},
    )
    assert site.config.site.name == "price $5"


def with_mqtt_password(line: str) -> str:
    return BASE.replace(
        "  url: mqtt://127.0.0.1:1883\n",
        f"  url: mqtt://127.0.0.1:1883\n  username: edge\n{line}\n",
    )


def test_secrets_come_from_the_environment_and_are_masked() -> None:
    loaded = parse_site(
        with_mqtt_password("  password: ${MQTT_PASSWORD}"), environ={"MQTT_PASSWORD": "s3cret-Σ"}
    )
    assert loaded.config.mqtt.password is not None
    assert loaded.config.mqtt.password.get_secret_value() == "s3cret-Σ"
    assert "s3cret" not in repr(loaded.config) and "s3cret" not in str(loaded.config.mqtt)
    assert loaded.secret_origins == {"mqtt.password": "$MQTT_PASSWORD"}


def test_secrets_can_come_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "mqtt.secret").write_text("from-file\n")
    (tmp_path / "site.yaml").write_text(with_mqtt_password("  password_file: mqtt.secret"))
    loaded = load_site_file(tmp_path / "site.yaml", environ={})
    assert loaded.config.mqtt.password is not None
    assert loaded.config.mqtt.password.get_secret_value() == "from-file"
    assert loaded.secret_origins == {"mqtt.password": f"file {tmp_path / 'mqtt.secret'}"}


def test_a_secret_mixed_into_text_is_refused() -> None:
    # Only a whole ${VAR} counts as coming from the environment.
    with pytest.raises(ConfigError, match="readable by anyone"):
        parse_site(
            with_mqtt_password("  password: pre-${MQTT_PASSWORD}"), environ={"MQTT_PASSWORD": "x"}
        )


def test_refusals_never_echo_a_secret() -> None:
    text = with_mqtt_password("  password: ${MQTT_PASSWORD}").replace(
        "username: edge", "username: [edge]"
    )
    with pytest.raises(ConfigError) as info:
        parse_site(text, environ={"MQTT_PASSWORD": "hunter2-secret"})
    assert "hunter2" not in str(info.value)


def test_a_value_from_the_environment_is_named_in_an_error_not_shown() -> None:
    # A variable wired to the wrong key may hold a secret: say which variable, not its value.
    text = with_mqtt_password("  password: ${MQTT_PASSWORD}\n  keepalive_s: ${KEEPALIVE}")
    with pytest.raises(ConfigError) as info:
        parse_site(text, environ={"MQTT_PASSWORD": "s3cret-pw", "KEEPALIVE": "hunter2-secret"})
    assert "mqtt.keepalive_s" in str(info.value) and "(got the value of $KEEPALIVE)" in str(
        info.value
    )
    assert "hunter2" not in str(info.value)
    # Written into the file, the value is shown as before.
    with pytest.raises(ConfigError, match=r"\(got 'thirty'\)"):
        parse_site(with_mqtt_password("  keepalive_s: thirty"), environ={})


def test_every_problem_is_reported_not_just_the_first() -> None:
    text = BASE.replace("address: 20", "address: -1").replace(
        "ideal_cycle_time_s: 0.25", "ideal_cycle_time_s: 0"
    )
    with pytest.raises(ConfigError) as info:
        parse_site(text, "site.yaml", environ={})
    assert len(info.value.issues) == 2


def test_unreadable_and_non_utf8_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_site(tmp_path / "missing.yaml")
    (tmp_path / "latin1.yaml").write_bytes(b"site:\n  name: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin1.yaml:2: the file is not UTF-8"):
        load_site(tmp_path / "latin1.yaml")


def test_yaml_merge_keys_share_tag_settings() -> None:
    text = BASE.replace(
        "                  - {metric: temp, table: input, address: 20, type: float32, order: CDAB}",
        "                  - &float {metric: temp, table: input, address: 20, type: float32, order: CDAB}\n"
        "                  - {<<: *float, metric: temp2, address: 22}",
    )
    tags = parse_site(text, environ={}).config.areas[0].lines[0].machines[0].sources[0].tags
    assert (tags[3].metric, tags[3].address, tags[3].order) == ("temp2", 22, ByteOrder.CDAB)  # type: ignore[union-attr]


def test_shifts_past_midnight_and_week_wrap_do_not_overlap_falsely() -> None:
    text = BASE.replace(
        "areas:\n",
        '  - name: night\n    start: "22:00"\n    end: "06:00"\n    days: [sun]\nareas:\n',
    ).replace('    end: "14:00"\n', '    end: "14:00"\n    days: [mon]\n')
    site = parse_site(text, environ={}).config
    assert site.shifts[1].length_min == 480
    # Sunday 22:00 to Monday 06:00 ends exactly when Monday's morning shift starts.
    clash = text.replace("days: [sun]", "days: [sun]\n    breaks: []").replace(
        'end: "06:00"', 'end: "06:30"'
    )
    with pytest.raises(ConfigError, match="overlaps"):
        parse_site(clash, environ={})
