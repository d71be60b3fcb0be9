"""Tool use inside a generation (chat/relay.py, chat/tool_calls.py, chat/tool_rounds.py):
yi-large-fc asks for calls, the server runs them and stores each result as a `role: tool`
message, and the model answers from them; against the simulator over real HTTP."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from channels.db import database_sync_to_async

from chat.models import Conversation, Message
from chat.tool_rounds import TOOL_STOPPED
from chat.tools import Tool, tool_register, tool_unregister
from tests.test_consumer import frames_until, send

pytestmark = pytest.mark.django_db(transaction=True)

FC = "yi-large-fc"


def run_over(frame) -> bool:
    """The run's last answer is done (an assistant `done` that did not end by asking for tools)."""
    if frame["type"] == "error":
        return True
    message = frame.get("message") or {}
    return frame["type"] == "done" and message.get("role") == "assistant" and message.get("finish_reason") != "tool_calls"


@database_sync_to_async
def thread_of(conversation_id: int) -> list[Message]:
    """The conversation's messages, oldest first."""
    return list(Message.objects.filter(conversation_id=conversation_id).order_by("id"))


async def ask(ws, text, **extra):
    await send(ws, text, model=FC, tools=True, **extra)
    frames = await frames_until(ws, run_over, timeout=20)
    assert frames[-1]["type"] == "done", frames[-1]
    return frames


async def test_a_call_runs_on_the_server_and_the_model_answers_from_its_result(user, connect):
    ws = await connect(user)
    frames = await ask(ws, '[sim-call calculator {"expression": "1234.5 * 3"}] what is it?')
    final = frames[-1]["message"]
    messages = await thread_of(final["conversation_id"])

    assert [(m.role, m.status) for m in messages] == [
        ("user", "complete"), ("assistant", "complete"), ("tool", "complete"), ("assistant", "complete")
    ]
    question, call, tool, answer = messages
    assert call.finish_reason == "tool_calls" and call.tool_calls[0]["function"]["name"] == "calculator"
    assert tool.tool_call_id == call.tool_calls[0]["id"] and tool.name == "calculator"
    assert "3703.5" in tool.content and "3703.5" in answer.content  # the exact figure, from the tool
    # One chain, one run, and the conversation shows its end.
    assert [m.parent_id for m in messages] == [None, question.pk, call.pk, tool.pk]
    assert len({m.run_id for m in messages[1:]}) == 1 and call.run_id
    conversation = await database_sync_to_async(Conversation.objects.get)(pk=final["conversation_id"])
    assert conversation.leaf_id == answer.pk and conversation.tools is True
    # Every tab saw the tool message come and end, and the answer stream.
    shown = [(f["type"], f.get("message", {}).get("role")) for f in frames if f["type"] in ("message", "done")]
    assert ("message", "tool") in shown and ("done", "tool") in shown
    assert any(f["type"] == "delta" and f["message_id"] == answer.pk for f in frames)


async def test_two_calls_in_one_turn_each_get_their_result(user, connect):
    ws = await connect(user)
    frames = await ask(
        ws, '[sim-call calculator {"expression": "2+2"}] [sim-call current_time {"timezone": "Asia/Shanghai"}] both'
    )
    messages = await thread_of(frames[-1]["message"]["conversation_id"])
    tools = [m for m in messages if m.role == "tool"]
    assert [t.name for t in tools] == ["calculator", "current_time"]
    assert json.loads(tools[0].content)["result"] == "4"
    assert "Asia/Shanghai" in tools[1].content
    assert {t.tool_call_id for t in tools} == {c["id"] for c in messages[1].tool_calls}


