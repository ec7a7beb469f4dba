"""What every block of the site file shares: strictness, the names and units it may hold, report
by exception, and the base of every source block (:class:`SourceConfig`).

A source protocol is a model here plus a line in :mod:`plantwire.config.sources`; what a source
block must offer the rest of PlantWire is :class:`SourceConfig`'s four members.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr

from plantwire.names import check_metric_name, check_segment

__all__ = [
    "Block",
    "DeadbandKind",
    "GroupName",
    "MetricName",
    "Problem",
    "Reporting",
    "Seconds",
    "SourceConfig",
    "SourceTag",
    "Unit",
    "segment",
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
