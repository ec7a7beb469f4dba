"""The detectors by name, as ``--detector`` and model files name them."""

from __future__ import annotations

from analytics.anomaly.base import Detector
from analytics.anomaly.baseline import RobustBaseline
from analytics.anomaly.forest import WindowedIsolationForest
from analytics.anomaly.pca import PcaT2Q
from analytics.anomaly.virtual import VirtualSensors

__all__ = ["DETECTORS"]

DETECTORS: dict[str, type[Detector]] = {
    RobustBaseline.name: RobustBaseline,
    PcaT2Q.name: PcaT2Q,
    WindowedIsolationForest.name: WindowedIsolationForest,
    VirtualSensors.name: VirtualSensors,
}
