"""The per-LUN task set: which commands wait for which (SAM task attributes, SPC-4 7.5.7).

The control mode page reports QUEUE ALGORITHM MODIFIER 0 (restricted
reordering: SIMPLE commands may run out of order only where the result is
that of running them in arrival order) and TST 000b (one task set for every
I_T nexus). The rules tested:

- SIMPLE (and UNTAGGED, and ACA, which is handled as SIMPLE since NACA=0):
  waits for earlier commands whose blocks overlap its own where one of the
  two writes, and for every earlier ORDERED command; nothing else.
- ORDERED: waits for every earlier command; every later one waits for it.
- HEAD OF QUEUE: waits for nothing, and every later SIMPLE or ORDERED
  command waits for it. SAM-2 7.5.1/7.5.2: a SIMPLE task is not enabled
  "until all older head of queue and older ordered tasks have ended", an
  ORDERED one "until all older tasks in the task set have ended"; 7.5.3:
  a HEAD OF QUEUE task is accepted in the enabled state.
- A command that completes or is cancelled (ABORT TASK, a reset, its
  connection gone) releases whoever waited for it.

Async scenarios run on a private event loop with explicit events: a
"still waiting" is checked after letting the loop run every ready callback,
never after a time.
"""

from __future__ import annotations

import asyncio

import pytest

from iscsi_helper.lab.wire.ordering import (
    ATTR_ACA,
    ATTR_HEAD_OF_QUEUE,
    ATTR_ORDERED,
    ATTR_SIMPLE,
    ATTR_UNTAGGED,
    WHOLE_LUN,
    Entry,
    TaskSet,
    wait_for,
)

from .loop import run, settle

SIMPLE_LIKE = pytest.mark.parametrize(
    "simple", [ATTR_SIMPLE, ATTR_UNTAGGED, ATTR_ACA], ids=["SIMPLE", "UNTAGGED", "ACA"]
)


def blocked_by(blockers: list[Entry]) -> set[int]:
    return {id(e) for e in blockers}


def ids(*entries: Entry) -> set[int]:
    return {id(e) for e in entries}


# --- who waits for whom --------------------------------------------------------------------


@SIMPLE_LIKE
def test_a_read_waits_only_for_earlier_writes_that_overlap_it(simple: int) -> None:
    tasks = TaskSet()
    write, _ = tasks.enter((100, 108), True, simple)
    other_write, _ = tasks.enter((200, 208), True, simple)
    _, blockers = tasks.enter((104, 112), False, simple)
    assert blocked_by(blockers) == ids(write)


@SIMPLE_LIKE
def test_reads_never_wait_for_reads(simple: int) -> None:
    tasks = TaskSet()
    tasks.enter((0, 64), False, simple)
    _, blockers = tasks.enter((0, 64), False, simple)
    assert blockers == []


@SIMPLE_LIKE
def test_a_write_waits_for_earlier_overlapping_reads_and_writes(simple: int) -> None:
    """Write after read and write after write are hazards too: the read must see the old data,
    the final medium must hold the later write."""
    tasks = TaskSet()
    read, _ = tasks.enter((0, 8), False, simple)
    write, _ = tasks.enter((6, 10), True, simple)
    tasks.enter((50, 60), False, simple)
    _, blockers = tasks.enter((7, 9), True, simple)
    assert blocked_by(blockers) == ids(read, write)


@SIMPLE_LIKE
def test_block_ranges_are_half_open_so_neighbours_do_not_conflict(simple: int) -> None:
    tasks = TaskSet()
    tasks.enter((8, 16), True, simple)
    _, after = tasks.enter((16, 24), True, simple)
    _, before = tasks.enter((0, 8), True, simple)
    assert after == [] and before == []
    _, last_block = tasks.enter((15, 16), False, simple)
    assert len(last_block) == 1


