from django.contrib import admin

from chat.account_forms import AdminSignInForm
from chat.keys import key_host
from chat.models import ApiKey, Attachment, Conversation, Message


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """What an administrator may see of a person's key: never the key, encrypted or not.
    Keys are added by their owners on the Keys page (it verifies them); here a key's tier
    can be changed, or the key deleted."""

    list_display = ["label", "user", "host", "key_last4", "tier", "is_default", "verified_at", "last_used_at",
                    "created_at"]
    list_filter = ["tier", "is_default"]
    search_fields = ["label", "user__username"]
    exclude = ["key_encrypted"]
    readonly_fields = ["user", "label", "base_url", "key_last4", "is_default", "verified_at", "last_used_at",
                       "created_at"]

    @admin.display(description="provider")
    def host(self, key: ApiKey) -> str:
        return key_host(key.base_url)

    def has_add_permission(self, request) -> bool:
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).defer("key_encrypted").select_related("user")


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["id", "title", "user", "model", "updated_at"]
    search_fields = ["title"]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "conversation", "role", "status", "model", "created_at"]
    list_filter = ["role", "status"]


admin.site.register(Attachment)

# The admin's own sign-in page has the same limits as the app's (chat/account_throttle.py).
admin.site.login_form = AdminSignInForm
