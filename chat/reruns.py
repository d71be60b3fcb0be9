"""Reruns of an ended answer, as the socket asks for them: a retry (a new answer beside the
old one) and a continue (the answer goes on from its text). Writes, like the sends of
chat/conversations.py, and like them returned as an Exchange whose frames the async caller
broadcasts once the transaction has committed; the per-person limits they may meet are
chat/limits.py, how their request is planned chat/exchanges.py.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from chat.catalog import model_for_images
from chat.credentials import credentials_for, key_choice_of
from chat.events import conversation_group, user_group
from chat.exchanges import Exchange, answer_plan, answer_planned, params_merged, thread_event
from chat.history import conversation_updated_frame, message_thread, message_to_dict, message_versions
from chat.limits import UserUsage
from chat.models import Conversation, Message
from chat.refusals import SendRefused, conversation_busy
from chat.upstream import Credential


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
    return credentials_for([(conversation.user_id, key_choice_of(conversation))])[0]


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
        credential = _conversation_credential(conversation)
        routed = model_for_images(conversation.model, credential=credential) == old.model != conversation.model
        answer, plan = answer_planned(
            conversation=conversation, thread=thread, model=conversation.model if routed else old.model,
            params=conversation.params, credential=credential, parent_id=old.parent_id,
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
        plan = answer_plan(
            conversation=answer.conversation, thread=thread, answer=answer,
            credential=_conversation_credential(answer.conversation),
        )
        answer.status = Message.Status.STREAMING
        answer.error_code = answer.error_message = answer.finish_reason = ""
        answer.error_sentence = None
        answer.heartbeat_at = timezone.now()
        answer.run_id = answer.run_id or uuid.uuid4().hex  # rows from before runs had ids
        answer.notes = [note for note in answer.notes if note not in plan.notes] + plan.notes
        answer.save(update_fields=[
            "status", "error_code", "error_message", "error_sentence", "finish_reason", "heartbeat_at", "notes",
            "api_key", "run_id", "updated_at",
        ])
        frame = {"type": "message", "message": message_to_dict(answer)}
    return Exchange(answer.conversation_id, answer, plan, [(conversation_group(answer.conversation_id), frame)])
