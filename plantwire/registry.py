"""Plain registries whose entries load on first use.

A registry is a dict from a name (a protocol, a backend, a payload format) to either the thing
itself or ``"module:attribute"`` where it lives -- so a table can list every entry without
importing what an install may not have (an edge device has no analytics stack).
"""

from __future__ import annotations

import importlib
from typing import TypeVar

__all__ = ["load_entry"]

T = TypeVar("T")


def load_entry(table: dict[str, str | T], name: str) -> T:
    """The entry for ``name``, importing it the first time (and keeping what was imported).

    Raises KeyError for a name the table lacks: callers validate names against their config
    models first, so an unknown one here is a programming error."""
    entry = table[name]
    if isinstance(entry, str):
        module, _, attribute = entry.partition(":")
        loaded: T = getattr(importlib.import_module(module), attribute)
        table[name] = loaded
        return loaded
    return entry
