"""docs/ingest.md's worked examples, run: each example's rule goes into a site file, its
mosquitto_pub message through ``plantwire ingest try``, and the samples must be those shown."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from plantwire.cli import main

DOC = Path(__file__).parents[2] / "docs" / "ingest.md"
EXAMPLE = re.compile(
    r"<!-- example: ([\w-]+) -->\n```yaml\n(.*?)```\n\n```sh\n(.*?)```\n\n```text\n(.*?)```",
    re.DOTALL,
)
EXAMPLES = {m.group(1): m.groups()[1:] for m in EXAMPLE.finditer(DOC.read_text())}
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z")


def test_the_five_examples_are_there() -> None:
    assert set(EXAMPLES) == {"json-device", "node-red", "telegraf", "per-tag", "kepware"}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_a_worked_example_gives_what_the_docs_show(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules_text, command, expected = EXAMPLES[name]
    site = {
        "site": {"id": "binh-duong"},
        **yaml.safe_load(rules_text),
        "areas": [{"id": "dairy", "lines": [
            {"id": "filling", "ideal_cycle_time_s": 1, "machines": [{"id": "filler"}]}]}],
    }  # fmt: skip
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    words = shlex.split(command)
    assert words[0] == "mosquitto_pub"
    topic, payload = words[words.index("-t") + 1], words[words.index("-m") + 1]
    code = main(["ingest", "try", "--config", str(path), "--topic", topic, "--payload", payload])
    out = capsys.readouterr().out
    assert code == 0, out
    shown = [line for line in out.splitlines() if line.startswith("  ")]
    want = [line.strip() for line in expected.strip().splitlines()]
    got = [line.strip() for line in shown]
    if "<receipt>" in expected:
        got = [STAMP.sub("<receipt>", line) for line in got]
    assert got == want
