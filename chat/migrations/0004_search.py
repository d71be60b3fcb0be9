"""Indexes for searching message text and titles (chat/search.py), one kind per database.

SQLite: an FTS5 table with the trigram tokenizer over the text of questions and answers,
kept up to date by triggers, since answers are written by UPDATEs (checkpoints while they
stream, then the ending) and deleted by cascade. External content: the text stays in
chat_message only, and the index holds trigrams alone. Titles need no index there (a
user's titles are few and short).

PostgreSQL: pg_trgm GIN indexes, which serve ILIKE '%…%' and are kept up to date by
PostgreSQL itself. pg_trgm takes trigrams from what the database's LC_CTYPE calls letters:
under a UTF-8 one (C.UTF-8, en_US.UTF-8) Chinese is indexed; under plain C it is not, and a
Chinese search, still correct, reads every message.

Neither is in the models' state (neither vendor can express the other's), so this
migration does its work by hand, per vendor, both ways. On SQLite, Django alters most
columns by rebuilding the table, and dropping chat_message drops the triggers with it: a
later migration that rebuilds chat_message must run SQLITE_FORWARD's triggers again
(tests/test_search.py checks they are there after every migration).
"""

import contextlib
import logging
import sqlite3

from django.db import migrations

logger = logging.getLogger(__name__)

# Only these roles are searched: a tool's output and a system prompt are not what anyone
# said in the conversation. chat/search.py filters on the same roles.
SEARCHED = "('user', 'assistant')"

SQLITE_FORWARD = [
    "CREATE VIRTUAL TABLE chat_message_search USING fts5("
    "content, content='chat_message', content_rowid='id', tokenize='trigram')",
    f"INSERT INTO chat_message_search(rowid, content) SELECT id, content FROM chat_message WHERE role IN {SEARCHED}",
    f"""CREATE TRIGGER chat_message_search_insert AFTER INSERT ON chat_message
    WHEN new.role IN {SEARCHED}
    BEGIN
        INSERT INTO chat_message_search(rowid, content) VALUES (new.id, new.content);
    END""",
    # An external-content index must be told the old text to remove its trigrams.
    f"""CREATE TRIGGER chat_message_search_delete AFTER DELETE ON chat_message
    WHEN old.role IN {SEARCHED}
    BEGIN
        INSERT INTO chat_message_search(chat_message_search, rowid, content) VALUES ('delete', old.id, old.content);
    END""",
    # The WHEN skips saves that rewrite every column with the same text.
    f"""CREATE TRIGGER chat_message_search_update AFTER UPDATE OF content, role ON chat_message
    WHEN old.content IS NOT new.content OR old.role IS NOT new.role
    BEGIN
        INSERT INTO chat_message_search(chat_message_search, rowid, content)
            SELECT 'delete', old.id, old.content WHERE old.role IN {SEARCHED};
        INSERT INTO chat_message_search(rowid, content)
            SELECT new.id, new.content WHERE new.role IN {SEARCHED};
    END""",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS chat_message_search_update",
    "DROP TRIGGER IF EXISTS chat_message_search_delete",
    "DROP TRIGGER IF EXISTS chat_message_search_insert",
    "DROP TABLE IF EXISTS chat_message_search",
]

POSTGRESQL_FORWARD = [
    # pg_trgm is a trusted extension: the database's owner may create it.
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    f"CREATE INDEX chat_message_content_trgm ON chat_message USING gin (content gin_trgm_ops) WHERE role IN {SEARCHED}",
    "CREATE INDEX chat_conversation_title_trgm ON chat_conversation USING gin (title gin_trgm_ops)",
]
# The extension stays: something else in the database may use it.
POSTGRESQL_BACKWARD = [
    "DROP INDEX IF EXISTS chat_conversation_title_trgm",
    "DROP INDEX IF EXISTS chat_message_content_trgm",
]


def fts5_trigram_available() -> bool:
    """Whether this Python's SQLite has FTS5 and its trigram tokenizer (SQLite 3.34+).
    chat/search.py asks the same question and scans with LIKE when the answer is no."""
    try:
        with contextlib.closing(sqlite3.connect(":memory:")) as probe:
            probe.execute("CREATE VIRTUAL TABLE probe USING fts5(x, tokenize='trigram')")
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
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(
                "SELECT show_trgm('北京天气') = '{}', datctype FROM pg_database WHERE datname = current_database()"
            )
            no_chinese, ctype = cursor.fetchone()
        if no_chinese:
            logger.warning(
                "This database's LC_CTYPE (%s) does not count Chinese characters as letters, so pg_trgm cannot "
                "index them: searching Chinese will read every message. A database created with a UTF-8 LC_CTYPE "
                "(C.UTF-8, en_US.UTF-8) indexes them.",
                ctype,
            )
    elif vendor == "sqlite":
        if not fts5_trigram_available():
            logger.warning(
                "SQLite %s has no FTS5 trigram tokenizer (3.34 or later has it): search will scan every message. "
                "After upgrading SQLite, run `manage.py migrate chat 0003` and then `manage.py migrate` to index.",
                sqlite3.sqlite_version,
            )
            return
        _run(schema_editor, SQLITE_FORWARD)


def backward(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        _run(schema_editor, POSTGRESQL_BACKWARD)
    elif vendor == "sqlite":
        _run(schema_editor, SQLITE_BACKWARD)


class Migration(migrations.Migration):

    dependencies = [
        ("chat", "0003_message_notes"),
    ]

    operations = [
        migrations.RunPython(forward, backward),
    ]
