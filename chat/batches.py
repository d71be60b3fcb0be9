"""Database calls that arrive together go to the database together.

Channels runs every database call of a process in one thread, one call after another.
When many people press Enter at the same moment, storing their sends one by one queued
each behind the others: at 50 sends in the same instant (bench/relay.py) each write took
~5 ms while the answers already started kept the event loop busy (the two threads share
one GIL), and the 50th answer started ~275 ms late. Answers that end together queued
the same way and held up the last deltas of the answers still streaming.

A `DatabaseBatch` wraps a sync function that takes a list of items and returns one
outcome per item. A call that finds nothing in flight goes at once, alone; calls that
arrive while a batch is in the database thread wait for it and then go in one call:
one thread hop, and one transaction, for all of them.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from channels.db import database_sync_to_async

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


class _Queue(Generic[Item]):
    """One event loop's items waiting to be stored, and the task storing them."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Item, asyncio.Future]] = []
        self.storing: asyncio.Task | None = None


class DatabaseBatch(Generic[Item, Outcome]):
    def __init__(self, store: Callable[[list[Item]], list[Outcome | Exception]]):
        """`store(items)` runs in the database thread; an outcome that is an exception
        is raised to that item's caller, and so is an exception that fails the batch."""
        self._store = database_sync_to_async(store)
        # One queue per event loop: futures belong to the loop that made them (tests run several).
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue[Item]] = weakref.WeakKeyDictionary()

    async def __call__(self, item: Item) -> Outcome:
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _Queue()
        future = loop.create_future()
        queue.waiting.append((item, future))
        if queue.storing is None or queue.storing.done():
            queue.storing = loop.create_task(self._drain(queue))
        return await future

    async def _drain(self, queue: _Queue[Item]) -> None:
        while queue.waiting:
            # A caller cancelled while it waited (its socket closed) no longer wants its item stored.
            batch, queue.waiting = [(item, f) for item, f in queue.waiting if not f.done()], []
            if not batch:
                continue
            try:
                outcomes = await self._store([item for item, _ in batch])
            except Exception as error:  # the whole batch failed: every caller hears it
                outcomes = [error] * len(batch)
            for (_, future), outcome in zip(batch, outcomes):
                if future.done():  # the caller was cancelled while its item was being stored
                    continue
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
