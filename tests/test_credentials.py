"""Which credential a send uses: the conversation's chosen key, else the user's default,
else the server's key (when SERVER_KEY_FOR_ALL allows), over the websocket against the
simulator (which refuses keys that start with "invalid")."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from chat.credentials import SERVER_KEY, credentials_for, server_credential
from chat.crypto import secret_encrypt
from chat.models import ApiKey, Conversation, Message
from chat.refusals import SendRefused
from chat.upstream import Credential, YiClient
from tests.test_consumer import answer_of, frames_until, is_done, send

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "sk-credential-test-5b7d1c"


def key_add(user, label, *, key=KEY, base_url=None, default=False) -> ApiKey:
    from django.conf import settings

    return ApiKey.objects.create(
        user=user, label=label, base_url=base_url or settings.YI_API_BASE, key_encrypted=secret_encrypt(key),
        key_last4=key[-4:], is_default=default,
    )


async def answer_to(ws, text="[sim deltas=2 interval=0] hi", **extra) -> dict:
    await send(ws, text, **extra)
    frames = await frames_until(ws, lambda f: is_done(f) or f["type"] == "error")
    return frames


def test_the_chosen_key_comes_first_then_the_default_then_the_servers(user, other_user, settings):
    work = key_add(user, "work", key="sk-work-0001")
    home = key_add(user, "home", key="sk-home-0002", default=True)
    chosen, default, server = credentials_for([(user.pk, work.pk), (user.pk, None), (other_user.pk, None)])
    assert (chosen.api_key, chosen.label, chosen.key_id) == ("sk-work-0001", "work", work.pk)
    assert (default.api_key, default.label, default.key_id) == ("sk-home-0002", "home", home.pk)
    assert (server.api_key, server.key_id) == (settings.YI_API_KEY, None)


def test_with_the_server_key_switched_off_a_user_without_a_key_is_sent_to_the_keys_page(user, settings):
    settings.SERVER_KEY_FOR_ALL = False
    with pytest.raises(SendRefused) as refused:
        credentials_for([(user.pk, None)])
    assert refused.value.code == "no_key" and "Keys page" in refused.value.message
    key_add(user, "mine", default=True)
    assert credentials_for([(user.pk, None)])[0].label == "mine"


def test_someone_elses_key_cannot_be_chosen(user, other_user):
    theirs = key_add(other_user, "theirs")
    with pytest.raises(SendRefused) as refused:
        credentials_for([(user.pk, theirs.pk)])
    assert refused.value.code == "key_not_found"


def test_the_key_is_left_out_of_the_clients_repr():
    client = YiClient(credential=Credential(base_url="https://api.01.ai/v1", api_key=KEY, label="work", key_id=3))
    assert KEY not in repr(client) and "work" in repr(client)
    assert KEY not in repr(server_credential()) or server_credential().api_key == ""


async def test_a_send_with_a_chosen_key_is_made_with_it_and_its_answer_names_it(user, connect):
    good = await database_sync_to_async(key_add)(user, "good")
    bad = await database_sync_to_async(key_add)(user, "broken", key="invalid-key-9999")
    ws = await connect(user)

    frames = await answer_to(ws, key_id=bad.pk)
    done = frames[-1]
    assert done["message"]["status"] == "error"
    # The simulator refused the chosen key; the sentence names its label, never the key.
    assert done["message"]["error_message"].startswith("The Yi API rejected the key “broken” (401)")
    assert "invalid-key-9999" not in str(frames)
    conversation_id = answer_of(frames)["conversation_id"]

    # The next send in that conversation, with another key: it answers, and is billed to it.
    frames = await answer_to(ws, conversation_id=conversation_id, key_id=good.pk)
    assert frames[-1]["message"]["status"] == "complete"
    assert frames[-1]["message"]["key_id"] == good.pk

    @database_sync_to_async
    def stored():
        conversation = Conversation.objects.get(pk=conversation_id)
        return conversation.api_key_id, list(Message.objects.filter(role="assistant").values_list("api_key_id", flat=True))

    assert await stored() == (good.pk, [bad.pk, good.pk])


async def test_a_send_naming_someone_elses_key_is_refused_and_stores_nothing(user, other_user, connect):
    theirs = await database_sync_to_async(key_add)(other_user, "theirs")
    ws = await connect(user)
    for key_id in (theirs.pk, "x", 10**30):
        await send(ws, "hello", key_id=key_id)
        refusal = (await frames_until(ws, lambda f: f["type"] == "error"))[-1]
        assert refusal["code"] == "key_not_found"
    assert await database_sync_to_async(Message.objects.count)() == 0


async def test_the_model_list_is_kept_per_credential(user, other_user, client, settings):
    """Before: one cache entry per base URL, so one person's list was shown to another."""
    from django.core.cache import cache

    await database_sync_to_async(key_add)(other_user, "bad", key="invalid-key-1234", default=True)
    await cache.aclear()
    await database_sync_to_async(client.force_login)(user)
    mine = await database_sync_to_async(client.get)("/api/models")
    assert mine.status_code == 200 and mine.json()["models"]

    await database_sync_to_async(client.force_login)(other_user)
    theirs = await database_sync_to_async(client.get)("/api/models")
    # Their key is refused: they are told so, not shown the list the server's key got.
    assert theirs.status_code == 502
    assert theirs.json()["error"].startswith("The Yi API rejected the key “bad” (401)")


