"""Search over titles and message text: the same behaviour on SQLite (FTS5 trigram) and on
PostgreSQL (pg_trgm), each for real. Tests take `database`, the alias their data and search
go to (search follows the user's database)."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext

from chat import search as search_module
from chat.models import Conversation, Message
from chat.search import search, search_hit_to_dict, snippet_cut


def on_each_database(**django_db):
    """Parameters for `database`: the default database (SQLite unless DATABASE_URL says
    otherwise) and PostgreSQL (tests/settings.py's "postgres", when one answers)."""
    default = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    params = [pytest.param("default", marks=pytest.mark.django_db(databases=["default"], **django_db), id=default)]
    if "postgres" in settings.DATABASES:
        params.append(
            pytest.param("postgres", marks=pytest.mark.django_db(databases=["postgres"], **django_db), id="postgresql")
        )
    elif default != "postgresql":
        params.append(pytest.param(
            "postgres", marks=pytest.mark.skip(reason="no PostgreSQL answers at POSTGRES_ADMIN_URL"), id="postgresql"
        ))
    return params


each_database = pytest.mark.parametrize("database", on_each_database())


# No passwords: hashing one takes a quarter of a second on purpose, and search needs none.
@pytest.fixture
def alice(database):
    return get_user_model().objects.db_manager(database).create_user("alice")


@pytest.fixture
def bob(database):
    return get_user_model().objects.db_manager(database).create_user("bob")


def conversation(owner, *texts: str, title: str = "", roles: tuple[str, ...] = ("user", "assistant")) -> Conversation:
    """A conversation of `owner` whose messages are `texts`, alternating question and answer."""
    database = owner._state.db
    made = Conversation.objects.using(database).create(user=owner, title=title, model="yi-large")
    parent = None
    for i, text in enumerate(texts):
        parent = Message.objects.using(database).create(
            conversation=made, parent=parent, role=roles[i % len(roles)], content=text
        )
    return made


def found(user, query, **options) -> list[tuple[int, int | None]]:
    return [(hit.conversation_id, hit.message_id) for hit in search(user=user, query=query, **options)]


def message_ids(made: Conversation) -> list[int]:
    return list(made.messages.order_by("id").values_list("pk", flat=True))


@each_database
def test_an_english_word_is_found_inside_longer_text(alice):
    made = conversation(alice, "Why does this fail?", "It runs raise ValueError('x') when the list is empty.")

    [hit] = search(user=alice, query="ValueError")

    assert (hit.conversation_id, hit.message_id, hit.role) == (made.pk, message_ids(made)[1], "assistant")
    assert hit.snippet == (("It runs raise ", False), ("ValueError", True), ("('x') when the list is empty.", False))


@each_database
def test_a_chinese_substring_is_found_in_text_without_spaces(alice):
    made = conversation(alice, "今天北京天气很好，我们去公园吧")
    conversation(alice, "上海天气也不错")

    [hit] = search(user=alice, query="北京天气")

    assert (hit.message_id, hit.role) == (message_ids(made)[0], "user")
    assert hit.snippet == (("今天", False), ("北京天气", True), ("很好，我们去公园吧", False))


@each_database
def test_a_two_character_chinese_word_is_found_and_nothing_else(alice):
    beijing = conversation(alice, "我下周去北京出差")
    conversation(alice, "我下周去南京出差", "北方的天气很冷")  # 北 and 京 apart, not 北京

    [hit] = search(user=alice, query="北京")

    assert hit.message_id == message_ids(beijing)[0]
    assert hit.snippet == (("我下周去", False), ("北京", True), ("出差", False))


@each_database
@pytest.mark.parametrize("query", ["valueerror", "VALUEERROR", "vALUEeRROR", "va", "VA"])
def test_english_is_found_in_any_case_and_the_snippet_keeps_the_texts_own(alice, query):
    made = conversation(alice, "A ValueError again")

    [hit] = search(user=alice, query=query)

    assert hit.message_id == message_ids(made)[0]
    assert [text for text, is_match in hit.snippet if is_match] == ["ValueError"[: len(query)]]


@each_database
def test_a_title_alone_matching_gives_a_hit_without_a_message(alice):
    made = conversation(alice, "Where should we stay?", "Near the lake.", title="Trip to Hangzhou in May")

    [hit] = search(user=alice, query="hangzhou")

    assert (hit.conversation_id, hit.message_id, hit.role) == (made.pk, None, None)
    assert hit.conversation_title == "Trip to Hangzhou in May"
    assert hit.snippet == (("Trip to ", False), ("Hangzhou", True), (" in May", False))


@each_database
def test_a_conversation_found_by_its_messages_gets_no_hit_for_its_title(alice):
    made = conversation(alice, "Tell me about Hangzhou", "Hangzhou is by West Lake.", title="Tell me about Hangzhou")
    question, answer = message_ids(made)

    assert found(alice, "Hangzhou") == [(made.pk, answer), (made.pk, question)]


# Each query must find exactly the message named, whatever its characters mean to LIKE or FTS5.
LITERAL_TEXTS = {
    "percent": "We are 100% sure",
    "percent_like": "We are 100 percent sure, 1000 times",
    "underscore": "set max_tokens to 10",
    "underscore_like": "set maxxtokens to 10",
    "quote": 'He said "hi" and left',
    "star": "glob the files with src/*.py today",
    "near": "NEAR(cats dogs) is FTS5 syntax",
    "and": "salt AND pepper",
    "backslash": r"the path C:\temp\new is odd",
    "apostrophe": "it's Bob's",
    "dash": "run it with -v now",
}
LITERAL_QUERIES = [
    ("100%", "percent"),
    ("0%", "percent"),
    ("%", "percent"),
    ("x_t", "underscore"),
    ("_", "underscore"),
    ('"hi"', "quote"),
    ('"', "quote"),
    ("*.py", "star"),
    ("NEAR(cats", "near"),
    ("salt AND pepper", "and"),
    ("\\temp", "backslash"),
    ("\\", "backslash"),
    ("'s B", "apostrophe"),
    ("-v", "dash"),
    ("with -v", "dash"),
]


@each_database
@pytest.mark.parametrize("query, expected", LITERAL_QUERIES)
def test_the_querys_characters_are_literal(alice, query, expected):
    made = conversation(alice, *LITERAL_TEXTS.values(), roles=("user",))
    ids = dict(zip(LITERAL_TEXTS, message_ids(made)))

    assert found(alice, query) == [(made.pk, ids[expected])]


@each_database
@pytest.mark.parametrize("query", ["AND", "OR", "NOT", "NEAR", "a*", "(", ")", "^", ":", "{}", "' OR 1=1 --"])
def test_fts5_syntax_alone_searches_for_itself(alice, query):
    conversation(alice, "hello there", title="hello there")

    assert found(alice, query) == []


@each_database
def test_another_users_matching_conversation_is_never_returned(alice, bob):
    conversation(bob, "bob's secret: ValueError in 北京天气", title="ValueError 北京天气")
    mine = conversation(alice, "alice's ValueError")

    assert found(alice, "ValueError") == [(mine.pk, message_ids(mine)[0])]
    assert found(alice, "北京天气") == []
    assert found(alice, "北京") == []


@each_database
def test_a_system_prompt_is_not_searched(alice):
    conversation(alice, "system: zebra 斑马", roles=("system",))

    assert found(alice, "zebra") == []
    assert found(alice, "ze") == []
    assert found(alice, "斑马") == []


CALCULATOR_RESULT = '{"expression": "1234 * 5678", "result": "7006652"}'


def tool_call(owner, result: str, *, name: str = "calculator", status: str = "complete") -> tuple[Conversation, Message]:
    """A question, the answer that called tool `name`, and the tool's message holding `result`."""
    database = owner._state.db
    made = conversation(owner, "What is 1234 times 5678?")
    call = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": '{"expression": "1234 * 5678"}'}}
    answer = Message.objects.using(database).create(
        conversation=made, parent_id=message_ids(made)[0], role="assistant", tool_calls=[call]
    )
    tool = Message.objects.using(database).create(
        conversation=made, parent=answer, role="tool", name=name, tool_call_id="call_1", content=result, status=status
    )
    return made, tool


@each_database
def test_a_tool_result_is_found_by_its_text(alice):
    made, tool = tool_call(alice, CALCULATOR_RESULT)

    [hit] = search(user=alice, query="7006652")

    assert (hit.conversation_id, hit.message_id, hit.role, hit.tool_name) == (made.pk, tool.pk, "tool", "calculator")
    assert hit.snippet == (('{"expression": "1234 * 5678", "result": "', False), ("7006652", True), ('"}', False))
    assert search_hit_to_dict(hit)["tool_name"] == "calculator"
    assert found(alice, "66") == [(made.pk, tool.pk)]  # a short query, scanned


@each_database
@pytest.mark.parametrize("query", ["calculator", "Calc", "ca"])
def test_a_tool_result_is_found_by_its_tools_name(alice, query):
    made, tool = tool_call(alice, CALCULATOR_RESULT)

    [hit] = search(user=alice, query=query)

    assert (hit.message_id, hit.role, hit.tool_name) == (tool.pk, "tool", "calculator")
    assert hit.snippet == ((CALCULATOR_RESULT, False),)  # the match is the name, which the label shows


@each_database
def test_a_tool_result_in_chinese_is_found_by_a_two_character_word(alice):
    made, tool = tool_call(alice, '{"city": "北京", "weather": "晴天"}', name="weather")

    assert found(alice, "北京") == [(made.pk, tool.pk)]
    assert found(alice, "晴天") == [(made.pk, tool.pk)]


@each_database
def test_a_tool_result_is_found_once_the_tool_ends_and_not_after_its_conversation_is_deleted(alice):
    made, tool = tool_call(alice, "", status="streaming")  # as a round stores it, before the call runs
    assert found(alice, "7006652") == []

    Message.objects.using(alice._state.db).filter(pk=tool.pk).update(content=CALCULATOR_RESULT, status="complete")
    assert found(alice, "7006652") == [(made.pk, tool.pk)]
    assert found(alice, "calculator") == [(made.pk, tool.pk)]

    made.delete()
    assert found(alice, "7006652") == []
    assert found(alice, "calculator") == []
    if connections[alice._state.db].vendor == "sqlite":  # its name and text left the index with it
        assert trigram_rowids(connections[alice._state.db]) == set()


@each_database
def test_a_rare_search_is_read_from_the_indexes_with_tool_results_in_them(alice, database):
    """The tool role in the filter and the name's arm keep the plan of 0004's index."""
    made, tool = tool_call(alice, CALCULATOR_RESULT)
    Message.objects.using(database).bulk_create(
        Message(conversation=made, role=("user", "assistant", "tool")[i % 3], name="current_time" if i % 3 == 2 else "",
                content=f"message {i}: what is the weather like today?") for i in range(3000)
    )
    connection = connections[database]
    with CaptureQueriesContext(connection) as captured:
        assert found(alice, "7006652") == [(made.pk, tool.pk)]
    [messages_sql] = [query["sql"] for query in captured.captured_queries if "chat_message m" in query["sql"]]

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE chat_message")
            # With these few rows, reading them all could cost about the same.
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_indexscan = off")
            cursor.execute("EXPLAIN " + messages_sql)
            plan = "\n".join(row for (row,) in cursor.fetchall())
            assert "chat_message_content_trgm" in plan and "chat_message_tool_name_trgm" in plan, plan
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + messages_sql)
            assert "FROM chat_message_search s " in messages_sql
            assert "SCAN s VIRTUAL TABLE INDEX" in "\n".join(row[-1] for row in cursor.fetchall())


