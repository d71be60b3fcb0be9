"""What yiweb stores: conversations, their messages, images attached to messages, and
users' API keys (encrypted; chat/crypto.py).

Messages form a tree through `parent`, so that editing a question or regenerating an
answer later can add a sibling branch instead of overwriting history; the thread shown
and sent upstream is the chain of parents ending at the newest message.
"""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy


class ApiKey(models.Model):
    """A user's key for an OpenAI-compatible provider. The key itself is stored only
    encrypted (chat/crypto.py); what the pages show is the label, the provider's host and
    the last four characters."""

    class Tier(models.TextChoices):
        # The reference's usage tiers (chat/pacing.py holds their limits).
        FREE = "free", gettext_lazy("Free")
        TIER_1 = "1", gettext_lazy("Tier 1")
        TIER_2 = "2", gettext_lazy("Tier 2")
        TIER_3 = "3", gettext_lazy("Tier 3")
        TIER_4 = "4", gettext_lazy("Tier 4")
        TIER_5 = "5", gettext_lazy("Tier 5")
        # A key of a server with no such limits (a self-hosted vLLM or Ollama): not paced.
        NONE = "none", gettext_lazy("No limit (self-hosted)")

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    label = models.CharField(max_length=60)
    base_url = models.CharField(max_length=300)
    key_encrypted = models.TextField()  # a Fernet token: never the key in the clear
    key_last4 = models.CharField(max_length=4)
    tier = models.CharField(max_length=8, choices=Tier.choices, default=Tier.FREE)
    is_default = models.BooleanField(default=False)
    # The model that answers images sent with this key when the conversation's model does
    # not take them; None: the Yi API's default (chat/catalog.py, `images_model_of`), and
    # for another provider none, as the app cannot guess its vision models.
    images_model = models.CharField(max_length=200, null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)  # when GET /models last accepted it
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-is_default", "label", "id"]
        constraints = [
            models.UniqueConstraint(fields=["user"], condition=models.Q(is_default=True), name="api_key_one_default"),
            models.UniqueConstraint(fields=["user", "label"], name="api_key_unique_label"),
        ]

    def __str__(self) -> str:
        return f"{self.label} (…{self.key_last4})"


def tool_choice_default() -> str:
    return "auto"


class Conversation(models.Model):
    class TitleSource(models.TextChoices):
        MESSAGE = "message"  # the first message's first line, set at once
        MODEL = "model"  # improved by the conversation's model after the first answer
        USER = "user"  # renamed: never overwritten

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    title_source = models.CharField(max_length=10, choices=TitleSource.choices, default=TitleSource.MESSAGE)
    model = models.CharField(max_length=100)
    system_prompt = models.TextField(blank=True)
    # The sampling parameters its sends use (temperature, top_p, max_tokens; one left out
    # is the API's default), set by the sends that name them (chat/conversations.py).
    params = models.JSONField(default=dict, blank=True)
    # Tool use (chat/tools): whether its requests offer the built-in tools, and the
    # `tool_choice` sent with them ("auto", "none", "required" or one named function).
    tools = models.BooleanField(default=False)
    tool_choice = models.JSONField(default=tool_choice_default, blank=True)
    # The key its sends use; None: the user's default key, else the server's (chat/credentials.py).
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations")
    # True: the server's key (or the simulator) was picked for it, over the user's default.
    # Null is false: nullable so that adding it was one ALTER TABLE ADD COLUMN, where a
    # default would have made SQLite copy the table.
    server_key = models.BooleanField(null=True, blank=True)
    pinned = models.BooleanField(default=False)
    archived = models.BooleanField(default=False)
    # The branch shown, and the one sends, edits and regenerations go to: the thread is
    # the chain of parents ending here (None: the newest message, for rows older than this).
    leaf = models.ForeignKey("Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # Moves when a message is added, not when the conversation is renamed, pinned or archived
    # (those are saved with `update`, which leaves it be).
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["user", "archived", "-pinned", "-updated_at", "-id"])]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"


