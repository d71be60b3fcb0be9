"""Every conversation, message, branch, image, search result, export and usage figure is its
owner's alone: a walk over every URL and every websocket message type as a second user
(404, `not_found`, or simply absent) and as a visitor who is not signed in (the sign-in
page; no websocket)."""

from __future__ import annotations

import io
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import get_resolver
from PIL import Image

from chat.attachments import attachment_create, image_prepare_upload
from chat.crypto import secret_encrypt
from chat.models import ApiKey, Attachment, Conversation, Message, Preferences
from tests.test_consumer import frames_until, nothing_but_titles
from yiweb.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "zebra-北京天气-4417"


@pytest.fixture
def owned(user, settings, tmp_path):
    """The owner's conversation: a question with an image, two versions of an answer."""
    settings.MEDIA_ROOT = tmp_path
    conversation = Conversation.objects.create(user=user, model="yi-vision", title=f"About {SECRET}",
                                               system_prompt=f"Say {SECRET}", params={"temperature": 0.25})
    Preferences.objects.create(user=user, theme="dark", system_prompt=f"Defaults {SECRET}", params={"top_p": 0.5})
    question = Message.objects.create(conversation=conversation, role="user", content=f"What is {SECRET}?")
    out = io.BytesIO()
    Image.new("RGB", (20, 20), (200, 0, 0)).save(out, "PNG")
    image = attachment_create(user=user, image=image_prepare_upload(out.getvalue()), original_name="secret.png")
    Attachment.objects.filter(pk=image.pk).update(message=question)
    first = Message.objects.create(conversation=conversation, role="assistant", parent=question, content=f"It is {SECRET}.",
                                   model="yi-vision", prompt_tokens=12345, completion_tokens=6789)
    second = Message.objects.create(conversation=conversation, role="assistant", parent=question, content="Again.",
                                    model="yi-vision")
    key = ApiKey.objects.create(user=user, label=f"Key {SECRET}", base_url="https://api.01.ai/v1",
                                key_encrypted=secret_encrypt("sk-privacy-0123456789"), key_last4="6789", is_default=True)
    return {"conversation": conversation, "question": question, "image": image, "first": first, "second": second,
            "key": key}


def http_paths(owned) -> list[str]:
    c, image = owned["conversation"], owned["image"]
    return [
        f"/c/{c.pk}/", f"/attachments/{image.pk}/", f"/attachments/{image.pk}/thumbnail/",
        f"/export/?ids={c.pk}", f"/export/?ids={c.pk}&format=md",
    ]


def test_every_url_of_the_app_is_walked_here():
    """A new URL of the chat app must join this walk: the test fails until it does. (The
    accounts pages and the admin are Django's own, with tests of their own.)"""
    walked = {"", "c/<int:conversation_id>/", "attachments/<int:attachment_id>/",
              "attachments/<int:attachment_id>/thumbnail/", "export/", "import/", "attachments/", "api/search",
              "api/conversations", "api/models", "usage/", "keys/", "api/keys", "keys/<str:key_id>/verify/",
              "keys/<str:key_id>/default/", "keys/<str:key_id>/tier/", "keys/<str:key_id>/delete/",
              "keys/<str:key_id>/images-model/",
              "preferences/theme/", "preferences/defaults/"}
    (chat,) = [p for p in get_resolver().url_patterns if getattr(p, "app_name", None) == "chat"]
    unwalked = {str(p.pattern) for p in chat.url_patterns} - walked
    assert not unwalked, f"not walked as a second user and a visitor: {unwalked}"


def test_a_second_user_gets_404_or_nothing_of_theirs_over_http(owned, other_user):
    intruder = Client()
    intruder.force_login(other_user)
    for path in http_paths(owned):
        assert intruder.get(path).status_code == 404, path
    key = owned["key"]
    for action in ("verify", "default", "tier", "images-model", "delete"):
        assert intruder.post(f"/keys/{key.pk}/{action}/", {"tier": "5", "images_model": "llava"}).status_code == 404, action
    assert intruder.get(f"/api/models?key_id={key.pk}").status_code == 404
    # Preferences name no one: a second user's change is theirs alone.
    intruder.post("/preferences/theme/", {"theme": "light"})
    intruder.post("/preferences/defaults/", json.dumps({"system_prompt": "mine"}), content_type="application/json")
    assert Preferences.objects.filter(user=owned["conversation"].user, theme="dark", params={"top_p": 0.5},
                                      system_prompt=f"Defaults {SECRET}").exists()
    assert ApiKey.objects.filter(pk=key.pk, tier="free", is_default=True, images_model=None).exists()
    for path in ("/api/conversations", "/api/conversations?archived=1", f"/api/search?q={SECRET}", "/export/",
                 "/usage/", "/", "/keys/", "/api/keys"):
        response = intruder.get(path)
        body = response.content.decode()
        assert SECRET not in body and "12345" not in body, path
    assert intruder.get("/export/").status_code == 404  # nothing of theirs to export
    # Importing someone's export names nothing of theirs to take: it makes the importer's own copy.


