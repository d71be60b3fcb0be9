"""A bigram index beside 0004's trigram one, for 2-character queries (chat/search.py).

A trigram index cannot look up a query of 2 characters, and most Chinese words are 2
(北京, 蝾螈): without this such a search reads every message of the person. This index
holds, for each question and answer, the pairs of adjacent characters inside its runs of
CJK characters (`CJK`: kana, Han, Hangul; not CJK punctuation, which is no word), and
nothing for other text: a 2-character English query still scans, and mostly stops early
because such a query is common.

SQLite: `chat_message_bigram`, a contentless FTS5 table (no copy of the text) with the
`ascii` tokenizer, fed by triggers with the text rewritten as its pairs separated by spaces
("池塘里" → "池塘 塘里 "). `ascii` makes every non-ASCII character part of a token, so a pair
is always one token whatever SQLite's Unicode tables say about the character (unicode61
would split at characters newer than its tables). `detail=none`: only which messages hold a
pair, no positions. The pairs are made in SQL (a recursive CTE in the triggers), not by a
function registered from Python, so that any other writer (the sqlite3 shell, a backup
restored by hand) keeps the index right instead of failing with "no such function". The
CTE cuts the text into stretches of 1,024 characters, each into chunks of 32 whose pairs
one expression tests at once: substr() walks UTF-8 from the start of its text, so a
character at a time over the whole text grows with its square, and a row per pair costs
a recursion step each. A contentless table forgets the text: a delete must give the
pairs that were inserted, made again by the same SQL from the old text.

PostgreSQL: a GIN index over `chat_message_bigrams(content)`, an IMMUTABLE SQL function
returning the pairs as text[], searched with `@>` (pg_bigm would do this too, but Debian
does not package it for PostgreSQL 15, and every deployer would have to build it).
PostgreSQL keeps an expression index up to date itself.

Like 0004's, a migration that rebuilds chat_message on SQLite drops these triggers with
the old table and must run SQLITE_TRIGGERS again (tests/test_search.py checks).
"""

import contextlib
import logging
import sqlite3

from django.db import migrations

logger = logging.getLogger(__name__)

# Only these roles are searched (0004's, and chat/search.py's).
SEARCHED = "('user', 'assistant')"

# One CJK character (chat/search.py's CJK_RANGES, copied: a migration must not change when
# the app does): kana, bopomofo, Hangul jamo, CJK strokes, enclosed and compatibility
# forms, Han (extension A and the unified block), Hangul syllables, compatibility
# ideographs, and the supplementary ideographic planes. As a GLOB or regex class.
CJK_SQLITE = "[\u3040-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003ffff]"
CJK_POSTGRESQL = r"[\u3040-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003ffff]"
HAS_PAIR = f"GLOB '*{CJK_SQLITE}{CJK_SQLITE}*'"

STRETCH = 1024
CHUNK = 32


def bigrams_sql(text: str) -> str:
    """SQLite: the CJK pairs of `text` (an SQL expression), each followed by a space, in
    the order they occur; NULL when it has none."""
    pair_tests = " || ".join(
        f"CASE WHEN substr(part, {k}, 2) GLOB '{CJK_SQLITE}{CJK_SQLITE}' THEN substr(part, {k}, 2) || ' ' ELSE '' END"
        for k in range(1, CHUNK + 1)
    )
    # A stretch holds STRETCH pairs: its STRETCH + 1 characters. A chunk of it starts at
    # `k` and holds the CHUNK pairs starting at k .. k + CHUNK - 1.
    return f"""(WITH RECURSIVE
    stretch(start, whole) AS (
        SELECT 1, substr({text}, 1, {STRETCH + 1})
        UNION ALL
        SELECT start + {STRETCH}, substr({text}, start + {STRETCH}, {STRETCH + 1}) FROM stretch
        WHERE length(whole) = {STRETCH + 1}
    ),
    chunk(whole, size, k, part) AS (
        SELECT whole, length(whole), 1, substr(whole, 1, {CHUNK + 1}) FROM stretch WHERE whole {HAS_PAIR}
        UNION ALL
        SELECT whole, size, k + {CHUNK}, substr(whole, k + {CHUNK}, {CHUNK + 1}) FROM chunk
        WHERE k + {CHUNK} < size
    )
    SELECT group_concat({pair_tests}, '') FROM chunk WHERE part {HAS_PAIR})"""


