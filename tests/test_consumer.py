"""The chat websocket, end to end inside one process: consumer, generation, simulator over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time

import pytest
from channels.db import database_sync_to_async
from django.db import DatabaseError
from channels.testing import WebsocketCommunicator

from chat import catch_up
from chat.conversations import Send, exchanges_send
from chat import relay, upkeep
from chat.relay import FRAME_PAUSE_MAX, Generation, frame_pause
from chat.running import running
from chat.shutdown import generations_interrupt
from chat.upkeep import CHECKPOINT_SLICES
from chat.requests import RequestPlan
from chat.models import Conversation, Message
from tests.simulator_server import canned_api
from yiweb.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


async def frames_until(ws, predicate, timeout=10.0):
    """Receive frames until one matches; return all frames received including it."""
    frames = []
    async with asyncio.timeout(timeout):
        while True:
            frame = await ws.receive_json_from(timeout=timeout)
            frames.append(frame)
            if predicate(frame):
                return frames


async def nothing_but_titles(ws, timeout=0.3) -> bool:
    """Nothing arrives for `timeout` s but the better title a conversation's first answer
    brings (chat/titles.py), which comes on its own time to every tab of the user."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        if await ws.receive_nothing(timeout=left):
            return True
        if (await ws.receive_json_from())["type"] != "conversation_updated":
            return False
    return True


def is_done(frame):
    return frame["type"] == "done"


def first(frames, kind, **match):
    return next(f for f in frames if f["type"] == kind and all(f.get(k) == v for k, v in match.items()))


def answer_of(frames):
    return next(f["message"] for f in frames if f["type"] == "message" and f["message"]["role"] == "assistant")


def conversation_id_of(frames):
    return first(frames, "conversation")["conversation"]["id"]


def text_of(frames, message_id):
    """The text a browser would show: snapshot text plus deltas applied strictly in seq order."""
    text, last = "", 0
    for frame in frames:
        if frame.get("message_id") != message_id:
            continue
        if frame["type"] == "snapshot":
            text = text + frame["text"] if frame["from_seq"] == last else frame["text"]
            last = frame["seq"]
        elif frame["type"] == "delta":
            assert frame["seq"] == last + 1, f"gap or duplicate: seq {frame['seq']} after {last}"
            text += frame["text"]
            last = frame["seq"]
    return text


async def send(ws, text, *, conversation_id=None, model="yi-large", **extra):
    await ws.send_json_to({"type": "send", "conversation_id": conversation_id, "text": text, "model": model, **extra})


async def answer_stopped_midway(ws):
    """A long answer asked for and stopped once three deltas have come: every frame until its done."""
    await send(ws, "[sim deltas=500 interval=5]")
    frames = await frames_until(ws, lambda f: f["type"] == "delta" and f["seq"] >= 3)
    await ws.send_json_to({"type": "stop", "message_id": answer_of(frames)["id"]})
    return frames + await frames_until(ws, is_done)


@database_sync_to_async
def stored(message_id):
    return Message.objects.get(pk=message_id)


@database_sync_to_async
def message_count():
    return Message.objects.count()


async def wait_for_status(message_id, statuses=("complete", "stopped", "error", "interrupted"), timeout=10.0):
    async with asyncio.timeout(timeout):
        while True:
            message = await stored(message_id)
            if message.status in statuses:
                return message
            await asyncio.sleep(0.02)


async def test_send_streams_numbered_deltas_and_stores_the_complete_answer(user, connect):
    ws = await connect(user)
    await send(ws, "[sim deltas=40 interval=1] Hi", client_id="c1")
    frames = await frames_until(ws, is_done)

    assert first(frames, "conversation")["client_id"] == "c1"
    assert first(frames, "subscribed")["conversation_id"] == conversation_id_of(frames)
    question, answer = [f["message"] for f in frames if f["type"] == "message"]
    assert (question["role"], question["content"]) == ("user", "[sim deltas=40 interval=1] Hi")
    assert (answer["role"], answer["status"], answer["content"]) == ("assistant", "streaming", "")
    expected = "".join(f"t{i} " for i in range(40))
    assert text_of(frames, answer["id"]) == expected

    done = frames[-1]
    assert done["message"]["status"] == "complete"
    assert done["message"]["content"] == expected
    assert done["seq"] == max(f["seq"] for f in frames if f["type"] == "delta")

    message = await stored(answer["id"])
    assert (message.content, message.status, message.finish_reason) == (expected, "complete", "stop")
    assert message.completion_tokens == 40 and message.total_tokens == message.prompt_tokens + 40
    assert message.ttft_ms is not None and message.duration_ms >= message.ttft_ms


async def test_deltas_carry_only_new_text_not_the_accumulated_answer(user, connect):
    ws = await connect(user)
    await send(ws, "[sim deltas=30 interval=2]")
    frames = await frames_until(ws, is_done)
    deltas = [f for f in frames if f["type"] == "delta"]
    assert all(set(d) == {"type", "message_id", "seq", "text"} for d in deltas)
    # Joined, the deltas are exactly the answer: none repeats the upstream's accumulated text.
    assert "".join(d["text"] for d in deltas) == "".join(f"t{i} " for i in range(30))
    assert max(len(d["text"]) for d in deltas) < 40


