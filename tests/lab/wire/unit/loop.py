"""Driving a scenario on an event loop, for the wire target's tool-free unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

#: enough loop iterations for every ready callback chain in these tests
#: (event set -> waiter woken -> next await)
SETTLE_ROUNDS = 20


async def settle() -> None:
    """Let every ready callback run: loop iterations, not time."""
    for _ in range(SETTLE_ROUNDS):
        await asyncio.sleep(0)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def guarded() -> None:
        # The timeout only stops a hang; no outcome depends on it.
        await asyncio.wait_for(scenario(), timeout=30)

    asyncio.run(guarded())