def test_a_visitor_who_is_not_signed_in_is_sent_to_sign_in_everywhere(owned):
    visitor = Client()
    for path in [*http_paths(owned), "/api/conversations", f"/api/search?q={SECRET}", "/export/", "/usage/", "/",
                 "/keys/", "/api/keys"]:
        response = visitor.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), path
    for action in ("verify", "default", "tier", "images-model", "delete"):
        assert visitor.post(f"/keys/{owned['key'].pk}/{action}/").status_code in (302, 403), action
    assert visitor.post("/keys/", {"label": "x", "key": "sk-x"}).status_code in (302, 403)
    assert visitor.post("/attachments/", b"x", content_type="application/octet-stream").status_code in (302, 403)
    assert visitor.post("/import/", {}).status_code in (302, 403)
    assert visitor.post("/preferences/theme/", {"theme": "light"}).status_code in (302, 403)
    assert visitor.post("/preferences/defaults/", b"{}", content_type="application/json").status_code in (302, 403)
    assert Preferences.objects.get().theme == "dark"


async def test_a_visitor_gets_no_websocket():
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=[(b"origin", b"http://localhost"),
                                                                         (b"host", b"localhost")])
    connected, _ = await communicator.connect()
    assert not connected
    await communicator.disconnect()


async def test_every_websocket_message_type_naming_their_objects_is_not_found(owned, other_user, connect):
    c, question, first, second = owned["conversation"], owned["question"], owned["first"], owned["second"]
    intruder = await connect(other_user)
    frames = [
        {"type": "subscribe", "conversation_id": c.pk, "after_id": 0, "shown": [question.pk]},
        {"type": "send", "conversation_id": c.pk, "text": "mine now", "model": "yi-large"},
        {"type": "edit", "conversation_id": c.pk, "message_id": question.pk, "text": "edited", "model": "yi-large"},
        {"type": "branch", "message_id": first.pk},
        {"type": "retry", "message_id": second.pk},
        {"type": "retry", "message_id": second.pk, "system_prompt": "taken", "temperature": 2},
        {"type": "send", "conversation_id": c.pk, "text": "mine now", "model": "yi-large", "system_prompt": "taken",
         "max_tokens": 5},
        {"type": "continue", "message_id": first.pk},
        {"type": "change_conversations", "conversation_ids": [c.pk], "title": "taken"},
        {"type": "change_conversations", "conversation_ids": [c.pk], "pinned": True},
        {"type": "delete_conversations", "conversation_ids": [c.pk]},
        {"type": "send", "conversation_id": None, "text": "with their image", "model": "yi-vision",
         "attachment_ids": [owned["image"].pk]},
    ]
    for frame in frames:
        await intruder.send_json_to(frame)
        reply = await intruder.receive_json_from(timeout=5)
        assert reply["type"] == "error" and reply["code"] in ("not_found", "attachment_not_found"), (frame, reply)
    # Stop names a running answer of theirs: nothing happens, and nothing is said.
    await intruder.send_json_to({"type": "stop", "message_id": second.pk})
    assert await nothing_but_titles(intruder, 0.3)

    unchanged = await database_sync_to_async(lambda: (
        Conversation.objects.get(pk=c.pk).title, Conversation.objects.get(pk=c.pk).pinned,
        Conversation.objects.get(pk=c.pk).leaf_id, Message.objects.filter(conversation=c).count(),
        Attachment.objects.get(pk=owned["image"].pk).message_id,
        Conversation.objects.get(pk=c.pk).system_prompt, Conversation.objects.get(pk=c.pk).params,
    ))()
    assert unchanged == (f"About {SECRET}", False, None, 3, question.pk, f"Say {SECRET}", {"temperature": 0.25})


async def test_the_owner_still_has_all_of_it(owned, user, connect):
    ws = await connect(user)
    await ws.send_json_to({"type": "subscribe", "conversation_id": owned["conversation"].pk, "after_id": 0})
    got = await frames_until(ws, lambda f: f["type"] == "message" and f["message"]["id"] == owned["second"].pk)
    assert any(SECRET in json.dumps(f, ensure_ascii=False) for f in got)
