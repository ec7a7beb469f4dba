"""``plantwire train`` and ``plantwire models``: the anomaly-model lifecycle for data scientists."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the command is registered at every start: scikit-learn is imported on use
    from analytics.anomaly.registry import ModelVersion, Registry

__all__ = ["register"]

EXIT_USAGE = 2
EXIT_FAILED = 3
DEFAULT_REGISTRY = Path("plantwire-models")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    train = commands.add_parser("train", help="train a machine's anomaly model from stored history")
    train.add_argument("--config", type=Path, required=True, help="the site file")
    train.add_argument("--machine", required=True, help="area/line/machine (or a unique id)")
    train.add_argument(
        "--from", dest="start", required=True, help="history start (as plantwire oee)"
    )
    train.add_argument("--to", dest="end", required=True, help="history end")
    train.add_argument(
        "--detector", default="virtual", help="virtual, pca, baseline or iforest (default virtual)"
    )
    train.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY, help="model folder")
    train.add_argument("--truth", type=Path, default=None, help="a simulator truth file")
    train.add_argument("--evaluate-from", default=None, help="evaluate on another range")
    train.add_argument("--evaluate-to", default=None)
    train.add_argument("--promote", action="store_true", help="promote the new version")
    train.set_defaults(handler=run_train)

    models = commands.add_parser("models", help="list, show, promote and roll back models")
    models.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY, help="model folder")
    actions = models.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="every machine's versions and which is promoted")
    show = actions.add_parser("show", help="a version's metadata")
    show.add_argument("machine", help="site/area/line/machine")
    show.add_argument("--version", type=int, default=None, help="default: the promoted one")
    promote = actions.add_parser("promote", help="make a version the one the service scores with")
    promote.add_argument("machine")
    promote.add_argument("version", type=int)
    rollback = actions.add_parser("rollback", help="back to the previously promoted version")
    rollback.add_argument("machine")
    models.set_defaults(handler=run_models)


def run_train(args: argparse.Namespace) -> int:
    from analytics.anomaly.detectors import DETECTORS
    from analytics.anomaly.registry import Registry
    from analytics.anomaly.training import train
    from analytics.history import load_history
    from plantwire.config import load_site
    from plantwire.errors import PlantWireError
    from plantwire.logs import register_secrets_from
    from plantwire.store.open import open_store

    if args.detector not in DETECTORS:
        print(
            f"plantwire train: no detector {args.detector!r} ({', '.join(DETECTORS)})",
            file=sys.stderr,
        )
        return EXIT_USAGE

    def progress(message: str) -> None:
        print(f"plantwire train: {message}", file=sys.stderr, flush=True)

    try:
        site = load_site(args.config)
        register_secrets_from(site)
        if site.store is None:
            print(f"plantwire train: {args.config} has no store: block", file=sys.stderr)
            return EXIT_USAGE
        truth = json.loads(args.truth.read_text()) if args.truth else None
        with open_store(site) as store:
            progress(f"reading {args.machine} from {args.start} to {args.end}")
            history = load_history(site, store, args.machine, start=args.start, end=args.end)
            evaluation = None
            if args.evaluate_from:
                evaluation = load_history(
                    site,
                    store,
                    args.machine,
                    start=args.evaluate_from,
                    end=args.evaluate_to or "now",
                    signals=history.signals,
                )
        progress(f"{len(history):,} rows of {', '.join(history.signals)}")
        registry = Registry(args.registry)
        version = train(
            history,
            registry,
            site=site.site.id,
            detector_name=args.detector,
            truth=truth,
            evaluation_history=evaluation,
            progress=progress,
        )
        if args.promote:
            registry.promote(version.machine, version.version)
    except (PlantWireError, ValueError, OSError) as exc:
        print(f"plantwire train: {exc}", file=sys.stderr)
        return EXIT_FAILED
    metrics = version.metadata["evaluation"]["metrics"]
    print(f"{version.machine} v{version.version} saved in {version.folder}")
    print(json.dumps(metrics, indent=2))
    return 0


def _list(registry: Registry) -> None:
    for machine in registry.machines():
        promoted = registry.promoted(machine)
        for v in registry.versions(machine):
            mark = "*" if promoted and promoted.version == v.version else " "
            f1 = v.metadata.get("evaluation", {}).get("metrics", {}).get("f1")
            print(
                f"{mark} {machine} v{v.version} {v.metadata['detector']} "
                f"saved {v.metadata['saved_at']}" + ("" if f1 is None else f" F1 {f1:.3f}")
            )


def _chosen(registry: Registry, args: argparse.Namespace) -> ModelVersion:
    from analytics.anomaly.registry import ModelFileError

    if args.action == "show":
        if args.version is not None:
            return registry.version(args.machine, args.version)
        promoted = registry.promoted(args.machine)
        if promoted is None:
            raise ModelFileError(f"{args.machine}: no promoted model")
        return promoted
    if args.action == "promote":
        return registry.promote(args.machine, args.version)
    return registry.rollback(args.machine)


def run_models(args: argparse.Namespace) -> int:
    from analytics.anomaly.registry import ModelFileError, Registry

    registry = Registry(args.registry)
    try:
        if args.action == "list":
            _list(registry)
            return 0
        chosen = _chosen(registry, args)
    except ModelFileError as exc:
        print(f"plantwire models: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.action == "show":
        print(json.dumps(chosen.metadata, indent=2, sort_keys=True))
    else:
        print(f"{chosen.machine}: v{chosen.version} is promoted")
    return 0
