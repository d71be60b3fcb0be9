"""A conversation's settings (system prompt, temperature, top_p, max_tokens): checked
against the reference's ranges and the model's window, remembered by the conversation from
the sends that name them, and what reaches the API with the next answer."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async

from chat.input_checks import params_validate
from chat.models import Conversation, Message
from chat.refusals import SendRefused
from tests.simulator_server import canned_api
from tests.test_search import on_each_database

pytestmark = pytest.mark.django_db(transaction=True)

ANSWER = "".join(
    f"data: {json.dumps(chunk)}\n\n"
    for chunk in [
        {"choices": [{"delta": {"role": "assistant", "content": "Fine."}, "index": 0}]},
        {"choices": [{"delta": {}, "index": 0, "finish_reason": "stop"}],
         "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}},
    ]
).encode() + b"data: [DONE]\n\n"


async def frames_until(ws, predicate, timeout=10.0):
    frames = []
    async with asyncio.timeout(timeout):
        while True:
            frames.append(await ws.receive_json_from(timeout=timeout))
            if predicate(frames[-1]):
                return frames


def is_done(frame):
    return frame["type"] == "done"


async def send(ws, text, **fields):
    frame = {"type": "send", "conversation_id": None, "text": text, "model": "yi-large", **fields}
    await ws.send_json_to(frame)


@database_sync_to_async
def conversation_of(message_id):
    return Message.objects.select_related("conversation").get(pk=message_id).conversation


@database_sync_to_async
def messages_stored():
    return Message.objects.count()


@pytest.fixture
async def api(settings):
    """An API recording the body of every answer's request that reaches it (not the
    requests for a title after a conversation's first answer)."""
    received: list[dict] = []
    async with canned_api(ANSWER, received=received) as url:
        settings.YI_API_BASE = url
        yield Answers(received)


class Answers:
    def __init__(self, received):
        self.received = received

    def __getitem__(self, i):
        return [body for body in self.received if body.get("stream")][i]

    def __iter__(self):
        return iter([body for body in self.received if body.get("stream")])


@pytest.mark.parametrize(("fields", "sentence"), [
    ({"temperature": 2.5}, "temperature must be a number from 0 to 2."),
    ({"temperature": -0.1}, "temperature must be a number from 0 to 2."),
    ({"top_p": 1.01}, "top_p must be a number from 0 to 1."),
    ({"max_tokens": 0}, "max_tokens must be a number from 1 to 32768."),
    ({"max_tokens": 1.5}, "max_tokens must be a number from 1 to 32768."),
    ({"max_tokens": True}, "max_tokens must be a number from 1 to 32768."),
    # The window of the model picked bounds max_tokens: yi-large-turbo's is 4K.
    ({"max_tokens": 4097, "model": "yi-large-turbo"},
     "max_tokens must be a number from 1 to 4096 (yi-large-turbo's context window)."),
    ({"max_tokens": 32769}, "max_tokens must be a number from 1 to 32768."),
    # A model whose window is unknown: the reference's general bound.
    ({"max_tokens": 40000, "model": "someone-elses-model"}, "max_tokens must be a number from 1 to 32768."),
])
async def test_a_setting_out_of_range_is_refused_with_the_range_and_nothing_is_stored(user, connect, fields, sentence):
    ws = await connect(user)
    await send(ws, "hi", client_id="c1", **fields)
    assert await ws.receive_json_from(timeout=5) == {
        "type": "error", "code": "bad_params", "message": sentence, "client_id": "c1",
    }
    assert await messages_stored() == 0


def test_the_window_bound_is_the_model_window_and_the_general_bound_otherwise(settings):
    settings.MODEL_CONTEXT_WINDOWS = {"local-8k": 8192}
    assert params_validate({"max_tokens": 4096}, model="yi-large-turbo") == {"max_tokens": 4096}
    assert params_validate({"max_tokens": 8192}, model="local-8k") == {"max_tokens": 8192}
    with pytest.raises(SendRefused) as refused:
        params_validate({"max_tokens": 8193}, model="local-8k")
    assert (refused.value.message, refused.value.field) == (
        "max_tokens must be a number from 1 to 8192 (local-8k's context window).", "max_tokens")
    # Named as null or "": back to the API's default; left out: not named at all.
    assert params_validate({"temperature": None, "top_p": ""}) == {"temperature": None, "top_p": None}
    assert params_validate({"text": "hi"}) == {}


