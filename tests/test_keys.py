"""The Keys page and chat/keys.py: adding a key (checked, verified with GET /models against
the simulator and against hosts that fail in each way, encrypted), verifying again, the
default, the tier, deleting, the JSON the chat page reads, and the key that paid for an answer."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from decimal import Decimal

import pytest
from aiohttp import web
from channels.db import database_sync_to_async
from django.test import AsyncClient

from chat import upstream, upstream_errors
from chat.crypto import secret_decrypt
from chat.keys import KeyRefused, api_key_add, key_input_check
from chat.models import ApiKey, Message
from tests.conftest import session_cookie
from tests.simulator_server import api_served, free_port
from tests.test_consumer import frames_until, is_done, send

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "sk-keys-test-0123456789abcdef"


@pytest.fixture(autouse=True)
async def pools_closed():
    yield
    await upstream.pool_close()


async def signed_in(user) -> AsyncClient:
    client = AsyncClient()
    client.cookies["sessionid"] = await database_sync_to_async(session_cookie)(user)
    return client


async def add(client: AsyncClient, **fields) -> object:
    data = {"label": "Work", "key": KEY, "base_url": "", "tier": "free", **fields}
    return await client.post("/keys/", data)


def field_errors(page: str) -> dict[str, str]:
    """Each field's error sentences as the page shows them beside it."""
    found = re.findall(r'<div id="id_(\w+)_error" role="alert">\s*<ul class="field-errors"><li>(.*?)</li>', page, re.S)
    return {name: text for name, text in found}


@database_sync_to_async
def keys_of(user) -> list[ApiKey]:
    return list(ApiKey.objects.filter(user=user).order_by("pk"))


