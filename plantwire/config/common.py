"""What every block of the site file shares: strictness, the names and units it may hold, report
by exception, and the base of every source block (:class:`SourceConfig`).

A source protocol is a model here plus a line in :mod:`plantwire.config.sources`; what a source
block must offer the rest of PlantWire is :class:`SourceConfig`'s four members.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Union
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, GetCoreSchemaHandler, SecretStr
from pydantic_core import CoreSchema

from plantwire.names import check_metric_name, check_segment

__all__ = [
    "Block",
    "DeadbandKind",
    "GroupName",
    "MetricName",
    "Problem",
    "RegistryUnion",
    "Reporting",
    "Seconds",
    "SourceConfig",
    "SourceTag",
    "Unit",
    "segment",
    "split_url",
]


class Block(BaseModel):
    """Every block refuses unknown keys: a typo must not silently become a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def segment(what: str) -> AfterValidator:
    return AfterValidator(lambda value: check_segment(value, what))


MetricName = Annotated[str, AfterValidator(check_metric_name)]
GroupName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Seconds = Annotated[float, Field(gt=0, le=86_400)]
Unit = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[^\x00-\x1f\x7f]+$")]


def split_url(url: str, schemes: dict[str, int], what: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a service url, refusing other schemes and passwords in it."""
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise ValueError(
            f"{what} url must start with {' or '.join(s + '://' for s in schemes)}, got {url!r}"
        )
    if not parts.hostname:
        raise ValueError(f"{what} url {url!r} has no host")
    if parts.password is not None:
        raise ValueError(
            f"{what} url must not carry a password; use the password key with ${{ENV_VAR}}"
        )
    try:
        port = parts.port or schemes[parts.scheme]
    except ValueError:
        raise ValueError(f"{what} url {url!r} has an invalid port") from None
    return parts.scheme, parts.hostname, port


class RegistryUnion:
    """Pydantic marker: parse a block as the model of ``table`` its ``key`` names (a source's
    ``protocol``, a store's ``backend``), the table read when the schema is built -- so an entry
    registered later is found once the models holding the block are rebuilt."""

    def __init__(self, table: Mapping[str, type[BaseModel]], key: str) -> None:
        self.table = table
        self.key = key

    def union(self) -> Any:
        """The table's models as one union told apart by the key (one model: just it), so a
        block's errors point inside its own model's keys."""
        models = tuple(self.table.values())
        if len(models) == 1:
            return models[0]
        members: Any = Union[models]  # noqa: UP007 - a union of what is registered at run time
        return Annotated[members, Field(discriminator=self.key)]

    def __get_pydantic_core_schema__(
        self, source_type: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return handler.generate_schema(self.union())


class DeadbandKind(StrEnum):
    ABSOLUTE = "absolute"
    PERCENT = "percent"


class Reporting(Block):
    """Report by exception: send a value only when it moved more than ``deadband`` since the
    last one sent, or when ``max_interval_s`` passed without sending (the heartbeat that keeps
    the history free of holes)."""

    deadband: Annotated[float, Field(ge=0)] | None = None
    max_interval_s: Seconds | None = None


class SourceTag(Reporting):
    """What every tag of every source has: the metric it becomes, and its unit."""

    metric: MetricName
    unit: Unit | None = None


# A problem a block finds in itself beyond what one key can say: the path of the offending key
# below the block, and what is wrong (the loader points at its line).
Problem = tuple[tuple[str | int, ...], str]


class SourceConfig(Block):
    """A source block (``machines[].sources[]``): one protocol's connection and tags.

    ``protocol`` names it in the site file (each model narrows it to one ``Literal``), and the
    source registry (:mod:`plantwire.config.sources`) maps the name to the model. ``example`` is
    a minimal valid block, for the docs and the conformance suite.
    """

    protocol: str
    endpoint: str
    tags: Sequence[SourceTag]
    example: ClassVar[dict[str, object]] = {}

    def connection_key(self) -> tuple[object, ...]:
        """Blocks with the same key share one connection (one driver): the same endpoint, and
        whatever else must be the same on one connection."""
        return (self.endpoint,)

    def problems(self) -> Iterator[Problem]:
        """What is wrong between keys of this block (a tag naming a poll group it lacks)."""
        return iter(())

    def describe(self) -> str:
        """One line for ``plantwire config check``."""
        return f"{self.protocol} {self.endpoint}: {len(self.tags)} tags"

    def login(self) -> tuple[str, SecretStr | None] | None:
        """(user, password) when the source logs in, for the summary (the password masked)."""
        return None
