"""Images sent with a person's key to another OpenAI-compatible provider (tests/openai_server.py,
over real HTTP): the model for images the key names answers them, and the follow-ups; a key
that names none is refused with nothing stored, unless the picked model is known to take
images; a key to the Yi API still sends them to yi-vision."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from chat.catalog import images_model_of, images_refused
from chat.models import Attachment, Conversation, Message
from chat.refusals import sentence_in
from chat.upstream import Credential
from tests import test_providers
from tests.test_consumer import answer_of, conversation_id_of, first, frames_until
from tests.test_image_sends import ask, photo, rows, uploaded
from tests.test_providers import key_add, model_add, models_of, requests_received

openai_url = test_providers.openai_url  # the fixture: another provider, serving on a free port

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def refusal(host: str) -> str:
    return (f"Images need a model that takes them: llama3.2 is not known to, and the key “Local” ({host}) names none. "
            "Set “Model for images” for this key on the Keys page, or pick a model that takes images.")


async def test_images_with_a_key_that_names_no_model_for_images_are_refused_and_nothing_is_stored(
    user, connect, openai_url
):
    await database_sync_to_async(key_add)(user, "Local", key="sk-no-vision-4b2d", base_url=openai_url, default=True)
    asked = len(requests_received(openai_url))
    ws = await connect(user)
    image = await uploaded(user, photo())

    frames = await ask(ws, "What is this?", model="llama3.2", attachment_ids=[image])

    assert [f["type"] for f in frames] == ["error"]
    assert (frames[0]["code"], frames[0]["message"]) == ("model_takes_no_images", refusal(openai_url.split("/")[2]))
    assert await rows(Message) == [] and await rows(Conversation) == []
    assert [a.message_id for a in await rows(Attachment)] == [None]  # still attachable
    assert len(requests_received(openai_url)) == asked  # nothing went to the provider


async def test_an_image_follow_up_with_a_key_that_names_no_model_for_images_is_refused_and_not_stored(
    user, connect, openai_url
):
    await database_sync_to_async(key_add)(user, "Local", key="sk-no-vision-77e0", base_url=openai_url, default=True)
    ws = await connect(user)
    frames = await ask(ws, "Hello", model="llama3.2")
    assert first(frames, "done")["message"]["content"] == "Echo: Hello"

    refused = await ask(ws, "And this?", model="llama3.2", conversation_id=conversation_id_of(frames),
                        attachment_ids=[await uploaded(user, photo())])

    assert (refused[-1]["code"], refused[-1]["message"]) == ("model_takes_no_images", refusal(openai_url.split("/")[2]))
    assert [m.content for m in await rows(Message)] == ["Hello", "Echo: Hello"]


async def test_a_retry_goes_to_the_keys_model_for_images_again_and_says_so(user, connect, openai_url):
    await database_sync_to_async(key_add)(user, "Local", key="sk-retry-vision-3d9e", base_url=openai_url, default=True,
                                          images_model="llava")
    model_add(openai_url, api_key="sk-retry-vision-3d9e", model="llava", owned_by="library")
    ws = await connect(user)
    frames = await ask(ws, "What is this?", model="llama3.2", attachment_ids=[await uploaded(user, photo())])

    await ws.send_json_to({"type": "retry", "message_id": first(frames, "done")["message_id"]})
    retried = await frames_until(ws, lambda f: f["type"] in ("done", "error"))

    done = first(retried, "done")["message"]
    assert (done["model"], done["notes"], done["status"]) == (
        "llava", ["llama3.2 does not take images, so llava answered."], "complete")
    assert requests_received(openai_url)[-1]["model"] == "llava"


async def test_a_model_the_settings_say_takes_images_answers_them_itself_with_another_providers_key(
    user, connect, openai_url, settings
):
    settings.VISION_MODELS = frozenset({"llava"})
    await database_sync_to_async(key_add)(user, "Local", key="sk-llava-2f81", base_url=openai_url, default=True)
    model_add(openai_url, api_key="sk-llava-2f81", model="llava", owned_by="library")
    ws = await connect(user)

    frames = await ask(ws, "What is this?", model="llava", attachment_ids=[await uploaded(user, photo())])

    answer = answer_of(frames)
    assert (answer["model"], answer["notes"]) == ("llava", [])
    assert first(frames, "done")["message"]["content"] == "Echo: What is this?"
    sent = requests_received(openai_url)[-1]
    question = next(m for m in sent["messages"] if m["role"] == "user")
    assert sent["model"] == "llava" and question["content"][1]["image_url"]["url"].startswith("data:image/jpeg;base64,")


async def test_a_persons_key_to_the_yi_api_still_sends_images_to_yi_vision(user, connect, simulator_url):
    await database_sync_to_async(key_add)(user, "Yi", key="sk-yi-vision-5a3c", base_url=simulator_url, default=True)
    ws = await connect(user)

    frames = await ask(ws, "What is this?", attachment_ids=[await uploaded(user, photo())])

    answer = answer_of(frames)
    assert (answer["model"], answer["notes"]) == (
        "yi-vision", ["yi-large does not take images, so yi-vision answered."])
    assert first(frames, "done")["message"]["content"].startswith("I see 1 image: image 1 is a JPEG, 480×640 pixels")


async def test_the_picker_marks_the_model_for_images_a_key_names_as_taking_images(
    async_client, user, openai_url
):
    await database_sync_to_async(key_add)(user, "Local", key="sk-picker-90ad", base_url=openai_url, default=True,
                                          images_model="llava")
    model_add(openai_url, api_key="sk-picker-90ad", model="llava", owned_by="library")
    status, listed = await models_of(async_client, user)
    assert status == 200
    assert [(m["id"], m["vision"]) for m in listed["models"]] == [
        ("llama3.2", False), ("qwen2.5-coder", False), ("llava", True)]


@pytest.mark.parametrize("base_url, images_model, answers", [
    ("https://api.01.ai/v1", "", "yi-vision"),  # 01.AI's own hosts, wherever the server's key points
    ("https://api.lingyiwanwu.com/v1", "", "yi-vision"),
    ("https://api.openai.com/v1", "", ""),  # another provider names its own, or has none
    ("https://api.openai.com/v1", "gpt-4o", "gpt-4o"),
    ("https://api.01.ai/v1", "yi-vision-v2", "yi-vision-v2"),  # a key's own wins everywhere
])
def test_the_model_that_answers_images_is_the_keys_own_else_its_providers(base_url, images_model, answers):
    credential = Credential(base_url=base_url, api_key="sk-x", label="Mine", key_id=1, images_model=images_model)
    assert images_model_of(credential) == answers


def test_the_servers_key_answers_images_with_vision_model_wherever_it_points(settings, openai_url):
    settings.VISION_MODEL = "llava"
    assert images_model_of(Credential(base_url=openai_url, api_key="sk-x", yi=True)) == "llava"


def test_the_refusal_is_said_in_chinese_too():
    refused = images_refused("llama3.2", credential=Credential(base_url="http://127.0.0.1:11434/v1", api_key="ollama",
                                                                 label="Ollama", key_id=3))
    assert sentence_in("zh-hans", refused.template, refused.params) == (
        "图片需要能看图的模型：不知道 llama3.2 能否看图，而密钥“Ollama”（127.0.0.1:11434）也没有指定看图模型。"
        "请在“密钥”页面为这个密钥设置“看图模型”，或选一个能看图的模型。")
