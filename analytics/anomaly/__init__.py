"""Anomaly detection on machine signals: detectors behind one interface, unsupervised thresholds
and alarm logic that turns scores into one alert per episode."""

from analytics.anomaly.alarms import AlarmEpisode, AlarmLogic
from analytics.anomaly.base import Detector
from analytics.anomaly.baseline import RobustBaseline
from analytics.anomaly.forest import WindowedIsolationForest
from analytics.anomaly.pca import PcaT2Q
from analytics.anomaly.threshold import Threshold

DETECTORS: dict[str, type[Detector]] = {
    RobustBaseline.name: RobustBaseline,
    PcaT2Q.name: PcaT2Q,
    WindowedIsolationForest.name: WindowedIsolationForest,
}

__all__ = [
    "DETECTORS",
    "AlarmEpisode",
    "AlarmLogic",
    "Detector",
    "PcaT2Q",
    "RobustBaseline",
    "Threshold",
    "WindowedIsolationForest",
]