@SIMPLE_LIKE
def test_commands_that_touch_no_blocks_wait_for_no_simple_command(simple: int) -> None:
    tasks = TaskSet()
    tasks.enter(WHOLE_LUN, True, simple)
    inquiry, blockers = tasks.enter(None, False, simple)
    assert blockers == []
    _, blockers = tasks.enter((0, 8), True, simple)
    assert inquiry not in blockers


@SIMPLE_LIKE
def test_a_command_never_waits_for_a_later_one(simple: int) -> None:
    tasks = TaskSet()
    first, first_blockers = tasks.enter((0, 8), True, simple)
    tasks.enter((0, 8), True, simple)
    assert first_blockers == []
    tasks.leave(first)
    _, blockers = tasks.enter((0, 8), False, simple)
    assert len(blockers) == 1  # only the second write, still there


@SIMPLE_LIKE
def test_ordered_waits_for_every_earlier_command_whatever_it_touches(simple: int) -> None:
    tasks = TaskSet()
    earlier = [
        tasks.enter((0, 8), False, simple)[0],
        tasks.enter((900, 908), True, simple)[0],
        tasks.enter(None, False, simple)[0],
    ]
    _, blockers = tasks.enter((5000, 5001), False, ATTR_ORDERED)
    assert blocked_by(blockers) == ids(*earlier)


@SIMPLE_LIKE
def test_every_later_command_waits_for_an_ordered_one(simple: int) -> None:
    tasks = TaskSet()
    ordered, _ = tasks.enter((0, 1), False, ATTR_ORDERED)
    for extent, writes in (((10, 20), False), ((30, 40), True), (None, False)):
        _, blockers = tasks.enter(extent, writes, simple)
        assert ordered in blockers
    _, blockers = tasks.enter(None, False, ATTR_ORDERED)
    assert ordered in blockers


def test_head_of_queue_waits_for_nothing() -> None:
    tasks = TaskSet()
    tasks.enter((0, 8), True, ATTR_SIMPLE)
    tasks.enter(None, False, ATTR_ORDERED)
    tasks.enter((0, 8), True, ATTR_HEAD_OF_QUEUE)
    _, blockers = tasks.enter((0, 8), True, ATTR_HEAD_OF_QUEUE)
    assert blockers == []


def test_an_ordered_command_waits_for_an_earlier_head_of_queue_one() -> None:
    tasks = TaskSet()
    head, _ = tasks.enter((0, 8), True, ATTR_HEAD_OF_QUEUE)
    _, blockers = tasks.enter((100, 101), False, ATTR_ORDERED)
    assert head in blockers


@SIMPLE_LIKE
def test_every_later_simple_command_waits_for_an_earlier_head_of_queue_one(simple: int) -> None:
    tasks = TaskSet()
    head, _ = tasks.enter((0, 8), False, ATTR_HEAD_OF_QUEUE)
    for extent, writes in (((0, 8), True), ((100, 108), False), (None, False)):
        _, blockers = tasks.enter(extent, writes, simple)
        assert blocked_by(blockers) == ids(head)
        assert not tasks.clear_for(extent, writes)
    tasks.leave(head)
    assert tasks.clear_for((100, 108), False)


def test_clear_for_answers_what_enter_would_for_a_simple_command() -> None:
    """The transport completes a command inline, unregistered, only where ``enter`` would have
    given it no blocker."""
    cases: list[list[tuple[tuple[int, int] | None, bool, int]]] = [
        [((0, 8), True, ATTR_SIMPLE)],
        [((0, 8), False, ATTR_SIMPLE)],
        [((100, 200), True, ATTR_SIMPLE)],
        [(None, False, ATTR_ORDERED)],
        [((0, 8), True, ATTR_HEAD_OF_QUEUE)],
        [((0, 8), False, ATTR_SIMPLE), ((50, 60), True, ATTR_SIMPLE)],
    ]
    probes = [((0, 8), False), ((4, 6), True), ((8, 16), True), (None, False), (WHOLE_LUN, False)]
    for case in cases:
        for extent, writes in probes:
            tasks = TaskSet()
            for entry_extent, entry_writes, attribute in case:
                tasks.enter(entry_extent, entry_writes, attribute)
            expected = tasks.clear_for(extent, writes)
            _, blockers = tasks.enter(extent, writes, ATTR_SIMPLE)
            assert expected == (blockers == []), (case, extent, writes)


