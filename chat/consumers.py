"""The browser's websocket: parse a frame, check who is asking, delegate, relay.

Protocol: docs/websocket.md. The work lives in chat.conversations and chat.generation;
this class only keeps what a socket needs: which conversation it watches and, while it
waits for a running generation's snapshot, the deltas that arrived meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from channels.sessions import InstanceSessionWrapper
from django.db import DatabaseError

from chat import conversations
from chat.batches import DatabaseBatch
from chat.conversations import SendRefused
from chat.events import conversation_group, events_send, user_group
from chat.generation import (
    generation_snapshot_request,
    generation_start,
    generation_stop,
    generation_sweep,
    upkeep_ensure,
)
from chat.models import Message

logger = logging.getLogger(__name__)

# How long to wait for a running generation to answer a snapshot request before
# falling back to the database (its process may have died).
SNAPSHOT_TIMEOUT = 2.0


class ChatConsumer(AsyncJsonWebsocketConsumer):
    async def __call__(self, scope, receive, send) -> None:
        """Channels' `AsyncConsumer.__call__`, waiting on its two sources more cheaply.

        Channels waits on the socket and the channel layer with `asyncio.wait`, and makes a
        new task per message; every relayed frame paid for both, and for two extra turns
        of the event loop. Here a task per source copies messages into one queue, and this
        task dispatches them one at a time, in arrival order, as Channels does: 16 µs of
        CPU per layer message against 21 µs (bench/dispatch.py). yiweb always has a
        channel layer. The in-memory layer puts this channel's messages straight into the
        queue (`deliver_to`, chat.layers): one turn of the loop per frame instead of two.
        """
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
        self.base_send = send
        # Frames skip the session middleware's send: it saves the session and sets its
        # cookie only on an HTTP response, yet consulted the lazy session for every frame,
        # 5–7 µs of CPU each (bench/dispatch.py).
        wrapper = getattr(send, "__self__", None)
        self.frame_send = wrapper.real_send if isinstance(wrapper, InstanceSessionWrapper) else send
        inbox: asyncio.Queue = asyncio.Queue()
        sources = [receive]
        deliver_to = getattr(self.channel_layer, "deliver_to", None)
        if deliver_to is not None:
            deliver_to(self.channel_name, inbox.put_nowait)  # the in-memory layer (chat.layers)
        else:
            sources.append(self.channel_receive)
        pumps = [asyncio.create_task(_pump(source, inbox)) for source in sources]
        try:
            while True:
                message = await inbox.get()
                if isinstance(message, BaseException):
                    raise message
                await self.dispatch(message)
        except StopConsumer:
            pass
        finally:
            # A handler that raised skips disconnect(): its snapshot timers end here too.
            for timer in getattr(self, "timers", ()):
                timer.cancel()
            if deliver_to is not None:
                self.channel_layer.deliver_stop(self.channel_name)
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def send_json(self, content: Any, close: bool = False) -> None:
        """Channels' `send_json`, through `frame_send`."""
        await self.frame_send({"type": "websocket.send", "text": json.dumps(content)})
        if close:
            await self.close(close)

    async def connect(self) -> None:
        self.user = self.scope.get("user")
        if self.user is None or not self.user.is_authenticated:
            await self.close()  # before accept: the handshake is refused with 403
            return
        self.conversation_id: int | None = None
        # message id -> deltas received while waiting for that message's snapshot
        self.awaiting: dict[int, list[dict[str, Any]]] = {}
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

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        try:
            return json.loads(text_data)
        except ValueError:
            return None

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        handler = {
            "subscribe": self.on_subscribe,
            "send": self.on_send,
            "stop": self.on_stop,
            "retry": self.on_retry,
            "continue": self.on_continue,
        }.get(kind)
        if handler is None:
            await self.send_error("bad_frame", "The page sent something the server did not understand. Reload the page.")
            return
        try:
            await handler(content)
        except SendRefused as refused:
            await self.send_error(refused.code, refused.message, client_id=content.get("client_id"))
        except DatabaseError:
            logger.exception("a %s from user %s could not be stored", kind, self.user.pk)
            await self.send_error(
                "not_saved", "The server could not save that just now. Try again in a moment.",
                client_id=content.get("client_id"),
            )

    async def send_error(self, code: str, message: str, *, client_id: Any = None) -> None:
        frame = {"type": "error", "code": code, "message": message}
        if isinstance(client_id, str):
            frame["client_id"] = client_id
        await self.send_json(frame)

    # --- browser → server --------------------------------------------------------------

    async def on_subscribe(self, content: dict[str, Any]) -> None:
        conversation_id = _int(content.get("conversation_id"))
        streaming = await _streaming_messages(self.user, conversation_id)
        await self.watch(conversation_id)
        await self.send_json({"type": "subscribed", "conversation_id": conversation_id})
        resume_id, last_seq = _int(content.get("message_id")), _int(content.get("last_seq")) or 0
        for message_id in streaming:
            await self.snapshot_ask(message_id, from_seq=last_seq if message_id == resume_id else 0)

    async def on_send(self, content: dict[str, Any]) -> None:
        text, model, system_prompt = conversations.send_validate(
            text=content.get("text"), model=content.get("model"), system_prompt=content.get("system_prompt", "")
        )
        params = conversations.params_validate(content)
        # Cut to its column's length here, once: the echo, the check and the row all use this.
        client_id = content.get("client_id")[:64] if isinstance(content.get("client_id"), str) else ""
        raw_id = content.get("conversation_id")
        conversation_id = _int(raw_id)
        if conversation_id is None and raw_id is not None:
            raise conversations.conversation_missing()  # not an id: never a new conversation
        send = conversations.Send(
            user=self.user,
            conversation_id=conversation_id,
            text=text,
            model=model,
            client_id=client_id,
            params=params,
            system_prompt=system_prompt,
        )
        exchange = await _exchange_send(send)
        if exchange is not None:
            await self.exchange_run(exchange)

    async def on_stop(self, content: dict[str, Any]) -> None:
        message_id = _int(content.get("message_id"))
        if await _message_streaming_owned(self.user, message_id):
            await generation_stop(message_id=message_id)

    async def on_retry(self, content: dict[str, Any]) -> None:
        exchange = await database_sync_to_async(conversations.answer_retry)(
            user=self.user, message_id=_int(content.get("message_id"))
        )
        await self.exchange_run(exchange)

    async def on_continue(self, content: dict[str, Any]) -> None:
        exchange = await database_sync_to_async(conversations.answer_continue)(
            user=self.user, message_id=_int(content.get("message_id"))
        )
        await self.exchange_run(exchange)

    async def exchange_run(self, exchange: conversations.Exchange) -> None:
        """Watch the conversation, tell every tab what was stored, then start the answer."""
        if exchange.conversation_id != self.conversation_id:
            await self.watch(exchange.conversation_id)
            await self.send_json({"type": "subscribed", "conversation_id": exchange.conversation_id})
        await events_send(exchange.events)
        generation_start(answer=exchange.answer, request=exchange.request)

    # --- helpers -----------------------------------------------------------------------

    async def watch(self, conversation_id: int) -> None:
        if self.conversation_id is not None:
            await self.channel_layer.group_discard(conversation_group(self.conversation_id), self.channel_name)
        self.awaiting.clear()
        self.conversation_id = conversation_id
        await self.channel_layer.group_add(conversation_group(conversation_id), self.channel_name)

    async def snapshot_ask(self, message_id: int, *, from_seq: int) -> None:
        """Join a running answer: deltas are held back until its snapshot arrives."""
        self.awaiting[message_id] = []
        await generation_snapshot_request(message_id=message_id, reply_channel=self.channel_name, from_seq=from_seq)
        timer = asyncio.create_task(self._snapshot_deadline(message_id))
        self.timers.add(timer)
        timer.add_done_callback(self.timers.discard)

    async def _snapshot_deadline(self, message_id: int) -> None:
        await asyncio.sleep(SNAPSHOT_TIMEOUT)
        await self.channel_layer.send(self.channel_name, {"type": "snapshot.timeout", "message_id": message_id})

    # --- channel layer → browser -------------------------------------------------------

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels hops into the one database thread (to close stale connections) before
        # every handler. Here every database call already runs in `database_sync_to_async`,
        # which closes stale connections itself, so the hop only makes each relayed delta
        # and each browser frame queue behind other sockets' writes: measured at 50
        # streams, it alone made the per-delta p99 3 s instead of 0.3 s.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def chat_frame(self, event: dict[str, Any]) -> None:
        frame = event["frame"]
        kind, message_id = frame["type"], frame.get("message_id")
        if kind == "delta" and message_id in self.awaiting:
            self.awaiting[message_id].append(frame)
            return
        if kind == "snapshot":
            held = self.awaiting.pop(message_id, None)
            if held is None:
                return  # a late or duplicate answer to a request already settled
            await self.send_json(frame)
            for delta in held:
                if delta["seq"] > frame["seq"]:
                    await self.send_json(delta)
            return
        if kind == "done":
            self.awaiting.pop(message_id, None)
        await self.send_json(frame)

    async def snapshot_timeout(self, event: dict[str, Any]) -> None:
        """No running generation answered: read what the database has instead."""
        message_id = event["message_id"]
        if message_id not in self.awaiting:
            return
        try:
            await generation_sweep()
        except DatabaseError:
            # It could not end a dead answer now; the next sweep will. The tab still gets
            # what is stored.
            logger.warning("sweep before a snapshot failed", exc_info=True)
        message = await _message_dict(self.user, message_id)
        held = self.awaiting.pop(message_id)
        if message is None:
            return
        if message["status"] != Message.Status.STREAMING:
            await self.send_json(conversations.done_event(message)[1])
            return
        await self.send_json(
            {"type": "snapshot", "message_id": message_id, "from_seq": 0, "seq": message["seq"], "text": message["content"]}
        )
        for delta in held:
            if delta["seq"] > message["seq"]:
                await self.send_json(delta)