@each_database
def test_an_answer_checkpointed_then_ended_is_found_by_its_last_text_only(alice):
    made = conversation(alice, "Tell me about airships")
    answer = Message.objects.using(alice._state.db).create(
        conversation=made, parent_id=message_ids(made)[0], role="assistant", status="streaming", content=""
    )
    answers = Message.objects.using(alice._state.db).filter(pk=answer.pk)

    answers.update(content="A first draft about the Zeppelin", seq=5)  # a checkpoint, as generation writes it
    assert found(alice, "zeppelin") == [(made.pk, answer.pk)]

    answers.update(content="The Hindenburg was the largest airship.", status="complete", seq=9)  # the ending
    assert found(alice, "zeppelin") == []
    assert found(alice, "hindenburg") == [(made.pk, answer.pk)]
    assert found(alice, "argest") == [(made.pk, answer.pk)]


@each_database
def test_a_two_character_word_follows_an_answer_as_it_streams_and_ends(alice):
    made = conversation(alice, "蝾螈冬天做什么？")
    question = message_ids(made)[0]
    answer = Message.objects.using(alice._state.db).create(
        conversation=made, parent_id=question, role="assistant", status="streaming", content=""
    )
    answers = Message.objects.using(alice._state.db).filter(pk=answer.pk)

    answers.update(content="它们会冬眠，", seq=5)  # a checkpoint, as generation writes it
    assert found(alice, "冬眠") == [(made.pk, answer.pk)]
    answers.update(content="它们会冬眠，躲在池塘底的泥里", seq=9)
    assert found(alice, "池塘") == [(made.pk, answer.pk)]

    answers.update(content="它们躲在泥里过冬。", status="complete", seq=12)  # the ending, other words
    assert found(alice, "冬眠") == []
    assert found(alice, "池塘") == []
    assert found(alice, "过冬") == [(made.pk, answer.pk)]
    assert found(alice, "冬天") == [(made.pk, question)]
    if connections[alice._state.db].vendor == "sqlite":  # no pair of an earlier text left behind
        assert bigram_index(connections[alice._state.db]) == cjk_pairs({question: "蝾螈冬天做什么？", answer.pk: "它们躲在泥里过冬。"})