async def test_the_second_message_sends_the_history_and_continues_the_thread(user, connect):
    ws = await connect(user)
    await send(ws, "[sim deltas=2 interval=0] first")
    frames = await frames_until(ws, is_done)
    conversation_id = conversation_id_of(frames)
    await send(ws, "second", conversation_id=conversation_id)
    frames = await frames_until(ws, is_done)
    question = next(f["message"] for f in frames if f["type"] == "message")
    assert question["parent_id"] is not None
    # The simulator's default answer echoes the question it saw last.
    assert "second" in frames[-1]["message"]["content"]
    assert await database_sync_to_async(Message.objects.filter(conversation_id=conversation_id).count)() == 4


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        ("", "empty_message", "Type a message before sending."),
        ("   \n ", "empty_message", "Type a message before sending."),
        ("x" * 100_001, "message_too_long",
         "That message is too long (100,001 characters; the limit is 100,000). Shorten it or split it."),
    ],
)
async def test_bad_message_gets_a_clear_error_and_nothing_is_stored(user, connect, text, code, message):
    ws = await connect(user)
    await send(ws, text, client_id="c9")
    frame = await ws.receive_json_from()
    assert frame == {"type": "error", "code": code, "message": message, "client_id": "c9"}
    assert await message_count() == 0


async def test_a_system_prompt_over_the_limit_gets_a_clear_error_and_nothing_is_stored(user, connect):
    ws = await connect(user)
    await send(ws, "hi", client_id="c8", system_prompt="x" * 100_001)
    assert await ws.receive_json_from() == {
        "type": "error", "code": "system_prompt_too_long", "client_id": "c8",
        "message": "The system prompt is too long (100,001 characters; the limit is 100,000). Shorten it."}
    assert await message_count() == 0


async def test_bad_parameter_is_refused_before_anything_is_stored(user, connect):
    ws = await connect(user)
    await send(ws, "hi", temperature=3)
    assert await ws.receive_json_from() == {
        "type": "error", "code": "bad_params", "message": "temperature must be a number from 0 to 2."}
    assert await message_count() == 0


async def test_garbage_frame_gets_bad_frame_error(user, connect):
    ws = await connect(user)
    await ws.send_to(text_data="not json")
    frame = await ws.receive_json_from()
    assert frame["code"] == "bad_frame"


async def test_someone_elses_conversation_is_not_found(user, other_user, connect):
    conversation = await database_sync_to_async(Conversation.objects.create)(user=other_user, model="yi-large")
    ws = await connect(user)
    await send(ws, "hi", conversation_id=conversation.pk)
    assert (await ws.receive_json_from())["code"] == "not_found"
    await ws.send_json_to({"type": "subscribe", "conversation_id": conversation.pk})
    assert (await ws.receive_json_from())["code"] == "not_found"


async def test_repeated_client_id_does_not_ask_twice_and_is_told_how_that_send_stands(user, connect):
    ws = await connect(user)
    await send(ws, "[sim deltas=2 interval=0]", client_id="same")
    frames = await frames_until(ws, is_done)
    conversation_id = conversation_id_of(frames)
    await send(ws, "[sim deltas=2 interval=0]", conversation_id=conversation_id, client_id="same")
    answer = await frames_until(ws, lambda f: f["type"] == "message" and f["message"]["role"] == "assistant")
    assert [f["type"] for f in answer] == ["conversation", "subscribed", "message", "message"]
    assert answer[0]["client_id"] == "same" and answer[0]["conversation"]["id"] == conversation_id
    question, reply = answer[2]["message"], answer[3]["message"]
    assert question["content"] == "[sim deltas=2 interval=0]"
    assert (reply["status"], reply["content"]) == ("complete", "t0 t1 ")
    assert await nothing_but_titles(ws, 0.3)
    assert await message_count() == 2


@database_sync_to_async
def writes_refused(refused: bool) -> None:
    """Make SQLite refuse every write on the connection the server's database thread uses
    (`PRAGMA query_only`): a real failed write, not a mock of our code."""
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("refuses writes with SQLite's query_only")
    with connection.cursor() as cursor:
        cursor.execute(f"PRAGMA query_only = {'ON' if refused else 'OFF'}")


async def test_a_send_the_database_cannot_store_gets_not_saved_and_can_be_sent_again(user, connect):
    ws = await connect(user)
    await writes_refused(True)
    try:
        await send(ws, "[sim deltas=3 interval=0] hi", client_id="c1")
        frame = await ws.receive_json_from()
    finally:
        await writes_refused(False)
    assert frame == {
        "type": "error",
        "code": "not_saved",
        "message": "The server could not save that just now. Try again in a moment.",
        "client_id": "c1",
    }
    assert await message_count() == 0
    assert await nothing_but_titles(ws, 0.2)  # the socket stays open, nothing else follows

    # The page's resend of the same frame, once the database takes writes again.
    await send(ws, "[sim deltas=3 interval=0] hi", client_id="c1")
    frames = await frames_until(ws, is_done)
    assert first(frames, "conversation")["client_id"] == "c1"
    assert frames[-1]["message"]["content"] == "t0 t1 t2 "
    assert await message_count() == 2


THIRTY_TOKENS = "".join(f"t{i} " for i in range(30))


@contextlib.asynccontextmanager
async def answer_with_writes_refused(ws):
    """An answer of 30 tokens under way (the frames so far), the database refusing writes
    until the block ends."""
    await send(ws, "[sim deltas=30 interval=10]")
    frames = await frames_until(ws, lambda f: f["type"] == "delta")
    await writes_refused(True)
    try:
        yield frames
    finally:
        await writes_refused(False)


async def test_an_ending_refused_for_a_moment_is_stored_once_the_database_takes_writes(user, connect):
    ws = await connect(user)
    async with answer_with_writes_refused(ws) as frames:
        frames += await frames_until(ws, lambda f: "t29 " in f.get("text", ""))
        await asyncio.sleep(0.1)  # the first attempt to end the answer meets the refusal
    done = (await frames_until(ws, is_done, timeout=5))[-1]

    assert (done["message"]["status"], done["message"]["content"]) == ("complete", THIRTY_TOKENS)
    message = await stored(answer_of(frames)["id"])
    assert (message.status, message.content, message.finish_reason) == ("complete", THIRTY_TOKENS, "stop")


