"""Another OpenAI-compatible provider than the Yi API: a person's key pointing at it, a
conversation against it end to end, and the model picker's list per credential
(tests/openai_server.py is that provider: OpenAI's shapes, not the Yi API's)."""

from __future__ import annotations

import httpx
import pytest
from channels.db import database_sync_to_async
from django.core.cache import cache

from chat import upstream
from chat.crypto import secret_encrypt
from chat.models import ApiKey, Message
from chat.upstream import Credential, YiClient
from chat.upstream_events import Finish, TextDelta, Usage
from tests.openai_server import running_openai_server
from tests.test_consumer import answer_of, frames_until, is_done, send, text_of

pytestmark = pytest.mark.django_db(transaction=True)

# The provider's own models, as its GET /models lists them, with no facts the app knows.
LOCAL_MODELS = [
    {"id": "llama3.2", "owned_by": "library", "context_window": None, "vision": False, "tools": False,
     "price_in": None, "price_out": None},
    {"id": "qwen2.5-coder", "owned_by": "library", "context_window": None, "vision": False, "tools": False,
     "price_in": None, "price_out": None},
]


@pytest.fixture(scope="session")
def openai_url():
    with running_openai_server(env={"OPENAI_SERVER_DELTA_MS": "1"}) as url:
        yield url


@pytest.fixture(scope="session")
def strict_url():
    """A server that refuses `stream_options` as an argument it does not know."""
    with running_openai_server(env={"OPENAI_SERVER_REFUSES": "stream_options"}) as url:
        yield url


@pytest.fixture(autouse=True)
def models_cache_empty():
    """Keys' ids come again in the next test's database: no list may outlive its test."""
    cache.clear()
    yield
    cache.clear()


def key_add(
    user, label: str, *, key: str, base_url: str, default: bool = False, images_model: str | None = None
) -> ApiKey:
    return ApiKey.objects.create(
        user=user, label=label, base_url=base_url, key_encrypted=secret_encrypt(key), key_last4=key[-4:],
        is_default=default, images_model=images_model,
    )


def model_add(openai_url: str, *, api_key: str, model: str, owned_by: str) -> None:
    """A model only this key sees, as an organisation sees its own fine-tuned models."""
    base = openai_url.removesuffix("/v1")
    added = httpx.post(f"{base}/control/models", json={"api_key": api_key, "id": model, "owned_by": owned_by})
    added.raise_for_status()


def requests_received(openai_url: str) -> list[dict]:
    return httpx.get(openai_url.removesuffix("/v1") + "/control/requests").json()


async def models_of(async_client, user, query: str = "") -> tuple[int, dict]:
    await async_client.aforce_login(user)
    response = await async_client.get(f"/api/models{query}")
    await upstream.pool_close()
    return response.status_code, response.json()


async def test_an_answer_from_another_provider_streams_completes_and_stores_its_usage(user, connect, openai_url):
    key = await database_sync_to_async(key_add)(
        user, "Local vLLM", key="sk-local-alice-7f3a", base_url=openai_url, default=True
    )
    ws = await connect(user)
    await send(ws, "Hello from yiweb", model="llama3.2")
    frames = await frames_until(ws, lambda f: is_done(f) or f["type"] == "error")

    answer = answer_of(frames)
    assert text_of(frames, answer["id"]) == "Echo: Hello from yiweb"
    done = frames[-1]
    assert done["type"] == "done" and done["message"]["status"] == "complete"
    # The provider's words: 3 of the question and 3 for the message, 4 of the answer.
    assert done["message"]["usage"] == {"prompt_tokens": 6, "completion_tokens": 4, "total_tokens": 10}
    stored = await Message.objects.aget(pk=answer["id"])
    assert (stored.content, stored.status, stored.finish_reason) == ("Echo: Hello from yiweb", "complete", "stop")
    assert (stored.prompt_tokens, stored.completion_tokens, stored.total_tokens) == (6, 4, 10)
    assert stored.api_key_id == key.pk
    streamed = [r for r in requests_received(openai_url) if r.get("stream") is True]
    assert streamed[-1]["stream_options"] == {"include_usage": True}


async def test_the_client_reads_openais_stream_with_usage_after_the_finish_in_a_chunk_without_choices(openai_url):
    client = YiClient(credential=Credential(base_url=openai_url, api_key="sk-client-0001"))
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "two words"}]}
    events = [event async for event in client.stream(body)]
    await upstream.pool_close()
    assert events == [
        TextDelta("Echo: "), TextDelta("two "), TextDelta("words"), Finish("stop"),
        Usage(prompt_tokens=5, completion_tokens=3, total_tokens=8),
    ]


