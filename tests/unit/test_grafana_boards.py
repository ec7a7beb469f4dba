"""The Grafana boards: the committed JSON is what the code generates, it is structurally sound
(schema version, panel ids, grid, data source, queries, variables, links), and
``plantwire grafana push`` saves the boards or says clearly why not, against a stub Grafana."""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from grafana_boards import boards
from grafana_boards.export import board_file_name, dashboard_text
from grafana_boards.fields import STATE_COLOURS, STATE_NAMES, state_mappings
from grafana_boards.model import Board, Panel, Query
from grafana_boards.push import GrafanaAuth, PushError, push_board
from plantwire.cli import main
from plantwire.states import MachineState
from plantwire.testing.servers import free_port

COMMITTED = Path(__file__).parent.parent.parent / "deploy" / "grafana" / "dashboards"
DATASOURCE = {"type": "influxdb", "uid": "plantwire-influxdb"}
UIDS = ["plantwire-overview", "plantwire-line", "plantwire-machine", "plantwire-pipeline"]
VARIABLES = {
    "plantwire-overview": ["site", "area", "line"],
    "plantwire-line": ["site", "area", "line", "machine"],
    "plantwire-machine": ["site", "area", "line", "machine"],
    "plantwire-pipeline": ["site", "service"],
}
BUILTIN = {"timeFilter", "__interval", "__url_time_range", "__field"}
USED_VARIABLE = re.compile(r"\$\{?(\w+)")


def rendered() -> list[dict[str, Any]]:
    return [board.render() for board in boards()]