@pytest.fixture
def quick_retries(monkeypatch):
    monkeypatch.setattr(relay, "FINISH_RETRY_DELAYS", (0.05, 0.05))
    monkeypatch.setattr(relay, "FINISH_RETRY_EVERY", 0.05)


async def test_an_ending_the_database_keeps_refusing_is_shown_as_not_saved_then_stored_when_it_can_be(
    user, connect, quick_retries, settings
):
    ws, other = await connect(user), await connect(user)
    async with answer_with_writes_refused(ws) as frames:
        frames += await frames_until(ws, is_done, timeout=5)
        unsaved = frames[-1]["message"]
        answer_id = answer_of(frames)["id"]
        # Stored meanwhile: the last checkpoint, still streaming.
        message = await stored(answer_id)
        assert message.status == "streaming"
        assert THIRTY_TOKENS.startswith(message.content) and len(message.content) < len(THIRTY_TOKENS)
        # Still this process's to end: a sweep leaves it be, however old its heartbeat.
        settings.GENERATION_STALE_AFTER = 0
        assert await upkeep.generation_sweep() == 0
        # A tab that opens the conversation now learns how it stands, not "streaming".
        await other.send_json_to({"type": "subscribe", "conversation_id": conversation_id_of(frames)})
        joined = (await frames_until(other, is_done, timeout=5))[-1]["message"]
    assert (unsaved["status"], unsaved["error_code"], unsaved["content"]) == ("error", "not_saved", THIRTY_TOKENS)
    assert unsaved["error_message"].startswith("The server could not save this answer yet")
    assert joined == unsaved

    # Once the database takes writes again, the whole answer is stored and the tabs told.
    for tab in (ws, other):
        saved = (await frames_until(tab, is_done, timeout=5))[-1]["message"]
        assert (saved["status"], saved["error_code"], saved["content"]) == ("complete", "", THIRTY_TOKENS)
    message = await stored(answer_id)
    assert (message.status, message.content, message.finish_reason) == ("complete", THIRTY_TOKENS, "stop")


async def test_stop_after_the_answer_ended_changes_nothing_while_its_storing_is_retried(
    user, connect, quick_retries
):
    ws, other = await connect(user), await connect(user)
    async with answer_with_writes_refused(ws) as frames:
        frames += await frames_until(ws, is_done, timeout=5)
        unsaved = frames[-1]["message"]
        assert unsaved["error_code"] == "not_saved"
        # A Stop that crossed the ending (or a second tab's late click).
        await ws.send_json_to({"type": "stop", "message_id": unsaved["id"]})
        await asyncio.sleep(0.2)
        # The generation still holds the answer: a tab opening the conversation is told how it stands.
        await other.send_json_to({"type": "subscribe", "conversation_id": conversation_id_of(frames)})
        joined = (await frames_until(other, is_done, timeout=5))[-1]["message"]
    assert joined == unsaved

    # And the answer is stored complete, not stopped, once the database takes writes again.
    saved = (await frames_until(ws, is_done, timeout=5))[-1]["message"]
    assert (saved["status"], saved["content"]) == ("complete", THIRTY_TOKENS)
    assert (await stored(unsaved["id"])).status == "complete"


async def test_a_stopping_process_waits_for_an_ending_being_retried_instead_of_cutting_it_short(user, connect):
    ws = await connect(user)
    async with answer_with_writes_refused(ws) as frames:
        frames += await frames_until(ws, lambda f: "t29 " in f.get("text", ""))
        await asyncio.sleep(0.1)  # the first attempt to end it met the refusal; a retry waits
        # The process is told to stop; the database takes writes again 0.5 s later.
        interrupt = asyncio.ensure_future(generations_interrupt(timeout=5))
        await asyncio.sleep(0.5)
    assert await interrupt == 0  # every answer stored before the process would stop
    message = await stored(answer_of(frames)["id"])
    assert (message.status, message.content) == ("complete", THIRTY_TOKENS)


async def test_an_ending_refused_past_the_retry_window_is_left_to_the_sweep(
    user, connect, quick_retries, monkeypatch, settings
):
    monkeypatch.setattr(relay, "FINISH_RETRY_FOR", 0.2)
    monkeypatch.setattr(catch_up, "SNAPSHOT_TIMEOUT", 0.2)
    ws, other = await connect(user), await connect(user)
    async with answer_with_writes_refused(ws) as frames:
        frames += await frames_until(ws, is_done, timeout=5)
        assert frames[-1]["message"]["error_code"] == "not_saved"
        await asyncio.sleep(0.5)  # past the window: the generation stops trying
        # A tab that opens the conversation now gets what is stored (no generation answers
        # any more), and its socket stays open although the sweep before that read cannot write.
        await other.send_json_to({"type": "subscribe", "conversation_id": conversation_id_of(frames)})
        snapshot = (await frames_until(other, lambda f: f["type"] == "snapshot", timeout=5))[-1]
    assert await nothing_but_titles(ws, 0.3)
    answer_id = answer_of(frames)["id"]
    assert (await stored(answer_id)).status == "streaming"
    assert THIRTY_TOKENS.startswith(snapshot["text"]) and snapshot["message_id"] == answer_id

    # No longer this process's to end: the process's sweep ends it, as it would after a crash.
    settings.GENERATION_STALE_AFTER = 0
    done = (await frames_until(ws, is_done))[-1]["message"]
    assert (done["id"], done["status"], done["error_code"]) == (answer_id, "interrupted", "interrupted")


