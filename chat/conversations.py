"""Conversations and messages: the writes that store sends and rerun answers (the reads
are chat/history.py; what a send must be, chat/input_checks.py; how answers end,
chat/endings.py; the list's own changes, chat/organise.py).

Plain sync functions (the ORM), called from views directly and from async code through
`database_sync_to_async`. A write that browsers must hear about returns its frames as
(group, frame) events; the async caller broadcasts them once the transaction has
committed (and, for a send, once the sending socket has joined the conversation's group).
Broadcasting from inside the database thread would hold that one thread while the
event loop delivers, and every socket's delta would queue behind it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Case, Count, Value, When, prefetch_related_objects
from django.utils import timezone
from django.utils.translation import gettext_noop

from chat.catalog import model_for_images
from chat.credentials import credentials_for
from chat.input_checks import max_tokens_bound, params_refusal
from chat.upstream import Credential
from chat.events import Event, conversation_group, user_group
from chat.history import (
    IMAGES,
    branch_leaf,
    conversation_get,
    conversation_to_dict,
    conversation_updated_frame,
    message_images,
    message_thread,
    message_to_dict,
    message_versions,
)
from chat.models import Attachment, Conversation, Message
from chat.outages import DATABASE_UNAVAILABLE, database_outage
from chat.refusals import SendRefused
from chat.requests import RequestPlan, RequestTooLarge, request_plan
from chat.titles import title_from

logger = logging.getLogger(__name__)

@dataclass
class Exchange:
    """A stored send (or retry, or continue): the answer to generate, the plan of its
    upstream request (its images are read when the generation starts), and the frames to
    broadcast once the caller has committed and joined the group."""

    conversation_id: int
    answer: Message
    plan: RequestPlan
    events: list[Event] = field(default_factory=list)


@dataclass(frozen=True)
class Send:
    """One `send` frame, checked (send_validate, params_validate), not yet stored.
    `client_id` is at most 64 characters (its column's length): the consumer cuts it."""

    user: AbstractBaseUser
    conversation_id: int | None
    text: str
    model: str
    client_id: str = ""
    # The settings the send names (params_validate: None for a parameter set back to the
    # API's default; system_prompt None: left out): the conversation keeps them from now on.
    params: dict[str, Any] = field(default_factory=dict)
    system_prompt: str | None = None
    attachment_ids: tuple[int, ...] = ()  # the sender's unsent uploads, in order
    # The API key the conversation uses from now on (chat/credentials.py); None: the
    # user's default, else the server's.
    key_id: int | None = None
    # Tools on or off, and the tool_choice, from now on; None: as the conversation has them.
    tools: bool | None = None
    tool_choice: Any = None
    # An earlier question this one is a new version of: it goes beside it (a branch),
    # with its images, and the conversation shows the new branch.
    edit_of: int | None = None


@dataclass(frozen=True)
class Resent:
    """A send whose `client_id` was already stored: its question, to answer the tab with
    that send's real state instead of running it again."""

    conversation_id: int
    question_id: int


# What storing one send gave: its exchange, the earlier send a repeated `client_id` names,
# None for the same `client_id` twice in one batch, the refusal to tell the page, or the
# error that stopped it (raised to its caller only).
SendOutcome = Exchange | Resent | SendRefused | Exception | None


def exchanges_send(sends: list[Send]) -> list[SendOutcome]:
    """Store sends that arrived together, in one transaction; one outcome per send, in order.

    A send stores a user message and the empty answer a generation will fill.
    `conversation_id` None starts a new conversation titled after the message; those are
    stored with one INSERT per table for the whole batch, since a burst of people pressing
    Enter at once otherwise queues one send at a time in the one database thread. A
    `client_id` this user already stored gives that send (`Resent`: a resend after a
    reconnect). A send to a conversation whose answer is still streaming is refused: two
    generations writing one thread would interleave.
    """
    outcomes: list[SendOutcome] = [None] * len(sends)
    with transaction.atomic():
        stored = _client_ids_stored(sends)
        usage = UserUsage.read({send.user.pk for send in sends})
        taken: set[tuple[int, str]] = set()  # client_ids stored by this batch
        new: list[int] = []
        for i, send in enumerate(sends):
            key = (send.user.pk, send.client_id)
            if send.client_id and (key in stored or key in taken):
                outcomes[i] = stored.get(key)
                continue
            if refused := usage.refusal(send.user.pk, sending=True):
                outcomes[i] = refused
                continue
            if send.conversation_id is None:
                taken.add(key)
                new.append(i)
                usage.count(send.user.pk, sending=True)
                continue
            outcomes[i] = _alone(_exchange_append, send)
            if isinstance(outcomes[i], Exchange):
                taken.add(key)
                usage.count(send.user.pk, sending=True)
        if new:
            try:
                with transaction.atomic():
                    started = _conversations_start([sends[i] for i in new])
            except Exception:
                # One send that cannot be stored must not fail the others: one by one, then.
                started = [_alone(lambda send: _conversations_start([send])[0], sends[i]) for i in new]
            for i, outcome in zip(new, started):
                outcomes[i] = outcome
    return outcomes


@dataclass
class UserUsage:
    """How much each user has going on now: answers streaming and messages sent in the
    last minute, read in two queries for a whole batch, to refuse what is over the limits
    (USER_ANSWERS_AT_ONCE, USER_SENDS_PER_MINUTE). Without them one socket started 1,000
    conversations in 2 s, 521 upstream streams at once on the server's key."""

    running: dict[int, int]
    sent: dict[int, int]

    @classmethod
    def read(cls, user_ids: set[int]) -> UserUsage:
        streaming = Message.objects.filter(status=Message.Status.STREAMING, conversation__user__in=user_ids)
        recent = Message.objects.filter(
            role=Message.Role.USER, conversation__user__in=user_ids, created_at__gte=timezone.now() - timedelta(minutes=1)
        )
        return cls(
            running=dict(streaming.values("conversation__user").annotate(n=Count("id")).values_list("conversation__user", "n")),
            sent=dict(recent.values("conversation__user").annotate(n=Count("id")).values_list("conversation__user", "n")),
        )

    def refusal(self, user_id: int, *, sending: bool) -> SendRefused | None:
        limit = settings.USER_ANSWERS_AT_ONCE
        if self.running.get(user_id, 0) >= limit:
            return SendRefused(
                "too_many_answers",
                gettext_noop("You already have %(limit)s answers being written (the limit). Wait for one to finish, "
                             "or stop one."),
                params={"limit": limit},
            )
        limit = settings.USER_SENDS_PER_MINUTE
        if sending and self.sent.get(user_id, 0) >= limit:
            return SendRefused(
                "too_many_sends",
                gettext_noop("You have sent %(limit)s messages in the last minute (the limit). Wait a moment, then "
                             "send again."),
                params={"limit": limit},
            )
        return None

    def count(self, user_id: int, *, sending: bool) -> None:
        self.running[user_id] = self.running.get(user_id, 0) + 1
        if sending:
            self.sent[user_id] = self.sent.get(user_id, 0) + 1


def _alone(store: Callable[[Send], Exchange], send: Send) -> SendOutcome:
    """`store(send)` in a savepoint of its own: its refusal or its error is its outcome
    (raised to its caller only), and the other sends of the batch go on."""
    try:
        with transaction.atomic():
            return store(send)
    except SendRefused as refused:
        return refused
    except IntegrityError:
        return None  # the same client_id, sent twice at the same moment from two processes
    except DATABASE_UNAVAILABLE as error:
        database_outage.failed(error)  # one line per outage, not a traceback per send
        return error
    except Exception as error:
        logger.exception("a send of user %s could not be stored", send.user.pk)
        return error


def _client_ids_stored(sends: list[Send]) -> dict[tuple[int, str], Resent]:
    """The sends already stored among `sends`, by (user id, client_id), in one query."""
    client_ids = {send.client_id for send in sends if send.client_id}
    if not client_ids:
        return {}
    stored = Message.objects.filter(
        conversation__user__in={send.user.pk for send in sends}, client_id__in=client_ids
    ).values_list("conversation__user_id", "client_id", "conversation_id", "pk")
    return {(user_id, client_id): Resent(conversation_id, pk) for user_id, client_id, conversation_id, pk in stored}


def _conversations_start(sends: list[Send]) -> list[Exchange]:
    """New conversations, their questions and their empty answers: three INSERTs for all
    (and one UPDATE per send that attaches images)."""
    credentials = credentials_for([(send.user.pk, send.key_id) for send in sends])
    conversations = Conversation.objects.bulk_create(
        [
            Conversation(
                user=s.user, model=s.model, title=title_from(s.text, images=len(s.attachment_ids)),
                system_prompt=s.system_prompt or "", params=params_merged({}, s.params), api_key_id=s.key_id,
                tools=bool(s.tools),
                tool_choice=s.tool_choice if s.tool_choice is not None else "auto",
            )
            for s in sends
        ]
    )
    questions = Message.objects.bulk_create(
        [
            Message(conversation=c, role=Message.Role.USER, content=s.text, client_id=s.client_id)
            for s, c in zip(sends, conversations)
        ]
    )
    for send, question in zip(sends, questions):
        _attachments_bind(send, question)
    prefetch_related_objects(questions, IMAGES)  # for the frames and the requests
    answers, plans = [], []
    for send, conversation, question, credential in zip(sends, conversations, questions, credentials):
        answer, plan = _answer_planned(
            conversation=conversation, thread=[question], model=send.model, params=conversation.params,
            credential=credential,
        )
        answers.append(answer)
        plans.append(plan)
    Message.objects.bulk_create(answers)
    exchanges = []
    for send, conversation, question, answer, plan in zip(sends, conversations, questions, answers, plans):
        conversation.has_images = bool(send.attachment_ids)  # the list's mark, in every tab
        frame = {"type": "conversation", "conversation": conversation_to_dict(conversation)}
        events = [(user_group(send.user.pk), {**frame, "client_id": send.client_id} if send.client_id else frame)]
        events += _message_events(conversation, question, answer)
        exchanges.append(Exchange(conversation.pk, answer, plan, events))
    return exchanges


def _exchange_append(send: Send) -> Exchange:
    """A question and its empty answer at the end of the branch the conversation shows,
    or, for an edit, beside the question edited."""
    conversation = conversation_get(user=send.user, conversation_id=send.conversation_id, lock=True)
    streaming = Message.objects.filter(conversation=conversation, status=Message.Status.STREAMING).first()
    if streaming is not None:
        raise conversation_busy(streaming.pk)
    [credential] = credentials_for([(send.user.pk, send.key_id)])
    conversation.api_key_id = send.key_id
    if send.tools is not None:
        conversation.tools = send.tools
    if send.tool_choice is not None:
        conversation.tool_choice = send.tool_choice
    settings_before = (conversation.params, conversation.system_prompt)
    conversation.params = params_merged(conversation.params, send.params)
    if send.system_prompt is not None:
        conversation.system_prompt = send.system_prompt
    settings_changed = settings_before != (conversation.params, conversation.system_prompt)
    edited = None
    if send.edit_of is not None:
        edited = Message.objects.filter(pk=send.edit_of, conversation=conversation, role=Message.Role.USER).first()
        if edited is None:
            raise SendRefused("not_found", gettext_noop("That message does not exist or is not yours."))
        thread = message_thread(conversation=conversation, leaf=edited)[:-1]
    else:
        thread = message_thread(conversation=conversation)
    question = Message.objects.create(
        conversation=conversation,
        parent=thread[-1] if thread else None,
        role=Message.Role.USER,
        content=send.text,
        client_id=send.client_id,
    )
    _attachments_bind(send, question)
    if edited is not None:
        _attachments_copy(edited, question)
    prefetch_related_objects([question], IMAGES)  # read once, for the frame and the request
    answer, plan = _answer_planned(
        conversation=conversation, thread=[*thread, question], model=send.model, params=conversation.params,
        credential=credential,
    )
    answer.save()
    conversation.model = send.model
    conversation.leaf = answer
    conversation.save(update_fields=[
        "model", "api_key", "tools", "tool_choice", "params", "system_prompt", "leaf", "updated_at",
    ])
    # Every tab of the person shows the conversation's settings: they hear of a change (as
    # saved: with the new date, so that no list moves it back).
    told = [(user_group(send.user.pk), conversation_updated_frame(conversation))] if settings_changed else []
    if edited is None:
        return Exchange(conversation.pk, answer, plan, told + _message_events(conversation, question, answer))
    question.sibling_ids = message_versions(question)
    return Exchange(conversation.pk, answer, plan, told + [thread_event(conversation, [*thread, question, answer])])


def params_merged(params: dict[str, Any], named: dict[str, Any]) -> dict[str, Any]:
    """A conversation's parameters after a send that names some (`params_validate`): each
    named replaces its own, None takes it away (the API's default), the rest stay."""
    merged = {**params, **named}
    return {name: value for name, value in merged.items() if value is not None}


def _attachments_copy(source: Message, question: Message) -> None:
    """The images of an edited question, on its new version too (the files are shared)."""
    Attachment.objects.bulk_create([
        Attachment(
            user_id=a.user_id, message=question, file=a.file.name, thumbnail=a.thumbnail.name, digest=a.digest,
            original_format=a.original_format, media_type=a.media_type, width=a.width, height=a.height,
            size_bytes=a.size_bytes, original_name=a.original_name, position=a.position,
        )
        for a in message_images(source)
    ])


def thread_event(conversation: Conversation, thread: list[Message]) -> Event:
    """The whole thread the conversation shows now, for every tab: it replaces theirs."""
    return (
        conversation_group(conversation.pk),
        {"type": "thread", "conversation_id": conversation.pk, "messages": [message_to_dict(m) for m in thread]},
    )


def branch_switch(*, user: AbstractBaseUser, message_id: int | None) -> list[Event]:
    """Show the branch through `message_id` (a version of a question or an answer), down
    to its newest message; every tab of the conversation gets the thread."""
    message = Message.objects.filter(pk=message_id, conversation__user=user).select_related("conversation").first()
    if message is None:
        raise SendRefused("not_found", "That message does not exist or is not yours.")
    conversation = message.conversation
    leaf = branch_leaf(conversation=conversation, message_id=message.pk)
    Conversation.objects.filter(pk=conversation.pk).update(leaf=leaf)  # not a change of date
    conversation.leaf_id = leaf.pk
    return [thread_event(conversation, message_thread(conversation=conversation))]


def _attachments_bind(send: Send, question: Message) -> None:
    """Give the send's uploads to its question: only the sender's own, not sent before."""
    if not send.attachment_ids:
        return
    bound = Attachment.objects.filter(pk__in=send.attachment_ids, user=send.user, message__isnull=True).update(
        message=question,
        position=Case(*[When(pk=pk, then=Value(place)) for place, pk in enumerate(send.attachment_ids)]),
    )
    if bound != len(send.attachment_ids):
        raise SendRefused(
            "attachment_not_found",
            "An image of this message is no longer there (it was removed or sent already). "
            "Remove it, attach it again and send.",
        )


def _answer_planned(
    *, conversation: Conversation, thread: list[Message], model: str, params: dict, credential: Credential,
    parent_id: int | None = None,
) -> tuple[Message, RequestPlan]:
    """The empty answer to the end of `thread` (not saved yet), on a model that sees the
    thread's images, and the plan of its request; raises SendRefused when it cannot be sent."""
    notes = []
    if any(m.pk and m.role == Message.Role.USER and message_images(m) for m in thread):
        vision = model_for_images(model)
        if vision is None:
            raise SendRefused(
                "model_takes_no_images", f"{model} does not take images. Pick a model that does, or remove the images."
            )
        if vision != model:
            notes.append(f"{model} does not take images, so {vision} answered.")
            model = vision
    if params.get("max_tokens", 0) > max_tokens_bound(model):  # a smaller window than the one picked
        raise params_refusal("max_tokens", 1, max_tokens_bound(model), model=model)
    answer = _answer_unsaved(
        conversation=conversation, parent_id=parent_id if parent_id is not None else thread[-1].pk, model=model,
        params=params,
    )
    plan = _plan(conversation=conversation, thread=thread, answer=answer, credential=credential)
    answer.notes = notes + plan.notes
    return answer, plan


def _plan(*, conversation: Conversation, thread: list[Message], answer: Message, credential: Credential) -> RequestPlan:
    """The answer's request, and who it is made as: the key that pays is the answer's."""
    try:
        plan = request_plan(conversation=conversation, thread=thread, answer=answer)
    except RequestTooLarge as error:
        raise SendRefused("images_do_not_fit", str(error)) from None
    plan.credential = credential
    answer.api_key_id = credential.key_id
    return plan


def _answer_unsaved(*, conversation: Conversation, parent_id: int | None, model: str, params: dict) -> Message:
    """The empty answer a generation will fill, streaming from now; not saved yet."""
    return Message(
        conversation=conversation,
        parent_id=parent_id,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        model=model,
        params=params,
        heartbeat_at=timezone.now(),
        run_id=uuid.uuid4().hex,
    )


def _message_events(conversation: Conversation, question: Message, answer: Message) -> list[Event]:
    group = conversation_group(conversation.pk)
    return [
        (group, {"type": "message", "message": message_to_dict(question)}),
        (group, {"type": "message", "message": message_to_dict(answer)}),
    ]


def _answer_for_rerun(*, user: AbstractBaseUser, message_id: int | None) -> Message:
    """The user's ended answer `message_id`, locked, in a conversation with nothing streaming."""
    answer = (
        Message.objects.select_for_update()
        .select_related("conversation")
        .filter(pk=message_id, conversation__user=user, role=Message.Role.ASSISTANT)
        .first()
    )
    if answer is None:
        raise SendRefused("not_found", gettext_noop("That answer does not exist or is not yours."))
    if refused := UserUsage.read({user.pk}).refusal(user.pk, sending=False):
        raise refused
    streaming = Message.objects.filter(conversation_id=answer.conversation_id, status=Message.Status.STREAMING).first()
    if streaming is not None:
        raise conversation_busy(streaming.pk)
    return answer


def _conversation_credential(conversation: Conversation) -> Credential:
    return credentials_for([(conversation.user_id, conversation.api_key_id)])[0]


def conversation_busy(streaming_id: int) -> SendRefused:
    return SendRefused(
        "busy", gettext_noop("An answer is still being written in this conversation. Wait for it or press Stop."),
        message_id=streaming_id,
    )


def answer_retry(
    *, user: AbstractBaseUser, message_id: int | None, params: dict[str, Any] | None = None,
    system_prompt: str | None = None,
) -> Exchange:
    """Ask the same question again: a new answer beside the old one (kept as a branch),
    with the conversation's settings, changed first by those the retry names (as a send's)."""
    with transaction.atomic():
        old = _answer_for_rerun(user=user, message_id=message_id)
        conversation = old.conversation
        settings_before = (conversation.params, conversation.system_prompt)
        conversation.params = params_merged(conversation.params, params or {})
        if system_prompt is not None:
            conversation.system_prompt = system_prompt
        told = [] if settings_before == (conversation.params, conversation.system_prompt) else [
            (user_group(user.pk), conversation_updated_frame(conversation))
        ]
        thread = message_thread(conversation=conversation, leaf=old)[:-1]  # up to the question
        # The same model again; an answer routed to a vision model is routed again from
        # the conversation's pick, so its note says why once more.
        routed = model_for_images(conversation.model) == old.model != conversation.model
        answer, plan = _answer_planned(
            conversation=conversation, thread=thread, model=conversation.model if routed else old.model,
            params=conversation.params, credential=_conversation_credential(conversation), parent_id=old.parent_id,
        )
        answer.save()
        Conversation.objects.filter(pk=conversation.pk).update(
            leaf=answer, params=conversation.params, system_prompt=conversation.system_prompt
        )
        answer.sibling_ids = message_versions(answer)
        if old.children.exists():
            # An earlier answer: what followed it is on the old branch, so every tab gets
            # the new, shorter thread.
            conversation.leaf_id = answer.pk
            return Exchange(old.conversation_id, answer, plan, told + [thread_event(conversation, [*thread, answer])])
        frame = {"type": "message", "message": message_to_dict(answer), "replaces": old.pk}
    return Exchange(old.conversation_id, answer, plan, told + [(conversation_group(old.conversation_id), frame)])


def answer_continue(*, user: AbstractBaseUser, message_id: int | None) -> Exchange:
    """Reopen an ended answer so the model goes on from its text; the answer grows in place."""
    with transaction.atomic():
        answer = _answer_for_rerun(user=user, message_id=message_id)
        if not answer.content:
            raise SendRefused(
                "nothing_to_continue", gettext_noop("This answer has no text to continue from. Use Retry instead.")
            )
        thread = message_thread(conversation=answer.conversation, leaf=answer)
        plan = _plan(
            conversation=answer.conversation, thread=thread, answer=answer,
            credential=_conversation_credential(answer.conversation),
        )
        answer.status = Message.Status.STREAMING
        answer.error_code = answer.error_message = answer.finish_reason = ""
        answer.heartbeat_at = timezone.now()
        answer.run_id = answer.run_id or uuid.uuid4().hex  # rows from before runs had ids
        answer.notes = [note for note in answer.notes if note not in plan.notes] + plan.notes
        answer.save(update_fields=[
            "status", "error_code", "error_message", "finish_reason", "heartbeat_at", "notes", "api_key", "run_id",
            "updated_at",
        ])
        frame = {"type": "message", "message": message_to_dict(answer)}
    return Exchange(answer.conversation_id, answer, plan, [(conversation_group(answer.conversation_id), frame)])
