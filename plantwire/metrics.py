"""Prometheus metrics for every PlantWire process, with no client library and no thread.

Each process part (edge agent, gateway, analytics) creates its own :class:`Registry` and passes
it to what it measures; there is deliberately no module-level default, so two parts run in one
test process never count into each other. :class:`~plantwire.health.HealthServer` serves
``registry.render()`` at ``/metrics`` in the text exposition format 0.0.4.

Updates are plain dict updates with no lock: PlantWire's parts are asyncio programs and update
metrics from the event loop. Code running in another thread (a paho-mqtt callback) should hand
the update to the loop with ``loop.call_soon_threadsafe`` rather than touch a metric itself.

>>> registry = Registry()
>>> polls = Counter(registry, "plantwire_polls_total", "Polls of a source.", ["machine"])
>>> polls.inc(machine="filler")
>>> print(registry.render(), end="")
# HELP plantwire_polls_total Polls of a source.
# TYPE plantwire_polls_total counter
plantwire_polls_total{machine="filler"} 1
"""

from __future__ import annotations

import logging
import math
import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import pairwise

__all__ = ["DEFAULT_BUCKETS", "Counter", "CounterFunction", "Gauge", "Histogram", "Registry"]

log = logging.getLogger(__name__)

# The Prometheus client libraries' defaults: request latencies from 5 ms to 10 s.
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Below this an integral float prints exactly as an integer; above, repr's exponent is clearer.
_INTEGER_LIMIT = 1e15

_LabelKey = tuple[str, ...]


def _format_value(value: float) -> str:
    """A sample value the way Prometheus reads it: ``3`` not ``3.0``, ``+Inf``, ``NaN``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < _INTEGER_LIMIT:
        return str(int(value))
    return repr(float(value))


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels_text(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    pairs = ",".join(f'{n}="{_escape_label_value(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + pairs + "}"


class Registry:
    """The metrics of one process part, rendered together in registration order."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def register(self, metric: _Metric) -> None:
        """Add a metric; the metric constructors call this, so callers rarely need to."""
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name!r} is already registered")
        self._metrics[metric.name] = metric

    def render(self) -> str:
        """Every metric in the Prometheus text exposition format 0.0.4."""
        return "".join(metric.render() for metric in self._metrics.values())

    def value(self, name: str, **labels: str) -> float:
        """The current value of one counter or gauge sample (0 if never set), for tests."""
        metric = self._metrics.get(name)
        if metric is None:
            raise KeyError(f"no metric named {name!r} is registered")
        if not isinstance(metric, Counter | Gauge):
            raise TypeError(f"metric {name!r} is a {metric.kind}; only counters and gauges")
        return metric.sample(**labels)


class _Metric:
    """What every metric type shares: a checked name, help text and label names."""

    kind = "untyped"

    def __init__(
        self,
        registry: Registry,
        name: str,
        help: str,  # noqa: A002  (the Prometheus term; callers pass it positionally)
        labelnames: Iterable[str] = (),
    ) -> None:
        if not _METRIC_NAME.fullmatch(name):
            raise ValueError(f"metric name {name!r} must match [a-zA-Z_:][a-zA-Z0-9_:]*")
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        for label in self.labelnames:
            _check_label_name(label, name)
        if len(set(self.labelnames)) != len(self.labelnames):
            raise ValueError(f"metric {name!r} declares a label name twice: {self.labelnames}")
        registry.register(self)

    def _key(self, labels: Mapping[str, str]) -> _LabelKey:
        """Label values in declared order; exactly the declared names must be given."""
        if labels.keys() != set(self.labelnames):
            declared = ", ".join(self.labelnames) or "no labels"
            given = ", ".join(sorted(labels)) or "none"
            raise ValueError(f"metric {self.name!r} takes {declared}; got {given}")
        return tuple(str(labels[label]) for label in self.labelnames)

    def _header(self) -> str:
        return f"# HELP {self.name} {_escape_help(self.help)}\n# TYPE {self.name} {self.kind}\n"

    def render(self) -> str:
        raise NotImplementedError


def _check_label_name(label: str, metric: str) -> None:
    if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
        raise ValueError(
            f"label name {label!r} of metric {metric!r} must match [a-zA-Z_][a-zA-Z0-9_]* "
            "and not start with __ (reserved by Prometheus)"
        )


