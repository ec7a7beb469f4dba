"""PlantWire's Grafana boards as code.

Four boards read what PlantWire stores in InfluxDB, all through InfluxQL (which InfluxDB 1.x,
2.x through a DBRP mapping, and 3.x answer):

* the plant overview (:mod:`~boards.overview`),
* a line (:mod:`~boards.line`),
* a machine (:mod:`~boards.machine`),
* the pipeline's health (:mod:`~boards.pipeline`).

They are built from small typed values (:mod:`~boards.model`), written as JSON by
``plantwire grafana export DIR`` (:mod:`~boards.export`) and uploaded by
``plantwire grafana push --url URL`` (:mod:`~boards.push`, standard library only).
"""

from __future__ import annotations

from boards import line, machine, overview, pipeline
from boards.model import Board

__all__ = ["boards"]


def boards() -> list[Board]:
    """Every board, the plant overview first."""
    return [overview.board(), line.board(), machine.board(), pipeline.board()]
