"""Sending images over the websocket: to a model that sees them, fitted to its window,
the sender's own uploads only, and their files gone with the last row that names them.

Against the simulator over real HTTP, which describes the pixels it is sent (format,
size, dominant colour, EXIF left in), so these tests see what reached the model.
"""

from __future__ import annotations

import io
import threading
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image

from chat import attachments as attachments_module
from chat.attachments import attachment_create, attachments_sweep, image_prepare_upload
from chat.models import Attachment, Conversation, Message
from tests.test_consumer import answer_of, conversation_id_of, first, frames_until, send

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def photo(colour=(210, 30, 30), size=(640, 480)) -> bytes:
    """A JPEG as a phone writes it (grain: too many colours for a drawing), rotated by
    EXIF, with GPS and the maker's name."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to show upright
    exif[0x010F] = "PhoneMaker"
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0)}
    grain = Image.effect_noise(size, 12)
    channels = [grain.point(lambda v, c=c: max(0, min(255, c + v - 128))) for c in colour]
    out = io.BytesIO()
    Image.merge("RGB", channels).save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def drawing(colour=(30, 60, 220, 255), size=(32, 32)) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", size, colour).save(out, "PNG")
    return out.getvalue()


@database_sync_to_async
def uploaded(user, data: bytes, name: str = "photo.jpg") -> int:
    return attachment_create(user=user, image=image_prepare_upload(data), original_name=name).pk


@database_sync_to_async
def rows(model, **filters):
    return list(model.objects.filter(**filters))


async def ask(ws, text, **extra):
    await send(ws, text, **extra)
    return await frames_until(ws, lambda f: f["type"] in ("done", "error"))


async def test_images_reach_yi_vision_upright_and_stripped_and_again_on_a_follow_up(user, connect):
    ws = await connect(user)
    red, blue = await uploaded(user, photo(), "IMG_0001.jpg"), await uploaded(user, drawing(), "logo.png")
    frames = await ask(ws, "What are these?", attachment_ids=[red, blue])
    question = first(frames, "message")["message"]
    assert [a["id"] for a in question["attachments"]] == [red, blue]
    assert question["attachments"][0]["original_name"] == "IMG_0001.jpg"
    assert question["attachments"][0]["url"] == f"/attachments/{red}/"
    answer = answer_of(frames)
    # yi-large does not take images: yi-vision answers, and the answer says so.
    assert answer["model"] == "yi-vision"
    assert answer["notes"] == ["yi-large does not take images, so yi-vision answered."]
    done = first(frames, "done")["message"]
    text = done["content"]
    # The photo arrived upright (480 wide, 640 high: EXIF applied), without its EXIF.
    assert "JPEG, 480×640" in text and "red" in text and "PNG, 32×32" in text and "blue" in text
    assert "EXIF" not in text

    # A text follow-up stays on a model that sees the images, and sends them again.
    follow_up = await ask(ws, "Which one is red?", conversation_id=conversation_id_of(frames))
    again = first(follow_up, "done")["message"]
    assert again["model"] == "yi-vision" and "JPEG, 480×640" in again["content"] and "blue" in again["content"]


async def test_a_message_may_be_images_alone(user, connect):
    ws = await connect(user)
    image = await uploaded(user, drawing())
    frames = await ask(ws, "", attachment_ids=[image], model="yi-vision")
    assert first(frames, "conversation")["conversation"]["title"] == "Image"
    assert first(frames, "conversation")["conversation"]["has_images"] is True  # the list's mark
    assert first(frames, "message")["message"]["content"] == ""
    assert first(frames, "done")["message"]["status"] == "complete"


async def test_someone_elses_image_or_one_sent_already_is_refused_and_nothing_is_stored(user, other_user, connect):
    ws = await connect(user)
    theirs = await uploaded(other_user, photo())
    frames = await ask(ws, "Whose is this?", attachment_ids=[theirs], client_id="c-theirs")
    error = frames[-1]
    assert (error["type"], error["code"], error["client_id"]) == ("error", "attachment_not_found", "c-theirs")
    assert await rows(Message) == [] and await rows(Conversation) == []
    assert (await rows(Attachment, pk=theirs))[0].message_id is None  # still theirs, still unsent

    mine = await uploaded(user, photo())
    sent = await ask(ws, "Once", attachment_ids=[mine], model="yi-vision")
    conversation_id = conversation_id_of(sent)
    again = await ask(ws, "Twice", attachment_ids=[mine], conversation_id=conversation_id, model="yi-vision")
    assert again[-1]["code"] == "attachment_not_found"
    assert len(await rows(Message, conversation_id=conversation_id)) == 2  # the first exchange only


@pytest.mark.parametrize("ids, code", [
    ([1, 2, 3, 4, 5, 6, 7], "too_many_images"),
    ("1,2", "bad_frame"),
    ([1, "x"], "bad_frame"),
    ([True], "bad_frame"),
    ([0], "bad_frame"),
    ([2**70], "bad_frame"),
])
async def test_a_bad_list_of_images_is_refused_before_any_query(user, connect, ids, code):
    ws = await connect(user)
    frames = await ask(ws, "Look", attachment_ids=ids)
    assert frames[-1]["type"] == "error" and frames[-1]["code"] == code
    assert await rows(Message) == []


async def test_earlier_images_are_left_out_first_when_the_window_is_full_and_the_answer_says_so(
    user, connect, settings
):
    settings.IMAGE_TOKEN_COST = 7000  # two fit yi-vision's 16K with room for the answer; three do not
    ws = await connect(user)
    frames = await ask(ws, "First", attachment_ids=[await uploaded(user, photo())], model="yi-vision")
    conversation_id = conversation_id_of(frames)
    frames = await ask(ws, "Second", attachment_ids=[await uploaded(user, drawing())], conversation_id=conversation_id,
                       model="yi-vision")
    assert answer_of(frames)["notes"] == []
    third = await uploaded(user, photo((30, 160, 60)))
    frames = await ask(ws, "Third", attachment_ids=[third], conversation_id=conversation_id, model="yi-vision")
    answer = answer_of(frames)
    assert answer["notes"] == [
        "1 earlier image was not sent: this conversation is over yi-vision's 16K window."
    ]
    done = first(frames, "done")["message"]
    # The simulator, which enforces the window, took it: the oldest (red) one was left out.
    assert done["status"] == "complete" and "red" not in done["content"] and "green" in done["content"]
    assert done["notes"] == answer["notes"]  # stored with the answer: a reload shows it too


async def test_a_turn_whose_own_images_cannot_fit_is_refused_before_anything_is_stored(user, connect, settings):
    settings.IMAGE_TOKEN_COST = 9000
    ws = await connect(user)
    images = [await uploaded(user, photo()), await uploaded(user, drawing())]
    frames = await ask(ws, "Both?", attachment_ids=images, model="yi-vision")
    assert frames[-1]["code"] == "images_do_not_fit"
    assert frames[-1]["message"].startswith("This message does not fit yi-vision's 16K window")
    assert await rows(Message) == []
    assert [a.message_id for a in await rows(Attachment)] == [None, None]  # still attachable with fewer


async def test_without_a_vision_model_configured_images_to_a_text_model_are_refused(user, connect, settings):
    settings.VISION_MODEL = ""
    ws = await connect(user)
    frames = await ask(ws, "See?", attachment_ids=[await uploaded(user, photo())])
    assert frames[-1]["code"] == "model_takes_no_images"
    assert await rows(Message) == []


async def test_images_are_read_off_the_event_loop(user, connect, monkeypatch):
    threads = []
    real = attachments_module.attachment_data_url

    def spy(attachment):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(attachment)

    monkeypatch.setattr("chat.requests.attachment_data_url", spy)
    ws = await connect(user)
    frames = await ask(ws, "Where?", attachment_ids=[await uploaded(user, photo())], model="yi-vision")
    assert first(frames, "done")["message"]["status"] == "complete"
    assert threads == [False]


@database_sync_to_async
def files_of(user_id):
    folder = f"attachments/{user_id}"
    return sorted(default_storage.listdir(folder)[1]) if default_storage.exists(folder) else []


async def test_deleting_a_conversation_removes_the_image_files_nothing_else_uses(user, connect):
    ws = await connect(user)
    shared, alone = photo(), drawing()
    kept = await ask(ws, "Keep", attachment_ids=[await uploaded(user, shared)], model="yi-vision")
    gone = await ask(ws, "Gone", model="yi-vision",
                     attachment_ids=[await uploaded(user, shared), await uploaded(user, alone)])
    assert len(await files_of(user.pk)) == 4  # two pictures, each with its thumbnail
    await database_sync_to_async(Conversation.objects.filter(pk=conversation_id_of(gone)).delete)()
    remaining = await files_of(user.pk)
    digest = (await rows(Attachment))[0].digest
    assert len(remaining) == 2 and all(name.startswith(digest) for name in remaining)
    assert (await rows(Conversation))[0].pk == conversation_id_of(kept)


def test_uploads_never_sent_are_removed_after_a_day_with_their_files(user, media):
    old = attachment_create(user=user, image=image_prepare_upload(photo()), original_name="old.jpg")
    fresh = attachment_create(user=user, image=image_prepare_upload(drawing()), original_name="fresh.png")
    Attachment.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=1, minutes=1))
    assert attachments_sweep() == 1
    assert list(Attachment.objects.values_list("pk", flat=True)) == [fresh.pk]
    assert not default_storage.exists(old.file.name) and not default_storage.exists(old.thumbnail.name)
    assert default_storage.exists(fresh.file.name)


async def test_an_image_whose_file_is_gone_ends_the_answer_with_a_sentence_and_keeps_the_question(user, connect):
    ws = await connect(user)
    image = await uploaded(user, photo())
    name = (await rows(Attachment, pk=image))[0].file.name
    await database_sync_to_async(default_storage.delete)(name)
    frames = await ask(ws, "Still there?", attachment_ids=[image], model="yi-vision")
    done = first(frames, "done")["message"]
    assert (done["status"], done["error_code"]) == ("error", "image_unreadable")
    assert "could not be read" in done["error_message"]
    assert [m.content for m in await rows(Message, role="user")] == ["Still there?"]


async def test_images_keep_the_order_the_person_gave_not_the_order_uploads_finished(user, connect):
    ws = await connect(user)
    red, blue = await uploaded(user, photo(), "first-done.jpg"), await uploaded(user, drawing(), "second-done.png")
    frames = await ask(ws, "In my order", attachment_ids=[blue, red], model="yi-vision", client_id="order-1")
    question = first(frames, "message")["message"]
    assert [a["id"] for a in question["attachments"]] == [blue, red]
    assert question["client_id"] == "order-1"  # the page matches its pending send by it
    text = first(frames, "done")["message"]["content"]
    assert text.index("image 1 is a PNG") < text.index("image 2 is a JPEG")