class Counter(_Metric):
    """A count that only goes up (samples read, batches written). Name it ``*_total``."""

    kind = "counter"

    def __init__(
        self,
        registry: Registry,
        name: str,
        help: str,  # noqa: A002
        labelnames: Iterable[str] = (),
    ) -> None:
        super().__init__(registry, name, help, labelnames)
        # An unlabelled counter shows 0 from the start, so a rate() has a first point.
        self._values: dict[_LabelKey, float] = {} if self.labelnames else {(): 0.0}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if not amount >= 0:  # written so that NaN is refused too
            raise ValueError(f"counter {self.name!r} only goes up; got {amount}")
        key = self._key(labels) if labels or self.labelnames else ()
        self._values[key] = self._values.get(key, 0.0) + amount

    def sample(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def render(self) -> str:
        lines = [
            f"{self.name}{_labels_text(self.labelnames, key)} {_format_value(self._values[key])}\n"
            for key in sorted(self._values)
        ]
        return self._header() + "".join(lines)


class Gauge(_Metric):
    """A value that goes up and down (buffer depth, link up). ``set_function`` computes it at
    scrape time, so a value read from elsewhere is never stale."""

    kind = "gauge"

    def __init__(
        self,
        registry: Registry,
        name: str,
        help: str,  # noqa: A002
        labelnames: Iterable[str] = (),
    ) -> None:
        super().__init__(registry, name, help, labelnames)
        self._values: dict[_LabelKey, float] = {} if self.labelnames else {(): 0.0}
        self._functions: dict[_LabelKey, Callable[[], float]] = {}
        self._failing: set[_LabelKey] = set()

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        self._functions.pop(key, None)
        self._failing.discard(key)
        self._values[key] = float(value)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        if key in self._functions:
            raise ValueError(f"gauge {self.name!r}{list(key)} is computed by a function")
        self._values[key] = self._values.get(key, 0.0) + amount

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self.inc(-amount, **labels)

    def set_function(self, fn: Callable[[], float], **labels: str) -> None:
        key = self._key(labels)
        self._values.pop(key, None)
        self._failing.discard(key)
        self._functions[key] = fn

    def sample(self, **labels: str) -> float:
        key = self._key(labels)
        if key in self._functions:
            return self._call(key, self._functions[key])
        return self._values.get(key, 0.0)

    def _call(self, key: _LabelKey, fn: Callable[[], float]) -> float:
        # One failing callback must not take the whole scrape down: it reads NaN, logged once
        # when it starts failing and once when it works again.
        try:
            value = float(fn())
        except Exception:  # any bug in a callback; logged with its traceback
            if key not in self._failing:
                self._failing.add(key)
                log.warning(
                    "gauge %s%s function failed; reporting NaN", self.name, list(key), exc_info=True
                )
            return math.nan
        if key in self._failing:
            self._failing.discard(key)
            log.info("gauge %s%s function works again", self.name, list(key))
        return value

    def render(self) -> str:
        current = dict(self._values)
        for key, fn in self._functions.items():
            current[key] = self._call(key, fn)
        lines = [
            f"{self.name}{_labels_text(self.labelnames, key)} {_format_value(current[key])}\n"
            for key in sorted(current)
        ]
        return self._header() + "".join(lines)


class _Observations:
    """One histogram series: how many observations fell in each bucket (not cumulative)."""

    __slots__ = ("bucket_counts", "count", "total")

    def __init__(self, buckets: int) -> None:
        self.bucket_counts = [0] * buckets
        self.count = 0
        self.total = 0.0


class CounterFunction(Gauge):
    """A counter whose value is read at scrape time from a tally kept elsewhere (a driver's own
    request count, say), so the hot path does not pay twice. Use only ``set_function`` with a
    value that never goes down; it is exposed with counter type, so ``rate()`` works."""

    kind = "counter"


class Histogram(_Metric):
    """A distribution (write latency, batch size) counted into cumulative ``le`` buckets."""

    kind = "histogram"

    def __init__(
        self,
        registry: Registry,
        name: str,
        help: str,  # noqa: A002
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        labelnames: Iterable[str] = (),
    ) -> None:
        self.bounds = _check_buckets(name, buckets)
        names = tuple(labelnames)
        if "le" in names:
            raise ValueError(f"histogram {name!r} cannot have a label named le (its buckets')")
        super().__init__(registry, name, help, names)
        self._series: dict[_LabelKey, _Observations] = {}
        if not self.labelnames:
            self._series[()] = _Observations(len(self.bounds))

    def observe(self, value: float, **labels: str) -> None:
        if math.isnan(value):
            raise ValueError(f"histogram {self.name!r} cannot observe NaN")
        key = self._key(labels) if labels or self.labelnames else ()
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Observations(len(self.bounds))
        series.bucket_counts[bisect_left(self.bounds, value)] += 1
        series.count += 1
        series.total += value

    def render(self) -> str:
        parts = [self._header()]
        for key in sorted(self._series):
            series = self._series[key]
            cumulative = 0
            for bound, count in zip(self.bounds, series.bucket_counts, strict=True):
                cumulative += count
                labels = _labels_text((*self.labelnames, "le"), (*key, _format_value(bound)))
                parts.append(f"{self.name}_bucket{labels} {cumulative}\n")
            labels = _labels_text(self.labelnames, key)
            parts.append(f"{self.name}_sum{labels} {_format_value(series.total)}\n")
            parts.append(f"{self.name}_count{labels} {series.count}\n")
        return "".join(parts)


def _check_buckets(name: str, buckets: Sequence[float]) -> tuple[float, ...]:
    """Upper bounds, strictly increasing, always ending with +Inf."""
    bounds = [float(bound) for bound in buckets]
    if not bounds or any(math.isnan(bound) for bound in bounds):
        raise ValueError(f"histogram {name!r} needs at least one bucket bound, and no NaN")
    if any(upper <= lower for lower, upper in pairwise(bounds)):
        raise ValueError(f"histogram {name!r} bucket bounds must increase strictly: {bounds}")
    if bounds[-1] != math.inf:
        bounds.append(math.inf)
    return tuple(bounds)
