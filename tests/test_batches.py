"""DatabaseBatch: calls that arrive while a batch is in the database thread go next, together."""

from __future__ import annotations

import asyncio
import threading

import pytest

from chat.batches import DatabaseBatch

# The stores here do not touch the database, but the batch's thread tidies its connections.
pytestmark = pytest.mark.django_db(transaction=True)


class Store:
    """A sync store that records the batches it was given and can be held mid-batch."""

    def __init__(self):
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, items: list[int]) -> list[int | Exception]:
        self.batches.append(list(items))
        self.release.wait(5)
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


async def test_a_lone_call_goes_at_once_and_alone():
    store = Store()
    batch = DatabaseBatch(store)
    assert await batch(4) == 40
    assert await batch(6) == 60
    assert store.batches == [[4], [6]]


async def test_calls_arriving_during_a_batch_go_together_next_each_with_its_own_outcome():
    store = Store()
    batch = DatabaseBatch(store)
    store.release.clear()
    first = asyncio.create_task(batch(0))
    while not store.batches:  # the first batch is in the database thread, held there
        await asyncio.sleep(0.001)
    later = [asyncio.create_task(batch(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0.01)
    store.release.set()

    assert await first == 0
    assert await later[0] == 20 and await later[2] == 40
    with pytest.raises(ValueError, match="odd 3"):  # only its own caller hears of a refused item
        await later[1]
    assert store.batches == [[0], [2, 3, 4]]


async def test_a_failed_batch_raises_to_every_caller_and_the_next_call_still_goes():
    calls = []

    def store(items):
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        return items

    batch = DatabaseBatch(store)
    results = await asyncio.gather(batch(1), batch(2), return_exceptions=True)
    assert [str(r) for r in results] == ["database is locked", "database is locked"]
    assert await batch(3) == 3


async def test_a_caller_cancelled_while_waiting_is_not_stored_and_does_not_stop_the_others():
    store = Store()
    batch = DatabaseBatch(store)
    store.release.clear()
    first = asyncio.create_task(batch(0))
    while not store.batches:
        await asyncio.sleep(0.001)
    gone, staying = asyncio.create_task(batch(2)), asyncio.create_task(batch(4))
    await asyncio.sleep(0.01)
    gone.cancel()
    store.release.set()
    assert (await first, await staying) == (0, 40)
    assert gone.cancelled()
    assert store.batches == [[0], [4]]  # what a cancelled caller left waiting is not stored
