"""The chat completion request built for an answer, as the reference shapes it."""

from __future__ import annotations

import base64

import pytest
from django.core.files.base import ContentFile

from chat.history import message_thread
from chat.models import Attachment, Conversation, Message
from chat.requests import CONTINUE_PROMPT, request_build, request_plan, tokens_estimate
from chat.sentences import said

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


def test_a_thread_over_its_models_window_leaves_out_its_oldest_turns_never_the_current_one(conversation, settings):
    settings.ANSWER_TOKENS_RESERVED = 1024
    parent, long_text = None, "word " * 1500  # about 1,875 tokens each: yi-large-turbo's 4K takes one
    for i in range(3):
        parent = add(conversation, "user", f"question {i} {long_text}", parent)
        parent = add(conversation, "assistant", f"answer {i}", parent)
    question = add(conversation, "user", f"last {long_text}", parent)
    answer = add(conversation, "assistant", "", question, status="streaming", model="yi-large-turbo")
    plan = request_plan(conversation=conversation, thread=message_thread(conversation=conversation, leaf=answer),
                        answer=answer)
    sent = [m["content"][:10] for m in plan.body["messages"]]
    assert sent == ["You are te", "last word "]
    assert [said(note, "en") for note in plan.notes] == [
        "6 earlier messages were not sent: this conversation is over yi-large-turbo's 4K window."]


def test_a_model_whose_window_is_unknown_is_sent_the_whole_thread(conversation):
    question = add(conversation, "user", "word " * 50_000)
    answer = add(conversation, "assistant", "", question, status="streaming", model="my-local-model")
    plan = request_plan(conversation=conversation, thread=[question], answer=answer)
    assert len(plan.body["messages"]) == 2 and plan.notes == []


def test_a_window_named_in_the_settings_is_used_for_another_providers_model(conversation, settings):
    settings.MODEL_CONTEXT_WINDOWS = {"my-local-model": 2048}
    q1 = add(conversation, "user", "word " * 2000)
    a1 = add(conversation, "assistant", "ok", q1)
    question = add(conversation, "user", "and now?", a1)
    answer = add(conversation, "assistant", "", question, status="streaming", model="my-local-model")
    plan = request_plan(conversation=conversation, thread=[q1, a1, question], answer=answer)
    assert [m["content"] for m in plan.body["messages"]] == ["You are terse.", "and now?"]


def test_chinese_text_is_estimated_at_about_a_token_a_character_english_at_a_quarter():
    assert tokens_estimate("北京天气怎么样") == 7
    assert tokens_estimate("What is the weather in Beijing") == 8
    assert tokens_estimate("") == 0
