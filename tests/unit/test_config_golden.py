"""Golden bad-config cases: a folder per case with the site file and the exact errors expected.

To add a case: make a folder under tests/golden/bad_configs with a site.yaml and write the
problems you expect, one per line, into expected.txt (``file:line:column: path: message``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from plantwire.config import parse_site
from plantwire.errors import ConfigError

GOLDEN = Path(__file__).parent.parent / "golden"
CASES = sorted(p for p in (GOLDEN / "bad_configs").iterdir() if p.is_dir())


def test_the_base_of_the_golden_cases_is_valid() -> None:
    parse_site((GOLDEN / "good_site.yaml").read_text(), "site.yaml", environ={})


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_config_is_refused_with_the_expected_errors(case: Path) -> None:
    expected = [line for line in (case / "expected.txt").read_text().splitlines() if line.strip()]
    with pytest.raises(ConfigError) as info:
        parse_site((case / "site.yaml").read_text(), "site.yaml", environ={})
    assert [str(issue) for issue in info.value.issues] == expected


def test_there_are_enough_golden_cases() -> None:
    assert len(CASES) >= 30
