from django.contrib import admin

from chat.account_forms import AdminSignInForm
from chat.models import Attachment, Conversation, Message


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
