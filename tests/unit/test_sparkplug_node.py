"""The Sparkplug edge node's bookkeeping without a broker: device ids, the metric catalog and its
aliases, seq and bdSeq."""

from __future__ import annotations

from pathlib import Path

from edge.buffer import DiskBuffer
from edge.sparkplug_catalog import (
    BdSeqFile,
    MetricCatalog,
    SeqCounter,
    declared_datatype,
    device_id,
)
from edge.sparkplug_node import SparkplugNode
from plantwire.codec.sparkplug import QUALITY_PROPERTY, DataType, Payload, encode, rebirth_metric
from plantwire.config.models import ModbusTag, SparkplugConfig
from plantwire.model import AssetPath, Quality, Sample
from plantwire.sparkplug_topics import encode_host_state

DEVICE = "dairy:filling:filler"


def sample(
    metric: str, value: float | int | bool | str | None, ts_ns: int = 1_000_000_000
) -> Sample:
    quality = Quality.GOOD if value is not None else Quality.BAD
    return Sample(ts_ns, metric, value, quality)


def test_device_id_is_area_line_machine() -> None:
    assert device_id(AssetPath("bd", "dairy", "filling", "filler")) == DEVICE


def test_modbus_tags_declare_their_datatype_before_any_value() -> None:
    def tag(**fields: object) -> ModbusTag:
        return ModbusTag.model_validate({"metric": "m", "address": 0, **fields})

    assert declared_datatype(tag(table="coil")) is DataType.Boolean
    assert declared_datatype(tag(table="holding")) is DataType.Int64
    assert declared_datatype(tag(table="holding", scale=0.1)) is DataType.Double
    assert declared_datatype(tag(table="holding", type="float32")) is DataType.Double
    assert declared_datatype(tag(table="holding", type="string", length=4)) is DataType.String
    assert declared_datatype(object()) is DataType.Double  # e.g. OPC UA: until a value says


def test_aliases_are_assigned_once_and_unique_across_devices() -> None:
    catalog = MetricCatalog()
    catalog.add_device(DEVICE, {"temp": DataType.Double, "count": DataType.Int64})
    catalog.add_device("dairy:filling:capper", {"temp": DataType.Double})
    catalog.add_device(DEVICE, {"temp": DataType.Double})  # again: nothing changes
    aliases = [info.alias for d in catalog.devices for info in catalog.metrics(d)]
    assert aliases == [1, 2, 3]
    catalog.learn(DEVICE, [sample("new", 1.0)])
    assert catalog.get(DEVICE, "new") is not None
    assert catalog.get(DEVICE, "new").alias == 4  # type: ignore[union-attr]
    assert catalog.get(DEVICE, "temp").alias == 1  # type: ignore[union-attr]


def test_learning_says_when_the_births_are_out_of_date() -> None:
    catalog = MetricCatalog()
    catalog.add_device(DEVICE, {"temp": DataType.Double, "count": DataType.Int64})
    assert not catalog.learn(DEVICE, [sample("temp", 4.5), sample("count", 3)])
    assert not catalog.learn(DEVICE, [sample("temp", None)])  # null: no datatype news
    assert catalog.learn(DEVICE, [sample("speed", 10.0)])  # a new metric
    assert not catalog.learn(DEVICE, [sample("speed", 11.0)])
    assert not catalog.learn(DEVICE, [sample("temp", 5)])  # an int goes out as a Double
    assert catalog.learn(DEVICE, [sample("count", "jam")])  # a datatype that changed
    assert catalog.get(DEVICE, "count").datatype is DataType.String  # type: ignore[union-attr]
    assert catalog.learn("dairy:filling:new-machine", [])  # a new device


def test_the_first_value_decides_a_configured_guess() -> None:
    catalog = MetricCatalog()
    catalog.add_device(DEVICE, {"running": DataType.Double})
    assert catalog.learn(DEVICE, [sample("running", True)])
    assert catalog.get(DEVICE, "running").datatype is DataType.Boolean  # type: ignore[union-attr]
    assert not catalog.learn(DEVICE, [sample("running", False)])


