"""A long fuzz run of PlantWire's input boundaries (by hand, not in CI).

    python bench/fuzz.py [--minutes 14 | --examples 100000] [--target NAME ...] [--seed N]

Runs the targets of ``plantwire.testing.fuzz`` -- the same ones tests/unit/test_fuzz_inputs.py
runs a hundred examples of -- with hypothesis, randomly seeded, no example database, no
shrinking, in rounds until each target's share of ``--minutes`` is spent (or ``--examples``
examples are tried). Prints per target: examples tried, outcomes (accepted, and rejections by
error type), and crashes, which must be 0. A crash is any exception other than the boundary's
own error, or a broken promise (an unclear message, a leaked secret, an accepted input that is
not sound); each distinct one is printed once, with where it was raised and the shortest input
that raised it. The exit status is 1 if there was a crash.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
from hypothesis import HealthCheck, Phase, given, seed, settings

from edge.sources.modbus_fuzz import modbus_fuzz_target
from gateway.ingest.fuzz import ingest_fuzz_targets
from plantwire.testing.fuzz import FuzzTarget, fuzz_targets

ROOT = Path(__file__).resolve().parents[1]
SITE_EXAMPLES = [
    ROOT / "deploy" / "site.example.yaml",
    ROOT / "tests" / "golden" / "good_site.yaml",
]
SHOWN = 400  # characters of a crashing input to print


@dataclass
class Crash:
    kind: str
    where: str
    message: str
    count: int = 0
    shortest: str = ""


@dataclass
class Tally:
    examples: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    crashes: dict[tuple[str, str], Crash] = field(default_factory=dict)

    def crash(self, exc: BaseException, case: Any) -> None:
        frames = traceback.extract_tb(exc.__traceback__)
        ours = [f for f in frames if "/site-packages/" not in f.filename] or frames
        where = f"{os.path.relpath(ours[-1].filename, ROOT)}:{ours[-1].lineno}"
        key = (type(exc).__name__, where)
        message = " ".join(str(exc).split())[:SHOWN]  # one line, however the error spells it
        crash = self.crashes.setdefault(key, Crash(key[0], where, message))
        crash.count += 1
        text = repr(case)
        if not crash.shortest or len(text) < len(crash.shortest):
            crash.shortest = text

    @property
    def crash_count(self) -> int:
        return sum(crash.count for crash in self.crashes.values())


def run_round(
    target: FuzzTarget, tally: Tally, examples: int, deadline: float, round_seed: int
) -> None:
    """One hypothesis run of up to ``examples`` examples; every outcome is counted, nothing
    fails, so nothing is shrunk."""

    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        derandomize=False,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @seed(round_seed)
    @given(target.inputs)
    def one(case: Any) -> None:
        if time.monotonic() > deadline:
            return
        tally.examples += 1
        try:
            tally.outcomes[target.check(case)] += 1
        except Exception as exc:  # a crash: counted, kept, and the run goes on
            tally.crash(exc, case)

    one()


def fuzz(
    target: FuzzTarget, *, seconds: float | None, examples: int | None, rng: random.Random
) -> Tally:
    tally = Tally()
    start = time.monotonic()
    deadline = start + seconds if seconds is not None else float("inf")
    wanted = examples if examples is not None else sys.maxsize
    size = 200
    while tally.examples < wanted and time.monotonic() < deadline:
        round_start, before = time.monotonic(), tally.examples
        run_round(target, tally, min(size, wanted - tally.examples), deadline, rng.randrange(2**32))
        rate = (tally.examples - before) / max(time.monotonic() - round_start, 1e-3)
        # Rounds of about 10 s: long enough for hypothesis to vary its inputs, short enough
        # to stop near the deadline (a round's examples past it are generated, not run).
        size = max(50, min(20_000, int(rate * 10)))
    tally.seconds = time.monotonic() - start
    return tally


def report(target: FuzzTarget, tally: Tally) -> None:
    rate = tally.examples / max(tally.seconds, 1e-9)
    print(f"\n{target.name}: {target.about}")
    print(f"  examples  {tally.examples:>12,} in {tally.seconds:,.0f} s ({rate:,.0f}/s)")
    for label, count in tally.outcomes.most_common():
        print(f"  {label:<34} {count:>12,}  {100 * count / max(tally.examples, 1):5.1f} %")
    print(f"  crashes   {tally.crash_count:>12,}")
    for crash in tally.crashes.values():
        print(f"    {crash.count:,} x {crash.kind} at {crash.where}: {crash.message}")
        print(f"      shortest input: {crash.shortest[:SHOWN]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="total wall time, split among the targets")
    budget.add_argument("--examples", type=int, help="examples per target")
    parser.add_argument("--target", action="append", help="only this target (repeatable)")
    parser.add_argument("--seed", type=int, default=None, help="for a repeatable run")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows in a log file too
    # The contract's targets, the edge's and the gateway's.
    targets = [*fuzz_targets(SITE_EXAMPLES), modbus_fuzz_target(), *ingest_fuzz_targets()]
    if args.target:
        unknown = set(args.target) - {t.name for t in targets}
        if unknown:
            parser.error(
                f"unknown target(s) {', '.join(sorted(unknown))}; "
                f"the targets are {', '.join(t.name for t in targets)}"
            )
        targets = [t for t in targets if t.name in args.target]
    seconds = None
    if args.examples is None:
        seconds = 60 * (args.minutes if args.minutes is not None else 5) / len(targets)
    rng = random.Random(args.seed)
    budget_text = f"{seconds:,.0f} s" if seconds is not None else f"{args.examples:,} examples"
    print(
        f"{len(targets)} targets, {budget_text} each; hypothesis {hypothesis.__version__}, "
        f"python {sys.version.split()[0]}, seed {args.seed if args.seed is not None else 'random'}"
    )
    tallies = []
    for target in targets:
        tally = fuzz(target, seconds=seconds, examples=args.examples, rng=rng)
        report(target, tally)
        tallies.append((target, tally))
    print(f"\n{'target':<22}{'examples':>12}{'accepted':>12}{'rejected':>12}{'crashes':>9}")
    for target, tally in tallies:
        accepted = sum(n for label, n in tally.outcomes.items() if label.startswith("accepted"))
        rejected = tally.examples - accepted - tally.crash_count
        print(
            f"{target.name:<22}{tally.examples:>12,}{accepted:>12,}{rejected:>12,}{tally.crash_count:>9,}"
        )
    sys.exit(1 if any(tally.crashes for _, tally in tallies) else 0)


if __name__ == "__main__":
    main()
