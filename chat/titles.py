"""Titles: the first message's words at once (`title_from`); then, after a conversation's
first answer (finished, or stopped: chat/relay.py), one short non-streaming request asks
its model for a title, which replaces the first one unless the person has renamed it
meanwhile. Any failure keeps the first title, quietly: a title is not worth an error on
the page."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from chat.credentials import client_for
from chat.events import BroadcastFailed, events_send, user_group
from chat.history import conversation_updated_frame
from chat.models import Conversation
from chat.pacing import pacing_wait, request_tokens
from chat.upstream import Credential

logger = logging.getLogger(__name__)

TITLE_PROMPT = (
    "Write a title for this conversation: at most six words, in the language of the question, "
    "with no quotes and no full stop. Reply with the title alone."
)
TITLE_CHARS = 60
# Enough of the exchange to name it; a long answer adds nothing to its title.
EXCERPT_CHARS = 1500
# Background tasks are held here so they are not collected before they finish.
_pending: set[asyncio.Task] = set()


def title_improve_start(*, conversation_id: int, model: str, question: str, answer: str, credential: Credential) -> None:
    """Ask, with the conversation's own credential, for a better title."""
    task = asyncio.get_running_loop().create_task(
        _title_improve(conversation_id=conversation_id, model=settings.TITLE_MODEL or model, question=question,
                       answer=answer, credential=credential)
    )
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def _title_improve(*, conversation_id: int, model: str, question: str, answer: str, credential: Credential) -> None:
    exchange = f"Question: {question[:EXCERPT_CHARS]}"
    if answer:  # none when it was stopped before its first word
        exchange += f"\n\nAnswer: {answer[:EXCERPT_CHARS]}"
    body = {
        "model": model,
        "messages": [{"role": "system", "content": TITLE_PROMPT}, {"role": "user", "content": exchange}],
        "max_tokens": 24,
        "temperature": 0.3,
    }
    try:
        # A first answer regenerated, or continued after Stop, ends again: the title it
        # already brought is not asked for twice (each request counts against the key's tier).
        if not await _title_unimproved(conversation_id):
            return
        await pacing_wait(credential, request_tokens(body))  # it counts against the key's tier too
        title = title_clean(_reply_text(await client_for(credential).complete(body)))
        if not title:
            return
        events = await _title_store(conversation_id, title)
        if events:
            await events_send(events)
    except BroadcastFailed:
        pass  # stored; tabs see it on their next load
    except Exception as error:  # any failure keeps the first title
        logger.info("conversation %s keeps its first title: %s", conversation_id, error)


def _reply_text(reply: Any) -> str:
    """The text of a non-stream reply; the reference's vision replies lack `id` and
    `object`, so nothing but `choices[0].message.content` is relied on."""
    try:
        content = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return ""
    return content if isinstance(content, str) else ""


def title_clean(text: str) -> str:
    """One line, without the quotes, Markdown marks or full stop models like to add."""
    line = next((line for line in text.splitlines() if line.strip()), "").strip()
    line = line.removeprefix("Title:").strip().rstrip(".。")
    line = line.strip("#*_`\"'“”「」《》 ").rstrip(".。")
    return _cut(" ".join(line.split()))


def title_from(text: str, *, images: int = 0) -> str:
    """The title a conversation gets at once: its first message's words, on one line."""
    line = " ".join(text.split())
    if not line and images:
        return "Image" if images == 1 else f"{images} images"
    return _cut(line)


def _cut(line: str) -> str:
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


@database_sync_to_async
def _title_unimproved(conversation_id: int) -> bool:
    return Conversation.objects.filter(pk=conversation_id, title_source=Conversation.TitleSource.MESSAGE).exists()


@database_sync_to_async
def _title_store(conversation_id: int, title: str) -> list:
    """Set the title unless the person renamed the conversation meanwhile (or deleted it)."""
    updated = Conversation.objects.filter(pk=conversation_id, title_source=Conversation.TitleSource.MESSAGE).update(
        title=title, title_source=Conversation.TitleSource.MODEL
    )
    if not updated:
        return []
    conversation = Conversation.objects.get(pk=conversation_id)
    return [(user_group(conversation.user_id), conversation_updated_frame(conversation))]
