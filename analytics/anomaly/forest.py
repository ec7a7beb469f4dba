"""An Isolation Forest (scikit-learn) on windowed features: a row is anomalous when its values,
their recent level, spread and rate of change are easy to isolate from normal history."""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
from sklearn.ensemble import IsolationForest

from analytics.anomaly.base import Detector, rolling_mean
from analytics.anomaly.features import windowed_features

__all__ = ["WindowedIsolationForest"]


class WindowedIsolationForest(Detector):
    name: ClassVar[str] = "iforest"
    PARAMS: ClassVar[tuple[str, ...]] = ("feature_window", "lag", "smooth", "trees", "seed")
    FITTED: ClassVar[tuple[str, ...]] = ("center", "scale", "model")

    def __init__(
        self,
        *,
        feature_window: int = 30,
        lag: int = 5,
        smooth: int = 10,
        trees: int = 100,
        seed: int = 0,
    ) -> None:
        self.feature_window = feature_window
        self.lag = lag
        self.smooth = smooth
        self.trees = trees
        self.seed = seed
        # A score depends on the smoothing window of rows, each on its feature window before it.
        self.window = feature_window + smooth + lag
        super().__init__()
        self.center = np.empty(0)
        self.scale = np.empty(0)
        self.model: IsolationForest | None = None

    def _features(self, block: np.ndarray) -> np.ndarray:
        features = windowed_features(block, window=self.feature_window, lag=self.lag)
        return np.asarray((features - self.center) / self.scale)

    def fit(self, history: np.ndarray) -> Self:
        rows = np.asarray(history, dtype=np.float64)
        if rows.ndim != 2 or len(rows) < 10:
            raise ValueError("iforest needs at least 10 rows of history, as rows x signals")
        self.signals = rows.shape[1]
        raw = windowed_features(rows, window=self.feature_window, lag=self.lag)
        self.center = raw.mean(axis=0)
        self.scale = np.maximum(raw.std(axis=0), 1e-9)
        self.model = IsolationForest(n_estimators=self.trees, random_state=self.seed)
        self.model.fit((raw - self.center) / self.scale)
        return self

    def score(self, block: np.ndarray) -> np.ndarray:
        rows = self._check(block)
        assert self.model is not None
        raw = -self.model.score_samples(self._features(rows))
        return rolling_mean(raw, self.smooth)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        detector = super().from_state(state)
        check_forest(detector.model)
        return detector


def check_forest(model: object) -> None:
    """Refuse a forest whose trees scikit-learn could not walk safely: its tree code follows the
    stored child and feature indices without bounds checks (skops trusts no Tree by default for
    that reason), so a crafted model file would crash the process at its first score instead of
    being refused. Each tree must be what fitting makes: a node's children come after it, inside
    the tree, and it splits on a feature the forest is given."""
    if not isinstance(model, IsolationForest):
        raise TypeError(f"the fitted model is a {type(model).__name__}, not an IsolationForest")
    features_in = int(model.n_features_in_)
    if len(model.estimators_) != len(model.estimators_features_):
        raise ValueError("the forest has a different number of trees and feature subsets")
    for number, (estimator, subset) in enumerate(
        zip(model.estimators_, model.estimators_features_, strict=True)
    ):
        used = np.asarray(subset)
        if used.ndim != 1 or (used.size and not 0 <= used.min() <= used.max() < features_in):
            raise ValueError(f"tree {number} uses features the forest does not have")
        _check_tree(estimator.tree_, number, columns=min(features_in, used.size))


def _check_tree(tree: Any, number: int, *, columns: int) -> None:
    nodes = int(tree.node_count)
    if not 0 < nodes == tree.capacity:
        raise ValueError(f"tree {number} claims {nodes} nodes but holds {tree.capacity}")
    left, right, feature = tree.children_left, tree.children_right, tree.feature
    leaf = left == -1
    inner = np.flatnonzero(~leaf)
    if np.any(leaf != (right == -1)):
        raise ValueError(f"tree {number} has a node with one child")
    for child in (left[inner], right[inner]):
        if np.any(child <= inner) or np.any(child >= nodes):
            raise ValueError(f"tree {number} has a child index outside the tree or before it")
    if np.any(feature[inner] < 0) or np.any(feature[inner] >= columns):
        raise ValueError(f"tree {number} splits on a feature outside 0..{columns - 1}")
    # decision_path sizes its buffers by max_depth: it must cover the deepest node.
    depth = np.zeros(nodes, dtype=np.int64)
    for node in inner:  # children come after their parent, so one pass in order suffices
        depth[left[node]] = max(depth[left[node]], depth[node] + 1)
        depth[right[node]] = max(depth[right[node]], depth[node] + 1)
    if depth.max() > tree.max_depth:
        raise ValueError(f"tree {number} is deeper than its stated max_depth {tree.max_depth}")
