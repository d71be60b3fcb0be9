"""Issue 13's promises that no other test held: found by an audit of main against the issue.

Each test names the bullet it holds: the bad files the page's upload refuses with nothing
stored, the first frame of an animation and a CMYK picture's colours, the thumbnail's type,
what removes unsent uploads, a deletion from the page, two earlier images left out,
the vision model another provider's key names answering images, yi-vision's reply without `id` read when
answers do not stream, and no image bytes in the frames of a send.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from PIL import Image

from chat.attachments import attachment_create, image_prepare_upload
from chat.images import image_prepare
from chat.models import Attachment, Conversation
from tests import test_providers
from tests.test_consumer import answer_of, conversation_id_of, first, frames_until, send
from tests.test_exports import signed_in
from tests.test_image_sends import ask, drawing, files_of, photo, uploaded
from tests.test_images import opened
from tests.test_providers import key_add, model_add, requests_received

openai_url = test_providers.openai_url  # the fixture: another provider, serving on a free port

LIMITS = {"max_bytes": 20_000_000, "max_pixels": 50_000_000}


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def encoded(image: Image.Image, image_format: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, image_format, **options)
    return out.getvalue()


def page_upload(client: Client, data: bytes, name: str = "upload.png"):
    """As static/chat/attachments.js sends a file: the body itself, its name in a header."""
    return client.post("/attachments/", data, content_type="application/octet-stream", headers={"X-File-Name": name})


# --- "Each bad one asserts its exact sentence and that nothing was stored" ------------------


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("made, sentence", [
    (lambda: encoded(Image.new("1", (10_000, 10_000)), "PNG"),
     "That image is too big (10000×10000 pixels, 100.0 MP; the limit is 50.0 MP). Scale it down and attach it again."),
    (lambda: b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>",
     "That file is a web page, not an image. Attach a picture (JPEG, PNG, WebP, GIF or HEIC)."),
], ids=["10000x10000", "html"])
@pytest.mark.django_db
def test_a_10000_by_10000_image_and_a_web_page_uploaded_get_their_sentence_and_nothing_is_stored(
    user, media, made, sentence
):
    response = page_upload(signed_in(user), made())
    assert response.status_code == 400 and response.json()["message"] == sentence
    assert not Attachment.objects.exists() and not (media / "attachments").exists()


# --- "animations reduced to their first frame", "CMYK ... handled sensibly" -----------------


def test_an_animated_gif_keeps_the_pixels_of_its_first_frame():
    frames = [Image.new("RGB", (20, 20), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    prepared = image_prepare(
        encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0), **LIMITS
    )
    stored = opened(prepared.data)
    assert prepared.original_format == "GIF" and getattr(stored, "n_frames", 1) == 1
    assert stored.convert("RGB").getpixel((10, 10)) == (255, 0, 0)


def test_a_cmyk_jpeg_keeps_its_colour_in_rgb():
    prepared = image_prepare(encoded(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG"), **LIMITS)
    stored = opened(prepared.data)
    r, g, b = stored.getpixel((20, 15))
    assert stored.mode == "RGB" and r > 240 and g < 20 and b < 20  # full magenta and yellow: red


# --- "served (full size and a small thumbnail) ... with the right type and nosniff" ---------


@pytest.mark.django_db
def test_a_thumbnail_is_served_with_the_type_of_its_bytes(user):
    client = signed_in(user)
    for data, media_type, image_format in (
        (photo(), "image/jpeg", "JPEG"),
        (encoded(Image.new("RGBA", (400, 300), (255, 0, 0, 128)), "PNG"), "image/png", "PNG"),
    ):
        body = page_upload(client, data).json()
        served = client.get(body["thumbnail_url"])
        thumbnail = opened(b"".join(served.streaming_content))
        assert (served["Content-Type"], served["X-Content-Type-Options"]) == (media_type, "nosniff")
        assert thumbnail.format == image_format and max(thumbnail.size) <= 256


# --- "uploads never sent are removed after a day": what runs the sweep ----------------------


def unsent_upload_a_day_old(user) -> Attachment:
    old = attachment_create(user=user, image=image_prepare_upload(drawing()), original_name="old.png")
    Attachment.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=1, minutes=1))
    return old


# Each process's upkeep loop sweeps them hourly, uploads or not:
# tests/test_upload_robustness.py::test_the_upkeep_removes_uploads_a_day_old_never_sent_with_no_upload_to_run_it


@pytest.mark.django_db(transaction=True)
def test_the_sweep_command_removes_uploads_a_day_old_that_were_never_sent(user):
    old = unsent_upload_a_day_old(user)
    fresh = attachment_create(user=user, image=image_prepare_upload(photo()), original_name="fresh.jpg")
    out = io.StringIO()
    call_command("attachments_sweep", stdout=out)
    assert out.getvalue() == "Removed 1 unsent uploads.\n"
    assert list(Attachment.objects.values_list("pk", flat=True)) == [fresh.pk]
    assert not default_storage.exists(old.file.name) and default_storage.exists(fresh.file.name)


# --- "Deleting a conversation removes image files nothing else uses", from the page ---------


@pytest.mark.django_db(transaction=True)
async def test_a_conversation_deleted_from_the_page_takes_the_files_nothing_else_uses(user, connect):
    ws = await connect(user)
    shared = photo()
    kept = await ask(ws, "Keep", attachment_ids=[await uploaded(user, shared)], model="yi-vision")
    gone = await ask(ws, "Gone", model="yi-vision",
                     attachment_ids=[await uploaded(user, shared), await uploaded(user, drawing())])
    assert len(await files_of(user.pk)) == 4  # two pictures, each with its thumbnail
    await ws.send_json_to({"type": "delete_conversations", "conversation_ids": [conversation_id_of(gone)]})
    await frames_until(ws, lambda f: f["type"] == "conversation_deleted")
    digest = (await database_sync_to_async(Attachment.objects.get)()).digest
    remaining = await files_of(user.pk)
    assert len(remaining) == 2 and all(name.startswith(digest) for name in remaining)
    assert [c.pk for c in await database_sync_to_async(list)(Conversation.objects.all())] == [conversation_id_of(kept)]


# --- "2 earlier images were not sent: this conversation is over yi-vision's 16K window" -----


@pytest.mark.django_db(transaction=True)
async def test_two_earlier_images_left_out_are_named_in_the_plural(user, connect, settings):
    settings.IMAGE_TOKEN_COST = 6000  # two fit yi-vision's 16K with room for the answer; three do not
    ws = await connect(user)
    frames = await ask(ws, "First", model="yi-vision",
                       attachment_ids=[await uploaded(user, photo()), await uploaded(user, drawing())])
    frames = await ask(ws, "Second", model="yi-vision", conversation_id=conversation_id_of(frames), attachment_ids=[
        await uploaded(user, photo((30, 160, 60))), await uploaded(user, drawing((240, 220, 40, 255)))])
    assert answer_of(frames)["notes"] == [
        "2 earlier images were not sent: this conversation is over yi-vision's 16K window."
    ]
    done = first(frames, "done")["message"]
    assert done["status"] == "complete"
    assert done["content"].startswith("I see 2 images: image 1 is a JPEG, 480×640 pixels, mostly green; "
                                      "image 2 is a PNG, 32×32 pixels, mostly yellow.")


# --- "for a non-Yi provider, a model the configuration names": the key's "Model for images" --


@pytest.mark.django_db(transaction=True)
async def test_another_providers_vision_model_named_on_its_key_answers_images_and_follow_ups(
    user, connect, openai_url
):
    """Before: the vision model was VISION_MODEL for every key, so this provider was sent
    "yi-vision", which it does not know, and the answer ended in not_found."""
    await database_sync_to_async(key_add)(user, "Local", key="sk-audit-vision-9c1e", base_url=openai_url, default=True,
                                          images_model="llava")
    model_add(openai_url, api_key="sk-audit-vision-9c1e", model="llava", owned_by="library")
    ws = await connect(user)
    image = await uploaded(user, photo())

    await send(ws, "What is this?", model="llama3.2", attachment_ids=[image])
    frames = await frames_until(ws, lambda f: f["type"] in ("done", "error"))
    answer = answer_of(frames)
    assert answer["model"] == "llava" and answer["notes"] == ["llama3.2 does not take images, so llava answered."]
    assert (first(frames, "done")["message"]["status"], first(frames, "done")["message"]["content"]) == (
        "complete", "Echo: What is this?")
    asked = requests_received(openai_url)[-1]
    question = next(m for m in asked["messages"] if m["role"] == "user")
    assert asked["model"] == "llava" and [p["type"] for p in question["content"]] == ["text", "image_url"]
    assert question["content"][1]["image_url"]["url"].startswith("data:image/jpeg;base64,")

    await send(ws, "And now?", model="llama3.2", conversation_id=conversation_id_of(frames))
    follow_up = await frames_until(ws, lambda f: f["type"] in ("done", "error"))
    assert first(follow_up, "done")["message"]["model"] == "llava"
    asked = requests_received(openai_url)[-1]
    assert asked["model"] == "llava"
    earlier = next(m for m in asked["messages"] if m["role"] == "user")
    assert earlier["content"][1]["image_url"]["url"] == question["content"][1]["image_url"]["url"]


# --- the reference's vision quirks, read by the app; "No image byte travels through the channel layer"


@pytest.mark.django_db(transaction=True)
async def test_a_yi_vision_reply_without_id_or_object_is_read_when_answers_do_not_stream(user, connect, settings):
    settings.STREAM_ANSWERS = False
    ws = await connect(user)
    frames = await ask(ws, "What is this?", attachment_ids=[await uploaded(user, photo())], model="yi-vision")
    done = first(frames, "done")["message"]
    assert done["status"] == "complete"
    assert done["content"].startswith("I see 1 image: image 1 is a JPEG, 480×640 pixels, mostly red.")


@pytest.mark.django_db(transaction=True)
async def test_no_frame_of_an_image_send_carries_the_images_bytes(user, connect):
    ws = await connect(user)
    frames = await ask(ws, "What is this?", attachment_ids=[await uploaded(user, photo())], model="yi-vision")
    assert first(frames, "done")["message"]["status"] == "complete"
    for frame in frames:
        text = json.dumps(frame)
        assert "base64" not in text and len(text) < 8_000, frame["type"]
