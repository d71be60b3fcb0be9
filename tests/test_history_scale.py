"""History at scale: the list, a conversation page and a search each run the same queries
whether the person has 300 conversations or 1,200, and whether a thread holds 2 messages
or 500; and `manage.py seed_history`, which makes such a history, makes what it says.

The data is seeded once for the module (two people, a small and a larger history) and
deleted at its end: seeding is the slow part, and every test here only reads it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.db.models import Count, F, Max
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

from chat.history import PAGE_SIZE, conversation_list, message_thread
from chat.models import Attachment, Conversation, Message
from chat.search import search

pytestmark = pytest.mark.django_db

SMALL = {"conversations": 300, "messages": 3_000}
LARGER = {"conversations": 1_200, "messages": 15_000}
# What each read costs, whatever the size: two queries for a page of the list; the session
# and its user for any page; a conversation, its messages and their images for a thread;
# and on the chat page, the person's preferences (theme, defaults) and keys (the key picker).
LIST_QUERIES = 2  # the page, and which of its rows hold images
SIGNED_IN = 2
CHAT_PAGE = 2  # preferences, keys
LIST_HTTP_QUERIES = SIGNED_IN + LIST_QUERIES
CONVERSATION_PAGE_QUERIES = SIGNED_IN + CHAT_PAGE + 1 + 2 + LIST_QUERIES
HOME_PAGE_QUERIES = SIGNED_IN + CHAT_PAGE + LIST_QUERIES
SEARCH_QUERIES = 2
# Searched for in both histories: planted words (a handful of hits), common words (more
# than a page of hits), each language, and a 2-character Chinese word, which the trigram
# index cannot look up (chat/search.py scans for it).
SEARCHED = ["ValueError", "北京天气", "蝾螈", "database", "服务器", "数据"]


@dataclass
class History:
    user: object
    client: Client
    long_id: int  # a conversation of 500 messages
    short_id: int  # one of 2


@pytest.fixture(scope="module")
def histories(django_db_setup, django_db_blocker, tmp_path_factory):
    with django_db_blocker.unblock(), override_settings(MEDIA_ROOT=tmp_path_factory.mktemp("media")):
        made = {}
        for name, size in (("small", SMALL), ("larger", LARGER)):
            call_command("seed_history", user=name, images_every=10, stdout=io.StringIO(), **size)
            user = get_user_model().objects.get(username=name)
            sizes = Conversation.objects.filter(user=user).annotate(n=Count("messages"))
            client = Client()
            client.force_login(user)
            made[name] = History(user, client, sizes.filter(n=500).first().pk, sizes.filter(n=2).first().pk)
        yield made
        for history in made.values():
            history.client.logout()
        get_user_model().objects.filter(username__in=made).delete()


def queries_of(read) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        read()
    return [q["sql"] for q in captured.captured_queries]


def test_a_page_of_the_list_is_two_queries_however_many_conversations(histories):
    counts = {}
    for name, history in histories.items():
        counts[name] = queries_of(lambda: [c.has_images for c in conversation_list(user=history.user)[0]])
    assert len(counts["small"]) == len(counts["larger"]) == LIST_QUERIES, counts


@pytest.mark.parametrize("path", ["/api/conversations", "/api/conversations?archived=1"])
def test_the_list_over_http_runs_the_same_queries_however_many_conversations(histories, path):
    counts = {}
    for name, history in histories.items():
        counts[name] = queries_of(lambda: history.client.get(path).json())
    assert len(counts["small"]) == len(counts["larger"]) == LIST_HTTP_QUERIES, counts


def test_the_next_page_of_the_list_runs_the_same_queries_as_the_first(histories):
    client = histories["larger"].client
    following = client.get("/api/conversations").json()["next"]
    first = queries_of(lambda: client.get("/api/conversations"))
    second = queries_of(lambda: client.get("/api/conversations", {"after": following}))
    assert len(first) == len(second) == LIST_HTTP_QUERIES
    assert len(client.get("/api/conversations", {"after": following}).json()["conversations"]) == PAGE_SIZE


def test_the_home_page_runs_the_same_queries_however_many_conversations(histories):
    counts = {name: queries_of(lambda: h.client.get("/")) for name, h in histories.items()}
    assert len(counts["small"]) == len(counts["larger"]) == HOME_PAGE_QUERIES, counts


def test_a_conversation_of_500_messages_opens_with_the_queries_of_one_of_2(histories):
    history = histories["larger"]
    long = queries_of(lambda: history.client.get(f"/c/{history.long_id}/"))
    short = queries_of(lambda: history.client.get(f"/c/{history.short_id}/"))
    assert len(long) == len(short) == CONVERSATION_PAGE_QUERIES, (long, short)


def test_a_conversation_page_shows_all_500_messages_with_their_images(histories):
    history = histories["larger"]
    conversation = Conversation.objects.get(pk=history.long_id)
    thread = message_thread(conversation=conversation)
    assert len(thread) == 500
    assert [m.role for m in thread] == ["user", "assistant"] * 250
    assert sum(len(m.attachments.all()) for m in thread) == Attachment.objects.filter(
        message__conversation=conversation).count() > 0
    page = history.client.get(f"/c/{history.long_id}/")
    assert page.status_code == 200 and page.content.decode().count(f'"conversation_id": {history.long_id}') == 500


@pytest.mark.parametrize("query", SEARCHED)
def test_a_search_runs_the_same_queries_however_large_the_history(histories, query):
    counts = {name: queries_of(lambda: search(user=h.user, query=query)) for name, h in histories.items()}
    assert len(counts["small"]) == len(counts["larger"]) == SEARCH_QUERIES, counts


@pytest.mark.parametrize("query", SEARCHED)
def test_a_search_over_http_runs_the_same_queries_however_large_the_history(histories, query):
    counts = {name: queries_of(lambda: h.client.get("/api/search", {"q": query}).json())
              for name, h in histories.items()}
    assert len(counts["small"]) == len(counts["larger"]) == SIGNED_IN + SEARCH_QUERIES, counts


# --- the seed -------------------------------------------------------------------------------


def test_the_seed_makes_as_many_conversations_and_messages_as_asked(histories):
    user = histories["larger"].user
    assert Conversation.objects.filter(user=user).count() == LARGER["conversations"]
    assert Message.objects.filter(conversation__user=user).count() == LARGER["messages"]


def test_a_message_written_after_the_seed_gets_an_id_of_its_own(histories):
    # The seed chooses message ids itself: the database's own counter must have moved past them.
    conversation = Conversation.objects.get(pk=histories["larger"].short_id)
    newest = Message.objects.order_by("-id").first()
    added = Message.objects.create(conversation=conversation, parent=conversation.leaf, role="user", content="later")
    assert added.pk > newest.pk


def test_every_answer_follows_its_question_and_every_question_the_answer_before(histories):
    user = histories["larger"].user
    rows = {m["id"]: m for m in Message.objects.filter(conversation__user=user).values(
        "id", "parent_id", "role", "conversation_id", "created_at")}
    for message in rows.values():
        parent = rows.get(message["parent_id"])
        if message["role"] == "assistant":
            assert parent is not None and parent["role"] == "user"
        elif parent is not None:
            assert parent["role"] == "assistant"
        if parent is not None:
            assert parent["conversation_id"] == message["conversation_id"]
            assert parent["id"] < message["id"] and parent["created_at"] <= message["created_at"]
    # Each conversation shows the branch ending at its newest message.
    conversations = Conversation.objects.filter(user=user).annotate(newest=Max("messages__id"))
    assert not conversations.exclude(leaf_id=F("newest")).exists()


@pytest.mark.parametrize("query, hits", [("ValueError", 7), ("北京天气", 5), ("蝾螈", 3)])
def test_search_finds_every_planted_text_and_nothing_else(histories, query, hits):
    for history in histories.values():
        containing = set(Message.objects.filter(conversation__user=history.user, content__contains=query)
                         .values_list("id", flat=True))
        found = {hit.message_id for hit in search(user=history.user, query=query)}
        assert found == containing and len(found) == hits


def test_the_search_index_matches_the_stored_text(histories):
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL keeps its own indexes up to date")
    with connection.cursor() as cursor:  # raises "database disk image is malformed" if not
        cursor.execute("INSERT INTO chat_message_search(chat_message_search, rank) VALUES ('integrity-check', 1)")


def test_the_seeded_images_are_one_stored_file(histories):
    user = histories["small"].user
    files = set(Attachment.objects.filter(user=user).values_list("file", flat=True))
    assert len(files) == 1 and Attachment.objects.filter(user=user, message__role="user").count() > 10
    shown = Attachment.objects.filter(user=user).first()
    assert histories["small"].client.get(f"/attachments/{shown.pk}/").status_code == 200
