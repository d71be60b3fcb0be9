from django.urls import path

from chat import views

app_name = "chat"

urlpatterns = [
    path("", views.chat_page, name="home"),
    path("c/<int:conversation_id>/", views.chat_page, name="conversation"),
    path("api/models", views.models_json, name="models"),
    path("api/conversations", views.conversations_json, name="conversations"),
    path("api/search", views.search_json, name="search"),
    path("usage/", views.usage_page, name="usage"),
    path("export/", views.export_download, name="export"),
    path("import/", views.import_upload, name="import"),
    path("attachments/", views.attachment_upload, name="attachment_upload"),
    path("attachments/<int:attachment_id>/", views.attachment_file, name="attachment"),
    path("attachments/<int:attachment_id>/thumbnail/", views.attachment_file, {"thumbnail": True},
         name="attachment_thumbnail"),
]
