"""Search finds tool calls too (issue 16): 0004's and 0007's indexes hold `tool` messages.

A tool message's `content` is the tool's result as JSON text, which repeats what it was
asked (the calculator's expression, the time zone, the figures compared), and its `name`
is the tool's. Both are searched; the call's arguments, in the calling answer's
`tool_calls`, are not: the hit on the result opens the card that shows them too. System
prompts stay out.

SQLite: 0004's and 0007's triggers again, with `tool` among the roles. The trigram table
(external content) gets a tool message's name and result as one text, the name first on a
line of its own (`TOOL_TEXT`); a delete gives the same text, as an external-content index
requires. The table's `rebuild` command would read `content` alone, from every row: it is
never used. The bigram table gets the result alone (names are ASCII: no CJK pair). The
tables stay: only the triggers change, and the tool messages already written are added.
Same trigger names, so nothing else has to learn new ones.

PostgreSQL: 0004's partial trigram index again over the three roles, and a small trigram
index on a tool message's name, for the other arm of chat/search.py's OR. 0007's bigram
index was over every role already.

Backward: the tool messages leave the indexes, and the old triggers and index come back.
"""

import importlib

from django.db import migrations

search_0004 = importlib.import_module("chat.migrations.0004_search")
bigram_0007 = importlib.import_module("chat.migrations.0007_search_bigrams")

SEARCHED = "('user', 'assistant', 'tool')"
OLD_SEARCHED = "('user', 'assistant')"
HAS_PAIR = bigram_0007.HAS_PAIR


def tool_text(row: str) -> str:
    """SQLite: what the trigram table holds for a message: a tool's name and result."""
    return f"CASE WHEN {row}.role = 'tool' THEN {row}.name || char(10) || {row}.content ELSE {row}.content END"


SEARCH_TRIGGERS = [
    f"""CREATE TRIGGER chat_message_search_insert AFTER INSERT ON chat_message
    WHEN new.role IN {SEARCHED}
    BEGIN
        INSERT INTO chat_message_search(rowid, content) VALUES (new.id, {tool_text('new')});
    END""",
    f"""CREATE TRIGGER chat_message_search_delete AFTER DELETE ON chat_message
    WHEN old.role IN {SEARCHED}
    BEGIN
        INSERT INTO chat_message_search(chat_message_search, rowid, content)
            VALUES ('delete', old.id, {tool_text('old')});
    END""",
    f"""CREATE TRIGGER chat_message_search_update AFTER UPDATE OF content, role, name ON chat_message
    WHEN old.content IS NOT new.content OR old.role IS NOT new.role OR old.name IS NOT new.name
    BEGIN
        INSERT INTO chat_message_search(chat_message_search, rowid, content)
            SELECT 'delete', old.id, {tool_text('old')} WHERE old.role IN {SEARCHED};
        INSERT INTO chat_message_search(rowid, content)
            SELECT new.id, {tool_text('new')} WHERE new.role IN {SEARCHED};
    END""",
]
TRIGGER_NAMES = [
    "chat_message_search_insert", "chat_message_search_delete", "chat_message_search_update",
    "chat_message_bigram_insert", "chat_message_bigram_delete", "chat_message_bigram_update",
]
DROP_TRIGGERS = [f"DROP TRIGGER IF EXISTS {name}" for name in TRIGGER_NAMES]
# 0007's triggers with the roles widened: the same SQL, so they cannot drift apart.
BIGRAM_TRIGGERS = [statement.replace(OLD_SEARCHED, SEARCHED) for statement in bigram_0007.SQLITE_TRIGGERS]

# Per table: an old SQLite has neither (0004 and 0007 made nothing) or 0004's alone.
SQLITE_FORWARD = {
    "chat_message_search": [
        *DROP_TRIGGERS[:3],
        *SEARCH_TRIGGERS,
        f"INSERT INTO chat_message_search(rowid, content) SELECT id, {tool_text('m')} FROM chat_message m "
        "WHERE m.role = 'tool'",
    ],
    "chat_message_bigram": [
        *DROP_TRIGGERS[3:],
        *BIGRAM_TRIGGERS,
        f"INSERT INTO chat_message_bigram(rowid, bigrams) SELECT id, {bigram_0007.bigrams_sql('content')} "
        f"FROM chat_message WHERE role = 'tool' AND content {HAS_PAIR}",
    ],
}
SQLITE_BACKWARD = {
    "chat_message_search": [
        *DROP_TRIGGERS[:3],
        "INSERT INTO chat_message_search(chat_message_search, rowid, content) "
        f"SELECT 'delete', id, {tool_text('m')} FROM chat_message m WHERE m.role = 'tool'",
        *search_0004.SQLITE_FORWARD[2:],  # its triggers, after the table and its filling
    ],
    "chat_message_bigram": [
        *DROP_TRIGGERS[3:],
        "INSERT INTO chat_message_bigram(chat_message_bigram, rowid, bigrams) "
        f"SELECT 'delete', id, {bigram_0007.bigrams_sql('content')} FROM chat_message "
        f"WHERE role = 'tool' AND content {HAS_PAIR}",
        *bigram_0007.SQLITE_TRIGGERS,
    ],
}

POSTGRESQL_FORWARD = [
    "DROP INDEX IF EXISTS chat_message_content_trgm",
    f"CREATE INDEX chat_message_content_trgm ON chat_message USING gin (content gin_trgm_ops) WHERE role IN {SEARCHED}",
    "CREATE INDEX chat_message_tool_name_trgm ON chat_message USING gin (name gin_trgm_ops) WHERE role = 'tool'",
]
POSTGRESQL_BACKWARD = [
    "DROP INDEX IF EXISTS chat_message_tool_name_trgm",
    "DROP INDEX IF EXISTS chat_message_content_trgm",
    f"CREATE INDEX chat_message_content_trgm ON chat_message USING gin (content gin_trgm_ops) WHERE role IN {OLD_SEARCHED}",
]


def _sqlite_tables(schema_editor) -> set[str]:
    """Which of 0004's and 0007's tables this database has."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('chat_message_search', 'chat_message_bigram')"
        )
        return {name for (name,) in cursor.fetchall()}


def _run(schema_editor, statements) -> None:
    for statement in statements:
        schema_editor.execute(statement)


def forward(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        _run(schema_editor, POSTGRESQL_FORWARD)
    elif vendor == "sqlite":
        for table in sorted(_sqlite_tables(schema_editor)):
            _run(schema_editor, SQLITE_FORWARD[table])


def backward(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        _run(schema_editor, POSTGRESQL_BACKWARD)
    elif vendor == "sqlite":
        for table in sorted(_sqlite_tables(schema_editor)):
            _run(schema_editor, SQLITE_BACKWARD[table])


class Migration(migrations.Migration):

    dependencies = [
        ("chat", "0010_api_key_tier_none"),
    ]

    operations = [
        migrations.RunPython(forward, backward),
    ]
