"""Which commands of a logical unit may run at the same time (SAM-5 8.6, SPC-4 7.5.7).

The control mode page reports QUEUE ALGORITHM MODIFIER 0 (restricted
reordering) and TST 000b (one task set shared by every I_T nexus), so the
device server may run SIMPLE commands concurrently only where the result is
the same as running them in arrival order: two commands conflict when their
block ranges overlap and at least one of them writes. ORDERED commands wait
for everything that arrived before them and hold back everything after them
(SAM-5 8.6.2/8.6.3); HEAD OF QUEUE commands start at once, and every command
that arrives after one waits for it as for an ORDERED one (SAM-2 7.5: SIMPLE
and ORDERED commands are enabled only once all older HEAD OF QUEUE commands
have ended). ACA is not supported (NACA=0 is all we accept), so an ACA
attribute is handled as SIMPLE.

Entries arrive in CmdSN order (the transport enters them synchronously as it
reads them), which is what makes "arrived before" well defined across the
sessions that share a logical unit.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

# Task attributes in the SCSI Command PDU (RFC 7143 11.3.1, ATTR field).
ATTR_UNTAGGED = 0
ATTR_SIMPLE = 1
ATTR_ORDERED = 2
ATTR_HEAD_OF_QUEUE = 3
ATTR_ACA = 4

WHOLE_LUN = (0, 1 << 64)


@dataclass(eq=False)
class Entry:
    """One command in the task set: the blocks it touches and whether it writes them.

    ``extent`` is None for commands that touch no medium (INQUIRY, REPORT
    LUNS...): those conflict with nothing except ORDERED barriers.
    """

    extent: tuple[int, int] | None
    writes: bool
    ordered: bool = False
    head_of_queue: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def conflicts(self, other: Entry) -> bool:
        if self.ordered or other.ordered:
            return True
        if self.extent is None or other.extent is None or not (self.writes or other.writes):
            return False
        return self.extent[0] < other.extent[1] and other.extent[0] < self.extent[1]


class TaskSet:
    """The commands of one logical unit that have arrived and not yet completed."""

    def __init__(self) -> None:
        self.active: list[Entry] = []

    def enter(
        self, extent: tuple[int, int] | None, writes: bool, attribute: int
    ) -> tuple[Entry, list[Entry]]:
        """Register a command; returns its entry and the earlier entries it must wait for."""
        entry = Entry(
            extent, writes, ordered=attribute == ATTR_ORDERED, head_of_queue=attribute == ATTR_HEAD_OF_QUEUE
        )
        if entry.head_of_queue:
            blockers: list[Entry] = []
        else:
            blockers = [e for e in self.active if e.head_of_queue or e.conflicts(entry)]
        self.active.append(entry)
        return entry, blockers

    def clear_for(self, extent: tuple[int, int] | None, writes: bool) -> bool:
        """Whether a SIMPLE command could run now; lets the transport complete it inline, unregistered."""
        for e in self.active:
            if e.ordered or e.head_of_queue:
                return False
            if extent is None or e.extent is None or not (writes or e.writes):
                continue
            if e.extent[0] < extent[1] and extent[0] < e.extent[1]:
                return False
        return True

    def leave(self, entry: Entry) -> None:
        """The command completed (or was aborted): whoever waited on it may go."""
        if not entry.done.is_set():
            entry.done.set()
            try:
                self.active.remove(entry)
            except ValueError:
                pass

    def idle(self) -> bool:
        return not self.active


async def wait_for(blockers: list[Entry]) -> None:
    for blocker in blockers:
        if not blocker.done.is_set():
            await blocker.done.wait()
