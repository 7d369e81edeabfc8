"""File I/O that may block, run beside the event loop instead of on it.

A dedicated pool (not asyncio's default one) so that 32 commands in flight
on several sessions can each have a read or write under way; the loop only
waits for them. An awaited call that is cancelled (ABORT TASK, a reset, a
dropped connection) still waits for its thread to finish before it lets the
caller go on: a write must not land after the command that overlapped it
was allowed to start (see :mod:`iscsi_helper.lab.wire.ordering`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

IO_THREADS = 16
_pool: ThreadPoolExecutor | None = None


def pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="wire-io")
    return _pool


async def run_blocking(fn: Callable[..., T], *args: object) -> T:
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(pool(), functools.partial(fn, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        # Let the thread finish so nothing it does outlives the command.
        while not future.done():
            # wait() neither raises the thread's failure nor cancels the thread.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({future})
        if not future.cancelled():
            future.exception()  # retrieved: a cancelled command's outcome is dropped
        raise
