"""``format: influx``: InfluxDB line protocol, as Telegraf's MQTT output sends it. Each field
of each line is a metric (``<measurement>_<field>``, or the field alone), at the line's time;
asset levels the topic lacks may come from a tag of the line (``asset_tags``)."""

from __future__ import annotations

from gateway.ingest.readings import Readings, Rejected, asset_of, sample
from plantwire.config.ingest import InfluxRule
from plantwire.errors import PayloadError
from plantwire.lineprotocol_parse import LineParser
from plantwire.model import INT64_MAX, Quality

__all__ = ["read_influx"]

_NS_PER = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_parser = LineParser()


def read_influx(rule: InfluxRule, site: str, levels: dict[str, str], payload: bytes) -> Readings:
    parsed = _parser.parse_body(payload)
    if not parsed.points:  # nothing in it is a line: the message is refused whole
        first = parsed.refused[0].reason if parsed.refused else "the message holds no lines"
        raise PayloadError(first)
    readings = Readings()
    for refused in parsed.refused:
        # A line with bytes that are not UTF-8 comes back with them as lone surrogates, which no
        # JSON dead letter can hold: shown with the replacement character instead.
        shown = refused.line.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        readings.rejected.append(Rejected("line", refused.reason, shown))
    scale = _NS_PER[rule.precision]
    for index, point in enumerate(parsed.points):
        where = f"line {index + 1}"
        try:
            tagged: dict[str, str] = {
                level: point.tags[tag] for level, tag in rule.asset_tags.items()
            }
        except KeyError as exc:
            readings.rejected.append(Rejected(where, f"no tag {exc.args[0]!r}", point.measurement))
            continue
        try:
            asset = asset_of(site, {**levels, **tagged})
        except PayloadError as exc:
            readings.rejected.append(Rejected(where, exc.reason, dict(point.tags)))
            continue
        ts_ns = point.ts_ns * scale
        if not 0 <= ts_ns < INT64_MAX:
            readings.rejected.append(Rejected(where, "time is outside 1970..2262", point.ts_ns))
            continue
        for key, value in point.fields.items():
            metric = key if rule.metric_name == "field" else f"{point.measurement}_{key}"
            readings.add(asset, sample(f"{where} {key}", ts_ns, metric, value, Quality.GOOD))
    return readings