@database_sync_to_async
def endings_refused(refused: bool, *, passing: bool = False) -> None:
    """A trigger that fails every ending: with a constraint error, as a value that does
    not fit would (a refusal that trying again cannot cure), or, `passing`, with an
    OperationalError, as a database that is failing over would (one worth retrying).
    Unlike `writes_refused`, new answers can still be stored and checkpointed."""
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("uses a SQLite trigger")
    # SQLite compiles a trigger's body when it fires: a table that does not exist is an
    # OperationalError then.
    refusal = "INSERT INTO no_such_table VALUES (1)" if passing else "SELECT RAISE(ABORT, 'refused')"
    with connection.cursor() as cursor:
        if refused:
            cursor.execute(
                "CREATE TRIGGER refuse_endings BEFORE UPDATE OF status ON chat_message "
                f"WHEN NEW.status != 'streaming' BEGIN {refusal}; END"
            )
        else:
            cursor.execute("DROP TRIGGER refuse_endings")


async def test_an_ending_the_database_refuses_for_its_content_is_not_retried(user, connect, quick_retries):
    ws = await connect(user)
    await send(ws, "[sim deltas=30 interval=10]")
    frames = await frames_until(ws, lambda f: f["type"] == "delta")
    await endings_refused(True)
    try:
        frames += await frames_until(ws, is_done, timeout=5)
        assert frames[-1]["message"]["error_code"] == "not_saved"
    finally:
        await endings_refused(False)
    # Not tried again: the row keeps what it had, for the sweep.
    assert await nothing_but_titles(ws, 0.3)
    assert (await stored(answer_of(frames)["id"])).status == "streaming"


async def test_answers_whose_storing_is_retried_do_not_slow_the_ones_still_streaming(
    user, connect, quick_retries, settings
):
    settings.RELAY_FRAMES_PER_SECOND = 100  # one streaming answer: a frame per 10 ms; five: 50 ms
    await endings_refused(True, passing=True)
    try:
        tabs = [await connect(user) for _ in range(4)]
        for tab in tabs:
            await send(tab, "[sim deltas=3 interval=1]")
        for tab in tabs:
            assert (await frames_until(tab, is_done))[-1]["message"]["error_code"] == "not_saved"
        # Four answers have ended and wait for the database; one streams.
        ws = await connect(user)
        await send(ws, "[sim deltas=200 interval=2]")
        frames, arrivals = [], []
        while not frames or not is_done(frames[-1]):
            frames.append(await ws.receive_json_from(timeout=10))
            if frames[-1]["type"] == "delta":
                arrivals.append(time.monotonic())
    finally:
        await endings_refused(False)
    assert text_of(frames, answer_of(frames)["id"]) == "".join(f"t{i} " for i in range(200))
    # Paced for one streaming answer (a frame per ~10 ms), not for five (50 ms).
    gap = (arrivals[-1] - arrivals[0]) / (len(arrivals) - 1)
    assert gap < 0.03, f"a frame every {gap * 1000:.0f} ms"

    for tab in (*tabs, ws):
        assert (await frames_until(tab, is_done, timeout=5))[-1]["message"]["status"] == "complete"


async def test_a_checkpoint_the_database_refused_is_written_at_the_next_tick(user, settings):
    settings.CHECKPOINT_INTERVAL = 1.0
    conversation = await database_sync_to_async(Conversation.objects.create)(user=user, model="yi-large")
    answer = await database_sync_to_async(Message.objects.create)(
        conversation=conversation, role="assistant", status="streaming"
    )
    generation = Generation(answer, RequestPlan(body={}))
    generation.parts = ["all ", "of ", "it"]
    running.generations[answer.pk] = generation
    try:
        await writes_refused(True)
        try:
            with pytest.raises(DatabaseError):
                await upkeep._checkpoint()
        finally:
            await writes_refused(False)
        await upkeep._checkpoint()
    finally:
        running.generations.pop(answer.pk, None)
    message = await stored(answer.pk)
    assert (message.content, message.seq) == ("all of it", 3)


async def test_send_while_an_answer_streams_is_refused_as_busy(user, connect):
    ws = await connect(user)
    await send(ws, "[sim deltas=200 interval=5]")
    frames = await frames_until(ws, lambda f: f["type"] == "delta")
    conversation_id = conversation_id_of(frames)
    await send(ws, "again", conversation_id=conversation_id)
    frames = await frames_until(ws, lambda f: f["type"] == "error")
    assert frames[-1]["code"] == "busy"


async def test_stop_ends_the_answer_as_stopped_and_keeps_the_partial_text(user, connect):
    ws = await connect(user)
    frames = await answer_stopped_midway(ws)
    answer_id = answer_of(frames)["id"]
    done = frames[-1]["message"]
    assert done["status"] == "stopped"
    assert done["content"] == text_of(frames, answer_id)
    assert 0 < len(done["content"]) < len("".join(f"t{i} " for i in range(500)))
    assert (await stored(answer_id)).content == done["content"]


async def test_closing_the_socket_does_not_stop_the_answer(user, connect):
    ws = await connect(user)
    await send(ws, "[sim deltas=60 interval=3]")
    frames = await frames_until(ws, lambda f: f["type"] == "delta")
    answer_id = answer_of(frames)["id"]
    await ws.disconnect()
    message = await wait_for_status(answer_id)
    assert message.status == "complete"
    assert message.content == "".join(f"t{i} " for i in range(60))


async def test_fast_tokens_leave_at_most_one_frame_per_interval_and_the_first_at_once(user, connect, settings):
    settings.RELAY_FRAMES_PER_SECOND = 20  # one running answer: a frame per 50 ms
    ws = await connect(user)
    await send(ws, "[sim deltas=100 interval=2]")  # 0.2 s of tokens
    frames = await frames_until(ws, is_done)
    deltas = [f for f in frames if f["type"] == "delta"]

    assert text_of(frames, deltas[0]["message_id"]) == "".join(f"t{i} " for i in range(100))
    # The first token is not held back for the 50 ms frame pause (which would gather ~25
    # tokens): it leaves with whatever else arrived while the loop was busy (a few, on a
    # loaded machine).
    assert deltas[0]["text"].startswith("t0 ") and len(deltas[0]["text"].split()) <= 5
    # 0.2 s at one frame per 50 ms: the first token, then about four merged frames.
    assert 3 <= len(deltas) <= 7