async def test_settings_are_kept_by_the_conversation_and_sent_with_its_next_answers(user, connect, api):
    ws = await connect(user)
    await send(ws, "one", system_prompt="Be brief.", temperature=0.7, max_tokens=300)
    done = (await frames_until(ws, is_done))[-1]
    conversation = await conversation_of(done["message_id"])
    assert (conversation.system_prompt, conversation.params) == ("Be brief.", {"temperature": 0.7, "max_tokens": 300})

    # A send that names no setting: the conversation's go with it.
    await send(ws, "two", conversation_id=conversation.pk)
    await frames_until(ws, is_done)
    # The system prompt changed after the start, top_p set, temperature back to the default.
    await send(ws, "three", conversation_id=conversation.pk, system_prompt="Answer in French.", top_p=0.5,
               temperature=None)
    done = (await frames_until(ws, is_done))[-1]

    first, second, third = api
    assert first["messages"][0] == {"role": "system", "content": "Be brief."}
    assert (first["temperature"], first["max_tokens"], "top_p" in first) == (0.7, 300, False)
    assert second["messages"][0] == {"role": "system", "content": "Be brief."}
    assert (second["temperature"], second["max_tokens"], "top_p" in second) == (0.7, 300, False)
    assert third["messages"][0] == {"role": "system", "content": "Answer in French."}
    assert (third["top_p"], third["max_tokens"], "temperature" in third) == (0.5, 300, False)
    # What each answer was sent with is stored with it (its facts show it).
    assert done["message"]["params"] == {"max_tokens": 300, "top_p": 0.5}
    conversation = await conversation_of(done["message_id"])
    assert (conversation.system_prompt, conversation.params) == ("Answer in French.", {"max_tokens": 300, "top_p": 0.5})


async def test_each_conversation_keeps_its_own_settings(user, connect, api):
    ws = await connect(user)
    await send(ws, "one", temperature=1.5, system_prompt="Be a pirate.")
    await frames_until(ws, is_done)
    await send(ws, "two")
    await frames_until(ws, is_done)
    assert "temperature" not in api[1] and api[1]["messages"][0]["role"] == "user"


async def test_a_retry_carrying_new_settings_asks_with_them_and_the_conversation_keeps_them(user, connect, api):
    ws = await connect(user)
    await send(ws, "one", temperature=0.2)
    done = (await frames_until(ws, is_done))[-1]
    await ws.send_json_to({"type": "retry", "message_id": done["message_id"], "temperature": 1.2,
                           "system_prompt": "Be surprising."})
    retried = (await frames_until(ws, is_done))[-1]
    assert api[1]["temperature"] == 1.2 and api[1]["messages"][0] == {"role": "system", "content": "Be surprising."}
    assert retried["message"]["params"] == {"temperature": 1.2}
    # A plain retry keeps the conversation's settings (no longer those of the answer it replaces).
    await ws.send_json_to({"type": "retry", "message_id": retried["message_id"]})
    await frames_until(ws, is_done)
    assert api[2]["temperature"] == 1.2


async def test_a_retry_out_of_range_is_refused_with_the_range(user, connect, api):
    ws = await connect(user)
    await send(ws, "one", model="yi-large-turbo")
    done = (await frames_until(ws, is_done))[-1]
    await ws.send_json_to({"type": "retry", "message_id": done["message_id"], "max_tokens": 5000})
    frame = await ws.receive_json_from(timeout=5)
    while frame["type"] == "conversation_updated":  # the title after the first answer
        frame = await ws.receive_json_from(timeout=5)
    assert frame == {"type": "error", "code": "bad_params",
                     "message": "max_tokens must be a number from 1 to 4096 (yi-large-turbo's context window)."}


