"""``plantwire ingest try``: what a message on a topic would become under the site's ingest
rules -- its samples (asset, metric, time, value, quality) or the dead letter's reason -- without
a broker or a store. Exit 0 when every value becomes a sample, 2 when anything would be
dead-lettered (or the site file is refused)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EXIT_REFUSED = 2


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("ingest", help="try the site's ingest rules on a message")
    actions = parser.add_subparsers(dest="ingest_command", metavar="ACTION", required=True)
    attempt = actions.add_parser("try", help="show what a message on a topic would become")
    attempt.add_argument("--config", type=Path, required=True, help="the site file")
    attempt.add_argument("--topic", required=True, help="the MQTT topic the message came on")
    payload = attempt.add_mutually_exclusive_group(required=True)
    payload.add_argument("--payload", help="the message, as text")
    payload.add_argument("--payload-file", type=Path, help="the message, from a file (bytes)")
    attempt.add_argument("--json", action="store_true", help="print JSON instead of a table")
    attempt.set_defaults(handler=run_try)


def run_try(args: argparse.Namespace) -> int:
    import orjson

    from gateway.ingest.decoder import IngestDecoder, rule_name
    from plantwire.config import load_site
    from plantwire.errors import ConfigError, PayloadError
    from plantwire.lineprotocol import LineEncoder

    try:
        site = load_site(args.config)
    except ConfigError as exc:
        print(f"plantwire ingest: the site file is refused:\n{exc}", file=sys.stderr)
        return EXIT_REFUSED
    payload = args.payload.encode() if args.payload is not None else args.payload_file.read_bytes()
    decoders = [
        IngestDecoder(
            rule, rule_name(rule, index), site=site.site.id, encoder=LineEncoder(),
            max_payload_bytes=site.mqtt.max_payload_bytes,
            dead_letter_max_bytes=site.gateway.dead_letter_max_bytes,
        )
        for index, rule in enumerate(site.ingest)
    ]  # fmt: skip
    decoder = next((d for d in decoders if d.pattern.match(args.topic) is not None), None)
    if decoder is None:
        report: dict[str, Any] = {
            "rule": None,
            "dead_letter": f"no ingest rule of {args.config} reads the topic {args.topic!r}",
        }
    else:
        try:
            readings = decoder.read(args.topic, payload)
        except PayloadError as exc:
            report = {"rule": _rule(decoder), "dead_letter": exc.reason}
        else:
            report = {
                "rule": _rule(decoder),
                "samples": [
                    _sample("/".join(asset), s)
                    for asset, samples in readings.samples.items()
                    for s in samples
                ],
                "refused": [
                    {"where": r.where, "reason": r.reason, "value": r.raw}
                    for r in readings.rejected
                ],
            }
    if args.json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2, default=str).decode())
        sys.stdout.write("\n")
    else:
        print(_text(report))
    taken = "dead_letter" not in report and not report["refused"]
    return 0 if taken else EXIT_REFUSED


def _rule(decoder: Any) -> dict[str, str]:
    return {"name": decoder.name, "format": decoder.rule.format, "topic": decoder.rule.topic}


def _sample(asset: str, sample: Any) -> dict[str, Any]:
    moment = datetime.fromtimestamp(sample.ts_ns // 1_000_000_000, UTC)
    text = f"{moment:%Y-%m-%dT%H:%M:%S}.{sample.ts_ns % 1_000_000_000:09d}Z"
    return {
        "asset": asset,
        "metric": sample.metric,
        "time_ns": sample.ts_ns,
        "time": text,
        "value": sample.value,
        "quality": sample.quality.value,
    }


def _text(report: dict[str, Any]) -> str:
    rule = report["rule"]
    out = [f"rule {rule['name']} ({rule['format']}, {rule['topic']})" if rule else "no rule"]
    if "dead_letter" in report:
        out.append(f"dead-lettered: {report['dead_letter']}")
        return "\n".join(out)
    out.append(f"{len(report['samples'])} samples")
    out.extend(
        f"  {s['asset']}  {s['metric']}  {s['time']}  {s['value']!r}  {s['quality']}"
        for s in report["samples"]
    )
    if report["refused"]:
        out.append(f"{len(report['refused'])} values dead-lettered")
        out.extend(f"  {r['where']}: {r['reason']}" for r in report["refused"])
    return "\n".join(out)