def test_the_frame_budget_is_shared_by_the_running_answers(settings):
    settings.RELAY_FRAMES_PER_SECOND = 6000
    assert frame_pause(1) == 0.0  # one answer: every token at once
    assert frame_pause(50) == pytest.approx(50 / 6000)  # 8.3 ms each
    assert frame_pause(10_000) == FRAME_PAUSE_MAX
    settings.RELAY_FRAMES_PER_SECOND = 0
    assert frame_pause(10_000) == 0.0


async def test_partial_text_is_checkpointed_while_streaming_not_per_delta(user, connect, settings):
    settings.CHECKPOINT_INTERVAL = 0.2
    ws = await connect(user)
    await send(ws, "[sim deltas=150 interval=4]")
    frames = await frames_until(ws, lambda f: f["type"] == "delta")
    answer_id = answer_of(frames)["id"]
    seen = set()
    async with asyncio.timeout(10):
        while (message := await stored(answer_id)).status == "streaming":
            seen.add(message.seq)
            await asyncio.sleep(0.01)
    checkpoints = {s for s in seen if s > 0}
    assert checkpoints, "the partial text never reached the database while streaming"
    # ~0.6 s of streaming at one checkpoint per 0.2 s: a handful, not one per delta.
    assert len(checkpoints) <= 8


async def test_answers_running_together_are_checkpointed_a_slice_at_a_time(user, settings):
    settings.CHECKPOINT_INTERVAL = 1.0
    exchanges = await database_sync_to_async(exchanges_send)([
        Send(user=user, conversation_id=None, text=f"q{i}", model="yi-large") for i in range(20)])
    started = [Generation(e.answer, e.plan) for e in exchanges]
    for i, generation in enumerate(started):
        generation.parts = [f"answer {i}"]
        generation.last_write -= settings.CHECKPOINT_INTERVAL  # all due on the same tick
        running.generations[generation.message_id] = generation
    # Answers of earlier tests may still run here (a closed tab does not stop its answer).
    per_tick = math.ceil(len(running.generations) / CHECKPOINT_SLICES)
    try:
        written = []
        for _ in range(CHECKPOINT_SLICES):
            await upkeep._checkpoint()
            texts = await database_sync_to_async(
                lambda: set(Message.objects.filter(role="assistant").exclude(content="").values_list("content", flat=True)))()
            written.append(len(texts))
    finally:
        for generation in started:
            running.generations.pop(generation.message_id, None)
    # A tenth per tick (not all twenty in one write), and every one within the interval.
    assert all(b - a <= per_tick for a, b in zip([0, *written], written))
    assert written[0] <= per_tick < 20 and written[-1] == 20
    assert texts == {f"answer {i}" for i in range(20)}


async def test_sends_from_many_tabs_at_the_same_moment_each_get_their_own_answer(user, other_user, connect):
    sockets = [await connect(user if i % 2 else other_user) for i in range(6)]
    await asyncio.gather(*(
        send(ws, f"[sim deltas=20 interval=1] tab {i}", client_id=f"tab{i}") for i, ws in enumerate(sockets)))
    for i, ws in enumerate(sockets):
        frames = await frames_until(ws, is_done)
        conversation = first(frames, "conversation", client_id=f"tab{i}")["conversation"]
        assert first(frames, "subscribed")["conversation_id"] == conversation["id"]
        question, answer = [f["message"] for f in frames if f["type"] == "message"]
        assert question["content"] == f"[sim deltas=20 interval=1] tab {i}"
        assert question["conversation_id"] == answer["conversation_id"] == conversation["id"]
        assert text_of(frames, answer["id"]) == "".join(f"t{k} " for k in range(20))
        assert frames[-1]["message"]["status"] == "complete"
    assert await database_sync_to_async(Conversation.objects.count)() == 6


@pytest.mark.parametrize(("field", "what"), [("text", "That message"), ("system_prompt", "The system prompt")])
@pytest.mark.parametrize("character", ["\x00", "\ud800"])
async def test_a_character_that_cannot_be_stored_is_refused_and_nothing_is_stored(user, connect, field, what, character):
    ws = await connect(user)
    await ws.send_to(text_data=json.dumps({
        "type": "send", "conversation_id": None, "model": "yi-large", "client_id": "c4",
        "text": "hi", field: f"before {character} after"}))
    assert await ws.receive_json_from() == {
        "type": "error", "code": "bad_character", "client_id": "c4",
        "message": f"{what} contains a character that cannot be stored (U+0000, or half of a surrogate pair). "
        "Remove it and send again."}
    assert await message_count() == 0


async def test_a_conversation_id_that_is_not_a_number_is_not_found_and_starts_nothing(user, connect):
    ws = await connect(user)
    await send(ws, "hi", conversation_id="12abc", client_id="c3")
    await send(ws, "hi", conversation_id=2.5, client_id="c3")
    assert await ws.receive_json_from() == {
        "type": "error", "code": "not_found", "message": "That conversation does not exist or is not yours.",
        "client_id": "c3"}
    assert (await ws.receive_json_from())["code"] == "not_found"
    assert await message_count() == 0


async def test_second_tab_joining_mid_answer_gets_snapshot_then_the_rest(user, connect):
    first = await connect(user)
    await send(first, "[sim deltas=120 interval=4]")
    frames = await frames_until(first, lambda f: f["type"] == "delta" and f["seq"] >= 5)
    conversation_id, answer_id = conversation_id_of(frames), answer_of(frames)["id"]

    second = await connect(user)
    await second.send_json_to({"type": "subscribe", "conversation_id": conversation_id})
    second_frames = await frames_until(second, is_done)
    snapshot = next(f for f in second_frames if f["type"] == "snapshot")
    assert snapshot["from_seq"] == 0 and snapshot["seq"] >= 5
    expected = "".join(f"t{i} " for i in range(120))
    assert text_of(second_frames, answer_id) == expected
    assert second_frames[-1]["message"]["content"] == expected


