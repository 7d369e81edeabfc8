"""The buffered-data budget: per connection and per daemon (docs/wire-target.md, "Limits").

The rules (the design of issue 16's "bounds everywhere"; no SCSI standard
speaks to them):

- A reservation (``take``) is granted at once only if it fits both the
  connection's share and the daemon's pool; otherwise it waits, first come
  first served within the connection, until releases make room.
- A reservation larger than a whole limit is granted once nothing else is
  held, so one maximal command always makes progress.
- Data that arrived unasked (``force``) is charged even past the limits;
  the connection is then "over" and stops reading until releases bring it
  back under.
- When a connection ends (``release_all``) everything it held returns to the
  pool and wakes those who wait for it.
- Accounting never goes negative, and the pool always equals the sum of its
  connections' shares.

Scenarios run on a private event loop with explicit events; "still waiting"
is checked after letting the loop run every ready callback, never after a
time.
"""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from iscsi_helper.lab.wire.budget import ConnectionBudget, DaemonBudget

from .loop import run, settle

POOL, SHARE = 100, 40


def pool() -> DaemonBudget:
    return DaemonBudget(limit=POOL, connection_limit=SHARE)


def consistent(daemon: DaemonBudget, *conns: ConnectionBudget) -> None:
    assert all(c.used >= 0 for c in conns)
    assert daemon.used == sum(c.used for c in conns) >= 0
    assert daemon.peak >= daemon.used


def start_take(conn: ConnectionBudget, n: int, log: list[str], name: str) -> asyncio.Task[None]:
    async def take() -> None:
        await conn.take(n)
        log.append(name)

    return asyncio.get_running_loop().create_task(take())


def test_a_reservation_that_fits_is_granted_at_once() -> None:
    async def scenario() -> None:
        daemon = pool()
        conn = ConnectionBudget(daemon)
        await conn.take(30)
        assert conn.try_take(10)
        assert (conn.used, daemon.used) == (40, 40)
        assert not conn.over()
        await conn.below_limit()  # returns at once: nothing to wait for
        consistent(daemon, conn)

    run(scenario)


def test_past_the_connection_share_a_reservation_waits_until_the_connection_gives_back() -> None:
    async def scenario() -> None:
        daemon = pool()
        conn = ConnectionBudget(daemon)
        await conn.take(30)
        log: list[str] = []
        waiting = start_take(conn, 20, log, "second")
        await settle()
        assert log == [] and conn.used == 30
        assert not conn.try_take(1)  # nobody jumps the queue, even with room for 1 byte
        conn.give(9)
        await settle()
        assert log == []  # 21 + 20 > 40: still no room
        conn.give(1)
        await settle()
        assert log == ["second"] and conn.used == 40
        await waiting
        consistent(daemon, conn)

    run(scenario)


def test_waiting_reservations_of_one_connection_are_granted_in_arrival_order() -> None:
    async def scenario() -> None:
        daemon = pool()
        conn = ConnectionBudget(daemon)
        await conn.take(40)
        log: list[str] = []
        big = start_take(conn, 30, log, "big")
        await settle()
        conn.give(10)  # room for 10: not enough for "big"
        await settle()
        small = start_take(conn, 5, log, "small")  # would fit, but "big" came first
        await settle()
        assert log == []
        assert not conn.try_take(5)
        conn.give(30)
        await settle()
        assert log == ["big", "small"]
        await asyncio.gather(big, small)
        assert conn.used == 35
        consistent(daemon, conn)

    run(scenario)


def test_past_the_daemon_pool_a_reservation_waits_for_another_connection_to_end() -> None:
    async def scenario() -> None:
        daemon = pool()
        hogs = [ConnectionBudget(daemon) for _ in range(3)]
        for hog, n in zip(hogs, (40, 40, 15), strict=True):
            await hog.take(n)
        newcomer = ConnectionBudget(daemon)
        log: list[str] = []
        waiting = start_take(newcomer, 10, log, "newcomer")
        await settle()
        assert log == [] and newcomer.used == 0  # its own share is empty; the pool is not
        hogs[2].release_all()  # that connection ended
        await settle()
        assert log == ["newcomer"]
        await waiting
        assert hogs[2].used == 0
        consistent(daemon, newcomer, *hogs)

    run(scenario)


