"""The source protocols a site file may name: one plain table, protocol -> source block model.

Adding a protocol (docs/extending.md): a module with its block, a :class:`SourceConfig` (as
:mod:`plantwire.config.modbus` is), and its line here; then its driver in ``edge/sources/`` and
that driver's line in :mod:`edge.sources.registry`. Nothing else in PlantWire names a protocol.
A plugin outside this repository (or a test) calls :func:`register_source` instead.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field, GetCoreSchemaHandler
from pydantic_core import CoreSchema

from plantwire.config.common import SourceConfig
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
    """What pydantic parses a source block as: the models of the table, told apart by their
    ``protocol`` key (so a block's errors point inside that protocol's keys)."""
    models = tuple(SOURCE_MODELS.values())
    if len(models) == 1:
        return models[0]
    return Annotated[Union[models], Field(discriminator="protocol")]  # noqa: UP007 - a runtime tuple


class _Registered:
    """Parse as the registered model the block's ``protocol`` names, whatever the table holds
    when the schema is built (so a protocol registered later is found after a rebuild)."""

    def __get_pydantic_core_schema__(
        self, source_type: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return handler.generate_schema(source_union())


# A source block of any registered protocol: what ``machines[].sources[]`` holds.
AnySource = Annotated[SourceConfig, _Registered()]


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
