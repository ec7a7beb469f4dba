"""Ingest rules (``ingest:``): MQTT data the plant already publishes, taken in by the gateway.

A rule names a topic pattern with captures (:mod:`plantwire.topic_patterns`), the asset levels
the topic lacks, the QoS to subscribe with, and a payload format with that format's settings.
One plain table maps ``format`` to its model, as sources and stores do; the gateway's decoder
for each format is in ``gateway/ingest/``. docs/ingest.md has worked examples.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field

from plantwire.config.common import Block, MetricName, Problem, RegistryUnion, segment
from plantwire.topic_patterns import TopicPattern, parse_pattern

__all__ = [
    "INGEST_MODELS",
    "AnyIngestRule",
    "FixedAsset",
    "InfluxRule",
    "IngestRule",
    "JsonMetric",
    "JsonRecords",
    "JsonRule",
    "JsonTime",
    "TimeUnit",
    "ValueRule",
]

ASSET_LEVELS = ("area", "line", "machine")
TimeUnit = Literal["s", "ms", "us", "ns", "rfc3339"]
RuleName = Annotated[str, segment("rule name")]


def _pattern(text: str) -> str:
    parse_pattern(text)  # raises with what is wrong
    return text


PatternText = Annotated[str, AfterValidator(_pattern)]
Segment = Annotated[str, segment("asset level")]
# A dotted path into a JSON document: "temperature", "data.spindle.speed".
JsonPath = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^.\s]+(\.[^.\s]+)*$")]


class FixedAsset(Block):
    """The asset levels a topic has no level for (the site is always the site's own)."""

    area: Segment | None = None
    line: Segment | None = None
    machine: Segment | None = None


class IngestRule(Block):
    """What every rule has. ``format`` names it; each format's model narrows it to a Literal."""

    format: str
    topic: PatternText
    name: RuleName | None = None  # for counters and log lines; default rule-<index>
    qos: Literal[0, 1, 2] = 1
    asset: FixedAsset = Field(default_factory=FixedAsset)
    # Where a format needs one metric per message and the topic has no {metric} level.
    metric: MetricName | None = None

    example: ClassVar[dict[str, object]] = {}
    # What this format reads from the topic besides the asset: "metric" when each message is
    # one value of one metric.
    needs_metric: ClassVar[bool] = False

    def pattern(self) -> TopicPattern:
        return parse_pattern(self.topic)

    def problems(self) -> Iterator[Problem]:
        """Every asset level captured or fixed, never both; a metric where the format needs
        one."""
        captured = set(self.pattern().captures.values())
        for level in ASSET_LEVELS:
            fixed = getattr(self.asset, level)
            if level in captured and fixed is not None:
                yield (("asset", level), f"{level} is captured by the topic and also fixed here")
            elif level not in captured and fixed is None:
                yield (
                    ("topic",),
                    f"the topic has no {{{level}}} level: add one, or fix it with asset.{level}",
                )
        if "metric" in captured and self.metric is not None:
            yield (("metric",), "the metric is captured by the topic and also fixed here")
        elif self.needs_metric and "metric" not in captured and self.metric is None:
            yield (("topic",), "the topic has no {metric} level: add one, or set metric")
        elif not self.needs_metric and "metric" in captured:
            yield (("topic",), f"a {self.format} payload names its metrics: no {{metric}} level")


class JsonMetric(Block):
    """One field of a JSON object read as a metric: its path and, if it differs, its name."""

    path: JsonPath
    name: MetricName | None = None


class JsonTime(Block):
    """Where a JSON message says its time, and in what unit; without it, the receive time."""

    path: JsonPath = "ts"
    unit: TimeUnit = "ms"


class JsonRecords(Block):
    """An array of records, one value each (``{"values": [{"id": ..., "v": ..., "q": ...,
    "t": ...}]}``, as Kepware's IoT gateway publishes): the keys of each record."""

    path: JsonPath = "values"
    id: JsonPath = "id"  # the metric
    value: JsonPath = "v"
    quality: JsonPath | None = "q"  # true/false, or good/uncertain/bad; missing: good
    time: JsonPath | None = "t"
    unit: TimeUnit = "ms"


class JsonRule(IngestRule):
    """A JSON object per message: every numeric, boolean and string leaf is a metric (nested
    keys joined with ``_``), or only the listed ones."""

    format: Literal["json"] = "json"
    metrics: Literal["all"] | list[JsonMetric] = "all"
    timestamp: JsonTime | None = None
    records: JsonRecords | None = None

    example: ClassVar[dict[str, object]] = {
        "format": "json",
        "topic": "factory/{line}/{machine}/telemetry",
        "asset": {"area": "dairy"},
        "timestamp": {"path": "ts", "unit": "ms"},
    }

    def problems(self) -> Iterator[Problem]:
        yield from super().problems()
        if self.records is not None and self.metrics != "all":
            yield (("metrics",), "with records, each record names its metric: no metrics list")


class ValueRule(IngestRule):
    """A plain value per message (a number, true/false, or text); the metric from the topic."""

    format: Literal["value"] = "value"
    needs_metric: ClassVar[bool] = True

    example: ClassVar[dict[str, object]] = {
        "format": "value",
        "topic": "plant/{area}/{line}/{machine}/{metric}",
    }


class InfluxRule(IngestRule):
    """InfluxDB line protocol (Telegraf's MQTT output): each field a metric; tags may give
    asset levels the topic lacks (``asset_tags``)."""

    format: Literal["influx"] = "influx"
    # field: the field key is the metric; measurement_field: "<measurement>_<field>".
    metric_name: Literal["field", "measurement_field"] = "measurement_field"
    # Asset level -> the tag that holds it (overrides nothing the topic captures).
    asset_tags: dict[Literal["area", "line", "machine"], str] = Field(default_factory=dict)
    precision: Literal["s", "ms", "us", "ns"] = "ns"

    example: ClassVar[dict[str, object]] = {
        "format": "influx",
        "topic": "telegraf/{machine}",
        "asset": {"area": "dairy", "line": "filling"},
    }

    def problems(self) -> Iterator[Problem]:
        # A level a tag of each line gives needs no topic level or fixed value.
        given = tuple(f"the topic has no {{{level}}} level" for level in self.asset_tags)
        for where, problem in super().problems():
            if not problem.startswith(given):
                yield where, problem
        captured = set(self.pattern().captures.values())
        for level in self.asset_tags:
            if level in captured or getattr(self.asset, level) is not None:
                yield (("asset_tags", level), f"{level} comes from the topic or asset already")


INGEST_MODELS: dict[str, type[IngestRule]] = {
    "json": JsonRule,
    "value": ValueRule,
    "influx": InfluxRule,
}

# A rule of the site file, any registered format's.
AnyIngestRule = Annotated[IngestRule, RegistryUnion(INGEST_MODELS, "format")]
