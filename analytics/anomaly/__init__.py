"""Anomaly detection on machine signals: detectors behind one interface (``base``), the
detectors by name (``detectors``), unsupervised thresholds (``threshold``), alarm logic that
turns scores into one alert per episode (``alarms``), the model registry (``registry``) and
training (``training``). Nothing is imported here: the ``plantwire`` command registers these
subcommands at every start, and scikit-learn is loaded only when a detector is used."""