# Where a pair can fall against the pieces migration 0007's SQLite triggers cut text into
# (stretches of 1,024 pairs, chunks of 32): its position in the text, from 1.
PAIR_POSITIONS = [1, 2, 31, 32, 33, 64, 65, 1023, 1024, 1025, 1026, 1056, 1057, 2048, 2049, 3000]


@each_database
def test_a_two_character_word_is_found_wherever_it_stands_in_a_long_text(alice):
    made = conversation(alice, "蝾螈", *(f"{'x' * (position - 1)}蝾螈" for position in PAIR_POSITIONS),
                        *(f"{'池塘' * (position // 2)}蝾螈{'池塘' * 20}" for position in PAIR_POSITIONS))
    conversation(alice, "蝾x螈", "螈蝾", "x" * 1023 + "蝾 螈")

    assert found(alice, "蝾螈", limit=100) == [(made.pk, pk) for pk in reversed(message_ids(made))]


# Pairs of the first and last characters of each CJK range (chat/search.py's CJK), and of
# characters just outside them, which are found by reading every message instead.
EDGE_PAIRS = [
    "\u3040\u9fff", "\u9fff\u3040", "\uac00\ud7af", "\uf900\ufaff", "\U00020000\U0003ffff",
    "\u4e00\U0002a6d6", "\u3041\uac01",
    "\u303f\u3041", "\u3041\ua000", "\uabff\uac01", "\ud7b0\uac01", "\uf8ff\uf901", "\ufb00\uf901",
    "\U0001ffff\U00020001", "\U00040000\U00020001", "\uff0c\u4e00", "a\u4e00",
]