# --- leaving ---------------------------------------------------------------------------------


def test_leave_releases_the_entry_once_and_empties_the_set() -> None:
    tasks = TaskSet()
    entry, _ = tasks.enter((0, 8), True, ATTR_SIMPLE)
    assert not tasks.idle()
    tasks.leave(entry)
    tasks.leave(entry)  # a second release (task done callback after a cancel) is harmless
    assert entry.done.is_set()
    assert tasks.idle()
    _, blockers = tasks.enter((0, 8), True, ATTR_SIMPLE)
    assert blockers == []


# --- waiting, on an event loop ----------------------------------------------------------------


class Started:
    """Commands that record when they start, as the transport's tasks do once ``wait_for`` returns."""

    def __init__(self, tasks: TaskSet) -> None:
        self.tasks = tasks
        self.order: list[str] = []
        self.running: dict[str, asyncio.Task[None]] = {}
        self.entries: dict[str, Entry] = {}

    def submit(self, name: str, extent: tuple[int, int] | None, writes: bool, attribute: int) -> Entry:
        entry, blockers = self.tasks.enter(extent, writes, attribute)

        async def command() -> None:
            await wait_for(blockers)
            self.order.append(name)

        self.entries[name] = entry
        self.running[name] = asyncio.get_running_loop().create_task(command())
        return entry

    def complete(self, name: str) -> None:
        self.tasks.leave(self.entries[name])


def test_a_waiting_command_starts_exactly_when_its_last_blocker_leaves() -> None:
    async def scenario() -> None:
        cmds = Started(TaskSet())
        cmds.submit("w1", (0, 8), True, ATTR_SIMPLE)
        cmds.submit("w2", (4, 12), True, ATTR_SIMPLE)
        cmds.submit("r", (0, 12), False, ATTR_SIMPLE)  # overlaps both writes
        cmds.submit("elsewhere", (100, 101), True, ATTR_SIMPLE)
        await settle()
        assert cmds.order == ["w1", "elsewhere"]
        cmds.complete("w1")
        await settle()
        assert cmds.order == ["w1", "elsewhere", "w2"]
        cmds.complete("elsewhere")
        await settle()
        assert "r" not in cmds.order  # w2 still runs
        cmds.complete("w2")
        await settle()
        assert cmds.order[-1] == "r"

    run(scenario)


def test_ordered_runs_alone_between_what_came_before_and_what_comes_after() -> None:
    async def scenario() -> None:
        cmds = Started(TaskSet())
        cmds.submit("a", (0, 8), False, ATTR_SIMPLE)
        cmds.submit("b", (100, 108), True, ATTR_SIMPLE)
        cmds.submit("barrier", None, False, ATTR_ORDERED)
        cmds.submit("c", (500, 508), False, ATTR_SIMPLE)
        cmds.submit("inquiry", None, False, ATTR_SIMPLE)
        await settle()
        assert cmds.order == ["a", "b"]
        cmds.complete("b")
        await settle()
        assert cmds.order == ["a", "b"]  # "a" still runs
        cmds.complete("a")
        await settle()
        assert cmds.order == ["a", "b", "barrier"]
        cmds.complete("barrier")
        await settle()
        assert sorted(cmds.order[3:]) == ["c", "inquiry"]

    run(scenario)


