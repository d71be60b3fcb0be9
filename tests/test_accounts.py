"""Signing up and in, through Django's test client: the first run, the limits, and what
sign-up and password reset give away."""

from __future__ import annotations

import html
import logging
import re
import time
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.cache import caches
from django.urls import reverse

from chat import account_throttle
from tests.conftest import PASSWORD
from tests.live_server import REDIS_TEST_URL, app_env, manage, redis_available, running_app, signup, sqlite_database

pytestmark = pytest.mark.django_db

WRONG = "not the password at all"


@pytest.fixture(autouse=True)
def fresh_limits(settings):
    # Each sign-in hashes a password: with the real hasher (~0.4 s) these tests took a minute.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    caches["limits"].clear()
    yield
    caches["limits"].clear()
    if account_throttle._outage.down:  # a test's Redis outage is over with the test
        account_throttle._outage.worked()


def sign_in(client, username: str, password: str, *, address: str = "127.0.0.1", path: str = "/accounts/login/"):
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=address)


def sign_up(client, username: str, password: str = PASSWORD, *, password2: str | None = None,
            address: str = "127.0.0.1"):
    return client.post(reverse("signup"), {"username": username, "password1": password,
                                           "password2": password if password2 is None else password2},
                       REMOTE_ADDR=address)


def text_of(response) -> str:
    """The page's visible text, roughly: tags dropped, whitespace squeezed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())).split())


# --- first run ------------------------------------------------------------------------


def test_a_visitor_at_the_root_reaches_sign_up_in_one_click_while_it_is_open(client, settings):
    to_sign_in = client.get("/")
    assert to_sign_in.status_code == 302 and to_sign_in.url.startswith(reverse("login"))
    sign_in_page = client.get(to_sign_in.url)
    assert f'href="{reverse("signup")}"' in sign_in_page.content.decode()
    assert "No account yet? Create one" in text_of(sign_in_page)
    settings.SIGNUP_OPEN = False
    assert reverse("signup") not in client.get(to_sign_in.url).content.decode()


def test_the_sign_up_page_says_the_first_account_becomes_the_administrator(client):
    assert "the first one becomes this server's administrator" in text_of(client.get(reverse("signup")))
    sign_up(client, "owner")
    client.logout()
    assert "administrator" not in text_of(client.get(reverse("signup")))


def test_the_first_account_is_told_it_is_the_administrator_and_finds_the_admin(client):
    page = client.post(reverse("signup"), {"username": "owner", "password1": PASSWORD, "password2": PASSWORD},
                       follow=True)
    assert page.redirect_chain == [(reverse("chat:home"), 302)]
    assert ("Welcome, owner. As the first account, you are this server's administrator: the Admin link at the "
            "top opens the admin site, where you manage accounts and conversations.") in text_of(page)
    assert f'href="{reverse("admin:index")}"' in page.content.decode()
    assert client.get(reverse("admin:index")).status_code == 200
    # Told once: the next page no longer says it, and the link stays.
    again = client.get(reverse("chat:home"))
    assert "administrator" not in text_of(again) and f'href="{reverse("admin:index")}"' in again.content.decode()
    # The next account is neither told so nor shown the way to the admin.
    client.logout()
    later = client.post(reverse("signup"), {"username": "later", "password1": PASSWORD, "password2": PASSWORD},
                        follow=True)
    assert later.status_code == 200 and later.context["user"].get_username() == "later"
    assert "administrator" not in text_of(later) and reverse("admin:index") not in later.content.decode()


# --- sign-in limits -------------------------------------------------------------------


def test_failed_sign_ins_to_one_account_pause_it_even_for_the_right_password(client, user, settings):
    settings.SIGNIN_FAILURES_PER_ACCOUNT = 5
    for _ in range(5):
        assert "Please enter a correct username and password" in text_of(sign_in(client, "alice", WRONG))
    refused = sign_in(client, "alice", PASSWORD)
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 15 * 60
    assert ("Too many failed sign-ins to this account. Try again in 15 minutes; the password was not checked."
            in text_of(refused))
    assert 'value="alice"' in refused.content.decode()  # what was typed is still there
    assert "_auth_user_id" not in client.session
    # From another address too: the pause is the account's.
    assert sign_in(client, "alice", PASSWORD, address="198.51.100.7").status_code == 429


def test_the_pause_says_the_same_for_a_username_that_does_not_exist(client, user, settings):
    settings.SIGNIN_FAILURES_PER_ACCOUNT = 3
    for name in ("alice", "nobody"):
        for _ in range(3):
            sign_in(client, name, WRONG)
    exists, does_not = sign_in(client, "alice", WRONG), sign_in(client, "nobody", WRONG)
    assert exists.status_code == does_not.status_code == 429
    assert "Too many failed sign-ins to this account" in text_of(exists)
    assert text_of(exists).replace("alice", "X") == text_of(does_not).replace("nobody", "X")


def test_other_accounts_sign_in_while_one_is_paused(client, user, other_user):
    for _ in range(5):
        sign_in(client, "alice", WRONG)
    assert sign_in(client, "alice", PASSWORD).status_code == 429
    assert sign_in(client, "bob", PASSWORD).status_code == 302


def test_failed_sign_ins_from_one_address_pause_every_account_from_it(client, user, settings):
    settings.SIGNIN_FAILURES_PER_ADDRESS = 20
    for number in range(20):
        sign_in(client, f"guess{number}", WRONG, address="203.0.113.9")
    refused = sign_in(client, "alice", PASSWORD, address="203.0.113.9")
    assert refused.status_code == 429
    assert "Too many failed sign-ins from your network address. Try again in 15 minutes." in text_of(refused)
    assert sign_in(client, "alice", PASSWORD, address="203.0.113.10").status_code == 302


def test_one_ipv6_network_counts_as_one_address(client, user, settings):
    settings.SIGNIN_FAILURES_PER_ADDRESS = 3
    for host in range(3):
        sign_in(client, f"guess{host}", WRONG, address=f"2001:db8:1:2::{host + 1}")
    assert sign_in(client, "alice", PASSWORD, address="2001:db8:1:2:ffff::1").status_code == 429
    assert sign_in(client, "alice", PASSWORD, address="2001:db8:1:3::1").status_code == 302


def test_behind_a_proxy_the_address_is_the_one_the_proxy_wrote(client, user, settings):
    settings.SIGNIN_FAILURES_PER_ADDRESS = 3
    settings.CLIENT_ADDRESS_HEADER = "X-Forwarded-For"
    for number in range(3):  # a client cannot escape its count by writing addresses of its own
        client.post(reverse("login"), {"username": f"guess{number}", "password": WRONG}, REMOTE_ADDR="10.0.0.2",
                    HTTP_X_FORWARDED_FOR=f"192.0.2.{number}, 203.0.113.9")
    assert client.post(reverse("login"), {"username": "alice", "password": PASSWORD}, REMOTE_ADDR="10.0.0.2",
                       HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 429
    assert client.post(reverse("login"), {"username": "alice", "password": PASSWORD}, REMOTE_ADDR="10.0.0.2",
                       HTTP_X_FORWARDED_FOR="203.0.113.10").status_code == 302


def test_the_pause_ends_when_its_time_is_up(client, user, settings):
    settings.SIGNIN_FAILURES_PER_ACCOUNT = 2
    settings.SIGNIN_PAUSE_SECONDS = 1
    sign_in(client, "alice", WRONG)
    sign_in(client, "alice", WRONG)
    assert sign_in(client, "alice", PASSWORD).status_code == 429
    time.sleep(1.2)
    assert sign_in(client, "alice", PASSWORD).status_code == 302


def test_signing_in_starts_the_accounts_count_again(client, user, settings):
    settings.SIGNIN_FAILURES_PER_ACCOUNT = 3
    sign_in(client, "alice", WRONG)
    sign_in(client, "alice", WRONG)
    assert sign_in(client, "alice", PASSWORD).status_code == 302
    client.logout()
    sign_in(client, "alice", WRONG)
    sign_in(client, "alice", WRONG)
    assert sign_in(client, "alice", PASSWORD).status_code == 302
    client.logout()
    for _ in range(3):  # and counts again
        sign_in(client, "alice", WRONG)
    assert sign_in(client, "alice", PASSWORD).status_code == 429


def test_the_admin_sign_in_page_has_the_same_limits(client, user):
    user.is_staff = True
    user.save()
    admin_login = reverse("admin:login")
    for _ in range(5):
        assert sign_in(client, "alice", WRONG, path=admin_login).status_code == 200
    refused = sign_in(client, "alice", PASSWORD, path=admin_login)
    assert "Too many failed sign-ins to this account" in text_of(refused)
    assert "_auth_user_id" not in client.session


def test_while_redis_is_down_sign_in_works_unlimited_and_says_so_once_in_the_log(client, user, settings, caplog):
    from django.test import override_settings

    nothing_listens = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:9/0",
                       "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}}
    with override_settings(CACHES={**settings.CACHES, "limits": nothing_listens}), \
            caplog.at_level(logging.ERROR, logger="chat.outages"):
        for _ in range(6):
            sign_in(client, "alice", WRONG)
            time.sleep(0.26)  # past the outage's pacing, so that each sign-in tries Redis again
        assert sign_in(client, "alice", PASSWORD).status_code == 302
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["the sign-in limits' cache is failing"]


@pytest.mark.skipif(not redis_available(), reason="no Redis at REDIS_TEST_URL")
def test_with_redis_two_processes_share_one_count():
    """Two Daphne processes of one deployment: failures on one pause the account on the other."""
    username = f"shared{uuid.uuid4().hex[:8]}"
    with sqlite_database() as database_url:
        # No limit per address: 127.0.0.1 is every test's, and Redis keeps counts between runs.
        env = app_env(DATABASE_URL=database_url, REDIS_URL=REDIS_TEST_URL, SIGNIN_FAILURES_PER_ADDRESS="0")
        manage("migrate", "--noinput", env=env)
        with running_app(env) as (first, _), running_app(env) as (second, _):
            signup(first, username)
            for _ in range(5):
                assert live_sign_in(first, username, WRONG).status_code == 200
            refused = live_sign_in(second, username, PASSWORD)
            assert refused.status_code == 429
            assert "Too many failed sign-ins to this account" in refused.text


def live_sign_in(base: str, username: str, password: str):
    import httpx

    with httpx.Client(base_url=base, timeout=10) as http:
        http.get("/accounts/login/")
        return http.post("/accounts/login/", data={"username": username, "password": password,
                                                   "csrfmiddlewaretoken": http.cookies["csrftoken"]})


# --- sign-up: which usernames exist ---------------------------------------------------


def test_a_sign_up_with_a_mistake_says_nothing_about_whether_the_name_is_taken(client, user):
    taken = sign_up(client, "alice", PASSWORD, password2="something else")
    free = sign_up(client, "zelda", PASSWORD, password2="something else")
    assert text_of(taken).replace("alice", "X") == text_of(free).replace("zelda", "X")
    assert "exists" not in text_of(taken) and "not available" not in text_of(taken)


def test_a_taken_name_is_refused_with_one_sentence_whatever_its_case(client, user):
    for name in ("alice", "ALICE"):
        page = sign_up(client, name)
        assert page.status_code == 200
        assert "This username is not available. Choose another." in text_of(page)
        assert "exists" not in text_of(page)
    assert get_user_model().objects.count() == 1


def test_a_name_taken_between_the_check_and_the_save_gets_the_same_sentence(client, monkeypatch):
    from django.db import IntegrityError

    from chat import accounts

    def taken_meanwhile(*, form):
        raise IntegrityError("UNIQUE constraint failed: auth_user.username")

    monkeypatch.setattr(accounts, "user_create", taken_meanwhile)
    page = sign_up(client, "zelda")
    assert page.status_code == 200 and "This username is not available. Choose another." in text_of(page)


def test_sign_ups_from_one_address_are_limited(client, user, settings):
    settings.SIGNUPS_PER_ADDRESS_PER_HOUR = 3
    sign_up(client, "alice", address="203.0.113.5")  # taken: counted
    client.logout()
    sign_up(client, "carol", address="203.0.113.5")  # made: counted
    client.logout()
    sign_up(client, "dora", password2="typo", address="203.0.113.5")  # a mistake: not counted
    sign_up(client, "dora", address="203.0.113.5")
    client.logout()
    refused = sign_up(client, "erin", address="203.0.113.5")
    assert refused.status_code == 429 and int(refused["Retry-After"]) <= 3600
    assert "Too many sign-ups from your network address. Try again in 60 minutes." in text_of(refused)
    assert 'value="erin"' in refused.content.decode()
    assert not get_user_model().objects.filter(username="erin").exists()
    # A taken name asked about over the limit is refused the same way: nothing learnt.
    assert text_of(sign_up(client, "alice", address="203.0.113.5")).replace("alice", "X") == text_of(
        refused).replace("erin", "X")
    assert sign_up(client, "erin", address="203.0.113.6").status_code == 302


# --- password reset -------------------------------------------------------------------


@pytest.mark.parametrize("name, args", [("password_reset", []), ("password_reset_done", []),
                                        ("password_reset_confirm", ["MQ", "set-password"]),
                                        ("password_reset_complete", [])])
def test_password_reset_does_not_exist_without_a_mail_server(client, settings, name, args):
    settings.EMAIL_HOST = ""
    assert client.get(reverse(name, args=args)).status_code == 404


def test_password_reset_sends_nothing_and_is_not_offered_without_a_mail_server(client, user, settings):
    settings.EMAIL_HOST = ""
    user.email = "alice@example.com"
    user.save()
    assert client.post(reverse("password_reset"), {"email": "alice@example.com"}).status_code == 404
    assert mail.outbox == []
    assert "Forgot your password" not in text_of(client.get(reverse("login")))


def test_password_reset_works_when_a_mail_server_is_configured(client, user, settings):
    settings.EMAIL_HOST = "smtp.example.com"
    user.email = "alice@example.com"
    user.save()
    assert "Forgot your password?" in text_of(client.get(reverse("login")))
    response = client.post(reverse("password_reset"), {"email": "alice@example.com"})
    assert response.status_code == 302 and response.url == reverse("password_reset_done")
    assert [m.to for m in mail.outbox] == [["alice@example.com"]]
