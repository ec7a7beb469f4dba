"""``plantwire demo``: the whole stack on the simulated plant, in one process.

Also runnable as ``python -m demo``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
from pathlib import Path

import orjson

__all__ = ["build_parser", "register", "run_demo"]


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration", type=float, default=None, help="stop after S wall seconds (default: Ctrl-C)"
    )
    parser.add_argument(
        "--speed", type=float, default=60.0, help="plant seconds per wall second (default 60)"
    )
    parser.add_argument("--broker", default=None, help="MQTT broker URL (default: embedded amqtt)")
    parser.add_argument("--influx", default=None, help="InfluxDB 1.x URL (default: SQLite)")
    parser.add_argument("--influx-database", default=None, help="default: a new one per run")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="files of the run (default: a temporary folder)"
    )
    parser.add_argument("--profile", default="5g-embb", help="the edge's link profile")
    parser.add_argument("--detector", default="pca", help="anomaly detector to train")
    parser.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    parser.add_argument("--headless", action="store_true", help="no live view (for scripts)")
    parser.add_argument("--report", type=Path, default=None, help="write the JSON report here")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "demo", help="run the whole stack on the simulated Binh Duong plant, with a live view"
    )
    _options(parser)
    parser.set_defaults(handler=run_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plantwire demo", description=__doc__)
    _options(parser)
    return parser


def _refusal(args: argparse.Namespace) -> str | None:
    if args.duration is not None and args.duration <= 0:
        return "--duration must be positive"
    if args.speed <= 0:
        return "--speed must be positive"
    if args.influx is not None and not args.influx.startswith(("http://", "https://")):
        return f"--influx must be an http(s) URL, not {args.influx!r}"
    if args.broker is not None and not args.broker.startswith("mqtt://"):
        return f"--broker must be an mqtt:// URL, not {args.broker!r}"
    if args.duration is None and args.headless and args.report is not None:
        return "--report with --headless needs --duration"
    return None


def run_demo(args: argparse.Namespace) -> int:
    refusal = _refusal(args)
    if refusal is not None:
        print(f"plantwire demo: {refusal}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO if args.headless else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    with contextlib.ExitStack() as stack:
        workdir = args.workdir
        if workdir is None:
            workdir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="plantwire-demo-"))
            )
        elif workdir.exists() and any(workdir.iterdir()):
            # A second run starts clean: old buffers or a spool would be resent into this one.
            print(
                f"plantwire demo: {workdir} is not empty; give a new or empty folder",
                file=sys.stderr,
            )
            return 2
        report = asyncio.run(_main(args, workdir))
    if args.report is not None:
        args.report.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    if args.headless:
        print(_summary(report))
    return 0


async def _main(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    import json

    from demo.orchestra import DemoRun, DemoSettings
    from demo.report import build_report
    from plantwire.lifecycle import run_until_signalled

    demo = DemoRun(
        DemoSettings(
            workdir=workdir,
            duration_s=args.duration,
            speed=args.speed,
            broker_url=args.broker,
            influx_url=args.influx,
            influx_database=args.influx_database,
            link_profile=args.profile,
            detector=args.detector,
            seed=args.seed,
        )
    )
    if args.headless:
        await run_until_signalled(demo.run())
    else:
        from demo.view import run_with_view

        await run_until_signalled(run_with_view(demo))
    truth = json.loads(demo.truth_path.read_text())
    try:
        return await asyncio.to_thread(build_report, demo, truth)
    finally:
        demo.store.close()


def _summary(report: dict[str, object]) -> str:
    faults = len(report["faults"])  # type: ignore[arg-type]
    lines = [
        f"samples read at the edge {report['samples_read']:,}, stored {report['samples_stored']:,}",
        (
            f"faults alerted {report['faults_alerted']} of {faults}, "
            f"alerts on no fault {report['false_alerts']}"
        ),
    ]
    for row in report["oee"]:  # type: ignore[attr-defined]
        oee = row["oee"]
        lines.append(f"{row['line']:<20} OEE {_pct(oee['computed'])} (truth {_pct(oee['truth'])})")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "  -  " if value is None else f"{100 * value:5.1f} %"


def main() -> int:
    return run_demo(build_parser().parse_args())