SQLITE_TABLE = [
    "CREATE VIRTUAL TABLE chat_message_bigram USING fts5("
    "bigrams, content='', detail=none, columnsize=0, tokenize='ascii')",
]
SQLITE_FILL = [
    "INSERT INTO chat_message_bigram(rowid, bigrams) "
    f"SELECT id, {bigrams_sql('content')} FROM chat_message WHERE role IN {SEARCHED} AND content {HAS_PAIR}",
]
# Each WHEN holds exactly when the text has a pair: a delete is asked for what was inserted.
SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER chat_message_bigram_insert AFTER INSERT ON chat_message
    WHEN new.role IN {SEARCHED} AND new.content {HAS_PAIR}
    BEGIN
        INSERT INTO chat_message_bigram(rowid, bigrams) VALUES (new.id, {bigrams_sql('new.content')});
    END""",
    f"""CREATE TRIGGER chat_message_bigram_delete AFTER DELETE ON chat_message
    WHEN old.role IN {SEARCHED} AND old.content {HAS_PAIR}
    BEGIN
        INSERT INTO chat_message_bigram(chat_message_bigram, rowid, bigrams)
            VALUES ('delete', old.id, {bigrams_sql('old.content')});
    END""",
    # Checkpoints of a streaming answer land here, about once a second each, the text grown
    # by what came since: the old pairs are made once, for the delete, and the new ones are
    # those and the pairs of the end that was added (from the old text's last character).
    # The delete goes first (UNION ALL keeps the order).
    f"""CREATE TRIGGER chat_message_bigram_update AFTER UPDATE OF content, role ON chat_message
    WHEN old.content IS NOT new.content OR old.role IS NOT new.role
    BEGIN
        INSERT INTO chat_message_bigram(chat_message_bigram, rowid, bigrams)
        WITH old_pairs(pairs) AS MATERIALIZED (
            SELECT {bigrams_sql('old.content')} WHERE old.role IN {SEARCHED} AND old.content {HAS_PAIR}
        )
        SELECT 'delete', old.id, pairs FROM old_pairs
        UNION ALL
        SELECT NULL, new.id, CASE
            WHEN old.role IS new.role AND substr(new.content, 1, length(old.content)) = old.content
            THEN coalesce((SELECT pairs FROM old_pairs), '')
                || coalesce({bigrams_sql('substr(new.content, max(length(old.content), 1))')}, '')
            ELSE {bigrams_sql('new.content')}
        END
        WHERE new.role IN {SEARCHED} AND new.content {HAS_PAIR};
    END""",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS chat_message_bigram_update",
    "DROP TRIGGER IF EXISTS chat_message_bigram_delete",
    "DROP TRIGGER IF EXISTS chat_message_bigram_insert",
    "DROP TABLE IF EXISTS chat_message_bigram",
]

POSTGRESQL_FORWARD = [
    # The CJK runs, each cut into its characters and paired. STRICT: NULL text, NULL pairs.
    # PARALLEL UNSAFE, though it is safe: a search stops at its first 20 hits, which no
    # worker speeds up, and a common pair is found by walking messages newest first, where
    # each worker would make the pairs of 20 hits of its own.
    f"""CREATE FUNCTION chat_message_bigrams(content text) RETURNS text[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL UNSAFE AS $$
        SELECT coalesce(array_agg(chars[i] || chars[i + 1]), '{{}}')
        FROM regexp_matches(content, '{CJK_POSTGRESQL}{{2,}}', 'g') AS run,
             string_to_array(run[1], NULL) AS chars,
             generate_series(1, cardinality(chars) - 1) AS i
    $$""",
    # Every role, unlike 0004's trigram index (search filters on the role): the planner
    # reads the statistics of an index's expression only if the index is not partial, and
    # without them it takes a pair in a third of the messages (数据) for one in a handful.
    "CREATE INDEX chat_message_content_bigram ON chat_message USING gin (chat_message_bigrams(content))",
]
POSTGRESQL_BACKWARD = [
    "DROP INDEX IF EXISTS chat_message_content_bigram",
    "DROP FUNCTION IF EXISTS chat_message_bigrams(text)",
]


def fts5_bigram_available() -> bool:
    """Whether this Python's SQLite has what the index needs: FTS5 with the trigram
    tokenizer (0004's index; without it search scans anyway), and the triggers' SQL (a
    WITH inside a trigger, AS MATERIALIZED: SQLite 3.35). chat/search.py asks the same
    question and scans with LIKE when the answer is no."""
    try:
        with contextlib.closing(sqlite3.connect(":memory:")) as probe:
            probe.execute("CREATE VIRTUAL TABLE probe USING fts5(x, tokenize='trigram')")
            probe.execute("CREATE TABLE chat_message (id INTEGER PRIMARY KEY, role TEXT, content TEXT)")
            for statement in SQLITE_TABLE + SQLITE_TRIGGERS:
                probe.execute(statement)
            probe.execute("INSERT INTO chat_message VALUES (1, 'user', '北京')")
            probe.execute("UPDATE chat_message SET content = '北京天气'")
            probe.execute("DELETE FROM chat_message")
    except sqlite3.Error:
        return False
    return True


def _run(schema_editor, statements) -> None:
    for statement in statements:
        schema_editor.execute(statement)


def forward(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        _run(schema_editor, POSTGRESQL_FORWARD)
    elif vendor == "sqlite":
        if not fts5_bigram_available():
            logger.warning(
                "SQLite %s cannot hold the bigram index (it needs FTS5's trigram tokenizer and SQLite 3.35 or later): "
                "a 2-character search will scan every message. After upgrading SQLite, run "
                "`manage.py migrate chat 0006` and then `manage.py migrate` to index.",
                sqlite3.sqlite_version,
            )
            return
        _run(schema_editor, SQLITE_TABLE + SQLITE_FILL + SQLITE_TRIGGERS)


def backward(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        _run(schema_editor, POSTGRESQL_BACKWARD)
    elif vendor == "sqlite":
        _run(schema_editor, SQLITE_BACKWARD)


class Migration(migrations.Migration):

    dependencies = [
        ("chat", "0006_api_keys"),
    ]

    operations = [
        migrations.RunPython(forward, backward),
    ]
