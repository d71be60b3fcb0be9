"""Notes and errors said in the reader's language (chat/sentences.py).

`Message.error_sentence`, the error's sentence by code, is a nullable column with no
default: on SQLite an ALTER TABLE ADD COLUMN, so chat_message is not rebuilt (a rebuild
drops the search triggers of 0004, 0007 and 0011).

The notes the app wrote as English text become codes and params, so that they are said in
Chinese too; a note of any other text stays as it is. Going back writes them as English
text again. Errors stored before keep their English sentence (the pieces they were made
of, which key and which advice, are not in the text to read back).
"""

from django.db import migrations, models

BATCH = 500


def _notes_rewrite(apps, schema_editor, rewrite) -> None:
    from django.db.models import Q

    Message = apps.get_model("chat", "Message")
    rows = Message.objects.using(schema_editor.connection.alias)
    changed = []
    answers = rows.filter(role="assistant").exclude(Q(notes=[]) | Q(notes__isnull=True)).only("pk", "notes")
    for message in answers.iterator(chunk_size=BATCH):
        notes = [rewrite(note) for note in message.notes]
        if notes != message.notes:
            message.notes = notes
            changed.append(message)
        if len(changed) >= BATCH:
            rows.bulk_update(changed, ["notes"])
            changed = []
    if changed:
        rows.bulk_update(changed, ["notes"])


def notes_by_code(apps, schema_editor) -> None:
    from chat.sentences import note_parsed

    _notes_rewrite(apps, schema_editor, lambda note: (note_parsed(note) or note) if isinstance(note, str) else note)


def notes_as_english(apps, schema_editor) -> None:
    from chat.sentences import said

    _notes_rewrite(apps, schema_editor, lambda note: said(note, "en") if isinstance(note, dict) else note)


class Migration(migrations.Migration):

    dependencies = [
        ("chat", "0013_conversation_server_key"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="error_sentence",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.RunPython(notes_by_code, notes_as_english),
    ]
