"""Storing an exchange: a question and the empty answer a generation will fill, with the
plan of the answer's upstream request. The steps of the writes in chat/conversations.py
(sends) and chat/reruns.py (retries, continues), run inside their transactions; each
gives the frames to broadcast once that transaction has committed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db.models import Case, Value, When, prefetch_related_objects
from django.utils import timezone
from django.utils.translation import gettext_noop

from chat.catalog import images_refused, model_for_images
from chat.credentials import credentials_for, key_choice_fields
from chat.events import Event, conversation_group, user_group
from chat.history import (
    IMAGES,
    conversation_get,
    conversation_to_dict,
    conversation_updated_frame,
    message_images,
    message_thread,
    message_to_dict,
    message_versions,
)
from chat.input_checks import max_tokens_bound, params_refusal
from chat.models import Attachment, Conversation, Message
from chat.refusals import SendRefused, conversation_busy
from chat.requests import RequestPlan, RequestTooLarge, request_plan
from chat.sentences import sentence
from chat.titles import title_from
from chat.upstream import Credential

if TYPE_CHECKING:
    # For annotations only: chat/conversations.py, where a send is defined, imports this module.
    from chat.conversations import Send


@dataclass
class Exchange:
    """A stored send (or retry, or continue): the answer to generate, the plan of its
    upstream request (its images are read when the generation starts), and the frames to
    broadcast once the caller has committed and joined the group."""

    conversation_id: int
    answer: Message
    plan: RequestPlan
    events: list[Event] = field(default_factory=list)


def conversations_start(sends: list[Send]) -> list[Exchange]:
    """New conversations, their questions and their empty answers: three INSERTs for all
    (and one UPDATE per send that attaches images)."""
    credentials = credentials_for([(send.user.pk, send.key_id) for send in sends])
    conversations = Conversation.objects.bulk_create(
        [
            Conversation(
                user=s.user, model=s.model, title=title_from(s.text, images=len(s.attachment_ids)),
                system_prompt=s.system_prompt or "", params=params_merged({}, s.params), **key_choice_fields(s.key_id),
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
        answer, plan = answer_planned(
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


def exchange_append(send: Send) -> Exchange:
    """A question and its empty answer at the end of the branch the conversation shows,
    or, for an edit, beside the question edited."""
    conversation = conversation_get(user=send.user, conversation_id=send.conversation_id, lock=True)
    streaming = Message.objects.filter(conversation=conversation, status=Message.Status.STREAMING).first()
    if streaming is not None:
        raise conversation_busy(streaming.pk)
    [credential] = credentials_for([(send.user.pk, send.key_id)])
    for name, value in key_choice_fields(send.key_id).items():
        setattr(conversation, name, value)
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
    answer, plan = answer_planned(
        conversation=conversation, thread=[*thread, question], model=send.model, params=conversation.params,
        credential=credential,
    )
    answer.save()
    conversation.model = send.model
    conversation.leaf = answer
    conversation.save(update_fields=[
        "model", "api_key", "server_key", "tools", "tool_choice", "params", "system_prompt", "leaf", "updated_at",
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


def _message_events(conversation: Conversation, question: Message, answer: Message) -> list[Event]:
    group = conversation_group(conversation.pk)
    return [
        (group, {"type": "message", "message": message_to_dict(question)}),
        (group, {"type": "message", "message": message_to_dict(answer)}),
    ]


def answer_planned(
    *, conversation: Conversation, thread: list[Message], model: str, params: dict, credential: Credential,
    parent_id: int | None = None,
) -> tuple[Message, RequestPlan]:
    """The empty answer to the end of `thread` (not saved yet), on a model that sees the
    thread's images, and the plan of its request; raises SendRefused when it cannot be sent."""
    notes = []
    if any(m.pk and m.role == Message.Role.USER and message_images(m) for m in thread):
        vision = model_for_images(model, credential=credential)
        if vision is None:
            raise images_refused(model, credential=credential)
        if vision != model:
            notes.append(sentence("vision_answered", model=model, vision=vision))
            model = vision
    if params.get("max_tokens", 0) > max_tokens_bound(model):  # a smaller window than the one picked
        raise params_refusal("max_tokens", 1, max_tokens_bound(model), model=model)
    answer = _answer_unsaved(
        conversation=conversation, parent_id=parent_id if parent_id is not None else thread[-1].pk, model=model,
        params=params,
    )
    plan = answer_plan(conversation=conversation, thread=thread, answer=answer, credential=credential)
    answer.notes = notes + plan.notes
    return answer, plan


def answer_plan(
    *, conversation: Conversation, thread: list[Message], answer: Message, credential: Credential
) -> RequestPlan:
    """The answer's request, and who it is made as: the key that pays is the answer's."""
    try:
        plan = request_plan(conversation=conversation, thread=thread, answer=answer)
    except RequestTooLarge as error:
        raise SendRefused("images_do_not_fit", error.template, params=error.params) from None
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