def datasource_refs(node: Any) -> Iterator[Any]:
    """Every value of a ``datasource`` key, however deep."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            yield from datasource_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from datasource_refs(item)


def all_queries(board: dict[str, Any]) -> list[str]:
    texts = [v["query"]["query"] for v in board["templating"]["list"]]
    texts += [a["target"]["query"] for a in board["annotations"]["list"]]
    texts += [t["query"] for p in board["panels"] for t in p["targets"]]
    return texts


# -- the committed files ----------------------------------------------------------------------


def test_the_committed_json_is_what_the_code_generates() -> None:
    """Boards are changed in Python and exported (plantwire grafana export), never by hand."""
    expected = {board_file_name(board): dashboard_text(board) for board in boards()}
    committed = {path.name: path.read_text() for path in COMMITTED.glob("*.json")}
    assert set(committed) == set(expected), (
        "run: plantwire grafana export deploy/grafana/dashboards"
    )
    for name, text in expected.items():
        assert committed[name] == text, f"{name} differs: plantwire grafana export the boards"


def test_export_writes_one_file_per_board(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["grafana", "export", str(tmp_path / "boards")]) == 0
    written = sorted(p.name for p in (tmp_path / "boards").iterdir())
    assert written == sorted(f"{uid}.json" for uid in UIDS)
    assert capsys.readouterr().out.count(".json") == 4


# -- structure --------------------------------------------------------------------------------


def test_boards_have_stable_uids_and_the_grafana_11_schema() -> None:
    boards_json = rendered()
    assert [b["uid"] for b in boards_json] == UIDS
    assert len({b["title"] for b in boards_json}) == len(UIDS)
    for board in boards_json:
        assert board["schemaVersion"] == 39
        assert board["id"] is None and "plantwire" in board["tags"]


@pytest.mark.parametrize("board", rendered(), ids=lambda b: b["uid"])
def test_panels_have_unique_ids_and_fit_the_grid_without_overlap(board: dict[str, Any]) -> None:
    panels = board["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 and grid["y"] >= 0
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine


@pytest.mark.parametrize("board", rendered(), ids=lambda b: b["uid"])
def test_every_data_source_reference_is_plantwire_influxdb(board: dict[str, Any]) -> None:
    refs = list(datasource_refs(board))
    # a board-level ref for every panel, target, variable and annotation
    assert len(refs) >= 2 * len(board["panels"])
    assert all(ref == DATASOURCE for ref in refs), [r for r in refs if r != DATASOURCE]


@pytest.mark.parametrize("board", rendered(), ids=lambda b: b["uid"])
def test_every_panel_has_raw_influxql_queries_bounded_in_time(board: dict[str, Any]) -> None:
    for panel in board["panels"]:
        targets = panel["targets"]
        assert targets, f"{panel['title']} has no query"
        assert len({t["refId"] for t in targets}) == len(targets)
        for target in targets:
            assert target["rawQuery"] is True
            assert target["resultFormat"] in {"time_series", "table"}
            assert target["query"].startswith("SELECT "), panel["title"]
            assert "$timeFilter" in target["query"], panel["title"]
        assert panel["title"] and panel["type"]


@pytest.mark.parametrize("board", rendered(), ids=lambda b: b["uid"])
def test_variables_chain_from_the_site_down(board: dict[str, Any]) -> None:
    variables = board["templating"]["list"]
    names = [v["name"] for v in variables]
    assert names == VARIABLES[board["uid"]]
    for position, variable in enumerate(variables):
        query = variable["query"]["query"]
        assert query.startswith("SHOW TAG VALUES FROM ") and "$timeFilter" in query
        assert f'WITH KEY = "{variable["name"]}"' in query
        parents = set(USED_VARIABLE.findall(query)) - BUILTIN
        assert parents == set(names[:position]), f"{variable['name']} filters on {parents}"
        assert variable["includeAll"] == variable["multi"]
        if variable["includeAll"]:
            assert variable["allValue"] == ".*"


@pytest.mark.parametrize("board", rendered(), ids=lambda b: b["uid"])
def test_queries_and_links_use_only_variables_the_board_defines(board: dict[str, Any]) -> None:
    defined = {v["name"] for v in board["templating"]["list"]} | BUILTIN
    for query in all_queries(board):
        assert set(USED_VARIABLE.findall(query)) <= defined, query
    for panel in board["panels"]:
        for link in panel["fieldConfig"]["defaults"].get("links", []):
            target = re.match(r"/d/([\w-]+)/", link["url"])
            assert target and target.group(1) in UIDS, link["url"]
            assert set(USED_VARIABLE.findall(link["url"])) <= defined, link["url"]
    assert board["links"][0]["includeVars"] and board["links"][0]["keepTime"]


def test_the_machine_board_marks_anomaly_events_as_annotations() -> None:
    machine = next(b for b in rendered() if b["uid"] == "plantwire-machine")
    (annotation,) = machine["annotations"]["list"]
    assert 'FROM "anomaly_events"' in annotation["target"]["query"]
    assert annotation["query"] == annotation["target"]["query"]
    assert annotation["target"]["textColumn"] == "text"


def test_every_machine_state_has_a_name_and_a_colour() -> None:
    assert set(STATE_NAMES) == set(STATE_COLOURS) == set(MachineState)
    (mapping,) = state_mappings()
    assert mapping["options"]["4"] == {"text": "Fault", "color": "red", "index": 4}
    assert len(mapping["options"]) == len(MachineState)


def test_a_row_wider_than_the_grid_is_refused() -> None:
    wide = [Panel(f"p{i}", "stat", [Query("SELECT 1")], 10, 4) for i in range(3)]
    with pytest.raises(ValueError, match="30 columns wide"):
        Board("x", "X", "", rows=[wide])


# -- push against a stub Grafana --------------------------------------------------------------


@dataclass
class StubGrafana:
    """Answers POST /api/dashboards/db with ``status`` and remembers what it got."""

    status: int = 200
    requests: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def grafana() -> Iterator[StubGrafana]:
    stub = StubGrafana()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            stub.requests.append((self.path, dict(self.headers), body))
            if stub.status == 200:
                uid = body["dashboard"]["uid"]
                answer = {"status": "success", "uid": uid, "url": f"/d/{uid}/x", "version": 3}
            else:
                answer = {"message": "invalid API key"}
            payload = json.dumps(answer).encode()
            self.send_response(stub.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_push_saves_every_board_with_overwrite_and_a_token(
    grafana: StubGrafana, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAFANA_TOKEN", "glsa_secret")
    assert main(["grafana", "push", "--url", grafana.url + "/", "--folder-uid", "plant"]) == 0
    assert [body["dashboard"]["uid"] for _, _, body in grafana.requests] == UIDS
    path, headers, body = grafana.requests[0]
    assert path == "/api/dashboards/db"
    assert headers["Authorization"] == "Bearer glsa_secret"
    assert body["overwrite"] is True and body["folderUid"] == "plant"
    assert body["dashboard"] == boards()[0].render()
    out = capsys.readouterr().out
    assert "plantwire-overview saved (version 3) /d/plantwire-overview/x" in out


def test_push_with_a_user_uses_basic_auth(
    grafana: StubGrafana, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAFANA_PASSWORD", "s3cret")
    assert main(["grafana", "push", "--url", grafana.url, "--user", "admin"]) == 0
    _, headers, body = grafana.requests[0]
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"admin:s3cret").decode()
    assert "folderUid" not in body


def test_push_refused_with_401_says_so_and_exits_non_zero(
    grafana: StubGrafana, capsys: pytest.CaptureFixture[str]
) -> None:
    grafana.status = 401
    assert main(["grafana", "push", "--url", grafana.url, "--token", "wrong"]) == 3
    err = capsys.readouterr().err
    assert "plantwire-overview: Grafana answered HTTP 401: invalid API key" in err
    assert "check the token" in err
    assert len(grafana.requests) == 1  # stops at the first refusal


def test_push_to_a_grafana_that_is_not_there_says_so() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PushError, match=r"plantwire-overview: cannot reach Grafana at .*refused"):
        push_board(url, boards()[0], GrafanaAuth(token="t"), timeout_s=5)


def test_push_with_a_user_but_no_password_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GRAFANA_PASSWORD", raising=False)
    assert main(["grafana", "push", "--url", "http://127.0.0.1:1", "--user", "admin"]) == 2
    assert "--user needs a password" in capsys.readouterr().err