@pytest.mark.parametrize(("text", "says"), [
    ('[sim-call calculator {"expression": "1+1"}] [sim broken=1] go', "not valid JSON"),
    ("[sim-call no_such_tool {}] go", "calculator"),  # the result lists the tools there are
    ('[sim-call calculator {"expression": 5}] go', "expression"),  # fails the schema
    ('[sim-call calculator {"expression": "9**9**9"}] go', "exponents up to"),
])
async def test_a_call_that_cannot_run_becomes_a_result_the_model_reads(user, connect, text, says):
    ws = await connect(user)
    frames = await ask(ws, text)
    messages = await thread_of(frames[-1]["message"]["conversation_id"])
    tool = next(m for m in messages if m.role == "tool")
    assert tool.status == "complete" and tool.error_code == "tool_failed"
    assert says.lower() in json.loads(tool.content)["error"].lower()
    assert messages[-1].role == "assistant" and messages[-1].status == "complete"


async def test_a_model_that_keeps_calling_is_made_to_answer_after_the_last_round(user, connect):
    from chat.tool_calls import TOOL_ROUNDS_MAX

    ws = await connect(user)
    frames = await ask(ws, '[sim-call calculator {"expression": "1+1"}] [sim tool_rounds=99] again and again')
    messages = await thread_of(frames[-1]["message"]["conversation_id"])
    assert sum(m.role == "tool" for m in messages) == TOOL_ROUNDS_MAX
    assert messages[-1].role == "assistant" and not messages[-1].tool_calls and messages[-1].content


@pytest.fixture
def slow_tool(settings):
    def nap(seconds: float) -> str:
        time.sleep(seconds)
        return "rested"

    tool_register(Tool("nap", "Sleeps.", {"type": "object", "properties": {"seconds": {"type": "number"}},
                                          "required": ["seconds"]}, nap))
    settings.TOOL_TIMEOUT = 0.5
    yield
    tool_unregister("nap")


async def test_a_slow_tool_times_out_and_the_answer_goes_on(user, connect, slow_tool):
    ws = await connect(user)
    frames = await ask(ws, '[sim-call nap {"seconds": 3}] sleep')
    messages = await thread_of(frames[-1]["message"]["conversation_id"])
    tool = next(m for m in messages if m.role == "tool")
    assert "longer than 0.5 seconds" in json.loads(tool.content)["error"] and tool.duration_ms < 2000
    assert messages[-1].status == "complete"


async def test_stop_during_a_call_stops_the_run_and_the_thread_can_go_on(user, connect, slow_tool, settings):
    settings.TOOL_TIMEOUT = 5
    ws = await connect(user)
    await send(ws, '[sim-call nap {"seconds": 2}] sleep', model=FC, tools=True)
    frames = await frames_until(ws, lambda f: f["type"] == "message" and f["message"]["role"] == "tool")
    # The answer that will read the result is there, streaming: Stop is pressed on it.
    next_answer = (await frames_until(ws, lambda f: f["type"] == "message" and f["message"]["role"] == "assistant"))[-1]
    await ws.send_json_to({"type": "stop", "message_id": next_answer["message"]["id"]})
    await frames_until(ws, lambda f: f["type"] == "done" and f["message_id"] == next_answer["message"]["id"])
    conversation_id = frames[-1]["message"]["conversation_id"]
    messages = await thread_of(conversation_id)
    assert [(m.role, m.status) for m in messages] == [
        ("user", "complete"), ("assistant", "complete"), ("tool", "stopped"), ("assistant", "stopped")
    ]
    assert messages[2].content == TOOL_STOPPED

    # Every call has its answer, so the thread is one the API takes again.
    frames = await ask(ws, "[sim tool_calls=0] and now?", conversation_id=conversation_id)
    assert frames[-1]["message"]["status"] == "complete"


