"""Uploads on a server that has been up for a while: an image worker that dies (the kernel's
OOM killer, on a huge HEIC) costs the upload it held, not every later one."""

from __future__ import annotations

import asyncio
import os
import signal
from concurrent.futures.process import BrokenProcessPool

import pytest
from django.test import AsyncClient

from chat import attachments
from chat.models import Attachment
from tests.test_attachments import jpeg_with_gps

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


def page_upload(client: AsyncClient, data: bytes, name: str = "photo.jpg"):
    """As static/chat/attachments.js sends a file: the body itself, its name in a header."""
    return client.post("/attachments/", data, content_type="application/octet-stream", headers={"X-File-Name": name})


async def signed_in(user) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(user)
    return client


async def test_an_upload_whose_image_worker_dies_gets_a_sentence_and_the_next_upload_is_taken(
    user, image_workers, monkeypatch
):
    client = await signed_in(user)
    pid = await worker_pid()
    submitted = submissions_watched(monkeypatch)
    # Stopped, the worker holds the upload in the pool until it is killed under it, as the
    # OOM killer kills a worker decoding a huge image.
    os.kill(pid, signal.SIGSTOP)
    try:
        upload = asyncio.ensure_future(page_upload(client, jpeg_with_gps(), "huge.heic"))
        await asyncio.wait_for(submitted.wait(), 30)
    finally:
        os.kill(pid, signal.SIGKILL)
    response = await asyncio.wait_for(upload, 30)
    assert (response.status_code, response.json()) == (503, WORKER_LOST)
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

