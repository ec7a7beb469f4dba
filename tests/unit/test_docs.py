"""The config reference documents every key of every block, and nothing that does not exist."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from pydantic import BaseModel

from plantwire.config import common, ingest, models, sources, stores

DOC = Path(__file__).parent.parent.parent / "docs" / "config.md"
SECTION = re.compile(r"^#+ .*<!-- model: (\w+) -->$", re.MULTILINE)


def documented_blocks() -> dict[str, set[str]]:
    text = DOC.read_text()
    marks = list(SECTION.finditer(text))
    blocks: dict[str, set[str]] = {}
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        body = text[mark.end() : following.start() if following else len(text)]
        blocks[mark.group(1)] = set(re.findall(r"^\| `(\w+)` \|", body, re.MULTILINE))
    return blocks


def site_file_models() -> dict[str, type[BaseModel]]:
    """Every block of the site file: the site models, and each registered source protocol's and
    store backend's and ingest format's (the base blocks they share are documented through
    them, but for the keys every ingest rule has, which have a section of their own)."""
    registered = [
        *sources.SOURCE_MODELS.values(),
        *stores.STORE_MODELS.values(),
        *ingest.INGEST_MODELS.values(),
    ]
    modules = {models.__name__, *(model.__module__ for model in registered)}
    return {
        name: cls
        for module in map(importlib.import_module, sorted(modules))
        for name, cls in vars(module).items()
        if isinstance(cls, type)
        and issubclass(cls, BaseModel)
        and cls.__module__ in modules
        and cls.__module__ != common.__name__
        and cls is not stores.StoreConfig
        and not name.startswith("_")
    }


def test_every_block_and_key_is_documented() -> None:
    blocks = documented_blocks()
    all_models = site_file_models()
    assert set(blocks) == set(all_models)
    for name, cls in all_models.items():
        assert blocks[name] == set(cls.model_fields), name
