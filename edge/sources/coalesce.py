"""Request coalescing: read the tags of a poll group with the fewest Modbus requests.

Tags are grouped by device and table, sorted by address, and packed greedily into requests: a
request grows to take the next tag while the whole span stays within the per-request limit (125
registers, 2000 bits, or less if the device needs) and the unused registers between the two stay
within ``max_gap``. For tags sorted by address, taking each next tag while it fits is optimal: no
plan with fewer requests exists (an exchange argument: the greedy request always ends at least
as far right as any other plan's). Tags that a device refused alone are read alone, so one bad
address does not fail the requests of its neighbours.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from plantwire.config.models import ModbusTag, RegisterTable

__all__ = ["PlannedTag", "ReadRequest", "plan_requests"]


@dataclass(frozen=True)
class PlannedTag:
    """A tag to read, with whose it is (an index the driver understands) and its device."""

    key: int
    tag: ModbusTag
    device_id: int

    @property
    def start(self) -> int:
        return self.tag.address

    @property
    def end(self) -> int:  # one past the last register (or bit)
        return self.tag.address + self.tag.count


@dataclass
class ReadRequest:
    device_id: int
    table: RegisterTable
    address: int
    count: int
    tags: list[PlannedTag] = field(default_factory=list)

    def __str__(self) -> str:
        return f"device {self.device_id} {self.table} {self.address}+{self.count}"


def plan_requests(
    tags: Iterable[PlannedTag],
    *,
    max_registers: int,
    max_bits: int,
    max_gap: int,
    alone: Sequence[int] = (),
) -> list[ReadRequest]:
    """The fewest requests that read every tag.

    ``alone`` lists tag keys a device refused: each is read by itself, and no other request spans
    its registers (the refusal may be of the address, not of the tag).
    """
    isolated = set(alone)
    groups: dict[tuple[int, RegisterTable], list[PlannedTag]] = defaultdict(list)
    avoid: dict[tuple[int, RegisterTable], list[tuple[int, int]]] = defaultdict(list)
    requests: list[ReadRequest] = []
    for planned in tags:
        group = (planned.device_id, planned.tag.table)
        if planned.key in isolated:
            requests.append(
                ReadRequest(
                    planned.device_id,
                    planned.tag.table,
                    planned.start,
                    planned.tag.count,
                    [planned],
                )
            )
            avoid[group].append((planned.start, planned.end))
        else:
            groups[group].append(planned)
    for (device_id, table), members in sorted(
        groups.items(), key=lambda item: (item[0][0], item[0][1].value)
    ):
        limit = max_bits if table.is_bit else max_registers
        members.sort(key=lambda p: (p.start, p.end))
        current: ReadRequest | None = None
        refused = avoid[(device_id, table)]
        for planned in members:
            if current is not None:
                end = max(current.address + current.count, planned.end)
                gap = planned.start - (current.address + current.count)
                spans_refused = any(lo < end and current.address < hi for lo, hi in refused)
                if end - current.address <= limit and gap <= max_gap and not spans_refused:
                    current.count = end - current.address
                    current.tags.append(planned)
                    continue
            current = ReadRequest(device_id, table, planned.start, planned.tag.count, [planned])
            requests.append(current)
    return requests