def test_a_reservation_larger_than_every_limit_is_granted_when_nothing_else_is_held() -> None:
    async def scenario() -> None:
        daemon = pool()
        conn, other = ConnectionBudget(daemon), ConnectionBudget(daemon)
        await other.take(1)
        log: list[str] = []
        waiting = start_take(conn, 5 * POOL, log, "huge")
        await settle()
        assert log == []
        other.release_all()
        await settle()
        assert log == ["huge"] and daemon.used == 5 * POOL
        await waiting
        assert conn.over()
        conn.give(5 * POOL)
        consistent(daemon, conn, other)

    run(scenario)


def test_unsolicited_data_is_charged_past_the_limit_and_reading_resumes_once_under_it() -> None:
    async def scenario() -> None:
        daemon = pool()
        conn = ConnectionBudget(daemon)
        conn.force(SHARE + 10)
        assert conn.over()
        resumed: list[str] = []

        async def reader() -> None:
            await conn.below_limit()
            resumed.append("reading")

        task = asyncio.get_running_loop().create_task(reader())
        await settle()
        assert resumed == []
        conn.give(5)
        await settle()
        assert resumed == []  # 45 > 40
        conn.give(5)
        await settle()
        assert resumed == ["reading"]
        await task
        consistent(daemon, conn)

    run(scenario)


def test_a_full_pool_stops_reading_on_every_connection_that_holds_something() -> None:
    async def scenario() -> None:
        daemon = pool()
        a, b, idle = ConnectionBudget(daemon), ConnectionBudget(daemon), ConnectionBudget(daemon)
        a.force(SHARE)
        b.force(SHARE)
        b.force(30)  # b over its own share, and the pool over its limit (110 > 100)
        assert a.over() and b.over()
        assert not idle.over()  # a connection holding nothing may still read (and make progress)
        b.release_all()
        assert not a.over()
        consistent(daemon, a, b, idle)

    run(scenario)


def test_a_cancelled_reservation_charges_nothing_and_lets_the_next_one_go() -> None:
    async def scenario() -> None:
        daemon = pool()
        conn = ConnectionBudget(daemon)
        await conn.take(40)
        log: list[str] = []
        first = start_take(conn, 30, log, "first")
        await settle()
        second = start_take(conn, 10, log, "second")
        await settle()
        first.cancel()  # its command was aborted while it waited
        await settle()
        assert first.cancelled()
        conn.give(10)
        await settle()
        assert log == ["second"] and conn.used == 40
        await second
        consistent(daemon, conn)

    run(scenario)


def test_giving_back_more_than_is_held_never_drives_the_accounting_negative() -> None:
    daemon = pool()
    a, b = ConnectionBudget(daemon), ConnectionBudget(daemon)
    a.force(10)
    b.force(20)
    a.give(25)
    a.give(1)
    a.release_all()
    assert (a.used, b.used, daemon.used) == (0, 20, 20)
    b.release_all()
    b.release_all()
    assert daemon.used == 0
    consistent(daemon, a, b)


operation = st.tuples(
    st.sampled_from(["take", "try_take", "force", "give", "release_all"]),
    st.integers(0, 2),
    st.integers(0, 2 * POOL),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(operation, max_size=60))
def test_accounting_stays_consistent_whatever_the_connections_do(ops: list[tuple[str, int, int]]) -> None:
    """Any sequence of charges and releases keeps every count at or above zero and the pool
    equal to the sum of the shares; a ``take`` never leaves the waiter queue stuck."""

    async def scenario() -> None:
        daemon = pool()
        conns = [ConnectionBudget(daemon) for _ in range(3)]
        pending: list[asyncio.Task[None]] = []
        for name, which, n in ops:
            conn = conns[which]
            if name == "take":
                pending.append(asyncio.get_running_loop().create_task(conn.take(n)))
            elif name == "try_take":
                before = conn.used
                granted = conn.try_take(n)
                assert conn.used == before + (n if granted else 0)
            elif name == "force":
                conn.force(n)
            elif name == "give":
                conn.give(n)
            else:
                conn.release_all()
            await settle()
            consistent(daemon, *conns)
        # The connections end, over and over, until every waiting take has been granted: none may stay stuck.
        while any(not t.done() for t in pending):
            for conn in conns:
                conn.release_all()
            await settle()
        for conn in conns:
            conn.release_all()
        consistent(daemon, *conns)
        assert daemon.used == 0

    run(scenario)