@each_database
@pytest.mark.parametrize("pair", EDGE_PAIRS, ids=[pair.encode("unicode_escape").decode() for pair in EDGE_PAIRS])
def test_a_pair_at_the_edges_of_the_cjk_ranges_is_found(alice, pair):
    made = conversation(alice, f"before{pair}after", f"{pair[0]}x{pair[1]}", pair)

    assert found(alice, pair) == [(made.pk, message_ids(made)[2]), (made.pk, message_ids(made)[0])]


@each_database
def test_a_two_character_chinese_search_is_read_from_the_bigram_index(alice, database):
    """Not a scan of every message: the index made for it (migration 0007)."""
    made = conversation(alice, "池塘里的蝾螈", "蝾螈会冬眠")
    Message.objects.using(database).bulk_create(
        Message(conversation=made, role="user", content=f"第{i}个问题：今天天气怎么样？") for i in range(2000)
    )
    connection = connections[database]
    with CaptureQueriesContext(connection) as captured:
        assert len(search(user=alice, query="蝾螈")) == 2
    [messages_sql] = [query["sql"] for query in captured.captured_queries if "chat_message m" in query["sql"]]

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE chat_message")
            # With these few rows, walking the ids backwards could cost about the same.
            cursor.execute("SET LOCAL enable_indexscan = off")
            cursor.execute("EXPLAIN " + messages_sql)
            assert "chat_message_content_bigram" in "\n".join(row for (row,) in cursor.fetchall())
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + messages_sql)
            assert "FROM chat_message_bigram s " in messages_sql
            assert "SCAN s VIRTUAL TABLE INDEX" in "\n".join(row[-1] for row in cursor.fetchall())


