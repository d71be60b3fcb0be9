"""What this process is running: its generations, and what the upkeep keeps about them,
in one registry, so that tests can look in and start afresh (`running.reset()`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from chat.events import Event

if TYPE_CHECKING:
    from chat.relay import Generation


@dataclass
class Running:
    # Every generation running in this process, by assistant message id. Holding the
    # task here is what keeps it alive (asyncio keeps only weak references to tasks).
    generations: dict[int, Generation] = field(default_factory=dict)
    # Those of them whose answer has ended and only its storing is left: they keep no
    # share of the frame budget.
    ending: set[int] = field(default_factory=set)
    # The checkpoint-and-sweep loop (chat/upkeep.py).
    upkeep: asyncio.Task | None = None
    # Endings whose `done` frames the layer could not take, to send once it works.
    undelivered: list[Event] = field(default_factory=list)
    # Answers a sweep of this process found stale: message id -> (the heartbeat it had
    # then, when that was). See chat/upkeep.py `_stale_interrupt`.
    suspects: dict[int, tuple[datetime, float]] = field(default_factory=dict)

    def reset(self) -> None:
        """Forget everything (tests; a process never needs it)."""
        self.generations.clear()
        self.ending.clear()
        self.upkeep = None
        self.undelivered.clear()
        self.suspects.clear()


running = Running()