async def test_reconnecting_tab_resumes_after_its_last_seq(user, connect):
    first = await connect(user)
    await send(first, "[sim deltas=120 interval=4]")
    frames = await frames_until(first, lambda f: f["type"] == "delta" and f["seq"] >= 4)
    conversation_id, answer_id = conversation_id_of(frames), answer_of(frames)["id"]
    await first.disconnect()
    seen = text_of(frames, answer_id)
    last_seq = max(f["seq"] for f in frames if f["type"] == "delta")

    again = await connect(user)
    await again.send_json_to(
        {"type": "subscribe", "conversation_id": conversation_id, "message_id": answer_id, "last_seq": last_seq})
    rest = await frames_until(again, is_done)
    snapshot = next(f for f in rest if f["type"] == "snapshot")
    assert snapshot["from_seq"] == last_seq
    resumed = seen + snapshot["text"] + "".join(
        f["text"] for f in rest if f["type"] == "delta" and f["seq"] > snapshot["seq"])
    assert resumed == "".join(f"t{i} " for i in range(120))


async def test_upstream_error_ends_the_answer_with_its_sentence(user, connect):
    ws = await connect(user)
    await send(ws, "[sim status=401]")
    frames = await frames_until(ws, is_done)
    message = frames[-1]["message"]
    assert (message["status"], message["error_code"]) == ("error", "auth")
    assert message["error_message"].startswith("The Yi API rejected the server's API key (401)")


async def test_retries_are_announced_to_the_page(user, connect):
    ws = await connect(user)
    await send(ws, "[sim status=529 times=1 deltas=3 interval=0]")
    frames = await frames_until(ws, is_done)
    retrying = next(f for f in frames if f["type"] == "retrying")
    assert (retrying["attempt"], retrying["reason"]) == (1, "The Yi API is overloaded (529)")
    assert frames[-1]["message"]["status"] == "complete"


async def test_a_429_being_retried_says_why_without_the_advice_for_giving_up(user, connect, settings):
    """The server tries again by itself: the note says what went wrong, not "wait a minute
    and try again", and no usage tier (issue 17)."""
    settings.YI_API_TIER = "free"
    ws = await connect(user)
    await send(ws, "[sim status=429 times=1 deltas=3 interval=0] busy key")
    frames = await frames_until(ws, is_done)
    retrying = next(f for f in frames if f["type"] == "retrying")
    assert retrying["reason"] == "The Yi API is rate-limiting the server's API key (429)"
    assert frames[-1]["message"]["status"] == "complete"


@pytest.mark.parametrize("tier, advice", [
    ("free", "Wait a minute and try again, or move to a higher usage tier."),
    ("none", "Wait a minute and try again."),
])
async def test_a_higher_tier_is_suggested_only_to_a_key_that_has_tiers(user, connect, settings, tier, advice):
    settings.YI_API_TIER = tier
    ws = await connect(user)
    await send(ws, "[sim status=429]")
    message = (await frames_until(ws, is_done))[-1]["message"]
    assert (message["status"], message["error_code"]) == ("error", "rate_limited")
    assert message["error_message"] == (
        f"The Yi API is rate-limiting the server's API key (429): too many requests or tokens per minute. {advice}")