def test_head_of_queue_starts_at_once_past_a_waiting_barrier_and_holds_back_what_follows() -> None:
    async def scenario() -> None:
        cmds = Started(TaskSet())
        cmds.submit("write", (0, 8), True, ATTR_SIMPLE)
        cmds.submit("barrier", None, False, ATTR_ORDERED)
        cmds.submit("urgent", (0, 8), True, ATTR_HEAD_OF_QUEUE)
        cmds.submit("after", (500, 508), False, ATTR_SIMPLE)
        await settle()
        assert cmds.order == ["write", "urgent"]
        cmds.complete("write")
        cmds.complete("barrier")
        await settle()
        assert "after" not in cmds.order  # the HEAD OF QUEUE write has not ended
        cmds.complete("urgent")
        await settle()
        assert cmds.order[-1] == "after"

    run(scenario)


def test_a_cancelled_command_releases_the_commands_that_waited_for_it() -> None:
    """ABORT TASK of a write that is itself waiting: the read that waited only for it may go,
    though the first write still runs."""

    async def scenario() -> None:
        cmds = Started(TaskSet())
        cmds.submit("w1", (0, 8), True, ATTR_SIMPLE)
        cmds.submit("w2", (4, 12), True, ATTR_SIMPLE)  # waits for w1
        cmds.submit("r", (10, 12), False, ATTR_SIMPLE)  # overlaps w2 only
        await settle()
        assert cmds.order == ["w1"]
        cmds.running["w2"].cancel()
        cmds.complete("w2")  # what the transport's done callback does for a cancelled command
        await settle()
        assert cmds.order == ["w1", "r"]
        assert cmds.running["w2"].cancelled()

    run(scenario)


def test_a_cancelled_barrier_releases_what_it_held_back() -> None:
    async def scenario() -> None:
        cmds = Started(TaskSet())
        cmds.submit("slow", (0, 8), True, ATTR_SIMPLE)
        cmds.submit("barrier", None, False, ATTR_ORDERED)
        cmds.submit("later", (100, 108), False, ATTR_SIMPLE)
        await settle()
        assert cmds.order == ["slow"]
        cmds.running["barrier"].cancel()
        cmds.complete("barrier")
        await settle()
        assert cmds.order == ["slow", "later"]

    run(scenario)


def test_many_commands_each_start_only_after_all_their_blockers_left() -> None:
    """A mixed stream, completed in an adversarial order: no command ever starts while an earlier
    command it conflicts with (by the rules above) has not completed."""
    specs: list[tuple[tuple[int, int] | None, bool, int]] = []
    for i in range(60):
        attribute = ATTR_ORDERED if i % 17 == 16 else ATTR_HEAD_OF_QUEUE if i % 13 == 12 else ATTR_SIMPLE
        extent = None if i % 11 == 10 else ((i * 7) % 40, (i * 7) % 40 + 1 + i % 5)
        specs.append((extent, i % 3 == 0, attribute))

    def must_wait(later: int, earlier: int) -> bool:
        (e1, w1, a1), (e2, w2, a2) = specs[earlier], specs[later]
        if a2 == ATTR_HEAD_OF_QUEUE:
            return False
        if ATTR_ORDERED in (a1, a2) or a1 == ATTR_HEAD_OF_QUEUE:
            return True
        if e1 is None or e2 is None or not (w1 or w2):
            return False
        return e1[0] < e2[1] and e2[0] < e1[1]

    async def scenario() -> None:
        cmds = Started(TaskSet())
        for i, (extent, writes, attribute) in enumerate(specs):
            cmds.submit(str(i), extent, writes, attribute)
        completed: set[int] = set()
        while len(completed) < len(specs):
            await settle()
            started = [int(n) for n in cmds.order if int(n) not in completed]
            assert started, "nothing can run: the task set deadlocked"
            for i in started:
                assert all(j in completed for j in range(i) if must_wait(i, j)), i
            last = max(started)  # complete the latest started first
            cmds.complete(str(last))
            completed.add(last)
        assert sorted(int(n) for n in cmds.order) == list(range(len(specs)))

    run(scenario)
