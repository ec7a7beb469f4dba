"""Every query of every board runs against a real influxd after a simulated ingest, and returns
data: each panel's queries, each template variable's and each annotation's.

The walker fills the queries in as Grafana would: ``$timeFilter`` with the ingest's time range
(also for panels with a relative time of their own: the window differs, the query does not),
``$__interval`` with ``1m``, and each variable with a value the ingest stored, regex-escaped, or
with ``.*`` where the variable offers "All". It walks the committed dashboard files, which the unit
tests keep equal to what ``plantwire grafana export`` writes. See ``pw_ingest`` for the ingest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pw_ingest import Ingest, run_ingest

from plantwire.testing.servers import InfluxClient, Influxd, Mosquitto, ServerError

pytestmark = pytest.mark.servers

BOARDS = Path(__file__).parent.parent.parent / "deploy" / "grafana" / "dashboards"
ALL = ".*"  # the boards' "All" value
INTERVAL = "1m"
VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")
REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")  # Grafana's escapeRegex


@dataclass(frozen=True)
class BoardQuery:
    where: str  # board / panel title (or variable, annotation)
    influxql: str  # as the board holds it
    variable: str | None = None  # the variable whose values this query lists


def escape_regex(value: str) -> str:
    return REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def interpolate(query: str, values: Mapping[str, str], start_ns: int, end_ns: int) -> str:
    """The query as Grafana sends it; a variable the board does not define fails here."""
    time_filter = f"time >= {start_ns // 1_000_000}ms and time <= {-(-end_ns // 1_000_000)}ms"

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name == "timeFilter":
            return time_filter
        if name == "__interval":
            return INTERVAL
        return values[name]

    return VARIABLE.sub(value, query)


def has_data(answer: Any) -> bool:
    """At least one series with a value besides its time."""
    for statement in answer.get("results", []):
        for series in statement.get("series", []):
            columns = series["columns"]
            for row in series.get("values", []):
                if any(v is not None for c, v in zip(columns, row, strict=True) if c != "time"):
                    return True
    return False


def variable_values(board: Mapping[str, Any], ingest: Ingest, *, use_all: bool) -> dict[str, str]:
    """Each variable's value for the walk: the ingest's, or "All" where the variable offers it
    (always for a variable the ingest has no single value for, such as the pipeline's service)."""
    values = {}
    for variable in board["templating"]["list"]:
        name = variable["name"]
        if variable["includeAll"] and (use_all or name not in ingest.variables):
            assert variable["allValue"] == ALL, (board["uid"], name)
            values[name] = ALL
        else:
            values[name] = escape_regex(ingest.variables[name])
    return values


def queries(board: Mapping[str, Any]) -> Iterator[BoardQuery]:
    """Every variable's, annotation's and panel target's query of a board."""
    title = board["title"]
    for variable in board["templating"]["list"]:
        name = variable["name"]
        yield BoardQuery(f"{title} / variable {name}", variable["query"]["query"], name)
    for annotation in board["annotations"]["list"]:
        yield BoardQuery(
            f"{title} / annotation {annotation['name']}", annotation["target"]["query"]
        )
    for panel in board["panels"]:
        for target in panel["targets"]:
            yield BoardQuery(f"{title} / panel {panel['title']!r}", target["query"])


def offered(answer: Any) -> set[str]:
    """The values a SHOW TAG VALUES answer offers."""
    return {row[1] for s in answer["results"][0].get("series", []) for row in s["values"]}


@pytest.fixture(scope="module")
def ingest(
    tmp_path_factory: pytest.TempPathFactory, influxd: Influxd, mosquitto: Mosquitto
) -> Ingest:
    influxd.create_database("boards")
    return run_ingest(tmp_path_factory.mktemp("boards"), influxd, "boards", mosquitto)


@pytest.fixture(scope="module")
def client(ingest: Ingest, influxd: Influxd) -> InfluxClient:
    return InfluxClient(influxd.port, "boards")


def board_files() -> list[Path]:
    return sorted(BOARDS.glob("*.json"))


def test_the_boards_are_there() -> None:
    """The walk below is over these files: none missing, none left over."""
    assert [p.name for p in board_files()] == [
        "plantwire-line.json",
        "plantwire-machine.json",
        "plantwire-overview.json",
        "plantwire-pipeline.json",
    ]


@pytest.mark.parametrize("use_all", [False, True], ids=["values", "all"])
@pytest.mark.parametrize("path", board_files(), ids=lambda p: p.stem)
def test_every_query_of_the_board_returns_data(
    path: Path, use_all: bool, ingest: Ingest, client: InfluxClient
) -> None:
    board = json.loads(path.read_text())
    values = variable_values(board, ingest, use_all=use_all)
    walked = list(queries(board))
    failures: list[str] = []
    for query in walked:
        try:
            sent = interpolate(query.influxql, values, ingest.start_ns, ingest.end_ns)
        except KeyError as exc:
            failures.append(f"{query.where}: no variable {exc} on the board\n    {query.influxql}")
            continue
        try:
            answer = client.query(sent)
        except ServerError as exc:  # reported with its panel, after the others
            failures.append(f"{query.where}: {exc}\n    query: {sent}")
            continue
        if not has_data(answer):
            failures.append(f"{query.where}: no data\n    query: {sent}")
        elif query.variable is not None and values[query.variable] != ALL:
            # The value the walk uses must be one the drop-down offers.
            wanted = ingest.variables[query.variable]
            if wanted not in offered(answer):
                failures.append(f"{query.where}: {wanted!r} not in {sorted(offered(answer))}")
    mode = "all" if use_all else "values"
    print(f"\n{board['uid']} ({mode}): {len(board['panels'])} panels, {len(walked)} queries")
    assert not failures, "\n".join(failures)
