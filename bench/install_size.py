"""Install size and start-up cost per part, against a baseline commit, in one run.

    python bench/install_size.py [--baseline 39ad6fa] [--runs 7] [--work /tmp/pw-install]

Each variant gets a fresh virtualenv and a plain ``pip install`` (from PyPI, or the machine's
index) of a snapshot of the source: the baseline commit's whole install, and this checkout's
``[edge]`` (the core: what an edge device installs), ``[gateway]`` and ``[demo]`` (everything).
For each it prints the pip wall time, the size of site-packages, the number of distributions,
whether the analytics stack and the demo's libraries are there, then the median wall time and
peak memory of ``plantwire edge --help`` and the median cumulative import time of
``edge.agent`` (``python -X importtime``). Wall times vary 2-3x on a shared machine: compare
within one run.
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
HEAVY = ("sklearn", "scipy", "matplotlib", "skops", "amqtt", "rich", "influxdb_client")


def snapshot(commit: str | None, into: Path) -> Path:
    """The source tree at a commit (None: the working tree's committed HEAD plus changes)."""
    into.mkdir(parents=True, exist_ok=True)
    if commit is None:
        files = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        for name in files:
            source = ROOT / name
            if source.is_file():
                target = into / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
        return into
    archive = into.with_suffix(".tar")
    subprocess.run(["git", "archive", "-o", str(archive), commit], cwd=ROOT, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


def install(source: Path, extra: str, venv: Path) -> dict[str, object]:
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    quiet = subprocess.DEVNULL  # the index's warnings; a failed install still raises
    subprocess.run([*pip, "install", "-q", "--upgrade", "pip"], check=True, stderr=quiet)
    started = time.perf_counter()
    subprocess.run([*pip, "install", "-q", f"{source}{extra}"], check=True, stderr=quiet)
    seconds = time.perf_counter() - started
    packages = next((venv / "lib").glob("python3*/site-packages"))
    size = sum(p.stat().st_size for p in packages.rglob("*") if p.is_file())
    listed = subprocess.run(
        [*pip, "list", "--format=freeze"], capture_output=True, text=True, check=True
    )
    present = [
        name for name in HEAVY if (packages / name).exists() or (packages / f"{name}.py").exists()
    ]
    return {
        "pip_s": seconds,
        "mb": size / 1e6,
        "dists": len(listed.stdout.split()),
        "heavy": present,
    }


def startup(venv: Path, runs: int) -> dict[str, float]:
    command = [str(venv / "bin" / "plantwire"), "edge", "--help"]
    for _ in range(2):  # warm the page cache
        subprocess.run(command, capture_output=True, check=True, cwd="/tmp")
    walls = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True, cwd="/tmp")
        walls.append(time.perf_counter() - started)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child so far
    imports = []
    for _ in range(runs):
        done = subprocess.run(
            [str(venv / "bin" / "python"), "-X", "importtime", "-c", "import edge.agent"],
            capture_output=True, text=True, check=True, cwd="/tmp",
        )  # fmt: skip
        match = re.search(r"\|\s+(\d+) \| edge\.agent$", done.stderr, re.MULTILINE)
        imports.append(int(match.group(1)) / 1000 if match else float("nan"))
    return {
        "help_s": statistics.median(walls),
        "peak_mb": peak_kb / 1024,
        "import_ms": statistics.median(imports),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="39ad6fa", help="commit before the extras")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--work", type=Path, default=Path("/tmp/pw-install"))
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    base = snapshot(args.baseline, args.work / "src-base")
    here = snapshot(None, args.work / "src-here")
    variants = [
        (f"{args.baseline} (all)", base, ""),
        ("now [edge]", here, "[edge]"),
        ("now [gateway]", here, "[gateway]"),
        ("now [demo]", here, "[demo]"),
    ]
    print(
        f"{'install':<18} {'pip s':>6} {'MB':>6} {'dists':>5}  {'edge --help s':>13}"
        f" {'peak MB':>7} {'import edge.agent ms':>20}  analytics/demo libraries"
    )
    for index, (name, source, extra) in enumerate(variants):
        venv = args.work / f"venv-{index}"
        sizes = install(source, extra, venv)
        # Peak memory is per process tree: measure each variant in its own child.
        figures = subprocess.run(
            [sys.executable, __file__, "--startup-only", str(venv), str(args.runs)],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        help_s, peak_mb, import_ms = (float(x) for x in figures)
        heavy = ", ".join(sizes["heavy"]) or "none"  # type: ignore[arg-type]
        print(
            f"{name:<18} {sizes['pip_s']:>6.1f} {sizes['mb']:>6.0f} {sizes['dists']:>5}"
            f"  {help_s:>13.3f} {peak_mb:>7.1f} {import_ms:>20.0f}  {heavy}",
            flush=True,
        )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--startup-only":
        result = startup(Path(sys.argv[2]), int(sys.argv[3]))
        print(result["help_s"], result["peak_mb"], result["import_ms"])
    else:
        main()