# Sends that arrive together are stored together (chat.batches).
_exchange_send = DatabaseBatch(conversations.exchanges_send)


async def _pump(source, inbox: asyncio.Queue) -> None:
    """Copy messages from `source` (the socket, or the channel layer) into `inbox`; a
    failure goes in too, for the dispatching task to raise, as Channels would have."""
    try:
        while True:
            inbox.put_nowait(await source())
    except asyncio.CancelledError as error:
        if asyncio.current_task().cancelling():
            raise  # the consumer is ending: the pump with it
        inbox.put_nowait(error)  # the source itself was cancelled: the consumer must hear it
    except Exception as error:
        inbox.put_nowait(error)


def _int(value: Any) -> int | None:
    """A whole number sent as a number or as digits; None for anything else (2.5, true, "x")."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@database_sync_to_async
def _streaming_messages(user, conversation_id: int | None) -> list[int]:
    conversation = conversations.conversation_get(user=user, conversation_id=conversation_id)
    return list(
        Message.objects.filter(conversation=conversation, status=Message.Status.STREAMING).values_list("pk", flat=True)
    )


@database_sync_to_async
def _message_streaming_owned(user, message_id: int | None) -> bool:
    return Message.objects.filter(
        pk=message_id, conversation__user=user, status=Message.Status.STREAMING
    ).exists()


@database_sync_to_async
def _message_dict(user, message_id: int) -> dict[str, Any] | None:
    message = Message.objects.filter(pk=message_id, conversation__user=user).first()
    return conversations.message_to_dict(message) if message else None
