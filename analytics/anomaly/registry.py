"""The model registry: a folder of versioned models per machine, one of them promoted.

Layout::

    REGISTRY/<site>/<area>/<line>/<machine>/
        v0001/model.skops      the fitted detector as plain data (skops, never pickle)
        v0001/metadata.json    detector, signals, training range, data hash, versions, metrics,
                               threshold, and the model file's SHA-256
        v0001/evaluation.png   signals, score, threshold and truth (written by training)
        promotions.jsonl       every promotion and rollback, newest last

A model file cannot run code when loaded: skops rebuilds only the types it is told to trust.
skops itself trusts many scikit-learn estimators by default (a OneClassSVM, say), so PlantWire
does not rely on that: every type a file holds must be on its own explicit list
(:data:`MODEL_TYPES`), of which only :data:`TRUSTED_TYPES` need telling skops. A file whose bytes
changed since it was saved (its SHA-256 no longer matches the metadata), that holds any other
type, or whose types do not hold a model PlantWire could have saved (a tree whose indices point
outside it, say) is refused with :class:`ModelFileError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import skops.io

from analytics.anomaly.base import Detector
from analytics.anomaly.detectors import DETECTORS
from analytics.anomaly.threshold import Threshold
from plantwire.errors import PlantWireError

__all__ = ["TRUSTED_TYPES", "ModelFileError", "ModelVersion", "Registry"]

# The types skops must be told to trust for a PlantWire model (scikit-learn's tree structure,
# for the Isolation Forest).
TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]
# Every type a PlantWire model file may hold: plain data, and the Isolation Forest's parts.
MODEL_TYPES = frozenset(
    {
        *(f"builtins.{name}" for name in ("dict", "list", "tuple", "str", "int", "float", "bool")),
        *(f"numpy.{name}" for name in ("ndarray", "float64", "float32", "int64", "int32", "bool_")),
        "sklearn.ensemble._iforest.IsolationForest",
        "sklearn.tree._classes.ExtraTreeRegressor",
        *TRUSTED_TYPES,
    }
)
MAX_SCHEMA_BYTES = 64 * 1024 * 1024  # a model's schema is kilobytes; refuse a zip bomb
MODEL_FILE = "model.skops"
METADATA_FILE = "metadata.json"
PLOT_FILE = "evaluation.png"


class ModelFileError(PlantWireError):
    """A model that cannot be loaded safely or does not exist; the message says which and why."""


@dataclass(frozen=True, slots=True)
class ModelVersion:
    machine: str  # site/area/line/machine
    version: int
    folder: Path
    metadata: dict[str, Any]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def types_in(path: Path) -> set[str]:
    """Every type a skops file would build, from its ``schema.json`` (read, never run)."""
    with zipfile.ZipFile(path) as archive:
        if archive.getinfo("schema.json").file_size > MAX_SCHEMA_BYTES:
            raise ValueError("schema.json is larger than any model's")
        schema = json.loads(archive.read("schema.json"))
    found: set[str] = set()
    waiting: list[Any] = [schema]
    while waiting:
        node = waiting.pop()
        if isinstance(node, dict):
            module, name = node.get("__module__"), node.get("__class__")
            if isinstance(module, str) and isinstance(name, str):
                found.add(f"{module}.{name}")
            waiting.extend(node.values())
        elif isinstance(node, list):
            waiting.extend(node)
    return found


class Registry:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _machine_folder(self, machine: str) -> Path:
        parts = machine.split("/")
        if len(parts) != 4 or any(not p or p in {".", ".."} for p in parts):
            raise ModelFileError(f"{machine!r} is not site/area/line/machine")
        return self.root.joinpath(*parts)

    # -- writing --------------------------------------------------------------------------------
    def save(
        self,
        machine: str,
        detector: Detector,
        threshold: Threshold,
        metadata: dict[str, Any],
    ) -> ModelVersion:
        """Save a new version (not promoted); returns it."""
        folder = self._machine_folder(machine)
        folder.mkdir(parents=True, exist_ok=True)
        version = max((v.version for v in self.versions(machine)), default=0) + 1
        target = folder / f"v{version:04d}"
        partial = folder / f".v{version:04d}.partial"
        partial.mkdir()
        skops.io.dump(detector.state(), partial / MODEL_FILE)
        record = {
            **metadata,
            "machine": machine,
            "version": version,
            "detector": detector.name,
            "threshold": {
                "value": threshold.value,
                "method": threshold.method,
                "margin": threshold.margin,
            },
            "model_sha256": _sha256(partial / MODEL_FILE),
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (partial / METADATA_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))
        os.replace(partial, target)  # a version appears whole or not at all
        return ModelVersion(machine, version, target, record)

    def promote(self, machine: str, version: int) -> ModelVersion:
        chosen = self.version(machine, version)
        self._log(machine, {"action": "promote", "version": version})
        return chosen

    def rollback(self, machine: str) -> ModelVersion:
        """Back to the version promoted before the current one."""
        history = self._promoted_history(machine)
        if len(history) < 2:
            raise ModelFileError(f"{machine}: no earlier promoted version to roll back to")
        previous = history[-2]
        self._log(machine, {"action": "rollback", "version": previous})
        return self.version(machine, previous)

    def _log(self, machine: str, entry: dict[str, Any]) -> None:
        entry["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with (self._machine_folder(machine) / "promotions.jsonl").open("a") as log:
            log.write(json.dumps(entry) + "\n")

    # -- reading --------------------------------------------------------------------------------
    def machines(self) -> list[str]:
        if not self.root.is_dir():
            return []
        found = {
            "/".join(path.parent.parent.relative_to(self.root).parts)
            for path in self.root.glob(f"*/*/*/*/v*/{METADATA_FILE}")
        }
        return sorted(found)

    def versions(self, machine: str) -> list[ModelVersion]:
        folder = self._machine_folder(machine)
        versions = []
        for meta in sorted(folder.glob(f"v*/{METADATA_FILE}")):
            record = json.loads(meta.read_text())
            versions.append(ModelVersion(machine, int(record["version"]), meta.parent, record))
        return versions

    def version(self, machine: str, version: int) -> ModelVersion:
        for found in self.versions(machine):
            if found.version == version:
                return found
        raise ModelFileError(f"{machine}: no model version {version} in {self.root}")

    def _promoted_history(self, machine: str) -> list[int]:
        log = self._machine_folder(machine) / "promotions.jsonl"
        if not log.exists():
            return []
        history: list[int] = []
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            if entry["action"] == "promote":
                history.append(int(entry["version"]))
            elif entry["action"] == "rollback":
                history = history[:-1]
        return history

    def promoted(self, machine: str) -> ModelVersion | None:
        history = self._promoted_history(machine)
        return self.version(machine, history[-1]) if history else None

    def load(
        self, machine: str, version: int | None = None
    ) -> tuple[Detector, Threshold, ModelVersion]:
        """A model (the promoted one by default), checked before a byte of it is trusted."""
        chosen = self.promoted(machine) if version is None else self.version(machine, version)
        if chosen is None:
            raise ModelFileError(f"{machine}: no promoted model (plantwire models promote)")
        path = chosen.folder / MODEL_FILE
        if not path.exists():
            raise ModelFileError(f"{path}: the model file is missing")
        if _sha256(path) != chosen.metadata.get("model_sha256"):
            raise ModelFileError(
                f"{path}: the file changed since it was saved (SHA-256 differs): refused"
            )
        try:
            held = types_in(path) | set(skops.io.get_untrusted_types(file=path))
        except Exception as exc:  # noqa: BLE001 - any parse failure means a damaged file
            raise ModelFileError(f"{path}: not a readable skops file ({exc})") from None
        unexpected = sorted(held - MODEL_TYPES)
        if unexpected:
            raise ModelFileError(
                f"{path}: holds types PlantWire does not trust ({', '.join(unexpected)}): refused"
            )
        state = skops.io.load(path, trusted=TRUSTED_TYPES)
        name = state.get("detector") if isinstance(state, dict) else None
        if name not in DETECTORS:
            raise ModelFileError(f"{path}: unknown detector {name!r}")
        try:
            detector = DETECTORS[name].from_state(state)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # Only trusted types, but not in the shape PlantWire saves: damaged or crafted.
            raise ModelFileError(f"{path}: not a valid {name} model ({exc}): refused") from exc
        record = chosen.metadata["threshold"]
        threshold = Threshold(
            float(record["value"]), str(record["method"]), float(record["margin"])
        )
        return detector, threshold, chosen
