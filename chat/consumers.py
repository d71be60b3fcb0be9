"""The browser's websocket: parse a frame, check who is asking, delegate, relay.

Protocol: docs/websocket.md. The work lives in chat.conversations, chat.reruns,
chat.organise and chat.generation, a frame's fields are checked in chat.input_checks, and
the loop that feeds this class its messages is chat.consumer_loop. This class only keeps
what a socket needs: which conversation it watches and, in a `SnapshotWaits`
(chat.catch_up), the running answers it waits for a snapshot of, with the deltas that
arrived meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import weakref
from typing import Any

from channels.db import database_sync_to_async
from django.db import DatabaseError
from django.utils.translation import gettext_noop

from chat import conversations, history, organise, reruns
from chat.accounts import CLOSE_SIGNED_OUT, user_signed_in
from chat.batches import DatabaseBatch
from chat.catch_up import SnapshotWaits
from chat.consumer_loop import InboxConsumer
from chat.conversations import Resent
from chat.exchanges import Exchange
from chat.input_checks import (
    BAD_FRAME,
    CLIENT_ID,
    frame_attachment_ids,
    frame_client_id,
    frame_constant_refuse,
    frame_holding,
    frame_ids,
    frame_int,
    frame_key_choice,
    frame_shown,
    params_validate,
    send_validate,
    system_prompt_validate,
    tools_validate,
)
from chat.refusals import SendRefused, conversation_missing, language_of_socket, sentence_in
from chat.sentences import frame_said
from chat.events import BroadcastFailed, conversation_group, events_send, user_group
from chat.generation import generation_ending_wait, generation_start, generation_stop
from chat.upkeep import upkeep_ensure
from chat.models import Message
from chat.outages import DATABASE_UNAVAILABLE, database_outage

logger = logging.getLogger(__name__)

# How long a send waits for an answer whose ending the database has not stored yet
# (the tabs were told `not_saved`) before it is refused as `busy`.
ENDING_WAIT = 10.0
# Seconds between checks, at a frame's start, that the socket's session still signs in.
SESSION_RECHECK_EVERY = 30.0
# The close code that tells the page to reconnect at once: this process is stopping. The
# protocol's own 1012 (service restart) is what it means, but a server may only send 1000
# or 3000-4999 (autobahn refuses the rest), so it is 1012 in the private range.
CLOSE_SERVICE_RESTART = 4012

# Every open socket of this process, to close them with CLOSE_SERVICE_RESTART on a stop.
_open_sockets: weakref.WeakSet[ChatConsumer] = weakref.WeakSet()


class ChatConsumer(InboxConsumer):
    def opened(self) -> None:
        _open_sockets.add(self)

    def closed(self) -> None:
        _open_sockets.discard(self)

    async def connect(self) -> None:
        self.user = self.scope.get("user")
        if self.user is None or not self.user.is_authenticated:
            await self.close()  # before accept: the handshake is refused with 403
            return
        session = self.scope.get("session")
        self.session_key = session.session_key if session is not None else None
        self.session_checked_at = time.monotonic()  # just checked, by the handshake
        self.language = language_of_socket(self.scope)  # what the page's refusals are said in
        self.conversation_id: int | None = None
        self.snapshots = SnapshotWaits(self)  # answers joined mid-way (chat/catch_up.py)
        self.timers: set[asyncio.Task] = set()
        await self.channel_layer.group_add(user_group(self.user.pk), self.channel_name)
        await self.accept()
        upkeep_ensure()

    async def disconnect(self, code: int) -> None:
        # Snapshot timers are cancelled when the consumer ends (__call__).
        if getattr(self, "user", None) is not None and self.user.is_authenticated:
            await self.channel_layer.group_discard(user_group(self.user.pk), self.channel_name)
        if getattr(self, "conversation_id", None) is not None:
            await self.channel_layer.group_discard(conversation_group(self.conversation_id), self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Every frame, empty and binary ones too: anything but a JSON object is answered
        `bad_frame` and the socket stays (Channels raises on an empty frame)."""
        await self.receive_json(await self.decode_json(text_data) if text_data else None, **kwargs)

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        try:
            return json.loads(text_data, parse_constant=frame_constant_refuse)
        except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
            return None

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not await self.still_signed_in():
            await self.close(CLOSE_SIGNED_OUT)
            return
        kind = content.get("type") if isinstance(content, dict) else None
        handler = None if not isinstance(kind, str) else {
            "subscribe": self.on_subscribe,
            "send": self.on_send,
            "edit": self.on_send,
            "branch": self.on_branch,
            "change_conversations": self.on_change_conversations,
            "delete_conversations": self.on_delete_conversations,
            "stop": self.on_stop,
            "retry": self.on_retry,
            "continue": self.on_continue,
        }.get(kind)
        if handler is None:
            await self.send_error(
                "bad_frame", BAD_FRAME
            )
            return
        try:
            await handler(content)
        except SendRefused as refused:
            await self.send_error(refused.code, refused.template, client_id=content.get("client_id"),
                                  params=refused.params)
        except DatabaseError as error:
            if isinstance(error, DATABASE_UNAVAILABLE):
                database_outage.failed(error)  # one line per outage, not a traceback per frame
            else:
                logger.exception("a %s from user %s could not be stored", kind, self.user.pk)
            await self.send_error(
                "not_saved", gettext_noop("The server could not save that just now. Try again in a moment."),
                client_id=content.get("client_id"),
            )
        else:
            database_outage.worked()

    async def still_signed_in(self) -> bool:
        """Whether the session that opened the socket still signs in an active account.
        Signing out and deactivation close the socket at once (`session_ended`); this
        catches the rest (an expired or cleared session) within SESSION_RECHECK_EVERY, at
        a frame's start: checking at every frame added 4-6 ms to a send's first token."""
        now = time.monotonic()
        if now - self.session_checked_at < SESSION_RECHECK_EVERY:
            return True
        try:
            signed_in = await _signed_in(session_key=self.session_key, user_id=self.user.pk)
        except DatabaseError as error:
            database_outage.failed(error)
            return True  # unknown for now: the frame's own query will fail as not_saved
        self.session_checked_at = now
        return signed_in

    async def send_json(self, content: Any, close: bool = False) -> None:
        """Every frame to the page: the notes and errors of the messages it carries said in
        the page's language (frames from the layer are built once for every tab)."""
        await super().send_json(frame_said(content, self.language), close)

    async def send_error(self, code: str, message: str, *, client_id: Any = None,
                         params: dict[str, Any] | None = None) -> None:
        """An `error` frame; its sentence in the page's language (chat/refusals.py)."""
        frame = {"type": "error", "code": code, "message": sentence_in(self.language, message, params)}
        if isinstance(client_id, str) and CLIENT_ID.fullmatch(client_id[:64]):
            frame["client_id"] = client_id[:64]  # echoed only as it would be stored
        await self.send_json(frame)

    # --- browser → server --------------------------------------------------------------

    async def on_subscribe(self, content: dict[str, Any]) -> None:
        """Watch a conversation and catch up from the database (docs/websocket.md)."""
        holding = frame_holding(content)
        catch_up = await _catch_up(
            user=self.user,
            conversation_id=frame_int(content.get("conversation_id")),
            held=list(holding),
            after_id=frame_int(content.get("after_id")),
            shown=frame_shown(content.get("shown")),
        )
        await self.subscribed(catch_up.conversation["id"])
        await self.snapshots.catch_up_send(catch_up, holding)

    async def on_send(self, content: dict[str, Any]) -> None:
        attachment_ids = frame_attachment_ids(content.get("attachment_ids"))
        text, model, system_prompt = send_validate(
            text=content.get("text"), model=content.get("model"), system_prompt=content.get("system_prompt"),
            images=len(attachment_ids),
        )
        params = params_validate(content, model=model)
        client_id = frame_client_id(content.get("client_id"))
        raw_id = content.get("conversation_id")
        conversation_id = frame_int(raw_id)
        if conversation_id is None and raw_id is not None:
            raise conversation_missing()  # not an id: never a new conversation
        edit_of = None
        if content["type"] == "edit":  # a new version of an earlier question, `message_id`
            edit_of = frame_int(content.get("message_id"))
            if edit_of is None or conversation_id is None:
                raise SendRefused("not_found", gettext_noop("That message does not exist or is not yours."))
        key_id = frame_key_choice(content.get("key_id"))
        tools, tool_choice = tools_validate(content.get("tools"), content.get("tool_choice"))
        send = conversations.Send(
            user=self.user,
            conversation_id=conversation_id,
            key_id=key_id,
            tools=tools,
            tool_choice=tool_choice,
            text=text,
            model=model,
            client_id=client_id,
            params=params,
            system_prompt=system_prompt,
            attachment_ids=attachment_ids,
            edit_of=edit_of,
        )
        try:
            outcome = await _exchange_send(send)
        except SendRefused as refused:
            # An answer that has ended but whose ending is not stored yet (its tabs were
            # told `not_saved`) is waited for: to the person it is over.
            if refused.code != "busy" or not await generation_ending_wait(
                message_id=refused.message_id, timeout=ENDING_WAIT
            ):
                raise
            outcome = await _exchange_send(send)
        if isinstance(outcome, Resent):
            await self.resend_answer(outcome, client_id)
        elif outcome is not None:
            await self.exchange_run(outcome)

    async def on_branch(self, content: dict[str, Any]) -> None:
        """Show another version of a message (`message_id`), and the branch below it."""
        events = await database_sync_to_async(organise.branch_switch)(
            user=self.user, message_id=frame_int(content.get("message_id"))
        )
        await self.events_tell(events)

    async def on_change_conversations(self, content: dict[str, Any]) -> None:
        """Rename (`title`), pin (`pinned`) or archive (`archived`) `conversation_ids`."""
        events = await database_sync_to_async(organise.conversations_change)(
            user=self.user, conversation_ids=frame_ids(content.get("conversation_ids"), limit=organise.CHANGE_MAX), title=content.get("title"),
            pinned=content.get("pinned"), archived=content.get("archived"),
        )
        await self.events_tell(events)

    async def on_delete_conversations(self, content: dict[str, Any]) -> None:
        """Delete `conversation_ids`, their running answers stopped first."""
        ids = frame_ids(content.get("conversation_ids"), limit=organise.CHANGE_MAX)
        for message_id in await database_sync_to_async(organise.conversations_streaming)(
            user=self.user, conversation_ids=ids
        ):
            await generation_stop(message_id=message_id)
        stopped, events = await database_sync_to_async(organise.conversations_delete)(
            user=self.user, conversation_ids=ids
        )
        for message_id in stopped:  # one that started meanwhile
            await generation_stop(message_id=message_id)
        await self.events_tell(events)

    async def events_tell(self, events: list) -> None:
        """Broadcast; if the layer fails, this tab at least hears it (the others catch up)."""
        try:
            await events_send(events)
        except BroadcastFailed:
            for _, frame in events:
                await self.send_json(frame)

    async def on_stop(self, content: dict[str, Any]) -> None:
        message_id = frame_int(content.get("message_id"))
        if await _message_streaming_owned(self.user, message_id):
            await generation_stop(message_id=message_id)

    async def on_retry(self, content: dict[str, Any]) -> None:
        # A retry may carry the conversation's settings as a send does (the page's Settings
        # changed since the last send): they apply to it and stay with the conversation.
        system_prompt = content.get("system_prompt")
        exchange = await database_sync_to_async(reruns.answer_retry)(
            user=self.user, message_id=frame_int(content.get("message_id")), params=params_validate(content),
            system_prompt=None if system_prompt is None else system_prompt_validate(system_prompt),
        )
        await self.exchange_run(exchange)

    async def on_continue(self, content: dict[str, Any]) -> None:
        exchange = await database_sync_to_async(reruns.answer_continue)(
            user=self.user, message_id=frame_int(content.get("message_id"))
        )
        await self.exchange_run(exchange)

    async def exchange_run(self, exchange: Exchange) -> None:
        """Start the answer, and tell every tab what was stored. The answer starts whatever
        the broadcast does; if the layer fails, this tab gets its own frames directly, and
        the others catch up when they next subscribe."""
        try:
            if exchange.conversation_id != self.conversation_id:
                await self.subscribed(exchange.conversation_id)
            await events_send(exchange.events)
        except BroadcastFailed:
            for _, frame in exchange.events:  # this tab is in both the user's and the conversation's group
                await self.send_json(frame)
        finally:
            generation_start(answer=exchange.answer, plan=exchange.plan)

    async def resend_answer(self, resent: Resent, client_id: str) -> None:
        """A send whose client_id is stored already: tell the tab how that send stands."""
        catch_up = await _catch_up(
            user=self.user, conversation_id=resent.conversation_id, held=[], after_id=resent.question_id - 1
        )
        await self.send_json({"type": "conversation", "conversation": catch_up.conversation, "client_id": client_id})
        await self.subscribed(resent.conversation_id)
        await self.snapshots.catch_up_send(catch_up, {})

    # --- helpers -----------------------------------------------------------------------

    async def subscribed(self, conversation_id: int) -> None:
        await self.watch(conversation_id)
        await self.send_json({"type": "subscribed", "conversation_id": conversation_id})

    async def watch(self, conversation_id: int) -> None:
        # Joining again is cheap, and puts back a membership a Redis outage may have lost.
        if self.conversation_id is not None and self.conversation_id != conversation_id:
            await self.channel_layer.group_discard(conversation_group(self.conversation_id), self.channel_name)
            self.snapshots.awaiting.clear()
        self.conversation_id = conversation_id
        await self.channel_layer.group_add(conversation_group(conversation_id), self.channel_name)

    # --- channel layer → browser -------------------------------------------------------

    async def chat_frame(self, event: dict[str, Any]) -> None:
        frame = event["frame"]
        kind, message_id = frame["type"], frame.get("message_id")
        if kind == "delta" and message_id in self.snapshots.awaiting:
            self.snapshots.awaiting[message_id].append(frame)
            return
        if kind == "snapshot":
            held = self.snapshots.awaiting.pop(message_id, None)
            if held is None:
                return  # a late or duplicate answer to a request already settled
            await self.send_json(frame)
            for delta in held:
                if delta["seq"] > frame["seq"]:
                    await self.send_json(delta)
            return
        if kind == "done":
            self.snapshots.awaiting.pop(message_id, None)
        await self.send_json(frame)

    async def session_ended(self, event: dict[str, Any]) -> None:
        """Signed out (this session, or every session of a deactivated account): close."""
        if event.get("session_key") in (None, self.session_key):
            await self.close(CLOSE_SIGNED_OUT)

    async def snapshot_timeout(self, event: dict[str, Any]) -> None:
        """No running generation answered: read what the database has instead."""
        await self.snapshots.snapshot_timeout(event)


async def sockets_close(code: int = CLOSE_SERVICE_RESTART) -> None:
    """Close every websocket of this process with `code` (the process is stopping)."""
    for consumer in list(_open_sockets):
        with contextlib.suppress(Exception):
            await consumer.close(code)


# Sends that arrive together are stored together (chat.batches).
_exchange_send = DatabaseBatch(conversations.exchanges_send)


_catch_up = database_sync_to_async(history.conversation_catch_up)
_signed_in = database_sync_to_async(user_signed_in)


@database_sync_to_async
def _message_streaming_owned(user, message_id: int | None) -> bool:
    return Message.objects.filter(
        pk=message_id, conversation__user=user, status=Message.Status.STREAMING
    ).exists()