@each_database
def test_a_deleted_conversation_is_no_longer_found(alice):
    gone = conversation(alice, "ValueError here", "and 北京天气 there", title="ValueError")
    kept = conversation(alice, "another ValueError")

    gone.delete()

    assert found(alice, "ValueError") == [(kept.pk, message_ids(kept)[0])]
    assert found(alice, "北京天气") == []
    assert found(alice, "北京") == []


@each_database
def test_hits_are_newest_first_and_at_most_limit(alice):
    made = [conversation(alice, f"question {i} about ValueError") for i in range(5)]
    newest_first = [(c.pk, message_ids(c)[0]) for c in reversed(made)]

    assert found(alice, "ValueError") == newest_first
    assert found(alice, "ValueError", limit=2) == newest_first[:2]
    assert found(alice, "Va", limit=2) == newest_first[:2]


@each_database
@pytest.mark.parametrize("query", ["", "   ", "\n\t", "\x00", "a\x00b", "\ud800", "x\udfffy"])
def test_an_empty_query_or_one_no_text_can_hold_finds_nothing(alice, query):
    conversation(alice, "some text a b x y", title="some title")

    assert search(user=alice, query=query) == []


@each_database
def test_archived_true_or_false_keeps_only_those_conversations(alice):
    kept = conversation(alice, "ValueError in a kept one")
    archived = conversation(alice, "ValueError in an archived one")
    Conversation.objects.using(alice._state.db).filter(pk=archived.pk).update(archived=True)
    both = [(archived.pk, message_ids(archived)[0]), (kept.pk, message_ids(kept)[0])]

    assert found(alice, "ValueError") == both
    assert found(alice, "ValueError", archived=False) == both[1:]
    assert found(alice, "ValueError", archived=True) == both[:1]
    assert found(alice, "Va", archived=True) == both[:1]


@each_database
@pytest.mark.parametrize("query, queries", [("ValueError", 2), ("Va", 2), ("北京天气", 2), ("北京", 2)])
def test_a_search_runs_the_same_number_of_queries_whatever_the_size(
    alice, database, django_assert_num_queries, query, queries
):
    conversation(alice, "ValueError in 北京天气")
    conversation(alice, title="ValueError 北京天气")
    with django_assert_num_queries(queries, connection=connections[database]):
        assert len(search(user=alice, query=query)) == 2

    for i in range(40):
        conversation(alice, f"ValueError {i} in 北京天气", f"answer {i}: ValueError in 北京天气", title=f"ValueError {i} 北京天气")
    with django_assert_num_queries(queries, connection=connections[database]):
        assert len(search(user=alice, query=query)) == 20


@each_database
def test_the_snippet_is_plain_text_around_the_first_match(alice):
    before = "word " * 100
    after = " more" * 100
    conversation(alice, f"{before}<b>ValueError</b>\n\n  in <script>x</script>{after}")

    [hit] = search(user=alice, query="valueerror")

    text = "".join(part for part, _ in hit.snippet)
    assert [part for part, is_match in hit.snippet if is_match] == ["ValueError"]
    assert "<b>ValueError</b> in <script>x</script>" in text  # the message's own characters, not markup
    assert text.startswith("…word ") and text.endswith("more…")
    assert 140 <= len(text) <= 170
    assert search_hit_to_dict(hit)["snippet"] == [list(part) for part in hit.snippet]


def test_a_snippet_marks_every_match_in_it_and_cuts_between_words():
    text = "Alpha beta gamma. " * 20 + "The ValueError came twice: valueerror. " + "Delta epsilon zeta. " * 20

    parts = snippet_cut(text, "ValueError")

    assert [part for part, is_match in parts if is_match] == ["ValueError", "valueerror"]
    joined = "".join(part for part, _ in parts)
    assert joined.startswith("…") and joined.endswith("…")
    first_word, last_word = joined[1:].split(" ")[0], joined[:-1].split(" ")[-1]
    assert f" {first_word} " in f" {text} " and f" {last_word} " in f" {text} "


def test_a_snippet_reads_without_markdowns_marks_but_keeps_the_query_as_typed():
    text = "## Greeting\n\nUse a **decorator** here:\n\n```python\ndef greet(name):\n    return `name`\n```"

    parts = snippet_cut(text, "decorator")
    assert "".join(part for part, _ in parts) == "Greeting Use a decorator here: def greet(name): return name"
    assert ("decorator", True) in parts
    assert ("**bold**", True) in snippet_cut("some **bold** text", "**bold**")