def closed_port() -> int:
    """A port nothing listens on: bound, noted, and closed again."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_a_refused_connection_is_said_so_without_a_class_name(user, connect, settings):
    port = closed_port()
    settings.YI_API_BASE = f"http://127.0.0.1:{port}/v1"
    ws = await connect(user)
    await send(ws, "hello")
    frames = await frames_until(ws, is_done)
    assert [f["reason"] for f in frames if f["type"] == "retrying"] == [
        f"The Yi API at 127.0.0.1:{port} refused the connection"] * 2
    message = frames[-1]["message"]
    assert (message["status"], message["error_code"]) == ("error", "connection")
    assert message["error_message"] == (
        f"The Yi API at 127.0.0.1:{port} refused the connection. Check the key's base URL and that the service is "
        "running, then try again.")


async def test_cut_stream_keeps_the_partial_text_and_marks_the_error(user, connect):
    ws = await connect(user)
    await send(ws, "[sim deltas=10 cut=4 interval=1]")
    frames = await frames_until(ws, is_done)
    message = frames[-1]["message"]
    assert (message["status"], message["error_code"]) == ("error", "stream_cut")
    assert message["content"] == "t0 t1 t2 t3 "
    assert (await stored(message["id"])).content == "t0 t1 t2 t3 "


async def test_malformed_chunk_does_not_lose_text(user, connect):
    ws = await connect(user)
    await send(ws, "[sim deltas=8 malformed=2 interval=1]")
    frames = await frames_until(ws, is_done)
    assert frames[-1]["message"]["status"] == "complete"
    assert frames[-1]["message"]["content"] == "".join(f"t{i} " for i in range(8))


async def test_a_later_usage_chunk_missing_figures_keeps_the_earlier_ones(user, connect, settings):
    """Some OpenAI-compatible servers and proxies send usage again after the finish, with
    only some figures: the answer keeps the full count, not a count with holes."""
    chunks = [
        {"choices": [{"delta": {"role": "assistant"}, "index": 0}]},
        {"choices": [{"delta": {"content": "Hello"}, "index": 0}]},
        {
            "choices": [{"delta": {}, "index": 0, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 17, "completion_tokens": 64, "total_tokens": 81},
        },
        {"choices": [], "usage": {"completion_tokens": 64}},
    ]
    body = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n"
    async with canned_api(body.encode()) as url:
        settings.YI_API_BASE = url
        ws = await connect(user)
        await send(ws, "hi")
        done = (await frames_until(ws, is_done))[-1]["message"]
    assert (done["status"], done["content"]) == ("complete", "Hello")
    assert done["usage"] == {"prompt_tokens": 17, "completion_tokens": 64, "total_tokens": 81}
    message = await stored(done["id"])
    assert (message.prompt_tokens, message.completion_tokens, message.total_tokens) == (17, 64, 81)


async def test_request_carries_system_prompt_model_and_parameters(user, connect):
    ws = await connect(user)
    await send(ws, "[sim deltas=1]", model="yi-large-turbo", system_prompt="be brief", temperature=0.5, max_tokens=7)
    frames = await frames_until(ws, is_done)
    message = await stored(frames[-1]["message_id"])
    conversation = await database_sync_to_async(Conversation.objects.get)(pk=message.conversation_id)
    assert (message.model, message.params) == ("yi-large-turbo", {"temperature": 0.5, "max_tokens": 7})
    assert (conversation.system_prompt, conversation.model) == ("be brief", "yi-large-turbo")


async def test_other_tabs_of_the_user_hear_about_a_new_conversation(user, connect):
    watcher = await connect(user)
    ws = await connect(user)
    await send(ws, "[sim deltas=1] Plan a trip")
    frame = await watcher.receive_json_from(timeout=5)
    assert frame["type"] == "conversation" and frame["conversation"]["title"] == "[sim deltas=1] Plan a trip"


async def test_socket_without_a_session_is_refused():
    ws = WebsocketCommunicator(application, "/ws/chat/", headers=[(b"origin", b"http://localhost")])
    connected, _ = await ws.connect()
    assert not connected


async def test_socket_from_a_foreign_origin_is_refused(user):
    from tests.conftest import session_cookie

    cookie = await database_sync_to_async(session_cookie)(user)
    ws = WebsocketCommunicator(
        application, "/ws/chat/", headers=[(b"origin", b"http://evil.example"), (b"cookie", f"sessionid={cookie}".encode())]
    )
    connected, _ = await ws.connect()
    assert not connected


async def test_retry_after_a_cut_stream_answers_again_beside_the_failed_answer(user, connect):
    ws = await connect(user)
    await send(ws, "[sim deltas=6 cut=2 interval=0]")
    frames = await frames_until(ws, is_done)
    failed = frames[-1]["message"]
    assert failed["status"] == "error"
    await ws.send_json_to({"type": "retry", "message_id": failed["id"]})
    frames = await frames_until(ws, is_done)
    new = first(frames, "message")
    assert new["replaces"] == failed["id"]
    assert new["message"]["parent_id"] == failed["parent_id"] and new["message"]["id"] != failed["id"]
    # The simulator cuts every identical request; the retried one is identical, so it is cut again:
    # what matters here is that a second answer was made and the first one kept.
    assert (await stored(failed["id"])).content == "t0 t1 "
    assert frames[-1]["message_id"] == new["message"]["id"]


async def test_continue_appends_to_the_partial_answer_in_place(user, connect):
    ws = await connect(user)
    await send(ws, "[sim deltas=6 cut=3 interval=0] go")
    frames = await frames_until(ws, is_done)
    failed = frames[-1]["message"]
    assert (failed["content"], failed["seq"]) == ("t0 t1 t2 ", frames[-1]["seq"])
    await ws.send_json_to({"type": "continue", "message_id": failed["id"]})
    frames = await frames_until(ws, is_done)
    reopened = first(frames, "message")["message"]
    assert (reopened["id"], reopened["status"], reopened["content"]) == (failed["id"], "streaming", "t0 t1 t2 ")
    done = frames[-1]["message"]
    assert done["status"] == "complete" and done["id"] == failed["id"]
    # The continuation request carries the partial text and asks to go on; the simulator's
    # default answer then echoes that instruction.
    assert done["content"].startswith("t0 t1 t2 ") and "Continue it exactly where it stopped" in done["content"]
    deltas = [f for f in frames if f["type"] == "delta"]
    assert deltas[0]["seq"] == failed["seq"] + 1


async def test_continue_with_nothing_written_asks_for_retry(user, connect):
    ws = await connect(user)
    await send(ws, "[sim status=401]")
    frames = await frames_until(ws, is_done)
    await ws.send_json_to({"type": "continue", "message_id": frames[-1]["message_id"]})
    assert (await ws.receive_json_from())["code"] == "nothing_to_continue"


async def test_a_stalled_stream_ends_as_an_error_after_the_configured_time(user, connect, settings):
    settings.UPSTREAM_STALL_TIMEOUT = 0.5
    ws = await connect(user)
    await send(ws, "[sim deltas=5 stall=2 interval=0]")
    frames = await frames_until(ws, is_done)
    message = frames[-1]["message"]
    assert (message["status"], message["error_code"], message["content"]) == ("error", "stalled", "t0 t1 ")
    assert message["error_message"].startswith("The Yi API sent nothing for 0.5 seconds")


async def test_a_529_storm_retries_then_tells_the_person(user, connect):
    ws = await connect(user)
    await send(ws, "[sim status=529]")
    frames = await frames_until(ws, is_done)
    assert [f["attempt"] for f in frames if f["type"] == "retrying"] == [1, 2]
    message = frames[-1]["message"]
    assert (message["status"], message["error_code"]) == ("error", "overloaded")
    assert message["error_message"] == "The Yi API is overloaded right now (529: system busy). Try again in a moment."


async def test_answer_whose_process_died_is_marked_interrupted_keeping_its_checkpoint(user, connect, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.GENERATION_STALE_AFTER = 5
    conversation = await database_sync_to_async(Conversation.objects.create)(user=user, model="yi-large")
    orphan = await database_sync_to_async(Message.objects.create)(
        conversation=conversation, role="assistant", status="streaming", content="half an ans", seq=7,
        heartbeat_at=timezone.now() - timedelta(seconds=6),
    )
    ws = await connect(user)
    await ws.send_json_to({"type": "subscribe", "conversation_id": conversation.pk})
    await frames_until(ws, lambda f: f["type"] == "subscribed")
    # Every process sweeps for dead answers (this one started doing so when the socket opened).
    done = (await frames_until(ws, is_done, timeout=5))[-1]
    assert done["message"]["status"] == "interrupted"
    assert (done["message"]["content"], done["seq"]) == ("half an ans", 7)
    assert done["message"]["error_message"] == (
        "The server restarted while answering; the text up to that moment is kept.")
    assert (await stored(orphan.pk)).status == "interrupted"


async def test_a_heartbeat_left_stale_by_refused_writes_is_not_taken_for_a_dead_process(user, settings):
    """Another process's answer, whose heartbeat went stale while the database refused
    writes: once writes work, this process's sweep leaves its owner time to refresh it."""
    settings.GENERATION_STALE_AFTER = 1.0  # a suspect settles for 0.25 s
    answer = await stale_answer(user)
    # While writes are refused, a sweep cannot even write its suspicion down.
    await writes_refused(True)
    try:
        with pytest.raises(DatabaseError):
            await upkeep.generation_sweep()
        await asyncio.sleep(0.3)  # longer than a suspect settles
    finally:
        await writes_refused(False)
    # Writes work again. Its first sweep only suspects the answer; the owner's next
    # checkpoint refreshes the heartbeat; the sweep after that finds it alive.
    assert await upkeep.generation_sweep() == 0
    await upkeep._checkpoint_write([], [answer.pk])
    await asyncio.sleep(0.3)
    assert await upkeep.generation_sweep() == 0
    assert (await stored(answer.pk)).status == "streaming"

    # An owner that never refreshes it again is gone: two sweeps, 0.25 s apart, end it.
    await asyncio.sleep(1.05)
    assert await upkeep.generation_sweep() == 0
    await asyncio.sleep(0.3)
    assert await upkeep.generation_sweep() == 1
    message = await stored(answer.pk)
    assert (message.status, message.content, message.seq) == ("interrupted", "so far", 3)