@contextlib.asynccontextmanager
async def html_at_models(status: int = 200):
    """A web server that answers every path with a web page (200: it is not an API; 500: a
    provider failing for the moment)."""
    async def page(request):
        return web.Response(text="<!doctype html><title>Welcome</title>", content_type="text/html", status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", page)
    async with api_served(app) as url:
        yield url


@contextlib.contextmanager
def silent_host():
    """A port that takes connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"


async def test_a_key_the_provider_accepts_is_saved_encrypted_shown_masked_and_becomes_the_default(user, simulator_url):
    client = await signed_in(user)
    response = await add(client, key=KEY + "\n", base_url=simulator_url + "/")  # a copied key's newline goes
    assert response.status_code == 302 and response["Location"] == "/keys/"
    [key] = await keys_of(user)
    assert (key.label, key.base_url, key.key_last4, key.tier, key.is_default) == (
        "Work", simulator_url, "cdef", "free", True)
    assert key.verified_at is not None and key.last_used_at is None
    assert KEY not in key.key_encrypted and secret_decrypt(key.key_encrypted) == KEY
    page = (await client.get("/keys/")).content.decode()
    assert "Saved “Work”: 127.0.0.1:" in page and "accepted it." in page
    assert "Work" in page and "…cdef" in page and re.search(r"<dd>127\.0\.0\.1:\d+</dd>", page)
    assert "Default" in page and "Verified" in page and "never" in page
    assert KEY not in page and KEY[:-4] not in page


@pytest.mark.parametrize("case", ["wrong key", "wrong path", "not an API", "unreachable", "timeout"])
async def test_a_key_that_fails_verification_says_what_is_wrong_and_is_not_saved(user, simulator_url, settings, case):
    if case == "timeout":
        settings.KEY_VERIFY_TIMEOUT = 0.5  # the others keep the default: a busy machine can be slow to answer
    client = await signed_in(user)
    async with contextlib.AsyncExitStack() as stack:
        host = "127.0.0.1:" + simulator_url.split(":")[2].split("/")[0]
        if case == "wrong key":  # the simulator refuses keys that start with "invalid"
            fields, where = {"key": "invalid-" + KEY, "base_url": simulator_url}, "key"
            said = ("The Yi API rejected this key (401): it is wrong, expired or disabled. Check that you "
                    "copied all of it, and that it is a key for this provider.")
        elif case == "wrong path":
            base = simulator_url.removesuffix("/v1") + "/api"
            fields, where = {"base_url": base}, "base_url"
            said = (f"{host} has nothing at {base}/models (404): this is not the base URL of an OpenAI-compatible "
                    "API. Check the address; it usually ends in /v1 (for example https://api.01.ai/v1).")
        elif case == "not an API":
            base = await stack.enter_async_context(html_at_models())
            host = base.split("/")[2]
            fields, where = {"base_url": base}, "base_url"
            said = (f"{host} answered, but not with an OpenAI-compatible list of models: this is not the base URL "
                    "of such an API. Check the address; it usually ends in /v1 (for example https://api.01.ai/v1).")
        elif case == "unreachable":
            port = free_port()  # nothing listens there
            fields, where = {"base_url": f"http://127.0.0.1:{port}/v1"}, "base_url"
            said = (f"Could not connect to 127.0.0.1:{port}: the name does not resolve, or nothing answers there. "
                    "Check the base URL, and that the service is running.")
        else:
            base = stack.enter_context(silent_host())
            fields, where = {"base_url": base}, "base_url"
            said = (f"{base.split('/')[2]} did not answer within 0.5 seconds. Check the base URL; if the service is "
                    "only slow, try again.")
        response = await add(client, **fields)
    page = response.content.decode()
    assert response.status_code == 200  # the form again, as Django's forms do
    assert field_errors(page) == {where: said.replace("’", "&#x27;")}
    assert 'name="save_anyway"' in page  # the way to insist
    assert await keys_of(user) == []
    assert KEY not in page and 'name="key" value' not in page  # typed again, never echoed
    assert 'value="Work"' in page  # the rest of the form is kept


async def test_insisting_saves_a_key_that_failed_verification_marked_unverified(user, simulator_url):
    client = await signed_in(user)
    response = await add(client, key="invalid-" + KEY, base_url=simulator_url, save_anyway="on")
    assert response.status_code == 302
    [key] = await keys_of(user)
    assert key.verified_at is None and key.label == "Work"
    page = (await client.get("/keys/")).content.decode()
    assert "Saved “Work” without checking it: The Yi API rejected this key (401)" in page
    assert "Not verified" in page


@pytest.mark.parametrize("fields, where, said", [
    ({"key": ""}, "key", "Paste the API key."),
    ({"key": " \t\n "}, "key", "Paste the API key."),
    ({"key": "sk-abc def0123456"}, "key",
     "The key has a space or a line break inside it, so it was pasted in pieces. Copy it again as one piece."),
    ({"key": "sk-abc\ndef0123456"}, "key",
     "The key has a space or a line break inside it, so it was pasted in pieces. Copy it again as one piece."),
    ({"key": "sk-ключ0123456789"}, "key",
     "The key holds a character no API key has (only letters, digits and punctuation). Copy it again."),
    ({"label": "  "}, "label", "Give the key a label, such as “Work” or “Personal”."),
    ({"label": "x" * 61}, "label", "A label can be at most 60 characters (this one has 61)."),
    ({"base_url": "ftp://api.01.ai/v1"}, "base_url",
     "The base URL must start with https:// (or http://), for example https://api.01.ai/v1."),
    ({"base_url": "api.01.ai/v1"}, "base_url",
     "The base URL must start with https:// (or http://), for example https://api.01.ai/v1."),
    ({"base_url": "https://me:pw@api.01.ai/v1"}, "base_url",
     "Leave the user name and password out of the base URL: the API key is sent on its own."),
    ({"tier": "9"}, "tier", "Pick a usage tier from the list."),
    ({"images_model": "llava 13b"}, "images_model",
     "A model name has no spaces or line breaks. Type it as the provider lists it, for example llava or qwen2-vl."),
    ({"images_model": "m" * 201}, "images_model", "A model name can be at most 200 characters."),
])
async def test_bad_input_changes_nothing_and_says_why_beside_its_field(user, fields, where, said):
    client = await signed_in(user)
    response = await add(client, **fields)
    assert response.status_code == 200  # the form again, as Django's forms do
    assert field_errors(response.content.decode()) == {where: said}
    assert await keys_of(user) == []


def test_plain_http_to_another_machine_is_refused_in_production_but_loopback_is_not(settings):
    settings.DEBUG = False
    with pytest.raises(KeyRefused) as refused:
        key_input_check(label="Lab", key=KEY, base_url="http://gpu-box.lan:8000/v1", tier="free")
    assert refused.value.errors == {"base_url": (
        "Plain http:// would send the key unencrypted across the network to gpu-box.lan:8000. Use https:// "
        "(plain http:// is allowed only to this machine: localhost, 127.0.0.1 or ::1).")}
    for base in ("http://localhost:11434/v1", "http://127.0.0.1:8000/v1", "http://[::1]:8000/v1", "https://x.ai/v1"):
        assert key_input_check(label="Lab", key=KEY, base_url=base, tier="free")[2] == base
    settings.DEBUG = True
    assert key_input_check(label="Lab", key=KEY, base_url="http://gpu-box.lan:8000/v1", tier="1")[2:] == (
        "http://gpu-box.lan:8000/v1", "1", None)


async def test_the_same_key_or_label_twice_is_refused_naming_the_one_saved(user, other_user, simulator_url):
    await api_key_add(user=user, label="Work", key=KEY, base_url=simulator_url)
    with pytest.raises(KeyRefused) as refused:
        await api_key_add(user=user, label="Home", key=f"  {KEY}\n", base_url=simulator_url)
    assert refused.value.errors == {"key": "You saved this key already, as “Work”."}
    with pytest.raises(KeyRefused) as refused:
        await api_key_add(user=user, label="work", key=KEY + "x", base_url=simulator_url)
    assert refused.value.errors == {"label": "You already have a key labelled “Work”. Pick another label."}
    assert len(await keys_of(user)) == 1
    # Another person may save the same key (they may share an account at the provider).
    await api_key_add(user=other_user, label="Work", key=KEY, base_url=simulator_url)


async def test_verify_again_default_tier_and_delete(user, simulator_url):
    first = (await api_key_add(user=user, label="Work", key=KEY, base_url=simulator_url)).key
    second = (await api_key_add(user=user, label="Home", key=KEY + "2", base_url=simulator_url)).key
    assert (first.is_default, second.is_default) == (True, False)
    client = await signed_in(user)

    response = await client.post(f"/keys/{second.pk}/default/")
    assert response.status_code == 302
    assert [(k.label, k.is_default) for k in await keys_of(user)] == [("Work", False), ("Home", True)]

    assert (await client.post(f"/keys/{second.pk}/tier/", {"tier": "3"})).status_code == 302
    assert (await client.post(f"/keys/{second.pk}/tier/", {"tier": "pro"})).status_code == 302
    assert [k.tier for k in await keys_of(user)] == ["free", "3"]
    page = (await client.get("/keys/")).content.decode()
    assert "“Home” is paced as Tier 3 now." in page and "Pick a usage tier from the list." in page

    response = await client.post(f"/keys/{second.pk}/verify/", follow=True)
    assert "The key works: the provider accepted it just now." in response.content.decode()

    response = await client.post(f"/keys/{second.pk}/delete/", follow=True)
    assert "Deleted “Home”. “Work” is your default key now." in response.content.decode()
    assert [(k.label, k.is_default) for k in await keys_of(user)] == [("Work", True)]
    assert (await client.get(f"/keys/{second.pk}/delete/")).status_code == 405


async def test_verify_again_says_when_a_saved_key_stops_working(user, simulator_url):
    key = (await api_key_add(user=user, label="Old", key="invalid-" + KEY, base_url=simulator_url,
                             save_anyway=True)).key
    await database_sync_to_async(ApiKey.objects.filter(pk=key.pk).update)(verified_at="2026-01-01T00:00:00Z")
    client = await signed_in(user)
    page = (await client.post(f"/keys/{key.pk}/verify/", follow=True)).content.decode()
    assert "The Yi API rejected this key (401)" in page and "Not verified" in page
    assert (await keys_of(user))[0].verified_at is None


async def test_a_provider_failing_for_the_moment_is_said_above_the_form_and_nothing_is_saved(user):
    client = await signed_in(user)
    async with html_at_models(status=503) as base:
        page = (await add(client, base_url=base)).content.decode()
    host = base.split("/")[2].split(":")[0]
    assert re.search(r'<div class="form-errors" role="alert"><p>The API at ([\d.]+) could not check the key just '
                     r'now \(503\)\. Try again in a moment\.</p></div>', page)[1] == host
    assert field_errors(page) == {} and 'name="save_anyway"' in page
    assert await keys_of(user) == []


async def test_a_provider_failing_for_the_moment_does_not_unverify_a_key(user, simulator_url):
    async with html_at_models(status=500) as base:
        key = (await api_key_add(user=user, label="Lab", key=KEY, base_url=base, save_anyway=True)).key
        verified = "2026-01-01T00:00:00+00:00"
        await database_sync_to_async(ApiKey.objects.filter(pk=key.pk).update)(verified_at=verified)
        client = await signed_in(user)
        page = (await client.post(f"/keys/{key.pk}/verify/", follow=True)).content.decode()
    host = base.split("/")[2].split(":")[0]
    assert f"The API at {host} could not check the key just now (500). Try again in a moment." in page
    assert (await keys_of(user))[0].verified_at.isoformat() == verified


async def test_someone_elses_key_cannot_be_seen_verified_made_default_retiered_or_deleted(
    user, other_user, simulator_url
):
    theirs = (await api_key_add(user=user, label="Alice private", key=KEY, base_url=simulator_url)).key
    intruder = await signed_in(other_user)
    for action, data in [("verify", {}), ("default", {}), ("tier", {"tier": "5"}),
                         ("images-model", {"images_model": "llava"}), ("delete", {})]:
        assert (await intruder.post(f"/keys/{theirs.pk}/{action}/", data)).status_code == 404, action
    for bad in ("abc", "9" * 30, "0"):
        assert (await intruder.post(f"/keys/{bad}/delete/")).status_code == 404
    page = (await intruder.get("/keys/")).content.decode()
    assert "Alice private" not in page and "No keys yet." in page
    assert (await intruder.get("/api/keys")).json() == []
    [unchanged] = await keys_of(user)
    assert (unchanged.tier, unchanged.is_default, unchanged.verified_at, unchanged.images_model) == (
        "free", True, theirs.verified_at, None)


async def test_the_chat_page_lists_a_persons_keys_as_json(user, simulator_url):
    key = (await api_key_add(user=user, label="Work", key=KEY, base_url=simulator_url, tier="2")).key
    short = (await api_key_add(user=user, label="Ollama", key="ollama", base_url=simulator_url)).key
    client = await signed_in(user)
    listed = (await client.get("/api/keys")).json()
    host = simulator_url.split("/")[2]
    assert listed == [
        {"id": key.pk, "label": "Work", "host": host, "last4": "cdef", "is_default": True, "tier": "2"},
        {"id": short.pk, "label": "Ollama", "host": host, "last4": "", "is_default": False, "tier": "free"},
    ]
    assert (await AsyncClient().get("/api/keys")).status_code == 302  # to sign in


async def test_an_answer_stores_its_cost_and_marks_the_key_that_paid_as_used(user, simulator_url, connect):
    key = (await api_key_add(user=user, label="Work", key=KEY, base_url=simulator_url)).key
    ws = await connect(user)
    await send(ws, "hello", key_id=key.pk)
    done = (await frames_until(ws, is_done))[-1]["message"]
    stored = await database_sync_to_async(Message.objects.get)(pk=done["id"])
    assert stored.api_key_id == key.pk and stored.prompt_tokens and stored.completion_tokens
    expected = Decimal(3) * (stored.prompt_tokens + stored.completion_tokens) / 1_000_000
    assert stored.cost_usd == expected.quantize(Decimal("0.000001")) and done["cost_usd"] == f"{expected:.6f}"
    [used] = await keys_of(user)
    assert used.last_used_at is not None and used.last_used_at >= stored.created_at
    client = await signed_in(user)
    page = (await client.get("/keys/")).content.decode()
    tokens = stored.prompt_tokens + stored.completion_tokens
    assert f"{tokens} tokens ({stored.prompt_tokens} in, {stored.completion_tokens} out), ${expected:.4f}" in page


async def test_a_200_that_is_not_a_model_list_is_its_own_error():
    async with html_at_models() as base:
        client = upstream.YiClient(credential=upstream.Credential(base_url=base, api_key=KEY, label="Lab", key_id=1))
        with pytest.raises(upstream_errors.NotAModelListError) as error:
            await client.list_models()
    host = base.split("/")[2].split(":")[0]
    assert error.value.message == (
        f"The API at {host} answered, but not with an OpenAI-compatible list of models. Check on the Keys page "
        "that the base URL of the key “Lab” ends in /v1.")
    await asyncio.sleep(0)


async def test_someone_elses_key_cannot_be_sent_with_over_the_websocket(user, other_user, simulator_url, connect):
    theirs = (await api_key_add(user=user, label="Alice private", key=KEY, base_url=simulator_url)).key
    ws = await connect(other_user)
    await send(ws, "on alice's bill", key_id=theirs.pk)
    reply = await ws.receive_json_from(timeout=5)
    assert (reply["type"], reply["code"], reply["message"]) == (
        "error", "key_not_found", "That API key does not exist or is not yours. Pick another on the Keys page.")
    assert await database_sync_to_async(Message.objects.count)() == 0
    assert (await keys_of(user))[0].last_used_at is None


def test_the_keys_page_reads_its_rows_in_two_queries_however_many_keys(user, django_assert_num_queries):
    from chat.crypto import secret_encrypt
    from chat.keys import key_rows

    for n in range(5):
        key = ApiKey.objects.create(user=user, label=f"Key {n}", base_url="https://api.01.ai/v1",
                                    key_encrypted=secret_encrypt(f"{KEY}{n}"), key_last4="cdef", is_default=n == 0)
        conversation = key.conversations.create(user=user, model="yi-large")
        Message.objects.create(conversation=conversation, role="assistant", model="yi-large", api_key=key,
                               prompt_tokens=100 * n, completion_tokens=10, cost_usd=Decimal("0.001") * n)
    with django_assert_num_queries(2):  # each key's usage, and the keys
        rows = key_rows(user=user)
    assert [(r.key.label, r.usage.total_tokens, r.usage.cost) for r in rows] == [
        (f"Key {n}", 100 * n + 10, Decimal("0.001") * n) for n in range(5)]
    assert all("key_encrypted" in r.key.get_deferred_fields() for r in rows)


async def test_a_self_hosted_key_can_be_left_unpaced(user, simulator_url):
    """Before: the tiers were the reference's alone, so a key of a local vLLM or Ollama was
    held to the Free tier's 4 requests a minute."""
    from chat.credentials import credentials_for
    from chat.pacing import tier_of

    key = (await api_key_add(user=user, label="Ollama", key=KEY, base_url=simulator_url)).key
    client = await signed_in(user)
    assert (await client.post(f"/keys/{key.pk}/tier/", {"tier": "none"})).status_code == 302
    [credential] = await database_sync_to_async(credentials_for)([(user.pk, key.pk)])
    assert credential.tier == "none" and tier_of(credential.tier) is None
    assert "No limit (self-hosted)" in (await client.get("/keys/")).content.decode()


async def test_a_default_key_can_be_given_up_for_the_servers(user, simulator_url, settings):
    """Found on the README walk: a first key became the default, and nothing but deleting
    it gave the server's key back to conversations that pick none."""
    from chat.credentials import credentials_for

    key = (await api_key_add(user=user, label="Trial", key=KEY, base_url=simulator_url)).key
    assert key.is_default
    client = await signed_in(user)
    page = (await client.get("/keys/")).content.decode()
    assert "Use the server&#x27;s key by default" in page or "Use the server's key by default" in page
    response = await client.post(f"/keys/{key.pk}/default/", {"unset": "1"}, follow=True)
    assert "“Trial” is no longer your default key." in response.content.decode()
    [credential] = await database_sync_to_async(credentials_for)([(user.pk, None)])
    assert credential.key_id is None and credential.api_key == settings.YI_API_KEY


async def test_a_keys_model_for_images_is_saved_with_it_shown_changed_and_cleared(user, simulator_url, settings):
    client = await signed_in(user)
    assert (await add(client, base_url=simulator_url, images_model=" llava:13b\n")).status_code == 302
    [key] = await keys_of(user)
    assert key.images_model == "llava:13b"
    page = (await client.get("/keys/")).content.decode()
    assert f'<input id="images-model-{key.pk}" name="images_model" value="llava:13b"' in page

    response = await client.post(f"/keys/{key.pk}/images-model/", {"images_model": "qwen2-vl"}, follow=True)
    assert ("Images sent with “Work” go to qwen2-vl when the conversation&#x27;s model does not take them."
            in response.content.decode())
    assert (await keys_of(user))[0].images_model == "qwen2-vl"

    response = await client.post(f"/keys/{key.pk}/images-model/", {"images_model": "qwen 2"}, follow=True)
    assert "A model name has no spaces or line breaks." in response.content.decode()
    assert (await keys_of(user))[0].images_model == "qwen2-vl"

    response = await client.post(f"/keys/{key.pk}/images-model/", {"images_model": " "}, follow=True)
    page = response.content.decode()
    assert "“Work” names no model for images now." in page
    assert (await keys_of(user))[0].images_model is None
    # A key to the server's Yi API base URL: what answers when it names none is VISION_MODEL.
    assert f'name="images_model" value="" placeholder="{settings.VISION_MODEL}"' in page


async def test_a_key_to_another_provider_says_it_has_no_model_for_images_until_one_is_named(user):
    async with html_at_models(status=500) as base:
        key = (await api_key_add(user=user, label="Lab", key=KEY, base_url=base, save_anyway=True)).key
    page = (await (await signed_in(user)).get("/keys/")).content.decode()
    assert f'<input id="images-model-{key.pk}" name="images_model" value="" placeholder="for example llava"' in page


@pytest.mark.django_db
def test_with_no_key_the_page_says_who_answers_the_simulator_or_the_servers_key(user, settings):
    """With no server key configured the offline simulator answers: the page said the
    server's own key did (found by a first-time visitor's walk)."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    settings.YI_SIMULATOR, settings.SERVER_KEY_FOR_ALL = True, True
    page = client.get("/keys/").content.decode()
    assert "answered by the offline simulator" in page and "Your conversations use this server" not in page
    settings.YI_SIMULATOR = False
    page = client.get("/keys/").content.decode()
    assert "Your conversations use this server" in page and "offline simulator" not in page