def test_a_snippet_of_a_query_longer_than_the_snippet_is_the_match():
    text = "start " + "x" * 300 + " end"

    assert snippet_cut(text, "x" * 300) == (("…", False), ("x" * 300, True), ("…", False))


@pytest.mark.skipif(settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3", reason="SQLite only")
@pytest.mark.parametrize("database", [pytest.param("default", marks=pytest.mark.django_db)])
def test_without_the_trigram_tokenizer_sqlite_scans_and_finds_the_same(alice, monkeypatch):
    made = conversation(alice, "今天北京天气很好", "raise ValueError('x')", title="100% 北京")
    queries = ("北京天气", "valueerror", "100%", "北京", "100% 北")
    with_index = [found(alice, query) for query in queries]

    # This machine's SQLite has the tokenizer; the scan is what an older one gets.
    monkeypatch.setattr(search_module, "fts5_trigram_available", lambda: False)

    assert [found(alice, query) for query in queries] == with_index
    assert with_index[:2] == [[(made.pk, message_ids(made)[0])], [(made.pk, message_ids(made)[1])]]


def search_schema(connection) -> set[str]:
    """The tables, indexes, triggers and functions of migrations 0004, 0007 and 0011 in this database."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT indexname FROM pg_indexes WHERE indexname LIKE %s OR indexname LIKE %s "
                "UNION SELECT proname FROM pg_proc WHERE proname = 'chat_message_bigrams'",
                ["%_trgm", "%_bigram"],
            )
        else:
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE name LIKE %s OR name LIKE %s",
                ["chat_message_search%", "chat_message_bigram%"],
            )
        return {name for (name,) in cursor.fetchall()}


def trigram_rowids(connection) -> set[int]:
    """SQLite: the messages migration 0004's trigram table holds any trigram of."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE VIRTUAL TABLE temp.trigram_terms USING fts5vocab(main, chat_message_search, instance)")
        try:
            cursor.execute("SELECT DISTINCT doc FROM temp.trigram_terms")
            return {doc for (doc,) in cursor.fetchall()}
        finally:
            cursor.execute("DROP TABLE temp.trigram_terms")


def bigram_index(connection) -> dict[str, list[int]]:
    """SQLite: what migration 0007's bigram table holds, pair by pair: the messages' ids."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE VIRTUAL TABLE temp.bigram_terms USING fts5vocab(main, chat_message_bigram, instance)")
        try:
            cursor.execute("SELECT term, doc FROM temp.bigram_terms ORDER BY term, doc")
            index: dict[str, list[int]] = {}
            for term, doc in cursor.fetchall():
                index.setdefault(term, []).append(doc)
            return index
        finally:
            cursor.execute("DROP TABLE temp.bigram_terms")


def cjk_pairs(texts: dict[int, str]) -> dict[str, list[int]]:
    """What the bigram index should hold for these messages' texts, as `bigram_index` says it."""
    index: dict[str, set[int]] = {}
    for pk, text in texts.items():
        for start in range(len(text) - 1):
            if all(search_module.CJK.fullmatch(character) for character in text[start : start + 2]):
                index.setdefault(text[start : start + 2], set()).add(pk)
    return {pair: sorted(pks) for pair, pks in index.items()}


SQLITE_TRIGGERS = {
    "chat_message_search_insert", "chat_message_search_update", "chat_message_search_delete",
    "chat_message_bigram_insert", "chat_message_bigram_update", "chat_message_bigram_delete",
}


@pytest.mark.skipif(settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3", reason="SQLite only")
@pytest.mark.django_db
def test_the_search_triggers_outlive_every_later_migration():
    """On SQLite Django alters most columns by rebuilding the table (create, copy, drop,
    rename), and dropping chat_message drops these triggers with it: the index would stop
    following the text without an error. A migration that rebuilds chat_message must run
    the latest triggers again: 0011's (SEARCH_TRIGGERS, BIGRAM_TRIGGERS), which index tool
    results too; 0004's or 0007's would leave them out."""
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'chat_message'")
        triggers = dict(cursor.fetchall())
    assert set(triggers) == SQLITE_TRIGGERS
    assert all("('user', 'assistant', 'tool')" in sql for sql in triggers.values())


@pytest.mark.parametrize("database", on_each_database(transaction=True))
@pytest.mark.parametrize("before, left", [
    ("0003_message_notes", lambda name: False),  # before either index
    ("0006_api_keys", lambda name: "bigram" not in name and "tool" not in name),  # before 0007's
])
def test_the_migrations_index_existing_messages_and_go_back(alice, database, before, left):
    connection = connections[database]
    indexed = search_schema(connection)
    executor = MigrationExecutor(connection)
    before = [("chat", before)]
    executor.migrate(before)
    try:
        assert search_schema(connection) == {name for name in indexed if left(name)}
        # The models as they were then: later migrations add columns the current ones write.
        old = executor.loader.project_state(before).apps
        made = old.get_model("chat", "Conversation").objects.using(database).create(user_id=alice.pk, model="yi-large")
        message = old.get_model("chat", "Message").objects.using(database).create(
            conversation=made, role="user", content="written before the index: 北京天气 and ValueError"
        )
    finally:
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes("chat"))

    assert search_schema(connection) == indexed != set()
    assert found(alice, "北京天气") == [(made.pk, message.pk)]
    assert found(alice, "valueerror") == [(made.pk, message.pk)]
    assert found(alice, "天气") == [(made.pk, message.pk)]
    if connection.vendor == "sqlite":
        assert bigram_index(connection) == {"北京": [message.pk], "京天": [message.pk], "天气": [message.pk]}


def content_index_roles(connection) -> str:
    """PostgreSQL: the roles in the partial predicate of 0004's trigram index."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'chat_message_content_trgm'")
        return cursor.fetchone()[0].split("WHERE", 1)[1]


@pytest.mark.parametrize("database", on_each_database(transaction=True))
def test_migration_0011_indexes_existing_tool_results_and_goes_back(alice, database):
    connection = connections[database]
    indexed = search_schema(connection)
    executor = MigrationExecutor(connection)
    before = [("chat", "0010_api_key_tier_none")]
    made, tool = tool_call(alice, '{"city": "北京", "result": "7006652"}')
    executor.migrate(before)
    try:
        assert search_schema(connection) == {name for name in indexed if "tool" not in name}
        # Gone from the indexes, and a tool message written now is not added to them. The
        # model as it was then: later migrations add columns the current one writes.
        old = executor.loader.project_state(before).apps.get_model("chat", "Message")
        later = old.objects.using(database).create(
            conversation_id=made.pk, parent_id=tool.pk, role="tool", name="current_time",
            content='{"timezone": "Asia/Tokyo 东京"}',
        )
        if connection.vendor == "sqlite":
            assert trigram_rowids(connection) == {message_ids(made)[0]}  # the question (the call has no text)
            assert bigram_index(connection) == {}
        else:
            assert "tool" not in content_index_roles(connection)
    finally:
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes("chat"))

    assert search_schema(connection) == indexed
    assert found(alice, "7006652") == [(made.pk, tool.pk)]
    assert found(alice, "北京") == [(made.pk, tool.pk)]
    assert found(alice, "Asia/Tokyo") == [(made.pk, later.pk)]
    assert found(alice, "东京") == [(made.pk, later.pk)]
    assert found(alice, "current_time") == [(made.pk, later.pk)]
    if connection.vendor == "sqlite":
        assert trigram_rowids(connection) == {message_ids(made)[0], tool.pk, later.pk}
        assert bigram_index(connection) == {"北京": [tool.pk], "东京": [later.pk]}
    else:
        assert "tool" in content_index_roles(connection)


@pytest.mark.django_db(transaction=True)
async def test_an_answer_is_found_by_its_last_words_once_its_done_frame_arrives(user, connect):
    ws = await connect(user)
    await ws.send_json_to(
        {"type": "send", "conversation_id": None, "text": "[sim deltas=30 interval=5] 北京天气?", "model": "yi-large"}
    )
    async with asyncio.timeout(10):
        while (frame := await ws.receive_json_from(timeout=10))["type"] != "done":
            pass

    hits = await database_sync_to_async(search)(user=user, query="t29")

    assert [(hit.message_id, hit.role) for hit in hits] == [(frame["message_id"], "assistant")]
    assert [text for text, is_match in hits[0].snippet if is_match] == ["t29"]
