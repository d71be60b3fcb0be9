"""Search: the places in a user's conversations (titles, questions, answers, tool results)
that hold some text.

One function, `search`, over two back ends chosen by the database's vendor. Both find the
query as a substring, with no notion of words: Chinese is written without spaces, and
`ValueError` sits inside `raise ValueError('x')`.

- SQLite: the FTS5 table with the trigram tokenizer of migration 0004, which triggers keep
  up to date as answers stream (checkpoints), end, and are deleted. The query is passed as
  one quoted phrase, so none of its characters is FTS5 syntax.
- PostgreSQL: ILIKE '%…%', which the pg_trgm GIN indexes of migration 0004 serve.

A trigram index can look up only queries of 3 characters or more, and most Chinese words
are 2 (北京, 蝾螈). For a query of 2 CJK characters (`CJK`), migration 0007's bigram index
holds which messages have each pair of adjacent CJK characters: on SQLite an FTS5 table of
its own, kept by triggers as 0004's is; on PostgreSQL a GIN index over the function
`chat_message_bigrams(content)`, searched with `@>`. Any other short query scans the
user's messages newest first with LIKE or ILIKE, as SQLite does when its library lacks the
trigram tokenizer: 1 character, or 2 that are not both CJK (`go`, `A股`). Such a query is
mostly common, so `limit` hits come soon; a rare one reads every message. Titles are short
and few per user: LIKE on SQLite.

A tool's result (a `tool` message: JSON text, which repeats what the tool was asked) is
found by its text or by the tool's name (migration 0011): on SQLite the trigram table holds
both as one text, on PostgreSQL the name has a small index of its own, an OR's other arm. A
hit on it opens the card that shows the call's arguments and its result.

Hits are newest first, not best first: substring matching gives no relevance worth the
name (FTS5's bm25 over trigrams favours short messages and repeated letters, not meaning;
ILIKE has none), people mostly look for something recent, and newest first lets each back
end walk its index in order and stop at `limit` instead of ranking every match.

The snippet and its marks are cut here, in Python, from the matched text, the same for both
back ends: plain text parts, never HTML, since message text is model output.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import connections, router
from django.utils.dateparse import parse_datetime

from chat.models import Conversation, Message

SNIPPET_CHARS = 160
# A trigram index needs this many characters to look a query up.
TRIGRAM = 3
# Migration 0007's bigram index looks up queries of this many characters, each CJK (its
# CJK_SQLITE and CJK_POSTGRESQL are these characters).
BIGRAM = 2
CJK = re.compile("[\u3040-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003ffff]")
# Migrations 0004, 0007 and 0011 index the same roles: a system prompt is not what anyone
# said in the conversation, nor what a tool answered.
ROLES_SQL = "('user', 'assistant', 'tool')"
TITLE_MAX_CHARS = Conversation._meta.get_field("title").max_length

# (text, is_match): a snippet is a tuple of these, to be shown as text.
Part = tuple[str, bool]


@dataclass(frozen=True)
class SearchHit:
    conversation_id: int
    conversation_title: str
    message_id: int | None  # None: the title matched
    role: str | None  # "user", "assistant" or "tool"; None for a title
    snippet: tuple[Part, ...]
    updated_at: datetime  # the conversation's, as the list shows it
    tool_name: str = ""  # a tool result's tool


def search(
    *, user: AbstractBaseUser, query: str, limit: int = 20, archived: bool | None = None
) -> list[SearchHit]:
    """The user's messages containing `query` (trimmed; any case), one hit each, and the
    conversations whose title alone has it (their messages have no hit), one hit each;
    newest first (a message by when it was written, a title by its conversation's last
    update), at most `limit`. Two queries, whatever the number of conversations.
    `archived` True or False keeps only archived or unarchived conversations.
    """
    query = query.strip()
    if not query or limit <= 0 or not _storable(query):
        return []
    connection = connections[router.db_for_read(Message, instance=user)]
    scope = Scope(user_id=user.pk, archived=archived)
    with connection.cursor() as cursor:
        found = _messages_found(cursor, connection.vendor, query, scope, limit)
        found += _titles_found(cursor, connection.vendor, query, scope, limit)
    found.sort(key=lambda item: (item[0], item[1].message_id or 0), reverse=True)
    # A title is mostly its first question's words: a second hit for it would be noise.
    with_messages = {hit.conversation_id for _, hit in found if hit.message_id is not None}
    hits = [hit for _, hit in found if hit.message_id is not None or hit.conversation_id not in with_messages]
    return hits[:limit]


def search_hit_to_dict(hit: SearchHit) -> dict[str, Any]:
    """A hit as the page gets it: the snippet as [text, is_match] pairs, for textContent."""
    return {
        "conversation_id": hit.conversation_id,
        "conversation_title": hit.conversation_title,
        "message_id": hit.message_id,
        "role": hit.role,
        "snippet": [[text, is_match] for text, is_match in hit.snippet],
        "updated_at": hit.updated_at.isoformat(),
        "tool_name": hit.tool_name,
    }


@dataclass(frozen=True)
class Scope:
    """Whose conversations are searched, as SQL over `chat_conversation c`."""

    user_id: int
    archived: bool | None

    def sql(self) -> tuple[str, list[Any]]:
        if self.archived is None:
            return "c.user_id = %s", [self.user_id]
        return "c.user_id = %s AND c.archived = %s", [self.user_id, self.archived]


def _titles_found(cursor, vendor: str, query: str, scope: Scope, limit: int) -> list[tuple[datetime, SearchHit]]:
    if len(query) > TITLE_MAX_CHARS:
        return []  # no title is that long; SQLite would refuse a LIKE pattern past 50,000 bytes
    where, params = scope.sql()
    cursor.execute(
        f"SELECT c.id, c.title, c.updated_at FROM chat_conversation c "
        f"WHERE {where} AND c.title {_like(vendor, query)} %s ESCAPE '\\' "
        "ORDER BY c.updated_at DESC, c.id DESC LIMIT %s",
        [*params, _like_pattern(query), limit],
    )
    found = []
    for conversation_id, title, updated_at in cursor.fetchall():
        updated_at = _datetime(updated_at)
        hit = SearchHit(conversation_id, title, None, None, snippet_cut(title, query), updated_at)
        found.append((updated_at, hit))
    return found


def _messages_found(cursor, vendor: str, query: str, scope: Scope, limit: int) -> list[tuple[datetime, SearchHit]]:
    where, params = scope.sql()
    columns = "m.id, m.role, m.content, m.created_at, c.id, c.title, c.updated_at, m.name"
    if vendor == "sqlite" and len(query) >= TRIGRAM and fts5_trigram_available():
        sql = _sqlite_indexed(columns, "chat_message_search", where)
        params = [_fts5_phrase(query), *params, limit]
    elif vendor == "sqlite" and bigram_indexed(query) and fts5_bigram_available():
        sql = _sqlite_indexed(columns, "chat_message_bigram", where)
        params = [_fts5_phrase(query), *params, limit]
    else:
        # SQLite's own plan reads every message of the user and sorts them; CROSS JOIN makes
        # it read messages newest first and stop at `limit` hits, so a common short query
        # (`go` in a programmer's history) costs little. A rare one reads everything.
        join = "CROSS JOIN" if vendor == "sqlite" else "JOIN"
        like = _like(vendor, query)
        # A tool's name too: on PostgreSQL, a rare query's two arms are read from the
        # content's index and the tool names' (migrations 0004 and 0011).
        text = f"(m.content {like} %s ESCAPE '\\' OR (m.role = 'tool' AND m.name {like} %s ESCAPE '\\'))"
        text_params = [_like_pattern(query)] * 2
        pairs, pairs_params = "", []
        if vendor == "postgresql" and bigram_indexed(query):
            # Migration 0007's bigram index finds a rare pair; for a common one the planner
            # walks ids backwards instead and stops at `limit`, and the LIKE, cheaper than
            # the function and so tested first, spares calling it on every row read.
            # A tool's name is ASCII: no CJK pair, no second arm.
            pairs, pairs_params = "chat_message_bigrams(m.content) @> ARRAY[%s]::text[] AND ", [query]
            text, text_params = f"m.content {like} %s ESCAPE '\\'", [_like_pattern(query)]
        sql = (
            f"SELECT {columns} FROM chat_message m {join} chat_conversation c ON c.id = m.conversation_id "
            f"WHERE {pairs}{text} AND m.role IN {ROLES_SQL} AND {where} "
            "ORDER BY m.id DESC LIMIT %s"
        )
        params = [*pairs_params, *text_params, *params, limit]
    cursor.execute(sql, params)
    found = []
    for message_id, role, content, created_at, conversation_id, title, updated_at, name in cursor.fetchall():
        hit = SearchHit(
            conversation_id, title, message_id, role, snippet_cut(content, query), _datetime(updated_at),
            tool_name=name if role == "tool" else "",
        )
        found.append((_datetime(created_at), hit))
    return found


def _sqlite_indexed(columns: str, index: str, where: str) -> str:
    """Messages through one of the FTS5 tables, whose rowid is the message's id."""
    # ORDER BY the FTS table's rowid: FTS5 hands rowids over in that order, so SQLite
    # stops after `limit` of this user's rows instead of sorting every match.
    return (
        f"SELECT {columns} FROM {index} s "
        "JOIN chat_message m ON m.id = s.rowid JOIN chat_conversation c ON c.id = m.conversation_id "
        f"WHERE {index} MATCH %s AND m.role IN {ROLES_SQL} AND {where} "
        "ORDER BY s.rowid DESC LIMIT %s"
    )