class Message(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system"
        USER = "user"
        ASSISTANT = "assistant"
        TOOL = "tool"

    class Status(models.TextChoices):
        STREAMING = "streaming"
        COMPLETE = "complete"
        STOPPED = "stopped"
        ERROR = "error"
        INTERRUPTED = "interrupted"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    model = models.CharField(max_length=100, blank=True)
    # The parameters sent upstream with this answer (temperature, top_p, max_tokens).
    params = models.JSONField(default=dict, blank=True)
    # Set by the browser per send, so that a send repeated after a reconnect is not run twice.
    client_id = models.CharField(max_length=64, blank=True)

    finish_reason = models.CharField(max_length=32, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    total_tokens = models.PositiveIntegerField(null=True, blank=True)
    # True: the token figures are the app's estimate, for an answer that ended before the
    # upstream's usage chunk (chat/endings.py `usage_estimate`). Null is false: nullable,
    # so one ALTER TABLE ADD COLUMN, never a rebuild of this table and its search triggers.
    usage_estimated = models.BooleanField(null=True, blank=True)
    # What the answer cost at the reference's prices when it ended (None: price unknown),
    # and the key that paid for it (None: the server's key or the simulator).
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="answers")
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)  # in English; what pages show is `error_sentence` said
    # The error's sentence by code and params (chat/sentences.py), said in each reader's
    # language; None for errors stored before it (their `error_message` is shown).
    error_sentence = models.JSONField(null=True, blank=True)

    # Streaming bookkeeping: the delta sequence number the stored `content` reaches, and
    # when the process running the generation last wrote (a stale one means it died).
    seq = models.PositiveIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    # One answer with tools spans several messages (the call, the tools' results, the
    # answer again): they share the run's id, which Stop, the busy check and the sweep
    # follow (chat/relay.py). Blank for messages written before runs had ids.
    run_id = models.CharField(max_length=32, blank=True)
    # Tool use: an assistant message's calls ([{"id", "type", "function": {"name", "arguments"}}]),
    # and on a `tool` message the call it answers.
    tool_calls = models.JSONField(default=list, blank=True)
    tool_call_id = models.CharField(max_length=100, blank=True)
    name = models.CharField(max_length=100, blank=True)

    # The app's own notices about an answer, shown apart from its text (which model
    # answered and why, what was left out to fit the window): never model output. Each
    # a sentence by code and params (chat/sentences.py); English text in rows before 0014.
    notes = models.JSONField(default=list, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["conversation", "id"]),
            models.Index(fields=["status"], condition=models.Q(status="streaming"), name="message_streaming_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "client_id"],
                condition=~models.Q(client_id=""),
                name="message_unique_client_id",
            )
        ]

    def __str__(self) -> str:
        return f"{self.role} message {self.pk}"


class Preferences(models.Model):
    """What one person chose for every page and every new conversation: the theme, and
    the settings a new conversation starts from (chat/preferences.py)."""

    class Theme(models.TextChoices):
        SYSTEM = "system", "Follow the system"
        LIGHT = "light", "Light"
        DARK = "dark", "Dark"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="preferences"
    )
    theme = models.CharField(max_length=8, choices=Theme.choices, default=Theme.SYSTEM)
    # A new conversation's settings: its system prompt and sampling parameters (as
    # Conversation.params: one left out is the API's default).
    system_prompt = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Preferences of user {self.user_id}"


def attachment_path(instance: "Attachment", filename: str) -> str:
    return f"attachments/{instance.user_id}/{filename}"


class Attachment(models.Model):
    """An image a user uploaded; bound to a user message when the message is sent."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attachments")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.CASCADE, related_name="attachments")
    file = models.FileField(upload_to=attachment_path)
    thumbnail = models.FileField(upload_to=attachment_path, blank=True)
    # sha256 of the stored image: the same picture uploaded twice by one user is one file.
    digest = models.CharField(max_length=64, blank=True)
    original_format = models.CharField(max_length=10, blank=True)
    media_type = models.CharField(max_length=50)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    size_bytes = models.PositiveIntegerField()
    original_name = models.CharField(max_length=255, blank=True)
    # Its place among its message's images, as the person ordered them (uploads finish in
    # any order); the model reads them in this order.
    position = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["position", "id"]
        indexes = [models.Index(fields=["user", "digest"])]
