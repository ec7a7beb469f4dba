"""Which install extra a missing library belongs to, for a clear error instead of a traceback.

Each part beyond the edge is an extra of the ``plantwire`` distribution (pyproject.toml):
an edge device's install has no scikit-learn, and ``plantwire train`` there should say
``pip install 'plantwire[analytics]'``. The extras are read from the installed distribution's
own metadata, so this module lists no dependency itself -- only the import names that differ
from their distribution's name.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, requires

__all__ = ["extras_providing", "missing_library_message"]

# Import name -> distribution name, where they differ.
DISTRIBUTION_OF = {"sklearn": "scikit-learn", "influxdb_client": "influxdb-client"}
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9._-]+)[^;]*;\s*extra\s*==\s*['\"]([^'\"]+)['\"]")
# Extras that only gather others: named last, the smallest install first.
_GATHERING = ("demo", "dev")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def extras_providing(module: str) -> list[str]:
    """The extras of plantwire whose install brings this top-level module, smallest first."""
    wanted = _canonical(DISTRIBUTION_OF.get(module, module))
    try:
        lines = requires("plantwire") or []
    except PackageNotFoundError:
        return []
    found = {
        match.group(2)
        for match in map(_REQUIREMENT.match, lines)
        if match is not None and _canonical(match.group(1)) == wanted
    }
    return sorted(found, key=lambda extra: (extra in _GATHERING, extra))


def missing_library_message(command: str, error: ModuleNotFoundError) -> str | None:
    """What to tell a user whose install lacks the library a command needs; None when the
    library belongs to no extra (a broken install, not a missing part: let it raise)."""
    module = (error.name or "").split(".")[0]
    extras = extras_providing(module)
    if not extras:
        return None
    extra = command if command in extras else extras[0]
    return (
        f"plantwire {command}: this install has no {module}, which this command needs; "
        f"install the part with: pip install 'plantwire[{extra}]'"
    )