def test_the_servers_key_chosen_comes_before_the_default_key(user, settings):
    key_add(user, "mine", key="sk-mine-0001", default=True)
    chosen, default = credentials_for([(user.pk, SERVER_KEY), (user.pk, None)])
    assert (chosen.api_key, chosen.key_id) == (settings.YI_API_KEY, None)
    assert default.label == "mine"


async def test_a_person_with_a_default_key_can_send_with_the_servers_key_and_the_conversation_keeps_it(
    user, connect
):
    """Before: their first key became their default, and nothing could pick the server's any
    more (`key_id` was an id or the default)."""
    mine = await database_sync_to_async(key_add)(user, "mine", key="invalid-key-0042", default=True)
    ws = await connect(user)
    frames = await answer_to(ws, key_id=SERVER_KEY)
    # Their own key would have been refused by the simulator: the server's answered.
    assert frames[-1]["message"]["status"] == "complete" and frames[-1]["message"]["key_id"] is None
    [told] = [f for f in frames if f["type"] == "conversation"]
    assert told["conversation"]["key_id"] == SERVER_KEY
    conversation_id = answer_of(frames)["conversation_id"]

    # A regeneration stays on it; a send naming the default (null) goes back to their key.
    await ws.send_json_to({"type": "retry", "message_id": frames[-1]["message_id"]})
    retried = await frames_until(ws, is_done)
    assert retried[-1]["message"]["status"] == "complete"
    frames = await answer_to(ws, conversation_id=conversation_id, key_id=None)
    assert frames[-1]["message"]["status"] == "error" and frames[-1]["message"]["key_id"] == mine.pk

    @database_sync_to_async
    def stored():
        conversation = Conversation.objects.get(pk=conversation_id)
        return conversation.api_key_id, conversation.server_key

    assert await stored() == (None, False)


async def test_the_servers_key_cannot_be_chosen_where_people_must_use_their_own(user, connect, settings):
    settings.SERVER_KEY_FOR_ALL = False
    await database_sync_to_async(key_add)(user, "mine", default=True)
    ws = await connect(user)
    for key_id in (SERVER_KEY, "Server", ""):
        await send(ws, "hello", key_id=key_id)
        refusal = (await frames_until(ws, lambda f: f["type"] == "error"))[-1]
        assert (refusal["code"], refusal["message"]) == (
            ("no_key", "This server asks everyone to use an API key of their own: its own key cannot be picked. "
                       "Pick one of yours in the Key menu, or add one on the Keys page (/keys/).")
            if key_id == SERVER_KEY else
            ("key_not_found", "That API key does not exist or is not yours. Pick another on the Keys page."))
    assert await database_sync_to_async(Message.objects.count)() == 0


async def test_the_model_list_of_the_servers_key_is_given_to_a_person_whose_default_key_is_refused(
    user, client
):
    await database_sync_to_async(key_add)(user, "bad", key="invalid-key-1234", default=True)
    await database_sync_to_async(client.force_login)(user)
    mine = await database_sync_to_async(client.get)("/api/models")
    assert mine.status_code == 502
    server = await database_sync_to_async(client.get)("/api/models", {"key_id": SERVER_KEY})
    assert server.status_code == 200 and "yi-large" in [model["id"] for model in server.json()["models"]]
    nonsense = await database_sync_to_async(client.get)("/api/models", {"key_id": "servers"})
    assert (nonsense.status_code, nonsense.json()["code"]) == (404, "key_not_found")