@contextlib.contextmanager
def another_connection_writing(seconds: float, statement: str = "", params: tuple = (), *, database: str = ""):
    """Another SQLite connection (another process's) holds the write lock on `database`
    (the tests' own by default) for `seconds`, having run `statement` in its transaction;
    every other writer waits for it."""
    import sqlite3
    import threading

    if not database:
        from django.db import connection

        if connection.vendor != "sqlite":
            pytest.skip("holds SQLite's write lock")
        database = connection.settings_dict["NAME"]
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        db = sqlite3.connect(database, timeout=20, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        if statement:
            db.execute(statement, params)
        holding.set()
        release.wait(seconds)
        db.execute("COMMIT")
        db.close()

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait()
    try:
        yield
    finally:
        release.set()
        holder.join()


async def stale_answer(user, seconds=5):
    """Another process's answer, streaming, its heartbeat `seconds` old."""
    from datetime import timedelta

    from django.utils import timezone

    conversation = await database_sync_to_async(Conversation.objects.create)(user=user, model="yi-large")
    return await database_sync_to_async(Message.objects.create)(
        conversation=conversation, role="assistant", status="streaming", content="so far", seq=3,
        heartbeat_at=timezone.now() - timedelta(seconds=seconds),
    )


async def test_a_sweep_that_waited_out_a_write_lock_leaves_the_owner_time_to_refresh(user, settings):
    settings.GENERATION_STALE_AFTER = 1.0  # a suspect settles for 0.25 s
    answer = await stale_answer(user)
    with another_connection_writing(1.0):
        # Its suspicion is written down once the lock is released, after a 1 s wait.
        assert await upkeep.generation_sweep() == 0
    await asyncio.sleep(0.1)  # one upkeep tick: too soon for the owner to have refreshed it
    assert await upkeep.generation_sweep() == 0
    assert (await stored(answer.pk)).status == "streaming"


async def test_a_heartbeat_refreshed_while_the_sweep_ends_the_answer_keeps_it(user, settings):
    from django.utils import timezone

    settings.GENERATION_STALE_AFTER = 1.0
    answer = await stale_answer(user)
    assert await upkeep.generation_sweep() == 0  # suspected
    await asyncio.sleep(0.3)  # settled: the next sweep ends it unless its heartbeat moved
    # The owner's checkpoint is in flight when the sweep reads, and commits 0.3 s later.
    refresh = "UPDATE chat_message SET heartbeat_at = ? WHERE id = ?"
    with another_connection_writing(0.3, refresh, (timezone.now().strftime("%Y-%m-%d %H:%M:%S.%f"), answer.pk)):
        assert await upkeep.generation_sweep() == 0
    assert (await stored(answer.pk)).status == "streaming"


async def test_resent_first_message_does_not_make_a_second_conversation(user, connect):
    ws = await connect(user)
    await send(ws, "[sim deltas=2 interval=0]", client_id="first-send")
    await frames_until(ws, is_done)
    again = await connect(user)
    await send(again, "[sim deltas=2 interval=0]", client_id="first-send")
    frames = await frames_until(again, lambda f: f["type"] == "message" and f["message"]["role"] == "assistant")
    assert frames[0]["type"] == "conversation" and frames[0]["client_id"] == "first-send"
    assert frames[-1]["message"]["status"] == "complete"
    assert await nothing_but_titles(again, 0.3)
    assert await database_sync_to_async(Conversation.objects.count)() == 1
    assert await message_count() == 2
