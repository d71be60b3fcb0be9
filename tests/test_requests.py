"""The chat completion request built for an answer, as the reference shapes it."""

from __future__ import annotations

import base64

import pytest
from django.core.files.base import ContentFile

from chat.conversations import message_thread
from chat.models import Attachment, Conversation, Message
from chat.requests import CONTINUE_PROMPT, request_build

pytestmark = pytest.mark.django_db

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg=="
)


@pytest.fixture
def conversation(user):
    return Conversation.objects.create(user=user, model="yi-large", system_prompt="You are terse.")


def add(conversation, role, content="", parent=None, **fields):
    return Message.objects.create(conversation=conversation, role=role, content=content, parent=parent, **fields)


def build(conversation, answer):
    return request_build(conversation=conversation, thread=message_thread(conversation=conversation, leaf=answer),
                         answer=answer)


def test_request_has_system_prompt_history_model_and_parameters(conversation):
    q1 = add(conversation, "user", "Hi")
    a1 = add(conversation, "assistant", "Hello!", q1)
    q2 = add(conversation, "user", "Who are you?", a1)
    answer = add(conversation, "assistant", "", q2, status="streaming", model="yi-large-turbo",
                 params={"temperature": 0.3, "top_p": 0.9, "max_tokens": 100})
    assert build(conversation, answer) == {
        "model": "yi-large-turbo",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Who are you?"},
        ],
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 100,
    }


def test_answer_that_failed_before_writing_anything_is_left_out(conversation):
    q1 = add(conversation, "user", "Hi")
    failed = add(conversation, "assistant", "", q1, status="error", error_code="overloaded")
    q2 = add(conversation, "user", "Again?", failed)
    answer = add(conversation, "assistant", "", q2, status="streaming", model="yi-large")
    assert [m["role"] for m in build(conversation, answer)["messages"]] == ["system", "user", "user"]


def test_other_branches_are_not_sent(conversation):
    q1 = add(conversation, "user", "Hi")
    add(conversation, "assistant", "first try", q1, status="stopped")
    answer = add(conversation, "assistant", "", q1, status="streaming", model="yi-large")
    assert [m["content"] for m in build(conversation, answer)["messages"]] == ["You are terse.", "Hi"]


def test_attached_images_become_data_url_parts_and_stay_in_later_turns(conversation, user, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    q1 = add(conversation, "user", "What is this?")
    image = Attachment(user=user, message=q1, media_type="image/png", width=1, height=1, size_bytes=len(PNG))
    image.file.save("dot.png", ContentFile(PNG))
    a1 = add(conversation, "assistant", "A dot.", q1)
    q2 = add(conversation, "user", "What colour?", a1)
    answer = add(conversation, "assistant", "", q2, status="streaming", model="yi-vision")
    messages = build(conversation, answer)["messages"]
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert messages[1] == {"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": data_url}},
    ]}
    assert messages[3] == {"role": "user", "content": "What colour?"}


def test_tool_calls_and_tool_results_are_sent_as_the_reference_shows(conversation):
    q1 = add(conversation, "user", "MoM for April 2024?")
    call = {"id": "call_1", "type": "function", "function": {"name": "calculator", "arguments": '{"time": "2024-04"}'}}
    a1 = add(conversation, "assistant", "", q1, tool_calls=[call], finish_reason="tool_calls")
    result = add(conversation, "tool", '{"change": "0.80%"}', a1, tool_call_id="call_1", name="calculator")
    answer = add(conversation, "assistant", "", result, status="streaming", model="yi-large-fc")
    assert build(conversation, answer)["messages"][2:] == [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "name": "calculator", "content": '{"change": "0.80%"}'},
    ]


def test_continuing_an_answer_sends_its_text_and_asks_to_go_on(conversation):
    q1 = add(conversation, "user", "Count to ten")
    answer = add(conversation, "assistant", "1 2 3", q1, status="streaming", model="yi-large", seq=3)
    assert build(conversation, answer)["messages"][-2:] == [
        {"role": "assistant", "content": "1 2 3"},
        {"role": "user", "content": CONTINUE_PROMPT},
    ]
