"""The source protocols a site file may name: one plain table, protocol -> source block model.

Adding a protocol (docs/extending.md): a module with its block, a :class:`SourceConfig` (as
:mod:`plantwire.config.modbus` is), and its line here; then its driver in ``edge/sources/`` and
that driver's line in :mod:`edge.sources.registry`. Nothing else in PlantWire names a protocol.
A plugin outside this repository (or a test) calls :func:`register_source` instead.
"""

from __future__ import annotations

from typing import Annotated, Any

from plantwire.config.common import RegistryUnion, SourceConfig
from plantwire.config.modbus import ModbusSource
from plantwire.config.opcua import OpcuaSource

__all__ = [
    "SOURCE_MODELS",
    "AnySource",
    "rebuild_site_models",
    "register_source",
    "source_union",
    "unregister_source",
]

SOURCE_MODELS: dict[str, type[SourceConfig]] = {
    "modbus": ModbusSource,
    "opcua": OpcuaSource,
}


def source_union() -> Any:
    """What pydantic parses a source block as: the table's models, told apart by ``protocol``."""
    return _REGISTERED.union()


_REGISTERED = RegistryUnion(SOURCE_MODELS, "protocol")
# A source block of any registered protocol: what ``machines[].sources[]`` holds.
AnySource = Annotated[SourceConfig, _REGISTERED]


def register_source(protocol: str, model: type[SourceConfig]) -> None:
    """Add a protocol at run time (a plugin, a test) and rebuild the site models that hold
    sources."""
    if model.model_fields["protocol"].annotation is str:
        raise TypeError(f"{model.__name__}.protocol must be Literal[{protocol!r}]")
    SOURCE_MODELS[protocol] = model
    rebuild_site_models()


def unregister_source(protocol: str) -> None:
    SOURCE_MODELS.pop(protocol, None)
    rebuild_site_models()


def rebuild_site_models() -> None:
    from plantwire.config import models

    for holder in (models.Machine, models.Line, models.Area, models.SiteConfig):
        holder.model_rebuild(force=True)
