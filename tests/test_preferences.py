"""A person's preferences: the theme every page comes with, and the settings new
conversations start from; each person's own, changed only by a POST with the CSRF token."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from chat.models import Preferences

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(user):
    client = Client()
    client.force_login(user)
    return client


def html_theme(client, path="/") -> str:
    page = client.get(path).content.decode()
    return re.search(r'<html lang="en" data-theme="(\w+)">', page).group(1)


def test_the_theme_follows_the_system_until_one_is_picked_and_then_every_page_comes_with_it(alice, user):
    assert html_theme(alice) == "system"
    response = alice.post("/preferences/theme/", {"theme": "dark"}, HTTP_ACCEPT="application/json")
    assert (response.status_code, response.json()) == (200, {"theme": "dark"})
    assert html_theme(alice) == "dark"
    assert html_theme(alice, "/keys/") == "dark" and html_theme(alice, "/usage/") == "dark"
    page = alice.get("/").content.decode()
    assert '<meta name="color-scheme" content="dark">' in page
    # Highlighted code in the dark version only.
    assert re.search(r'github-dark\.min\.css" data-theme-media="dark"\s+media="all"', page)
    assert re.search(r'github\.min\.css" data-theme-media="light"\s+media="not all"', page)
    # Another browser the person signs in from.
    other_browser = Client()
    other_browser.force_login(user)
    assert html_theme(other_browser) == "dark"


def test_a_theme_that_is_not_one_of_the_three_is_refused(alice, user):
    response = alice.post("/preferences/theme/", {"theme": "purple"}, HTTP_ACCEPT="application/json")
    assert (response.status_code, response.json()) == (
        400, {"code": "bad_theme", "message": "Pick a theme: follow the system, light or dark.", "field": "theme"})
    assert not Preferences.objects.exists()


def test_without_script_the_switch_posts_a_form_and_goes_back_to_the_page_it_was_on(alice):
    response = alice.post("/preferences/theme/", {"theme": "light", "next": "/usage/"})
    assert (response.status_code, response["Location"]) == (302, "/usage/")
    assert html_theme(alice) == "light"
    # Never to another site.
    response = alice.post("/preferences/theme/", {"theme": "light", "next": "https://example.com/"})
    assert response["Location"] == "/"


def test_one_person_choosing_a_theme_changes_nobody_else_s(alice, user, other_user):
    bob = Client()
    bob.force_login(other_user)
    alice.post("/preferences/theme/", {"theme": "light"}, HTTP_ACCEPT="application/json")
    bob.post("/preferences/theme/", {"theme": "dark"}, HTTP_ACCEPT="application/json")
    bob.post("/preferences/defaults/", json.dumps({"temperature": 1.9}), content_type="application/json")
    assert html_theme(alice) == "light" and html_theme(bob) == "dark"
    assert Preferences.objects.get(user=user).params == {}
    assert Preferences.objects.get(user=other_user).params == {"temperature": 1.9}


def test_preferences_change_only_with_the_csrf_token(user):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    assert browser.post("/preferences/theme/", {"theme": "dark"}).status_code == 403
    response = browser.post("/preferences/defaults/", json.dumps({"temperature": 1}), content_type="application/json")
    assert response.status_code == 403
    assert not Preferences.objects.exists()
    page = browser.get("/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = browser.post("/preferences/theme/", {"theme": "dark"}, HTTP_X_CSRFTOKEN=token,
                            HTTP_ACCEPT="application/json")
    assert response.status_code == 200 and Preferences.objects.get(user=user).theme == "dark"


def test_someone_signed_out_changes_nothing(db):
    response = Client().post("/preferences/theme/", {"theme": "dark"})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert not Preferences.objects.exists()


def test_a_get_changes_nothing(alice):
    assert alice.get("/preferences/theme/?theme=dark").status_code == 405
    assert not Preferences.objects.exists()


def chat_page_data(client, name):
    page = client.get("/").content.decode()
    return json.loads(re.search(rf'<script id="{name}" type="application/json">(.*?)</script>', page, re.S).group(1))


def test_new_conversations_start_from_the_defaults_the_person_saved(alice, user):
    assert chat_page_data(alice, "conversation-defaults") == {"system_prompt": "", "params": {}}
    response = alice.post("/preferences/defaults/", json.dumps(
        {"system_prompt": "Answer in Chinese.", "temperature": 0.8, "top_p": None, "max_tokens": 2000}
    ), content_type="application/json")
    assert response.json() == {"defaults": {"system_prompt": "Answer in Chinese.",
                                            "params": {"temperature": 0.8, "max_tokens": 2000}}}
    assert chat_page_data(alice, "conversation-defaults") == {
        "system_prompt": "Answer in Chinese.", "params": {"temperature": 0.8, "max_tokens": 2000}}


@pytest.mark.parametrize(("fields", "code", "message", "field"), [
    ({"temperature": 3}, "bad_params", "temperature must be a number from 0 to 2.", "temperature"),
    ({"top_p": -1}, "bad_params", "top_p must be a number from 0 to 1.", "top_p"),
    ({"max_tokens": 40000}, "bad_params", "max_tokens must be a number from 1 to 32768.", "max_tokens"),
    ({"system_prompt": "a\x00b"}, "bad_character", "The system prompt contains a character that cannot be stored "
     "(U+0000, or half of a surrogate pair). Remove it and send again.", "system_prompt"),
])
def test_defaults_out_of_range_are_refused_with_the_range_beside_their_field(alice, fields, code, message, field):
    response = alice.post("/preferences/defaults/", json.dumps(fields), content_type="application/json")
    assert (response.status_code, response.json()) == (400, {"code": code, "message": message, "field": field})
    assert not Preferences.objects.exists()


def test_the_chat_page_knows_the_ranges_defaults_and_windows_it_checks(alice, settings):
    settings.MODEL_CONTEXT_WINDOWS = {"local-8k": 8192}
    assert chat_page_data(alice, "params-limits") == {
        "ranges": {
            "temperature": {"min": 0, "max": 2, "default": 0.3},
            "top_p": {"min": 0, "max": 1, "default": 0.9},
            "max_tokens": {"min": 1, "max": 32768, "default": None},
        },
        "windows": {"yi-large": 32768, "yi-large-turbo": 4096, "yi-large-fc": 32768, "yi-vision": 16384,
                    "local-8k": 8192},
    }
