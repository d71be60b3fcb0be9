"""Uploads on a server that has been up for a while: an image worker that dies (the kernel's
OOM killer, on a huge HEIC) costs the upload it held, not every later one; uploads never
sent go after a day though nobody uploads any more; an import's images go to the same
worker processes as uploads."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from datetime import timedelta
from concurrent.futures.process import BrokenProcessPool

import pytest
from channels.db import database_sync_to_async
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import AsyncClient
from django.utils import timezone

from chat import attachments, exports
from chat.attachments import attachment_create, image_prepare_upload
from chat.models import Attachment, Conversation, Message
from chat.running import running
from chat.upkeep import upkeep_ensure
from tests.test_attachments import jpeg_with_gps
from tests.test_image_sends import drawing, photo

pytestmark = pytest.mark.django_db(transaction=True)  # the views read and write in other threads

WORKER_LOST = {
    "code": "image_worker_lost",
    "message": "The server ran out of room processing this image; try a smaller one.",
}


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def image_workers(settings, monkeypatch):
    """This test's own pool of one image worker (made on first use), shut down after it."""
    settings.IMAGE_WORKERS = 1
    monkeypatch.setattr(attachments, "_workers", None)
    yield
    if attachments._workers is not None:
        attachments._workers.shutdown(wait=True, cancel_futures=True)


async def worker_pid() -> int:
    """The pid of the image worker (there is one), started if it was not yet."""
    return await asyncio.wrap_future(attachments._image_workers().submit(os.getpid))


def submissions_watched(monkeypatch) -> asyncio.Event:
    """Set once the next job reaches the image workers' pool."""
    pool = attachments._image_workers()
    submitted, submit = asyncio.Event(), pool.submit

    def watched(*args, **kwargs):
        future = submit(*args, **kwargs)
        submitted.set()
        return future

    monkeypatch.setattr(pool, "submit", watched)
    return submitted


def page_upload(client: AsyncClient, data: bytes, name: str = "photo.jpg", language: str = "en"):
    """As static/chat/attachments.js sends a file: the body itself, its name in a header."""
    return client.post("/attachments/", data, content_type="application/octet-stream",
                       headers={"X-File-Name": name, "Accept-Language": language})


async def signed_in(user) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(user)
    return client


@pytest.mark.parametrize(("language", "sentence"), [
    ("en", WORKER_LOST["message"]), ("zh-CN", "服务器处理这张图片时资源不足；请换一张小一些的图片。")])
async def test_an_upload_whose_image_worker_dies_gets_a_sentence_and_the_next_upload_is_taken(
    user, image_workers, monkeypatch, language, sentence
):
    client = await signed_in(user)
    pid = await worker_pid()
    submitted = submissions_watched(monkeypatch)
    # Stopped, the worker holds the upload in the pool until it is killed under it, as the
    # OOM killer kills a worker decoding a huge image.
    os.kill(pid, signal.SIGSTOP)
    try:
        upload = asyncio.ensure_future(page_upload(client, jpeg_with_gps(), "huge.heic", language))
        await asyncio.wait_for(submitted.wait(), 30)
    finally:
        os.kill(pid, signal.SIGKILL)
    response = await asyncio.wait_for(upload, 30)
    assert (response.status_code, response.json()) == (503, {**WORKER_LOST, "message": sentence})
    assert not await Attachment.objects.aexists()

    after = await page_upload(client, jpeg_with_gps(), "next.jpg")
    assert after.status_code == 201 and after.json()["original_name"] == "next.jpg"
    assert await worker_pid() != pid


async def test_an_image_worker_that_died_between_uploads_costs_no_upload(user, image_workers):
    client = await signed_in(user)
    pool, pid = attachments._image_workers(), await worker_pid()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(BrokenProcessPool):  # the pool knows its worker died
        await asyncio.wrap_future(pool.submit(os.getpid))

    response = await page_upload(client, jpeg_with_gps(), "after.jpg")
    assert response.status_code == 201 and response.json()["original_name"] == "after.jpg"



@database_sync_to_async
def uploads_made(user) -> dict[str, Attachment]:
    """Three uploads of three pictures: a day old and never sent, fresh, a day old and sent."""
    made = {
        name: attachment_create(user=user, image=image_prepare_upload(data), original_name=name)
        for name, data in (("old.png", drawing()), ("fresh.jpg", photo()), ("sent.jpg", photo((30, 60, 220))))
    }
    question = Message.objects.create(
        conversation=Conversation.objects.create(user=user, model="yi-vision"), role="user", content="What is it?"
    )
    Attachment.objects.filter(pk=made["sent.jpg"].pk).update(message=question)
    a_day_ago = timezone.now() - timedelta(days=1, minutes=1)
    Attachment.objects.filter(original_name__in=["old.png", "sent.jpg"]).update(created_at=a_day_ago)
    return made


async def test_the_upkeep_removes_uploads_a_day_old_never_sent_with_no_upload_to_run_it(user):
    made = await uploads_made(user)
    upkeep_ensure()  # what a process's first websocket or answer starts
    try:
        for _ in range(500):
            if not await Attachment.objects.filter(original_name="old.png").aexists():
                break
            await asyncio.sleep(0.02)
    finally:
        running.upkeep.cancel()
    names = [name async for name in Attachment.objects.order_by("pk").values_list("original_name", flat=True)]
    assert names == ["fresh.jpg", "sent.jpg"]
    assert not default_storage.exists(made["old.png"].file.name)
    assert not default_storage.exists(made["old.png"].thumbnail.name)
    assert default_storage.exists(made["fresh.jpg"].file.name) and default_storage.exists(made["sent.jpg"].file.name)


@database_sync_to_async
def export_with_a_photo(user) -> bytes:
    """An export of one conversation whose question carries a photo, as the page downloads it."""
    conversation = Conversation.objects.create(user=user, model="yi-vision", title="Receipt")
    question = Message.objects.create(conversation=conversation, role="user", content="What is the total?")
    photo_sent = attachment_create(user=user, image=image_prepare_upload(photo()), original_name="receipt.jpg")
    Attachment.objects.filter(pk=photo_sent.pk).update(message=question)
    return json.dumps(exports.export_json(exports.conversations_owned(user=user, conversation_ids=None))).encode()


async def test_an_imports_images_are_prepared_by_the_image_workers_not_in_the_server(user, image_workers, monkeypatch):
    exported = await export_with_a_photo(user)
    client = await signed_in(user)
    pid = await worker_pid()
    submitted = submissions_watched(monkeypatch)
    os.kill(pid, signal.SIGSTOP)  # the import's photo waits in the worker until it goes on
    try:
        imported = asyncio.ensure_future(client.post("/import/", {"file": SimpleUploadedFile("export.json", exported)}))
        # Before, the import prepared its photos in the server itself: nothing reached the
        # workers, and a stopped worker held nothing up.
        await asyncio.wait_for(submitted.wait(), 30)
        await asyncio.sleep(0.5)
        assert not imported.done()
    finally:
        os.kill(pid, signal.SIGCONT)
    response = await asyncio.wait_for(imported, 30)
    assert response.status_code == 201
    (new_id,) = response.json()["conversation_ids"]
    names = Attachment.objects.filter(message__conversation_id=new_id).values_list("original_name", flat=True)
    assert [name async for name in names] == ["receipt.jpg"]