async def test_a_tab_that_reconnects_during_a_call_sees_the_calls_so_far(user, connect, slow_tool, settings):
    settings.TOOL_TIMEOUT = 5
    ws = await connect(user)
    await send(ws, '[sim-call nap {"seconds": 1}] sleep', model=FC, tools=True)
    frames = await frames_until(ws, lambda f: f["type"] == "message" and f["message"]["role"] == "tool")
    conversation_id = frames[-1]["message"]["conversation_id"]

    other = await connect(user)
    await other.send_json_to({"type": "subscribe", "conversation_id": conversation_id})
    caught_up = await frames_until(other, lambda f: f["type"] == "subscribed")
    caught_up += await frames_until(other, run_over, timeout=10)
    roles = [f["message"]["role"] for f in caught_up if f["type"] in ("message", "done") and "message" in f]
    assert "tool" in roles and roles[-1] == "assistant"


@pytest.mark.parametrize(("tool_choice", "calls"), [
    ("none", 0),
    ("auto", 1),
    ("required", 1),
    ({"type": "function", "function": {"name": "current_time"}}, 1),
])
async def test_each_tool_choice_reaches_the_request(user, connect, tool_choice, calls):
    ws = await connect(user)
    frames = await ask(ws, "what time is it in Asia/Tokyo?", tool_choice=tool_choice)
    messages = await thread_of(frames[-1]["message"]["conversation_id"])
    tools = [m for m in messages if m.role == "tool"]
    assert len(tools) == calls
    if isinstance(tool_choice, dict):
        assert tools[0].name == "current_time"
    conversation = await database_sync_to_async(Conversation.objects.get)(pk=frames[-1]["message"]["conversation_id"])
    assert conversation.tool_choice == tool_choice


@pytest.mark.parametrize("tool_choice", ["sometimes", {"type": "function", "function": {"name": "rm"}}, 3])
async def test_a_tool_choice_that_is_not_one_of_the_forms_is_refused(user, connect, tool_choice):
    ws = await connect(user)
    await send(ws, "hi", model=FC, tools=True, tool_choice=tool_choice)
    refusal = (await frames_until(ws, lambda f: f["type"] == "error"))[-1]
    assert refusal["code"] == "bad_tool_choice" and "calculator" in refusal["message"]
    assert await database_sync_to_async(Message.objects.count)() == 0


async def test_a_model_that_calls_no_tools_is_not_offered_them_and_the_answer_says_so(user, connect):
    ws = await connect(user)
    await send(ws, "[sim deltas=2 interval=0] hi", model="yi-large", tools=True)
    done = (await frames_until(ws, run_over))[-1]
    assert done["message"]["status"] == "complete"
    assert any("yi-large-fc" in note for note in done["message"]["notes"])


async def test_the_run_leaves_the_conversation_busy_until_its_last_answer(user, connect, slow_tool, settings):
    settings.TOOL_TIMEOUT = 5
    ws = await connect(user)
    await send(ws, '[sim-call nap {"seconds": 1}] sleep', model=FC, tools=True)
    frames = await frames_until(ws, lambda f: f["type"] == "message" and f["message"]["role"] == "tool")
    await send(ws, "meanwhile", conversation_id=frames[-1]["message"]["conversation_id"], model=FC)
    refusal = (await frames_until(ws, lambda f: f["type"] == "error", timeout=20))[-1]
    assert refusal["code"] == "busy"
    await asyncio.sleep(0)


async def test_the_tool_loop_runs_without_streaming_too(user, connect, settings):
    """STREAM_ANSWERS off (a server that cannot stream): each request's reply is read
    whole, tool calls included, and the run goes on the same way."""
    settings.STREAM_ANSWERS = False
    ws = await connect(user)
    frames = await ask(ws, '[sim-call calculator {"expression": "1234.5 * 3"}] what is it?')
    messages = await thread_of(frames[-1]["message"]["conversation_id"])
    assert [m.role for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[1].tool_calls[0]["function"]["name"] == "calculator"
    assert "3703.5" in messages[2].content and "3703.5" in messages[3].content
    assert messages[3].completion_tokens  # the reply's usage is kept
    # The answer came whole: one delta.
    assert len([f for f in frames if f["type"] == "delta" and f["message_id"] == messages[3].pk]) == 1
