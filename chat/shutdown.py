"""Stopping a process: its running answers end `interrupted` with all their text, stored
and told to their tabs (yiweb/server.py `stopping` calls this before the reactor stops)."""

from __future__ import annotations

import asyncio
import logging

from chat.running import running

logger = logging.getLogger(__name__)

# How long a stopping process waits for its answers' endings to be stored.
SHUTDOWN_TIMEOUT = 5.0


async def generations_interrupt(timeout: float = SHUTDOWN_TIMEOUT) -> int:
    """End this process's running answers before it stops: each ends `interrupted` with
    all the text it had, stored and told to its tabs, instead of being left streaming
    for another process's sweep to end with its last checkpoint half a minute later.
    Answers already ending are not cut short, only waited for. Returns how many were
    still not stored after `timeout` (left to the sweep)."""
    tasks = []
    for message_id, generation in running.generations.items():
        if generation.task is None:
            continue
        if message_id not in running.ending:
            generation.task.cancel()
        tasks.append(generation.task)
    if not tasks:
        return 0
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    if pending:
        logger.error("stopping: %s answers not stored in %s s, left to the sweep", len(pending), timeout)
    return len(pending)