async def test_every_tab_of_the_person_hears_the_conversation_settings_changed(user, connect, api):
    ws = await connect(user)
    await send(ws, "one")
    done = (await frames_until(ws, is_done))[-1]
    conversation_id = (await conversation_of(done["message_id"])).pk
    other_tab = await connect(user)
    await send(ws, "two", conversation_id=conversation_id, system_prompt="Be kind.", max_tokens=64,
               model="yi-large-turbo")
    frames = await frames_until(
        other_tab, lambda f: f["type"] == "conversation_updated" and f["conversation"]["system_prompt"] == "Be kind."
    )
    # The conversation as the send left it: its new model and date too (an older date would
    # move it down the other tabs' lists).
    updated = frames[-1]["conversation"]
    assert (updated["params"], updated["model"]) == ({"max_tokens": 64}, "yi-large-turbo")
    stored = await conversation_of(done["message_id"])
    assert updated["updated_at"] == stored.updated_at.isoformat()



@pytest.fixture
def browser_client(user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


def import_(client, data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post("/import/", {"file": SimpleUploadedFile("export.json", data)})


def test_a_conversation_s_settings_go_out_in_its_export_and_come_back_with_it(user, browser_client):
    conversation = Conversation.objects.create(user=user, model="yi-large", system_prompt="Be brief.",
                                               params={"temperature": 0.7, "max_tokens": 300})
    Message.objects.create(conversation=conversation, role="user", content="hi")
    exported = browser_client.get(f"/export/?ids={conversation.pk}&format=json").content
    (new_id,) = import_(browser_client, exported).json()["conversation_ids"]
    copy_ = Conversation.objects.get(pk=new_id)
    assert (copy_.system_prompt, copy_.params) == ("Be brief.", {"temperature": 0.7, "max_tokens": 300})

    # Settings out of range would make every later send fail: refused, nothing imported.
    data = json.loads(exported)
    data["conversations"][0]["params"] = {"temperature": 9}
    response = import_(browser_client, json.dumps(data).encode())
    assert (response.status_code, response.json()["message"]) == (
        400, "Conversation 1's settings cannot be used: temperature must be a number from 0 to 2.")
    assert Conversation.objects.count() == 2


@database_sync_to_async
def image_uploaded(user, settings, tmp_path):
    import io

    from PIL import Image

    from chat.attachments import attachment_create, image_prepare_upload

    settings.MEDIA_ROOT = tmp_path
    out = io.BytesIO()
    Image.new("RGB", (20, 20), (200, 0, 0)).save(out, "PNG")
    return attachment_create(user=user, image=image_prepare_upload(out.getvalue()), original_name="red.png").pk


async def test_max_tokens_is_bounded_by_the_window_of_the_model_that_answers(user, connect, settings, tmp_path):
    """Images sent to yi-large are answered by yi-vision, whose window is half as large."""
    image_id = await image_uploaded(user, settings, tmp_path)
    ws = await connect(user)
    await send(ws, "What colour?", attachment_ids=[image_id], max_tokens=20000, client_id="c1")
    assert await ws.receive_json_from(timeout=5) == {
        "type": "error", "code": "bad_params", "client_id": "c1",
        "message": "max_tokens must be a number from 1 to 16384 (yi-vision's context window).",
    }
    assert await messages_stored() == 0


@pytest.mark.parametrize("database", on_each_database(transaction=True))
def test_migration_0009_gives_each_conversation_its_latest_answer_s_parameters(database):
    """So that Retry, which now asks with the conversation's parameters, asks as before."""
    from django.contrib.auth import get_user_model
    from django.db import connections
    from django.db.migrations.executor import MigrationExecutor

    connection = connections[database]
    executor = MigrationExecutor(connection)
    before = [("chat", "0008_tool_runs")]
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps
        user = get_user_model().objects.db_manager(database).create_user("ann")
        made = old.get_model("chat", "Conversation").objects.using(database)
        answered, unanswered = made.create(user_id=user.pk, model="yi-large"), made.create(user_id=user.pk, model="x")
        messages = old.get_model("chat", "Message").objects.using(database)
        messages.create(conversation=answered, role="assistant", params={"temperature": 1})
        messages.create(conversation=answered, role="assistant", params={"temperature": 0.5, "max_tokens": 9})
        messages.create(conversation=answered, role="user")
        messages.create(conversation=unanswered, role="user")
    finally:
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes("chat"))
    conversations = Conversation.objects.using(database)
    assert conversations.get(pk=answered.pk).params == {"temperature": 0.5, "max_tokens": 9}
    assert conversations.get(pk=unanswered.pk).params == {}
