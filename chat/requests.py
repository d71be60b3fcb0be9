"""The chat completion request for an answer: system prompt, the thread before it, parameters.

Messages, attachments and tool results are turned into the reference's shapes here
and nowhere else: user `content` becomes a list of `text` and `image_url` parts when
images are attached; assistant tool calls and `role: tool` results pass through.
"""

from __future__ import annotations

from typing import Any

from chat.attachments import attachment_data_url
from chat.models import Conversation, Message

CONTINUE_PROMPT = (
    "Your previous answer was cut off. Continue it exactly where it stopped, without repeating "
    "anything and without any preamble."
)


def request_build(*, conversation: Conversation, thread: list[Message], answer: Message) -> dict[str, Any]:
    """The chat completion request for `answer`: system prompt, the thread before it, parameters."""
    messages: list[dict[str, Any]] = []
    if conversation.system_prompt:
        messages.append({"role": "system", "content": conversation.system_prompt})
    for message in thread:
        if message.pk == answer.pk:
            break
        if message.role == Message.Role.USER:
            messages.append({"role": "user", "content": _user_content(message)})
        elif message.role == Message.Role.ASSISTANT:
            # An answer that failed before writing anything has nothing to tell the model.
            if not message.content and not message.tool_calls:
                continue
            entry: dict[str, Any] = {"role": "assistant", "content": message.content}
            if message.tool_calls:
                entry["tool_calls"] = message.tool_calls
            messages.append(entry)
        elif message.role == Message.Role.TOOL:
            messages.append(
                {"role": "tool", "tool_call_id": message.tool_call_id, "name": message.name, "content": message.content}
            )
        elif message.role == Message.Role.SYSTEM:
            messages.append({"role": "system", "content": message.content})
    if answer.content:
        # Continuing an answer that was cut short: the model sees what it wrote so far.
        messages.append({"role": "assistant", "content": answer.content})
        messages.append({"role": "user", "content": CONTINUE_PROMPT})
    body: dict[str, Any] = {"model": answer.model or conversation.model, "messages": messages}
    for name in ("temperature", "top_p", "max_tokens"):
        if answer.params.get(name) is not None:
            body[name] = answer.params[name]
    return body


def _user_content(message: Message) -> str | list[dict[str, Any]]:
    attachments = list(message.attachments.all())
    if not attachments:
        return message.content
    parts: list[dict[str, Any]] = [{"type": "text", "text": message.content}]
    parts += [{"type": "image_url", "image_url": {"url": attachment_data_url(a)}} for a in attachments]
    return parts
