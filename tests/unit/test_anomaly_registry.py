"""The model registry: versions, promotion and rollback, and model files that cannot run code --
nor crash the process with trusted types in a crafted shape."""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops
import skops.io
from sklearn.svm import OneClassSVM

import analytics.anomaly.registry as registry_module
from analytics.anomaly.detectors import DETECTORS
from analytics.anomaly.forest import WindowedIsolationForest
from analytics.anomaly.registry import (
    MODEL_TYPES,
    TRUSTED_TYPES,
    ModelFileError,
    ModelVersion,
    Registry,
)
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


def test_a_type_skops_trusts_by_default_but_plantwire_does_not_is_refused(
    tmp_path: Path,
) -> None:
    """skops trusts scikit-learn's OneClassSVM without being told: PlantWire's list does not."""
    registry = Registry(tmp_path)
    version, _ = saved(registry)
    found = registry.version(MACHINE, version)
    path = found.folder / "model.skops"
    svm = OneClassSVM().fit(np.random.default_rng(1).normal(size=(50, 2)))
    skops.io.dump({"detector": "pca", "model": svm}, path)
    assert skops.io.get_untrusted_types(file=path) == []  # nothing skops would ask about
    resign(found)
    with pytest.raises(
        ModelFileError, match=r"does not trust \(sklearn\.svm\._classes\.OneClassSVM\)"
    ):
        registry.load(MACHINE, version)
    assert "sklearn.svm._classes.OneClassSVM" not in MODEL_TYPES


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


# -- crafted files: trusted-looking containers around code, and trees that point anywhere ----------


def _json(value: object) -> dict[str, object]:
    return {
        "__class__": type(value).__name__,
        "__module__": "builtins",
        "__loader__": "JsonNode",
        "content": json.dumps(value),
        "is_json": True,
    }


def _dict(content: dict[str, dict[str, object]]) -> dict[str, object]:
    return {
        "__class__": "dict",
        "__module__": "builtins",
        "__loader__": "DictNode",
        "content": content,
        "key_types": {
            "__class__": "list",
            "__module__": "builtins",
            "__loader__": "ListNode",
            "content": [
                {"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode"}
                for _ in content
            ],
        },
    }


def _tuple(*items: dict[str, object]) -> dict[str, object]:
    return {
        "__class__": "tuple",
        "__module__": "builtins",
        "__loader__": "TupleNode",
        "content": list(items),
    }


def crafted_model_file(path: Path, evil: dict[str, object]) -> None:
    """A skops file written by hand: a model state holding one hostile node, as an attacker
    would write it (skops.io.dump would not produce these)."""
    state = {
        **_dict({"detector": _json("pca"), "evil": evil}),
        "protocol": 2,
        "_skops_version": skops.__version__,
    }
    ids = iter(range(1, 10_000))

    def number(node: object) -> None:  # every node carries an id (skops caches by it)
        if isinstance(node, dict):
            if "__loader__" in node:
                node["__id__"] = next(ids)
            for child in node.values():
                number(child)
        elif isinstance(node, list):
            for child in node:
                number(child)

    number(state)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("schema.json", json.dumps(state))


