"""The model registry: versions, promotion and rollback, and model files that cannot run code."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import skops.io

from analytics.anomaly.detectors import DETECTORS
from analytics.anomaly.registry import ModelFileError, Registry
from analytics.anomaly.threshold import Threshold

MACHINE = "bd/dairy/filling/filler"


def history(rows: int = 600, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    load = rng.normal(0.6, 0.05, rows)
    return np.column_stack([load, 10 + 8 * load + rng.normal(0, 0.1, rows)])


def saved(registry: Registry, name: str = "pca") -> tuple[int, np.ndarray]:
    detector = DETECTORS[name]().fit(history())
    threshold = Threshold.calibrate(detector.score(history()), margin=1.2)
    version = registry.save(MACHINE, detector, threshold, {"signals": ["load", "current"]})
    return version.version, detector.score(history(200, seed=1))


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_a_saved_model_scores_exactly_as_before(tmp_path: Path, name: str) -> None:
    registry = Registry(tmp_path)
    version, before = saved(registry, name)
    detector, threshold, loaded = registry.load(MACHINE, version)
    np.testing.assert_array_equal(detector.score(history(200, seed=1)), before)
    assert threshold.margin == 1.2 and loaded.metadata["signals"] == ["load", "current"]
    assert (loaded.folder / "model.skops").exists()


def test_promote_and_rollback(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    first, _ = saved(registry)
    second, _ = saved(registry)
    assert registry.promoted(MACHINE) is None
    with pytest.raises(ModelFileError, match="no promoted model"):
        registry.load(MACHINE)
    registry.promote(MACHINE, first)
    registry.promote(MACHINE, second)
    assert registry.load(MACHINE)[2].version == second
    assert registry.rollback(MACHINE).version == first
    assert registry.promoted(MACHINE).version == first  # type: ignore[union-attr]
    with pytest.raises(ModelFileError, match="no earlier promoted version"):
        registry.rollback(MACHINE)
    assert registry.machines() == [MACHINE]
    assert [v.version for v in registry.versions(MACHINE)] == [1, 2]


def test_a_tampered_model_file_is_refused(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    version, _ = saved(registry)
    path = registry.version(MACHINE, version).folder / "model.skops"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelFileError, match="changed since it was saved"):
        registry.load(MACHINE, version)


class Payload:
    """An object a pickle would rebuild by calling code; skops must not."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this ran",))


def test_a_model_file_with_untrusted_types_is_refused_even_with_a_matching_hash(
    tmp_path: Path,
) -> None:
    registry = Registry(tmp_path)
    version, _ = saved(registry)
    found = registry.version(MACHINE, version)
    path = found.folder / "model.skops"
    skops.io.dump({"detector": "pca", "evil": Payload()}, path)  # an attacker re-signs the file
    meta = found.folder / "metadata.json"
    record = json.loads(meta.read_text())
    record["model_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    meta.write_text(json.dumps(record))
    with pytest.raises(ModelFileError, match="does not trust"):
        registry.load(MACHINE, version)


def test_a_pickle_is_not_a_model_file(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    version, _ = saved(registry)
    found = registry.version(MACHINE, version)
    path = found.folder / "model.skops"
    path.write_bytes(pickle.dumps(Payload()))
    meta = found.folder / "metadata.json"
    record = json.loads(meta.read_text())
    record["model_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    meta.write_text(json.dumps(record))
    with pytest.raises(ModelFileError, match="not a readable skops file"):
        registry.load(MACHINE, version)


def test_bad_machine_paths_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="is not site/area/line/machine"):
        Registry(tmp_path).versions("../etc/passwd")
