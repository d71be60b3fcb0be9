"""An upload's image work never runs on the event loop (issue 13): the loop relays every
answer streaming to every user, and a photo checked and normalised on it would stall them
all. The upload goes through Django's ASGI handler on this test's own event loop, as under
Daphne, and the test counts the CPU time the loop's thread, and this whole process, spend
on it: CPU time, not a wall-clock lag, so that a busy machine does not fail the test.
"""

from __future__ import annotations

import io
import time

import pytest
from django.test import AsyncClient
from PIL import Image

from chat.attachments import image_prepare_upload

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def large_photo() -> bytes:
    """A 48 MP JPEG (under the 50 MP limit), as the largest phone cameras write, grainy
    enough that decoding it is real work."""
    size, grain = (8000, 6000), (2000, 1500)
    layers = [Image.linear_gradient("L").resize(grain), Image.radial_gradient("L").resize(grain),
              Image.effect_noise(grain, 40)]
    out = io.BytesIO()
    Image.merge("RGB", layers).resize(size, Image.Resampling.NEAREST).save(out, "JPEG", quality=92)
    return out.getvalue()


def small_picture() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), "teal").save(out, "PNG")
    return out.getvalue()


async def upload(client: AsyncClient, data: bytes, name: str):
    """As static/chat/attachments.js sends a file: the body itself, its name in a header."""
    return await client.post(
        "/attachments/", data, content_type="application/octet-stream", headers={"X-File-Name": name})


async def test_a_large_upload_spends_next_to_no_cpu_on_the_event_loop_or_in_the_server_process(user):
    photo = large_photo()
    # The CPU the work takes where it runs; in this test, the loop's own thread.
    started = time.thread_time()
    image_prepare_upload(photo)
    work = time.thread_time() - started
    assert work > 0.08, f"{work * 1000:.0f} ms: too light a photo to tell where its work ran"

    client = AsyncClient()
    await client.aforce_login(user)
    # The first upload in a process starts the image workers (some 30 ms of the loop's CPU,
    # once); what is measured is an upload to a server that has had one.
    assert (await upload(client, small_picture(), "warm.png")).status_code == 201
    loop_started, process_started = time.thread_time(), time.process_time()
    response = await upload(client, photo, "phone.jpg")
    on_the_loop, in_this_process = time.thread_time() - loop_started, time.process_time() - process_started

    assert response.status_code == 201, response.content[:300]
    assert (response.json()["original_format"], response.json()["original_name"]) == ("JPEG", "phone.jpg")
    spent = f"{on_the_loop * 1000:.0f} ms on the loop, {in_this_process * 1000:.0f} ms in this process"
    assert on_the_loop < work / 4, f"{spent}, for image work of {work * 1000:.0f} ms: it ran on the loop"
    # Not a thread of the server's either: Pillow there took the cores the loop needs.
    assert in_this_process < work / 2, f"{spent}, for image work of {work * 1000:.0f} ms: it ran in the server"