def resign(found: ModelVersion) -> None:
    """What an attacker with write access to the registry also does: fix the recorded hash."""
    path, meta = found.folder / "model.skops", found.folder / "metadata.json"
    record = json.loads(meta.read_text())
    record["model_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    meta.write_text(json.dumps(record))


EVIL_MODULE = "plantwire_evil_model_module"


def hostile_nodes(marker: Path) -> dict[str, tuple[str, dict[str, object]]]:
    """case -> (the type the refusal must name, the node)."""
    command = _tuple(_json(f"touch {marker}"))
    return {
        # os.system("touch ...") the way skops rebuilds objects from their constructor call.
        "constructor call": (
            "os.system",
            {
                "__class__": "system",
                "__module__": "os",
                "__loader__": "ConstructorFromReduceNode",
                "content": command,
            },
        ),
        "function reference": (
            "builtins.eval",
            {"__class__": "eval", "__module__": "builtins", "__loader__": "FunctionNode"},
        ),
        "partial call": (
            "builtins.exec",
            {
                "__class__": "partial",
                "__module__": "functools",
                "__loader__": "PartialNode",
                "content": {
                    "func": {
                        "__class__": "exec",
                        "__module__": "builtins",
                        "__loader__": "FunctionNode",
                    },
                    "args": _tuple(_json(f"open({str(marker)!r}, 'w')")),
                    "kwds": _dict({}),
                    "namespace": _json(None),
                },
            },
        ),
        "object of any class": (
            "subprocess.Popen",
            {
                "__class__": "Popen",
                "__module__": "subprocess",
                "__loader__": "ObjectNode",
                "content": _dict({"args": _json(["touch", str(marker)])}),
            },
        ),
        # Importing a module runs its top level: the refusal must come before any import.
        "module with side effects": (
            f"{EVIL_MODULE}.Anything",
            {"__class__": "Anything", "__module__": EVIL_MODULE, "__loader__": "ObjectNode"},
        ),
    }


@pytest.mark.parametrize("case", sorted(hostile_nodes(Path("x"))))
def test_a_model_file_naming_code_is_refused_without_running_or_importing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    marker = tmp_path / "this-ran"
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / f"{EVIL_MODULE}.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Anything:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(modules))
    named, node = hostile_nodes(marker)[case]
    registry = Registry(tmp_path / "registry")
    version, _ = saved(registry)
    found = registry.version(MACHINE, version)
    crafted_model_file(found.folder / "model.skops", node)
    resign(found)

    with pytest.raises(ModelFileError, match="does not trust") as refused:
        registry.load(MACHINE, version)
    assert named in str(refused.value)
    assert not marker.exists() and EVIL_MODULE not in sys.modules


def _crafted_tree(edit: str) -> Callable[[dict[str, Any]], None]:
    """One change to a fitted tree's state (scikit-learn's __getstate__ dict)."""

    def apply(state: dict[str, Any]) -> None:
        nodes = state["nodes"]
        inner = int(np.flatnonzero(nodes["left_child"] != -1)[0])
        if edit == "child outside the tree":
            nodes["left_child"][inner] = 10**6
        elif edit == "child pointing back (a loop)":
            nodes["right_child"][inner] = inner
        elif edit == "feature outside the data":
            nodes["feature"][inner] = 10**6
        elif edit == "leaf with one child":
            leaf = int(np.flatnonzero(nodes["left_child"] == -1)[0])
            nodes["right_child"][leaf] = leaf + 1
        elif edit == "more nodes claimed than held":
            state["node_count"] = len(nodes) + 1000
        elif edit == "max_depth understated":
            state["max_depth"] = 0

    return apply


TREE_EDITS = [
    "child outside the tree",
    "child pointing back (a loop)",
    "feature outside the data",
    "leaf with one child",
    "more nodes claimed than held",
    "max_depth understated",
]


@pytest.mark.parametrize("edit", TREE_EDITS)
def test_a_forest_whose_trees_point_anywhere_is_refused_not_run(tmp_path: Path, edit: str) -> None:
    """Only trusted types, re-signed: scikit-learn's tree code follows stored indices without
    bounds checks, so such a file would crash the analytics process at its first score."""
    registry = Registry(tmp_path)
    detector = WindowedIsolationForest(trees=3).fit(history())
    threshold = Threshold.calibrate(detector.score(history()), margin=1.2)
    found = registry.save(MACHINE, detector, threshold, {"signals": ["load", "current"]})
    state = detector.state()
    tree = state["fitted"]["model"].estimators_[1].tree_
    tree_state = tree.__getstate__()
    tree_state["nodes"] = tree_state["nodes"].copy()
    _crafted_tree(edit)(tree_state)
    tree.__setstate__(tree_state)
    skops.io.dump(state, found.folder / "model.skops")
    resign(found)

    with pytest.raises(ModelFileError, match=r"not a valid iforest model \(tree 1 .*\): refused"):
        registry.load(MACHINE, found.version)


def test_trusted_types_in_the_wrong_shape_are_refused_clearly(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    version, _ = saved(registry)
    found = registry.version(MACHINE, version)
    skops.io.dump(
        {"detector": "pca", "params": {"no_such_setting": 1}}, found.folder / "model.skops"
    )
    resign(found)
    with pytest.raises(ModelFileError, match="not a valid pca model"):
        registry.load(MACHINE, version)


def test_models_load_only_through_the_registry_with_its_trusted_list() -> None:
    """No other way in: nothing in PlantWire unpickles or loads a model file by another route."""
    repo = Path(__file__).resolve().parents[2]
    unpicklers = r"(c?pickle|joblib|cloudpickle|dill|marshal|shelve)"
    risky = re.compile(
        rf"\b(import|from)\s+{unpicklers}\b|\b{unpicklers}\.loads?\(|\bUnpickler\b"
        r"|allow_pickle\s*=\s*True|\btorch\.load\(|\bskops\.io\.loads?\("
    )
    found = []
    for package in ("plantwire", "edge", "gateway", "analytics", "simulators"):
        for path in sorted((repo / package).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if risky.search(line) and not line.lstrip().startswith("#"):
                    found.append(f"{path.relative_to(repo)}:{number}: {line.strip()}")
    the_load = "state = skops.io.load(path, trusted=TRUSTED_TYPES)"
    assert found == [f"analytics/anomaly/registry.py:{_line_of(the_load)}: {the_load}"]
    assert TRUSTED_TYPES == ["sklearn.tree._tree.Tree"]


def _line_of(text: str) -> int:
    source = Path(registry_module.__file__).read_text().splitlines()
    return next(number for number, line in enumerate(source, 1) if text in line)