def test_birth_metrics_carry_name_alias_datatype_and_the_last_value() -> None:
    catalog = MetricCatalog()
    catalog.add_device(DEVICE, {"temp": DataType.Double, "count": DataType.Int64})
    catalog.learn(DEVICE, [sample("temp", 4.5, 2_000_000_000)])
    catalog.remember(DEVICE, [sample("temp", 4.5, 2_000_000_000), sample("temp", 3.0, 1)])
    temp, count = catalog.birth_metrics(DEVICE, 99)
    assert (temp.name, temp.alias, temp.datatype, temp.value) == ("temp", 1, DataType.Double, 4.5)
    assert temp.timestamp == 2000  # the sample's, in ms; the older sample did not win
    assert (count.name, count.alias, count.datatype) == ("count", 2, DataType.Int64)
    assert count.is_null and count.timestamp == 99


def test_a_last_value_of_the_old_datatype_is_born_null() -> None:
    catalog = MetricCatalog()
    catalog.learn(DEVICE, [sample("mode", 3)])
    catalog.remember(DEVICE, [sample("mode", 3)])
    assert catalog.learn(DEVICE, [sample("mode", "auto")])
    (mode,) = catalog.birth_metrics(DEVICE, 5)
    assert mode.datatype is DataType.String and mode.is_null


def test_data_metrics_are_alias_only_with_quality() -> None:
    catalog = MetricCatalog()
    catalog.add_device(DEVICE, {"temp": DataType.Double})
    samples = [
        sample("temp", 7.5, 3_000_000_000),
        sample("temp", 7, 3_000_000_000),  # confirmed Double: an int goes out as a float
        Sample(3_000_000_000, "temp", None, Quality.BAD),
    ]
    assert not catalog.learn(DEVICE, samples)
    _, good, bad = catalog.data_metrics(DEVICE, samples)
    assert good.name is None and good.alias == 1
    assert good.datatype is DataType.Double and good.value == 7.0 and good.timestamp == 3000
    assert bad.is_null and bad.properties is not None and QUALITY_PROPERTY in bad.properties


def test_seq_starts_at_zero_in_a_birth_and_wraps() -> None:
    seq = SeqCounter()
    assert seq.birth() == 0
    numbers = [seq.next() for _ in range(256)]
    assert numbers[0] == 1 and numbers[254] == 255 and numbers[255] == 0
    assert seq.birth() == 0 and seq.next() == 1


def test_bdseq_grows_per_connection_across_restarts_and_wraps(tmp_path: Path) -> None:
    path = tmp_path / "edge.db.bdseq"
    first = BdSeqFile(path)
    assert first.upcoming == 0
    assert first.upcoming == 0  # a failed attempt uses no number up
    first.commit(0)
    assert first.upcoming == 1
    first.commit(1)
    again = BdSeqFile(path)  # a restart
    assert again.upcoming == 2
    again.commit(255)
    assert BdSeqFile(path).upcoming == 0


def test_a_damaged_bdseq_file_starts_again_from_zero(tmp_path: Path) -> None:
    path = tmp_path / "edge.db.bdseq"
    path.write_text("not a number\n")
    assert BdSeqFile(path).upcoming == 0
    path.write_text("300\n")
    assert BdSeqFile(path).upcoming == 0


def make_node(tmp_path: Path, *, wait_for_host: bool = True) -> SparkplugNode:
    buffer = DiskBuffer(tmp_path / "edge.db", "edge-1", max_bytes=10_000_000)
    return SparkplugNode(
        buffer,
        SparkplugConfig(wait_for_host=wait_for_host),
        edge_id="edge-1",
        site="bd",
        group_id="bd",
        machines=[],
    )


def test_ncmd_rebirth_is_counted_and_a_malformed_one_is_ignored(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    node._need_births = False
    node._command(b"\xff\x00 not protobuf")
    assert node.commands_malformed == 1 and not node._need_births
    node._command(encode(Payload(metrics=(rebirth_metric(True),))))
    assert node.rebirths_requested == 1 and node._need_births
    assert node.bdseq_file.path == tmp_path / "edge.db.bdseq"
    node.buffer.close()


def test_the_host_state_gates_publishing(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    assert not node.may_send()
    node._host_state(encode_host_state(True, 2000))
    assert node.may_send() and node._need_births
    node._host_state(encode_host_state(False, 1000))  # older than the one acted on: ignored
    assert node.host_online
    node._host_state(b"{}")
    assert node.commands_malformed == 1 and node.host_online
    node._host_state(encode_host_state(False, 3000))
    assert not node.may_send()
    assert make_node(tmp_path / "b", wait_for_host=False).may_send()
    node.buffer.close()
