"""PlantWire's Grafana boards as code.

Four boards read what PlantWire stores in InfluxDB, all through InfluxQL (which InfluxDB 1.x,
2.x through a DBRP mapping, and 3.x answer):

* the plant overview (:mod:`~grafana_boards.overview`),
* a line (:mod:`~grafana_boards.line`),
* a machine (:mod:`~grafana_boards.machine`),
* the pipeline's health (:mod:`~grafana_boards.pipeline`).

They are built from small typed values (:mod:`~grafana_boards.model`), written as JSON by
``plantwire grafana export DIR`` (:mod:`~grafana_boards.export`) and uploaded by
``plantwire grafana push --url URL`` (:mod:`~grafana_boards.push`, standard library only).
"""

from __future__ import annotations

from grafana_boards import line, machine, overview, pipeline
from grafana_boards.model import Board

__all__ = ["boards"]


def boards() -> list[Board]:
    """Every board, the plant overview first."""
    return [overview.board(), line.board(), machine.board(), pipeline.board()]
