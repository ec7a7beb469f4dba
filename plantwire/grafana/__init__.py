"""PlantWire's Grafana boards as code.

Four boards read what PlantWire stores in InfluxDB, all through InfluxQL (which InfluxDB 1.x,
2.x through a DBRP mapping, and 3.x answer):

* the plant overview (:mod:`~plantwire.grafana.overview`),
* a line (:mod:`~plantwire.grafana.line`),
* a machine (:mod:`~plantwire.grafana.machine`),
* the pipeline's health (:mod:`~plantwire.grafana.pipeline`).

They are built from small typed values (:mod:`~plantwire.grafana.model`), written as JSON by
``plantwire grafana export DIR`` (:mod:`~plantwire.grafana.export`) and uploaded by
``plantwire grafana push --url URL`` (:mod:`~plantwire.grafana.push`, standard library only).
"""

from __future__ import annotations

from plantwire.grafana import line, machine, overview, pipeline
from plantwire.grafana.model import Board

__all__ = ["boards"]


def boards() -> list[Board]:
    """Every board, the plant overview first."""
    return [overview.board(), line.board(), machine.board(), pipeline.board()]
