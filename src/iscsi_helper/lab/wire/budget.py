"""How many bytes of command data this process holds, per connection and per daemon.

Every byte an initiator sends or a read stages in memory is charged here
before (or, for unsolicited data, as) it is held, and given back when it has
reached the backing store or the socket. R2Ts are sent only for data that
fits (:meth:`ConnectionBudget.take` waits, first come first served), so
solicited data can never exceed the budget; unsolicited data cannot be
refused, so it is charged with :meth:`ConnectionBudget.force` and the
connection stops reading from its socket while it is over its limit (TCP
then holds the rest in the peer). The limits are documented in
docs/wire-target.md ("Limits").
"""

from __future__ import annotations

import asyncio
from collections import deque

# Defaults; a daemon's limits are set once at start.
CONNECTION_LIMIT = 16 * 1024 * 1024
DAEMON_LIMIT = 128 * 1024 * 1024


class DaemonBudget:
    """The pool every connection of one daemon draws from."""

    def __init__(self, limit: int = DAEMON_LIMIT, connection_limit: int = CONNECTION_LIMIT) -> None:
        self.limit = limit
        self.connection_limit = connection_limit
        self.used = 0
        self.peak = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    def _charge(self, n: int) -> None:
        self.used += n
        if self.used > self.peak:
            self.peak = self.used

    def _release(self, n: int) -> None:
        self.used -= n
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)


class ConnectionBudget:
    """One connection's share; ``take`` also needs room in the daemon's pool."""

    def __init__(self, daemon: DaemonBudget) -> None:
        self.daemon = daemon
        self.limit = daemon.connection_limit
        self.used = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._queue: deque[asyncio.Future[None]] = deque()

    def _fits(self, n: int) -> bool:
        # A request larger than the whole share is granted when nothing else is held,
        # so a single maximal command always makes progress.
        own = self.used + n <= self.limit or self.used == 0
        pool = self.daemon.used + n <= self.daemon.limit or self.daemon.used == 0
        return own and pool

    def over(self) -> bool:
        return self.used > self.limit or (self.daemon.used > self.daemon.limit and self.used > 0)

    def try_take(self, n: int) -> bool:
        """Charge ``n`` bytes if they fit now and nobody of this connection waits before us."""
        if self._queue or not self._fits(n):
            return False
        self._charge(n)
        return True

    async def take(self, n: int) -> None:
        """Wait until ``n`` bytes fit, after every earlier ``take`` of this connection."""
        if not self._queue and self._fits(n):
            self._charge(n)
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(turn)
        try:
            if self._queue[0] is not turn:
                await turn
            while not self._fits(n):
                await self._wait_release()
            self._charge(n)
        finally:
            self._queue.remove(turn)
            if self._queue and not self._queue[0].done():
                self._queue[0].set_result(None)

    def force(self, n: int) -> None:
        """Charge data that has already arrived unasked (immediate and unsolicited Data-Out)."""
        self._charge(n)

    def give(self, n: int) -> None:
        n = min(n, self.used)
        if n <= 0:
            return
        self.used -= n
        self.daemon._release(n)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def below_limit(self) -> None:
        """Return once this connection may read more from its socket."""
        while self.over():
            await self._wait_release()

    def release_all(self) -> None:
        """The connection is gone: whatever it held goes back to the pool."""
        self.give(self.used)

    def _charge(self, n: int) -> None:
        self.used += n
        self.daemon._charge(n)

    async def _wait_release(self) -> None:
        # Woken by a release here or anywhere in the daemon.
        loop = asyncio.get_running_loop()
        own: asyncio.Future[None] = loop.create_future()
        pool: asyncio.Future[None] = loop.create_future()
        self._waiters.append(own)
        self.daemon._waiters.append(pool)
        try:
            await asyncio.wait((own, pool), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (own, pool):
                if not fut.done():
                    fut.cancel()