def bigram_indexed(query: str) -> bool:
    """Whether migration 0007's bigram index can look `query` up: 2 characters, both CJK.
    (One character scans: it is in so many messages that the newest `limit` come soon.)"""
    return len(query) == BIGRAM and all(CJK.fullmatch(character) for character in query)


def _storable(text: str) -> bool:
    """False for text no message can hold (a NUL, half a surrogate pair: neither is stored),
    which PostgreSQL would refuse even as a query."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _like(vendor: str, query: str) -> str:
    # SQLite's LIKE ignores the case of ASCII letters, which is what English needs.
    # PostgreSQL's ILIKE lowercases every text it reads; for a query with no letter that
    # has case (Chinese) LIKE finds the same, several times faster.
    return "ILIKE" if vendor == "postgresql" and query.lower() != query.upper() else "LIKE"


def _like_pattern(query: str) -> str:
    """'%query%' with the query's own %, _ and \\ taken literally."""
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _fts5_phrase(query: str) -> str:
    """The query as one FTS5 string: inside double quotes (doubled within) every character
    is text, so `*`, `NEAR`, `AND`, `-` or a lone quote search for themselves."""
    return '"' + query.replace('"', '""') + '"'


def _datetime(value: datetime | str) -> datetime:
    """A datetime from a raw query: SQLite gives the stored text (UTC), PostgreSQL a datetime."""
    if isinstance(value, str):
        value = parse_datetime(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@functools.cache
def fts5_trigram_available() -> bool:
    """Whether this Python's SQLite has FTS5 and its trigram tokenizer (3.34 or later); if
    not, migration 0004 made no index, and messages are scanned with LIKE."""
    try:
        with contextlib.closing(sqlite3.connect(":memory:")) as probe:
            probe.execute("CREATE VIRTUAL TABLE probe USING fts5(x, tokenize='trigram')")
    except sqlite3.Error:
        return False
    return True


def fts5_bigram_available() -> bool:
    """Whether migration 0007 could make the bigram index: it needs what the trigram one
    needs and a WITH ... AS MATERIALIZED inside a trigger (SQLite 3.35); if not,
    2-character queries are scanned with LIKE."""
    return fts5_trigram_available() and _with_in_triggers()


@functools.cache
def _with_in_triggers() -> bool:
    try:
        with contextlib.closing(sqlite3.connect(":memory:")) as probe:
            probe.execute("CREATE TABLE probe (x)")
            probe.execute(
                "CREATE TRIGGER probe_insert AFTER INSERT ON probe WHEN new.x = 1 BEGIN "
                "INSERT INTO probe WITH RECURSIVE n(i) AS MATERIALIZED "
                "(SELECT 2 UNION ALL SELECT i + 1 FROM n WHERE i < 3) SELECT i FROM n; END"
            )
            probe.execute("INSERT INTO probe VALUES (1)")
    except sqlite3.Error:
        return False
    return True


# --- snippets ----------------------------------------------------------------------------

# How far a cut may move to fall between words rather than inside one.
WORD_REACH = 15


def snippet_cut(text: str, query: str, *, chars: int = SNIPPET_CHARS) -> tuple[Part, ...]:
    """About `chars` characters of `text` around the first match of `query` (any case), as
    (text, is_match) parts, every match in it marked; runs of whitespace become one space,
    and "…" says text was cut off. With no match (the database folds case a little
    differently from Python), the start of the text, unmarked."""
    pattern = re.compile(re.escape(query), re.IGNORECASE)
    first = pattern.search(text)
    if first is None:
        start, end = 0, min(len(text), chars)
    else:
        room = max(chars - len(first.group()), 0)
        start = max(first.start() - room // 3, 0)
        end = min(max(start + chars, first.end()), len(text))
        start = max(min(start, end - chars), 0)  # near the end, the room goes before the match
        start, end = _between_words(text, start, end, first.start(), first.end())
    parts: list[Part] = []
    position = start
    for match in pattern.finditer(text, start, end):
        parts += [(text[position : match.start()], False), (match.group(), True)]
        position = match.end()
    parts.append((text[position:end], False))
    return _tidy(parts, cut_before=start > 0, cut_after=end < len(text))


def _between_words(text: str, start: int, end: int, match_start: int, match_end: int) -> tuple[int, int]:
    """Move a cut inside a word to the nearest space (within WORD_REACH, never into the match)."""
    if 0 < start and not text[start - 1].isspace():
        space = re.search(r"\s", text[start : min(start + WORD_REACH, match_start)])
        if space:
            start += space.end()
    if end < len(text) and not text[end].isspace():
        spaces = list(re.finditer(r"\s", text[max(end - WORD_REACH, match_end) : end]))
        if spaces:
            end = max(end - WORD_REACH, match_end) + spaces[-1].start()
    return start, end


# Markdown's marks a snippet reads better without: code fences (with their language),
# inline-code backticks, bold and italic stars, heading hashes at a line's start. Only
# around a match: a match is the person's own query, kept as typed.
_MARKDOWN_MARKS = re.compile(r"```[\w+-]*|`|\*\*|(?m:^\s*#{1,6}\s)")


def _tidy(parts: list[Part], *, cut_before: bool, cut_after: bool) -> tuple[Part, ...]:
    parts = [
        (re.sub(r"\s+", " ", text if is_match else _MARKDOWN_MARKS.sub(" ", text)), is_match)
        for text, is_match in parts
    ]
    if parts and not parts[0][1]:
        parts[0] = (parts[0][0].lstrip(), False)
    if parts and not parts[-1][1]:
        parts[-1] = (parts[-1][0].rstrip(), False)
    if cut_before:
        parts.insert(0, ("…", False))
    if cut_after:
        parts.append(("…", False))
    tidy: list[Part] = []
    for text, is_match in parts:
        if not text:
            continue
        if tidy and not is_match and not tidy[-1][1]:
            tidy[-1] = (tidy[-1][0] + text, False)
        else:
            tidy.append((text, is_match))
    return tuple(tidy)