async def test_the_servers_key_pointed_at_another_provider_gets_usage_too(openai_url):
    """YI_API_BASE may name vLLM or Ollama: the server's credential is asked for usage too."""
    client = YiClient(credential=Credential(base_url=openai_url, api_key="sk-client-0002", yi=True))
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "asked"}]}
    events = [event async for event in client.stream(body)]
    await upstream.pool_close()
    assert events[-1] == Usage(prompt_tokens=4, completion_tokens=2, total_tokens=6)


@pytest.mark.parametrize("base_url", ["https://api.01.ai/v1", "https://api.lingyiwanwu.com/v1"])
def test_01ais_own_hosts_are_not_sent_stream_options_which_the_reference_does_not_name(base_url):
    """The Yi API sends usage unasked; a parameter it does not document could earn a 400."""
    assert not Credential(base_url=base_url, api_key="sk-yi-0003").usage_asked


async def test_a_provider_that_refuses_stream_options_still_answers_without_usage(user, connect, strict_url):
    await database_sync_to_async(key_add)(user, "Old server", key="sk-strict-0004", base_url=strict_url, default=True)
    ws = await connect(user)
    answers = []
    for text in ("first question", "second question"):
        await send(ws, text, model="llama3.2", conversation_id=answers[-1]["conversation_id"] if answers else None)
        frames = await frames_until(ws, lambda f: is_done(f) or f["type"] == "error")
        assert frames[-1]["type"] == "done"
        answers.append(frames[-1]["message"])

    assert [(a["status"], a["content"], a["usage"]) for a in answers] == [
        ("complete", "Echo: first question", None), ("complete", "Echo: second question", None),
    ]
    streamed = [r for r in requests_received(strict_url) if r.get("stream") is True]
    # Refused once with it, then asked without it, and the next answer without it at once.
    assert ["stream_options" in r for r in streamed] == [True, False, False]


async def test_another_providers_models_are_listed_with_their_owner_and_no_facts(async_client, user, openai_url):
    key = await database_sync_to_async(key_add)(user, "Local vLLM", key="sk-local-alice-7f3a", base_url=openai_url)
    status, data = await models_of(async_client, user, f"?key_id={key.pk}")
    assert status == 200
    assert data == {"models": LOCAL_MODELS, "default": "yi-large"}


async def test_the_yi_models_carry_the_references_window_images_tools_and_prices(async_client, user):
    status, data = await models_of(async_client, user)
    assert status == 200
    assert data["models"] == [
        {"id": "yi-large", "owned_by": "01.ai", "context_window": 32768, "vision": False, "tools": False,
         "price_in": "3", "price_out": "3"},
        {"id": "yi-large-turbo", "owned_by": "01.ai", "context_window": 4096, "vision": False, "tools": False,
         "price_in": "0.19", "price_out": "0.19"},
        {"id": "yi-large-fc", "owned_by": "01.ai", "context_window": 32768, "vision": False, "tools": True,
         "price_in": "3", "price_out": "3"},
        {"id": "yi-vision", "owned_by": "01.ai", "context_window": 16384, "vision": True, "tools": False,
         "price_in": "0.19", "price_out": "0.19"},
    ]


async def test_two_people_with_keys_to_one_provider_never_see_each_others_list(
    async_client, user, other_user, openai_url
):
    await database_sync_to_async(key_add)(user, "Lab", key="sk-alice-0001", base_url=openai_url, default=True)
    await database_sync_to_async(key_add)(other_user, "Lab", key="sk-bob-0002", base_url=openai_url, default=True)
    model_add(openai_url, api_key="sk-alice-0001", model="ft:llama3.2:alice-lab", owned_by="alice-lab")

    _, hers = await models_of(async_client, user)  # now kept for her key
    _, his = await models_of(async_client, other_user)

    assert [m["id"] for m in hers["models"]] == ["llama3.2", "qwen2.5-coder", "ft:llama3.2:alice-lab"]
    assert his["models"] == LOCAL_MODELS


async def test_the_list_is_kept_a_few_minutes_and_refresh_asks_the_provider_again(async_client, user, openai_url):
    await database_sync_to_async(key_add)(user, "Lab", key="sk-alice-0003", base_url=openai_url, default=True)
    _, before = await models_of(async_client, user)
    model_add(openai_url, api_key="sk-alice-0003", model="ft:qwen2.5-coder:new", owned_by="alice-lab")

    _, kept = await models_of(async_client, user)
    _, refreshed = await models_of(async_client, user, "?refresh=1")
    _, after = await models_of(async_client, user)

    assert kept == before and before["models"] == LOCAL_MODELS
    new = {"id": "ft:qwen2.5-coder:new", "owned_by": "alice-lab", "context_window": None, "vision": False,
           "tools": False, "price_in": None, "price_out": None}
    assert refreshed["models"] == after["models"] == [*LOCAL_MODELS, new]
