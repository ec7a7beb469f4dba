"""The panel types the boards use, with the options a plant engineer wants by default.

Each function returns a :class:`~grafana_boards.model.Panel`; ``defaults`` passed in are merged
over the type's own field defaults.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict, Unpack

from grafana_boards.model import Json, Panel, Query

__all__ = [
    "bar_gauge",
    "data_link",
    "gauge",
    "hide_series",
    "stat",
    "state_timeline",
    "table",
    "time_series",
]


class Extras(TypedDict, total=False):
    """What any panel may have beside its type's own options (see :class:`Panel`)."""

    description: str
    overrides: Sequence[Json]
    transformations: Sequence[Json]
    time_from: str
    interval: str


LAST_VALUE = {"calcs": ["lastNotNull"], "fields": "", "values": False}
LEGEND = {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []}


def data_link(title: str, url: str) -> Json:
    """A link from a value to another board (``url`` may use ``${__field.labels.machine}``)."""
    return {"title": title, "url": url, "targetBlank": False}


def hide_series(matcher: Json) -> Json:
    """An override that takes matching series off the graph, the legend and the tooltip."""
    return {
        "matcher": matcher,
        "properties": [
            {"id": "custom.hideFrom", "value": {"legend": True, "tooltip": True, "viz": True}}
        ],
    }


def _panel(
    kind: str,
    title: str,
    queries: Sequence[Query],
    size: tuple[int, int],
    *,
    defaults: Json,
    options: Json,
    **extra: Unpack[Extras],
) -> Panel:
    width, height = size
    return Panel(title, kind, queries, width, height, defaults=defaults, options=options, **extra)


def gauge(
    title: str,
    queries: Sequence[Query],
    size: tuple[int, int],
    *,
    defaults: Json,
    **extra: Unpack[Extras],
) -> Panel:
    options = {
        "reduceOptions": LAST_VALUE,
        "orientation": "auto",
        "showThresholdLabels": False,
        "showThresholdMarkers": True,
    }
    return _panel("gauge", title, queries, size, defaults=defaults, options=options, **extra)


def stat(
    title: str,
    queries: Sequence[Query],
    size: tuple[int, int],
    *,
    defaults: Json,
    color_mode: str = "value",
    **extra: Unpack[Extras],
) -> Panel:
    options = {
        "reduceOptions": LAST_VALUE,
        "colorMode": color_mode,
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "textMode": "value_and_name",
        "wideLayout": True,
    }
    return _panel("stat", title, queries, size, defaults=defaults, options=options, **extra)


def bar_gauge(
    title: str,
    queries: Sequence[Query],
    size: tuple[int, int],
    *,
    defaults: Json,
    **extra: Unpack[Extras],
) -> Panel:
    options = {
        "reduceOptions": LAST_VALUE,
        "displayMode": "gradient",
        "orientation": "horizontal",
        "showUnfilled": True,
        "valueMode": "color",
        "namePlacement": "auto",
        "sizing": "auto",
    }
    return _panel("bargauge", title, queries, size, defaults=defaults, options=options, **extra)


def time_series(
    title: str,
    queries: Sequence[Query],
    size: tuple[int, int],
    *,
    defaults: Json,
    style: Json | None = None,
    **extra: Unpack[Extras],
) -> Panel:
    """Lines by default; ``style`` overrides the drawing (bars, points, log scale)."""
    custom = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 10,
        "showPoints": "auto",
        "pointSize": 4,
        "spanNulls": False,
        "axisPlacement": "auto",
        "scaleDistribution": {"type": "linear"},
        **(style or {}),
    }
    options = {"legend": LEGEND, "tooltip": {"mode": "multi", "sort": "none"}}
    return _panel(
        "timeseries",
        title,
        queries,
        size,
        defaults={**defaults, "custom": custom},
        options=options,
        **extra,
    )


def state_timeline(
    title: str,
    queries: Sequence[Query],
    size: tuple[int, int],
    *,
    defaults: Json,
    **extra: Unpack[Extras],
) -> Panel:
    """One band per series; a state holds until the next sample, as the PLC's register does."""
    options = {
        "mergeValues": True,
        "showValue": "auto",
        "alignValue": "left",
        "rowHeight": 0.9,
        "legend": LEGEND,
        "tooltip": {"mode": "single", "sort": "none"},
    }
    custom = {"fillOpacity": 80, "lineWidth": 0}
    return _panel(
        "state-timeline",
        title,
        queries,
        size,
        defaults={**defaults, "custom": custom, "color": {"mode": "thresholds"}},
        options=options,
        **extra,
    )


def table(
    title: str,
    queries: Sequence[Query],
    size: tuple[int, int],
    *,
    defaults: Json,
    **extra: Unpack[Extras],
) -> Panel:
    options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    custom = {"align": "auto", "cellOptions": {"type": "auto"}, "filterable": False}
    return _panel(
        "table",
        title,
        queries,
        size,
        defaults={**defaults, "custom": custom},
        options=options,
        **extra,
    )
