from django.urls import path

from chat import key_views, preference_views, views

app_name = "chat"

urlpatterns = [
    path("", views.chat_page, name="home"),
    path("c/<int:conversation_id>/", views.chat_page, name="conversation"),
    path("api/models", views.models_json, name="models"),
    path("api/conversations", views.conversations_json, name="conversations"),
    path("api/search", views.search_json, name="search"),
    path("usage/", views.usage_page, name="usage"),
    path("keys/", key_views.keys_page, name="keys"),
    path("keys/<str:key_id>/verify/", key_views.key_verify, name="key_verify"),
    path("keys/<str:key_id>/default/", key_views.key_default, name="key_default"),
    path("keys/<str:key_id>/tier/", key_views.key_tier, name="key_tier"),
    path("keys/<str:key_id>/images-model/", key_views.key_images_model, name="key_images_model"),
    path("keys/<str:key_id>/delete/", key_views.key_delete, name="key_delete"),
    path("api/keys", key_views.keys_json, name="keys_json"),
    path("preferences/theme/", preference_views.theme_save, name="theme"),
    path("preferences/defaults/", preference_views.defaults_save, name="defaults"),
    path("export/", views.export_download, name="export"),
    path("import/", views.import_upload, name="import"),
    path("attachments/", views.attachment_upload, name="attachment_upload"),
    path("attachments/<int:attachment_id>/", views.attachment_file, name="attachment"),
    path("attachments/<int:attachment_id>/thumbnail/", views.attachment_file, {"thumbnail": True},
         name="attachment_thumbnail"),
]
