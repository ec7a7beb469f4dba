"""The names of the formats an edge node may publish in (``edge_nodes[].payload``).

The site file is checked against this table so a typo is refused with the known names; the
edge's :data:`edge.publish.PUBLISH_FORMATS` maps the same names to the code that publishes them
(a test keeps the two tables equal). A new format adds its line here and there
(docs/extending.md).
"""

from __future__ import annotations

__all__ = ["EDGE_FORMATS", "check_edge_format", "register_edge_format"]

# name -> what it is, for error messages and the docs
EDGE_FORMATS: dict[str, str] = {
    "native": "PlantWire's JSON batches, one per machine (docs/payload.md)",
    "sparkplug": "Sparkplug B 3.0, an edge node with a device per machine (docs/sparkplug.md)",
}


def check_edge_format(name: str) -> str:
    if name not in EDGE_FORMATS:
        known = ", ".join(repr(n) for n in sorted(EDGE_FORMATS))
        raise ValueError(f"unknown payload format {name!r} (one of {known})")
    return name


def register_edge_format(name: str, description: str) -> None:
    """Add a format's name at run time (a plugin, a test); its code goes to
    :func:`edge.publish.register_format`."""
    EDGE_FORMATS[name] = description
