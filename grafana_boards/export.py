"""Write the boards as Grafana dashboard JSON files, one per board, named by its uid.

The text is stable (fixed key order, two-space indent, a final newline), so the files committed
under ``deploy/grafana/dashboards/`` change only when a board does, and a test can check that
nobody edited them by hand.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from grafana_boards.model import Board

__all__ = ["board_file_name", "dashboard_text", "export_boards"]


def board_file_name(board: Board) -> str:
    return f"{board.uid}.json"


def dashboard_text(board: Board) -> str:
    return json.dumps(board.render(), indent=2, ensure_ascii=False) + "\n"


def export_boards(boards: Sequence[Board], folder: Path) -> list[Path]:
    """Write every board into ``folder`` (created if missing); return the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for board in boards:
        path = folder / board_file_name(board)
        path.write_text(dashboard_text(board), encoding="utf-8")
        written.append(path)
    return written
