"""The pieces a Grafana board is made of, as small typed values that render to dashboard JSON.

Only what PlantWire's boards use is modelled: InfluxQL queries in raw mode, panels laid out in rows
on Grafana's 24-column grid, query variables, annotations and links. Everything renders to plain
``dict``/``list`` JSON for Grafana 11 (dashboard ``schemaVersion`` :data:`SCHEMA_VERSION`), in a
fixed key order, so the exported files only change when a board does.

Every query goes to one data source, referenced by uid: the deploy provisioning defines it
(``plantwire-influxdb``, type ``influxdb``, InfluxQL, database ``plantwire``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "DATASOURCE",
    "GRID_COLUMNS",
    "SCHEMA_VERSION",
    "Annotation",
    "Board",
    "Json",
    "Panel",
    "Query",
    "Variable",
]

Json = dict[str, Any]

SCHEMA_VERSION = 39  # Grafana 11
GRID_COLUMNS = 24
DATASOURCE: Json = {"type": "influxdb", "uid": "plantwire-influxdb"}
ALL_VALUE = ".*"  # what "All" puts into /^$var$/: every value, without a long alternation
BOARD_TAG = "plantwire"  # every board carries it; the board links list boards by it


@dataclass(frozen=True)
class Query:
    """One InfluxQL query of a panel, in raw mode.

    ``alias`` names the series Grafana draws (``$tag_machine``, ``$col``); ``table`` results keep
    the rows and columns InfluxDB answers with.
    """

    influxql: str
    alias: str = ""
    result_format: Literal["time_series", "table"] = "time_series"

    def target(self, ref_id: str) -> Json:
        target: Json = {
            "datasource": DATASOURCE,
            "refId": ref_id,
            "rawQuery": True,
            "query": self.influxql,
            "resultFormat": self.result_format,
        }
        if self.alias:
            target["alias"] = self.alias
        return target


@dataclass(frozen=True)
class Panel:
    """A panel: what it shows (``kind`` is Grafana's panel type), its queries and its size.

    ``defaults`` and ``overrides`` are Grafana's field config; ``options`` the panel type's own.
    ``time_from`` gives the panel a relative time range of its own (``7d``).
    """

    title: str
    kind: str
    queries: Sequence[Query]
    width: int
    height: int
    description: str = ""
    defaults: Json = field(default_factory=dict)
    overrides: Sequence[Json] = ()
    options: Json = field(default_factory=dict)
    transformations: Sequence[Json] = ()
    time_from: str | None = None
    interval: str | None = None  # the shortest $__interval the panel asks for

    def render(self, panel_id: int, x: int, y: int) -> Json:
        panel: Json = {
            "id": panel_id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": DATASOURCE,
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "targets": [
                query.target(chr(ord("A") + index)) for index, query in enumerate(self.queries)
            ],
            "fieldConfig": {"defaults": self.defaults, "overrides": list(self.overrides)},
            "options": self.options,
        }
        if self.transformations:
            panel["transformations"] = list(self.transformations)
        if self.time_from is not None:
            panel["timeFrom"] = self.time_from
        if self.interval is not None:
            panel["interval"] = self.interval
        return panel


@dataclass(frozen=True)
class Variable:
    """A query variable (a drop-down) filled from ``SHOW TAG VALUES``.

    ``multi`` variables also offer "All", which matches every value (:data:`ALL_VALUE`).
    """

    name: str
    label: str
    influxql: str
    multi: bool = False

    def render(self) -> Json:
        current: Json = (
            {"selected": True, "text": ["All"], "value": ["$__all"]} if self.multi else {}
        )
        return {
            "type": "query",
            "name": self.name,
            "label": self.label,
            "datasource": DATASOURCE,
            "query": {"query": self.influxql, "refId": f"{self.name}-values"},
            "definition": self.influxql,
            "refresh": 2,  # on time range change: the values seen in the range
            "sort": 1,
            "multi": self.multi,
            "includeAll": self.multi,
            "allValue": ALL_VALUE if self.multi else None,
            "current": current,
            "options": [],
            "regex": "",
            "hide": 0,
            "skipUrlSync": False,
        }


@dataclass(frozen=True)
class Annotation:
    """Events drawn on the time axis of every panel, from an InfluxQL query: ``text_column``
    is the text shown, ``tags_column`` the tags."""

    name: str
    influxql: str
    text_column: str
    tags_column: str
    color: str = "red"

    def render(self) -> Json:
        columns = {"textColumn": self.text_column, "tagsColumn": self.tags_column}
        return {
            "name": self.name,
            "datasource": DATASOURCE,
            "enable": True,
            "hide": False,
            "iconColor": self.color,
            # Grafana 11 reads the target; the top-level copy is the older, still-read form.
            "query": self.influxql,
            **columns,
            "target": {
                "refId": "Anno",
                "query": self.influxql,
                "rawQuery": True,
                "fromAnnotations": True,
                "queryType": "tags",
                **columns,
            },
        }


@dataclass(frozen=True)
class Board:
    """A dashboard: panels in rows (each row fills at most the 24 grid columns), variables and
    annotations, with a stable uid that links and the HTTP API use."""

    uid: str
    title: str
    description: str
    rows: Sequence[Sequence[Panel]]
    variables: Sequence[Variable] = ()
    annotations: Sequence[Annotation] = ()
    time_from: str = "now-24h"

    def __post_init__(self) -> None:
        for row in self.rows:
            width = sum(panel.width for panel in row)
            if width > GRID_COLUMNS:
                titles = ", ".join(panel.title for panel in row)
                raise ValueError(f"{self.uid}: the row {titles} is {width} columns wide (max 24)")

    def panels(self) -> list[Json]:
        """Every panel with its id (1, 2, ... in reading order) and place on the grid."""
        rendered: list[Json] = []
        y = 0
        for row in self.rows:
            x = 0
            for panel in row:
                rendered.append(panel.render(len(rendered) + 1, x, y))
                x += panel.width
            y += max((panel.height for panel in row), default=0)
        return rendered

    def render(self) -> Json:
        return {
            "id": None,  # Grafana numbers dashboards itself; the uid is what stays
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": [BOARD_TAG],
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "editable": True,
            "graphTooltip": 1,  # one crosshair across the panels: the same moment everywhere
            "timezone": "browser",
            "refresh": "1m",
            "time": {"from": self.time_from, "to": "now"},
            "timepicker": {},
            "fiscalYearStartMonth": 0,
            "liveNow": False,
            "links": [
                {
                    "title": "PlantWire boards",
                    "type": "dashboards",
                    "tags": [BOARD_TAG],
                    "asDropdown": True,
                    "includeVars": True,
                    "keepTime": True,
                    "targetBlank": False,
                    "icon": "external link",
                    "tooltip": "",
                    "url": "",
                }
            ],
            "annotations": {"list": [annotation.render() for annotation in self.annotations]},
            "templating": {"list": [variable.render() for variable in self.variables]},
            "panels": self.panels(),
        }
