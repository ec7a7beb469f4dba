"""Checks across blocks of a site file: unique ids, references that resolve, shifts that do not
overlap. Each finding carries the path of the offending value so the loader can name its line."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from plantwire.config.models import ALL_DAYS, Shift, SiteConfig
from plantwire.config.yamlsource import Path_, format_path
from plantwire.sparkplug_topics import sparkplug_subscription
from plantwire.topic_patterns import filters_overlap
from plantwire.topics import data_subscription, service_subscription

__all__ = ["Finding", "check_site"]

Finding = tuple[Path_, str]
_WEEK_MIN = 7 * 24 * 60


def _duplicates(items: list[Any], attribute: str, base: Path_, what: str) -> Iterator[Finding]:
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        key = getattr(item, attribute)
        if key in seen:
            yield (
                (*base, index, attribute),
                f"duplicate {what} {key!r} (also at {format_path((*base, seen[key]))})",
            )
        else:
            seen[key] = index


def check_site(site: SiteConfig) -> list[Finding]:
    """Every cross-block problem of a site, in file order."""
    findings: list[Finding] = []
    findings += _duplicates(site.edge_nodes, "id", ("edge_nodes",), "edge node id")
    findings += _duplicates(site.areas, "id", ("areas",), "area id")
    findings += _check_shifts(site)
    findings += _check_ingest(site)
    node_ids = {node.id for node in site.edge_nodes}
    for a, area in enumerate(site.areas):
        findings += _duplicates(area.lines, "id", ("areas", a, "lines"), "line id")
        for li, line in enumerate(area.lines):
            line_path: Path_ = ("areas", a, "lines", li)
            findings += _duplicates(line.machines, "id", (*line_path, "machines"), "machine id")
            findings += _duplicates(line.products, "id", (*line_path, "products"), "product id")
            machine_ids = [machine.id for machine in line.machines]
            if line.output_machine is not None and line.output_machine not in machine_ids:
                findings.append(
                    (
                        (*line_path, "output_machine"),
                        f"output machine {line.output_machine!r} is not in line {line.id!r}",
                    )
                )
            for m, machine in enumerate(line.machines):
                machine_path: Path_ = (*line_path, "machines", m)
                if machine.sources:
                    findings += _check_machine(
                        machine, machine_path, node_ids, len(site.edge_nodes)
                    )
                elif not site.ingest:
                    findings.append(
                        (
                            (*machine_path, "sources"),
                            (
                                f"machine {machine.id!r} has no sources and the site no ingest "
                                "rules: nothing would bring its data"
                            ),
                        )
                    )
    return findings


def _check_machine(
    machine: Any, path: Path_, node_ids: set[str], node_count: int
) -> Iterator[Finding]:
    seen: dict[str, str] = {}
    for s, source in enumerate(machine.sources):
        for t, tag in enumerate(source.tags):
            tag_path: Path_ = (*path, "sources", s, "tags", t)
            if tag.metric in seen:
                yield (
                    (*tag_path, "metric"),
                    f"duplicate metric {tag.metric!r} in machine {machine.id!r}",
                )
            seen[tag.metric] = source.protocol
        for where, problem in source.problems():
            yield ((*path, "sources", s, *where), problem)
    for role, metric in machine.oee.metrics().items():
        if metric not in seen:
            yield (
                (*path, "oee", role),
                f"{role} metric {metric!r} is not read by any source of machine {machine.id!r}",
            )
    if machine.clock_metric is not None and machine.clock_metric not in seen:
        yield (
            (*path, "clock_metric"),
            f"clock metric {machine.clock_metric!r} is not read by any source",
        )
    if machine.edge_node is not None and machine.edge_node not in node_ids:
        yield (
            (*path, "edge_node"),
            f"edge node {machine.edge_node!r} is not in edge_nodes ({', '.join(sorted(node_ids))})",
        )
    if machine.edge_node is None and node_count > 1:
        yield (
            (*path, "id"),
            f"machine {machine.id!r} needs edge_node: the site has {node_count} edge nodes",
        )


def _check_ingest(site: SiteConfig) -> Iterator[Finding]:
    """Each rule's own problems, unique names, and no two rules (nor a rule and PlantWire's own
    topics) that one topic could match: which would read it is then a matter of order."""
    own = [("PlantWire's data topics", data_subscription(site.site.id))]
    if site.sparkplug is not None:
        own.append(("Sparkplug B", sparkplug_subscription(site.sparkplug_group)))
    own.append(("PlantWire's service topics", service_subscription(site.site.id)))
    seen: list[tuple[str, str]] = []
    names: dict[str, int] = {}
    for index, rule in enumerate(site.ingest):
        path: Path_ = ("ingest", index)
        for where, problem in rule.problems():
            yield ((*path, *where), problem)
        name = rule.name or f"rule-{index}"
        if name in names:
            yield ((*path, "name"), f"duplicate rule name {name!r} (also ingest[{names[name]}])")
        names.setdefault(name, index)
        filter_ = rule.pattern().filter
        for other, other_filter in [*own, *seen]:
            if filters_overlap(filter_, other_filter):
                yield (
                    (*path, "topic"),
                    (
                        f"topic {rule.topic!r} overlaps {other} ({other_filter}): "
                        "a message could match both"
                    ),
                )
                break
        seen.append((f"ingest[{index}]", filter_))


def _check_breaks(shift: Shift, path: Path_) -> Iterator[Finding]:
    spans: list[tuple[float, float, int]] = []
    for index, brk in enumerate(shift.breaks):
        begin = shift.offset_min(brk.start)
        if begin + brk.minutes > shift.length_min:
            yield (
                (*path, "breaks", index, "start"),
                (
                    f"break {brk.name!r} at {brk.start:%H:%M} for {brk.minutes:g} min does not fit "
                    f"in shift {shift.name!r} ({shift.start:%H:%M}-{shift.end:%H:%M})"
                ),
            )
        spans.append((begin, begin + brk.minutes, index))
    spans.sort()
    for (_, end_a, a), (begin_b, _, b) in itertools.pairwise(spans):
        if begin_b < end_a:
            yield (
                (*path, "breaks", b, "start"),
                (
                    f"break {shift.breaks[b].name!r} overlaps break {shift.breaks[a].name!r} "
                    f"in shift {shift.name!r}"
                ),
            )


def _check_shifts(site: SiteConfig) -> Iterator[Finding]:
    yield from _duplicates(site.shifts, "name", ("shifts",), "shift name")
    for index, shift in enumerate(site.shifts):
        yield from _check_breaks(shift, ("shifts", index))
    # Every shift occurrence as (start, length) in minutes of a circular week.
    spans: list[tuple[int, int, int]] = []
    for index, shift in enumerate(site.shifts):
        start = shift.start.hour * 60 + shift.start.minute
        spans += [
            (ALL_DAYS.index(day) * 24 * 60 + start, shift.length_min, index) for day in shift.days
        ]
    reported: set[tuple[int, int]] = set()
    for (begin_a, length_a, a), (begin_b, length_b, b) in itertools.combinations(spans, 2):
        if a == b or (min(a, b), max(a, b)) in reported:
            continue
        if (begin_b - begin_a) % _WEEK_MIN < length_a or (begin_a - begin_b) % _WEEK_MIN < length_b:
            first, second = min(a, b), max(a, b)
            reported.add((first, second))
            yield (
                ("shifts", second, "start"),
                f"shift {site.shifts[second].name!r} overlaps shift {site.shifts[first].name!r}",
            )
