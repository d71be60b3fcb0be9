"""Pages and JSON endpoints, through Django's test client."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from chat import upstream
from chat.models import Conversation, Message
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def signup_form(username: str) -> dict:
    return {"username": username, "password1": PASSWORD, "password2": PASSWORD}


def test_first_user_to_sign_up_runs_the_server(client):
    response = client.post(reverse("signup"), signup_form("owner"))
    assert response.status_code == 302 and response.url == reverse("chat:home")
    owner = get_user_model().objects.get(username="owner")
    assert owner.is_staff and owner.is_superuser


def test_later_users_are_not_staff(client, user):
    client.post(reverse("signup"), signup_form("newcomer"))
    newcomer = get_user_model().objects.get(username="newcomer")
    assert not newcomer.is_staff and not newcomer.is_superuser


def test_signup_signs_the_new_user_in(client):
    client.post(reverse("signup"), signup_form("owner"))
    assert client.get(reverse("chat:home")).status_code == 200


def test_signup_can_be_closed(client, settings):
    settings.SIGNUP_OPEN = False
    response = client.post(reverse("signup"), signup_form("intruder"))
    assert response.status_code == 403
    assert b"Sign-up is closed" in response.content
    assert not get_user_model().objects.filter(username="intruder").exists()


def test_signup_shows_form_errors(client):
    response = client.post(reverse("signup"), {"username": "x", "password1": "a", "password2": "b"})
    assert response.status_code == 200
    assert b"password fields didn" in response.content


@pytest.mark.parametrize("name", ["chat:home", "chat:models"])
def test_pages_require_sign_in(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_conversation_page_shows_its_messages(client, user):
    conversation = Conversation.objects.create(user=user, model="yi-large", title="Trip")
    question = Message.objects.create(conversation=conversation, role="user", content="Where to?")
    Message.objects.create(conversation=conversation, role="assistant", content="**Lisbon**", parent=question)
    client.force_login(user)
    response = client.get(reverse("chat:conversation", args=[conversation.pk]))
    assert response.status_code == 200
    messages = response.context["messages_data"]
    assert [(m["role"], m["content"]) for m in messages] == [("user", "Where to?"), ("assistant", "**Lisbon**")]
    assert b'id="messages-data"' in response.content
    assert b"Trip" in response.content


def test_someone_elses_conversation_is_404(client, user, other_user):
    conversation = Conversation.objects.create(user=other_user, model="yi-large", title="Private")
    client.force_login(user)
    assert client.get(reverse("chat:conversation", args=[conversation.pk])).status_code == 404


def test_sidebar_lists_only_my_conversations_newest_first(client, user, other_user):
    Conversation.objects.create(user=user, model="yi-large", title="Older")
    Conversation.objects.create(user=user, model="yi-large", title="Newer")
    Conversation.objects.create(user=other_user, model="yi-large", title="Not mine")
    client.force_login(user)
    titles = [c.title for c in client.get(reverse("chat:home")).context["conversations"]]
    assert titles == ["Newer", "Older"]


def test_simulator_banner_shows_only_in_offline_mode(client, user, settings):
    client.force_login(user)
    assert b"offline simulator" not in client.get(reverse("chat:home")).content
    settings.YI_SIMULATOR = True
    assert b"offline simulator" in client.get(reverse("chat:home")).content


# Async, on the test's own event loop, so that the connections the view opened can be closed.
@pytest.mark.django_db(transaction=True)
async def test_models_endpoint_lists_the_upstream_models(async_client, user, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    await async_client.aforce_login(user)
    response = await async_client.get(reverse("chat:models"))
    await upstream.pool_close()
    assert response.status_code == 200
    data = json.loads(response.content)
    assert [m["id"] for m in data["models"]] == ["yi-large", "yi-large-turbo", "yi-large-fc", "yi-vision"]
    assert data["default"] == "yi-large"


@pytest.mark.django_db(transaction=True)
async def test_models_endpoint_explains_a_rejected_key_and_still_offers_models(async_client, user, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    settings.YI_API_KEY = "invalid-key"
    await async_client.aforce_login(user)
    response = await async_client.get(reverse("chat:models"))
    await upstream.pool_close()
    assert response.status_code == 502
    data = json.loads(response.content)
    assert data["error"].startswith("The Yi API rejected the server's API key (401)")
    assert "yi-large" in [m["id"] for m in data["models"]]


def test_a_wrong_address_gets_the_apps_own_404_page(client, user):
    client.force_login(user)
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    assert b"Page not found" in response.content and b"Back to your conversations" in response.content
    assert b"URLconf" not in response.content  # not Django's page, which lists every route


def test_a_failing_page_gets_the_apps_own_500_page(rf):
    from django.views.defaults import server_error

    response = server_error(rf.get("/"))
    assert response.status_code == 500
    assert b"Something went wrong" in response.content
    assert b"/static/site/site.css" in response.content


# --- Content-Security-Policy (yiweb/csp.py) -------------------------------------------

POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)


@pytest.mark.parametrize(
    "path", ["/accounts/login/", "/accounts/signup/", "/", "/c/{conversation}/", "/admin/", "/admin/auth/user/",
             "/admin/chat/conversation/{conversation}/change/"])
def test_every_page_sends_the_content_security_policy(client, user, path):
    user.is_staff = user.is_superuser = True
    user.save()
    conversation = Conversation.objects.create(user=user, model="yi-large", title="Trip")
    if not path.startswith("/accounts/"):
        client.force_login(user)
    response = client.get(path.format(conversation=conversation.pk))
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == POLICY


def test_the_page_needs_no_inline_script_or_style(client, user):
    """Under the policy an inline <script> or style="" would be refused: the page has none
    (json_script's <script type="application/json"> blocks are data, not script)."""
    conversation = Conversation.objects.create(user=user, model="yi-large", title="Trip")
    client.force_login(user)
    html = client.get(f"/c/{conversation.pk}/").content.decode()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.DOTALL)
    assert scripts
    for attributes, body in scripts:
        assert "src=" in attributes or 'type="application/json"' in attributes, attributes
        assert "src=" not in attributes or not body.strip()
    assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=", html)


def test_error_pages_send_the_policy_with_only_djangos_own_style_blocks(client, user):
    client.force_login(user)
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    policy = dict(d.split(" ", 1) for d in response["Content-Security-Policy"].split("; "))
    expected = dict(d.split(" ", 1) for d in POLICY.split("; "))
    assert {k: v for k, v in policy.items() if k != "style-src"} == {k: v for k, v in expected.items() if k != "style-src"}
    # 'self', then the hashes of the <style> blocks of Django's CSRF failure and debug pages.
    sources = policy["style-src"].split()
    assert sources[0] == "'self'" and len(sources) == 4
    assert all(re.fullmatch(r"'sha256-[A-Za-z0-9+/]{43}='", s) for s in sources[1:])


def test_a_failing_page_sends_the_policy(client, user, monkeypatch):
    from chat import views

    def fail(**kwargs):
        raise RuntimeError("the database is on fire")

    monkeypatch.setattr(views.history, "conversation_list", fail)
    client.raise_request_exception = False
    client.force_login(user)
    response = client.get("/")
    assert response.status_code == 500
    assert response["Content-Security-Policy"].startswith("default-src 'self'; script-src 'self'; style-src 'self' ")


def test_favicon_ico_leads_to_the_icon_for_pages_that_name_none(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 302 and response.url.endswith("site/favicon.svg")
