from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from chat import signals  # noqa: F401  (connects the receivers)
        from django.conf import settings

        if not settings.DEBUG:
            from chat.crypto import encryption_check

            encryption_check()  # an ENCRYPTION_KEYS that is not a Fernet key refuses to start, not to save
