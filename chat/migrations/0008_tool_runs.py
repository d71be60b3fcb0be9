# Tool use (issue 16): a conversation's tools and tool_choice, and the run id shared by the
# messages of one answer with tools.

import chat.models
from django.db import migrations, models


# Added with plain SQL: on SQLite, Django would rebuild chat_message for a NOT NULL column
# with a default, and the rebuild drops the search triggers of 0004 and 0007. Both SQLite
# and PostgreSQL add a NOT NULL column with a constant default in place.
RUN_ID_ADD = "ALTER TABLE chat_message ADD COLUMN run_id varchar(32) NOT NULL DEFAULT ''"
RUN_ID_REMOVE = "ALTER TABLE chat_message DROP COLUMN run_id"


class Migration(migrations.Migration):

    dependencies = [
        ("chat", "0007_search_bigrams"),
    ]

    operations = [
        migrations.AddField(
            model_name="conversation",
            name="tool_choice",
            field=models.JSONField(blank=True, default=chat.models.tool_choice_default),
        ),
        migrations.AddField(
            model_name="conversation",
            name="tools",
            field=models.BooleanField(default=False),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="message",
                    name="run_id",
                    field=models.CharField(blank=True, max_length=32),
                ),
            ],
            database_operations=[migrations.RunSQL(RUN_ID_ADD, RUN_ID_REMOVE)],
        ),
    ]
