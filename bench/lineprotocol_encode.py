"""Line-protocol encoder throughput: points per second for 10-field points on one core.

    python bench/lineprotocol_encode.py [--points 500000] [--chunk 5000]

Prints, for three value mixes, PlantWire's LineEncoder beside a straightforward encoder
(escape + repr per field, the way most Python writers do it) run on the same points in the same
process, so the ratio does not depend on the machine. The chunk is the number of points per
write request (the gateway's default batch). Goal: >= 300,000 points/s for 10-field points.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import time
from collections.abc import Callable, Sequence

from plantwire.lineprotocol import LineEncoder, Point

TAGS = {"site": "binh-duong", "area": "dairy", "line": "filling", "machine": "filler-1"}
FIELDS = [f"signal_{i:02d}" for i in range(10)]
T0 = 1_763_712_000_000_000_000


def make_points(count: int, mix: str, rng: random.Random) -> list[Point]:
    def value(index: int) -> float | int | bool | str:
        if mix == "random floats":
            return rng.uniform(-1e3, 1e3)
        if mix == "sensor floats":  # what a PLC sends: a few significant digits
            return round(rng.uniform(0, 200), 2)
        kinds = (round(rng.uniform(0, 200), 2), rng.randrange(2**31), rng.random() < 0.5, "running")
        return kinds[index % 4]

    return [
        Point("telemetry", TAGS, {name: value(i) for i, name in enumerate(FIELDS)}, T0 + n)
        for n in range(count)
    ]


def naive_encode(points: Sequence[Point]) -> bytes:
    """The usual per-field approach, as a baseline."""

    def esc(text: str) -> str:
        return text.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")

    def fmt(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return f"{v}i"
        if isinstance(v, float):
            return repr(v)
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = []
    for p in points:
        tags = ",".join(f"{esc(k)}={esc(v)}" for k, v in sorted(p.tags.items()))
        fields = ",".join(f"{esc(k)}={fmt(v)}" for k, v in p.fields.items())
        lines.append(f"{esc(p.measurement)},{tags} {fields} {p.ts_ns}")
    return "\n".join(lines).encode()


def rate(
    encode: Callable[[Sequence[Point]], bytes], points: list[Point], chunk: int
) -> tuple[float, int]:
    gc.collect()
    size = 0
    started = time.process_time()
    for start in range(0, len(points), chunk):
        size += len(encode(points[start : start + chunk]))
    elapsed = time.process_time() - started
    return len(points) / elapsed, size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=500_000)
    parser.add_argument("--chunk", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the goal says

    rng = random.Random(args.seed)
    encoder = LineEncoder()
    print(
        f"line protocol, {len(FIELDS)} fields per point, {args.points:,} points, {args.chunk:,} per write, CPU time on one core"
    )
    print(
        f"{'values':<16} {'PlantWire pts/s':>16} {'naive pts/s':>12} {'ratio':>6} {'bytes/pt':>9}"
    )
    for mix in ("random floats", "sensor floats", "mixed types"):
        points = make_points(args.points, mix, rng)
        ours, size = rate(encoder.encode, points, args.chunk)
        naive, _ = rate(naive_encode, points, args.chunk)
        print(
            f"{mix:<16} {ours:>16,.0f} {naive:>12,.0f} {ours / naive:>5.1f}x {size / len(points):>9.0f}"
        )


if __name__ == "__main__":
    main()
