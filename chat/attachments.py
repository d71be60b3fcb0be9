"""Attachments: storing an uploaded image for its owner, and reading it back for them alone.

The checking and normalising is chat.images; this module decides where the bytes live.
Files are named by their digest inside the owner's folder under MEDIA_ROOT, which no URL
serves: the same picture uploaded twice is one file, and a picture is reached only
through `attachment_get`, which asks who is asking.

A file lives as long as a row names it: deleting attachments (a conversation's, by
cascade; unsent uploads, by `attachments_sweep` once they are a day old) removes the
files no other row names, once the deletion has committed (chat/signals.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_noop
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

from chat.images import PreparedImage, data_url, image_prepare, image_worker_start
from chat.models import Attachment

logger = logging.getLogger(__name__)

_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png"}
# Uploads never sent are removed once they are this old, at most SWEEP_BATCH at a time
# (chat/upkeep.py, hourly in each process; `manage.py attachments_sweep`, all at once).
UNSENT_KEPT_FOR = timedelta(days=1)
SWEEP_BATCH = 500
PNG_SIGNATURE = b"\x89PNG"
# Image workers run this much nicer than the server (os.nice: 0 is the default, 19 the nicest).
IMAGE_WORKER_NICENESS = 10
_workers: ProcessPoolExecutor | None = None


def _image_workers() -> ProcessPoolExecutor:
    """The processes that check and normalise uploads, made on first use.

    Pillow's work is CPU-bound: in a thread of the server it took the cores the event loop
    needs, and answers streaming to everyone stalled while people uploaded (bench/images.py).
    In processes of their own, at a lower priority (nice), the kernel gives the server the
    CPU first. `spawn`, not `fork`: the server has threads and an event loop a forked child
    must not inherit. chat.images imports nothing from Django, so a worker starts light.
    """
    global _workers
    if _workers is None:
        _workers = ProcessPoolExecutor(
            max_workers=settings.IMAGE_WORKERS, mp_context=multiprocessing.get_context("spawn"),
            initializer=image_worker_start, initargs=(IMAGE_WORKER_NICENESS,),
        )
    return _workers


class ImageWorkerLost(Exception):
    """The image worker preparing an upload died (the kernel's OOM killer ends the process
    using the most memory: one decoding a huge HEIC); `message` says so to the person."""

    code = "image_worker_lost"
    template = message = gettext_noop("The server ran out of room processing this image; try a smaller one.")
    params = None  # said as a refusal is (chat/refusals.py)

    def __init__(self):
        super().__init__(self.message)


def _image_workers_replace(broken: ProcessPoolExecutor) -> None:
    """Forget a pool whose worker died, so that the next upload gets a new one.

    A ProcessPoolExecutor that lost a worker is broken for good: every later call raises
    BrokenProcessPool, and every upload failed until the server restarted. Only `broken`
    itself is replaced: the other uploads it failed arrive here too, after a new pool may
    already be taking uploads.
    """
    global _workers
    if _workers is broken:
        _workers = None
    broken.shutdown(wait=False, cancel_futures=True)


async def image_prepare_elsewhere(raw: bytes) -> PreparedImage:
    """`image_prepare_upload` in an image worker process; raises ImageRefused, or
    ImageWorkerLost when the worker died preparing it."""
    job = functools.partial(image_prepare, raw, **_limits())
    loop = asyncio.get_running_loop()
    workers = _image_workers()
    try:
        prepared = loop.run_in_executor(workers, job)
    except BrokenProcessPool:  # broken before this upload came: not by this image
        _image_workers_replace(workers)
        workers = _image_workers()
        prepared = loop.run_in_executor(workers, job)
    try:
        return await prepared
    except BrokenProcessPool:
        # Every upload the dead worker's pool held ends here, not only the one it was
        # preparing: which that was, the pool does not say.
        _image_workers_replace(workers)
        logger.warning("an image worker died; its pool is replaced")
        raise ImageWorkerLost() from None


def image_prepare_upload(raw: bytes) -> PreparedImage:
    """chat.images.image_prepare with this deployment's limits, here; raises ImageRefused."""
    return image_prepare(raw, **_limits())


def _limits() -> dict[str, int]:
    return {
        "max_bytes": settings.IMAGE_MAX_BYTES, "max_pixels": settings.IMAGE_MAX_PIXELS,
        "max_side": settings.IMAGE_SEND_MAX_SIDE, "max_side_sharp": settings.IMAGE_SEND_MAX_SIDE_SHARP,
    }


def attachment_create(*, user: AbstractBaseUser, image: PreparedImage, original_name: str) -> Attachment:
    """An unsent attachment of `user` for `image`, its file written once per digest."""
    folder = f"attachments/{user.pk}"
    name = f"{folder}/{image.digest}.{_EXTENSIONS[image.media_type]}"
    thumbnail = f"{folder}/{image.digest}.thumb.{'png' if image.thumbnail.startswith(PNG_SIGNATURE) else 'jpg'}"
    # The row first: a sweep removing the last other row of this digest meanwhile then
    # sees this one and keeps the files.
    attachment = Attachment.objects.create(
        user=user, file=name, thumbnail=thumbnail, digest=image.digest, original_format=image.original_format,
        media_type=image.media_type, width=image.width, height=image.height, size_bytes=len(image.data),
        original_name=original_name[:255],
    )
    for path, data in ((name, image.data), (thumbnail, image.thumbnail)):
        if not default_storage.exists(path):
            default_storage.save(path, ContentFile(data))
    return attachment


def attachment_get(*, user: AbstractBaseUser, attachment_id: int) -> Attachment | None:
    """The user's own attachment, or None (another person's is not told apart from none)."""
    return Attachment.objects.filter(pk=attachment_id, user=user).first()


def attachment_to_dict(attachment: Attachment) -> dict:
    return {
        "id": attachment.pk,
        "media_type": attachment.media_type,
        "width": attachment.width,
        "height": attachment.height,
        "size_bytes": attachment.size_bytes,
        "original_format": attachment.original_format,
        "original_name": attachment.original_name,
        "url": reverse("chat:attachment", args=[attachment.pk]),
        "thumbnail_url": reverse("chat:attachment_thumbnail", args=[attachment.pk]),
    }


def attachment_data_url(attachment: Attachment) -> str:
    """The stored image as a `data:` URL (file IO: not on the event loop)."""
    with attachment.file.open("rb") as fh:
        return data_url(fh.read(), attachment.media_type)


def attachment_files_release(names: list[str]) -> None:
    """Remove the files among `names` that no attachment names any more."""
    for name in names:
        if name and not Attachment.objects.filter(Q(file=name) | Q(thumbnail=name)).exists():
            default_storage.delete(name)


def attachments_sweep(*, now=None, batch: int = SWEEP_BATCH) -> int:
    """Delete uploads never sent that are older than UNSENT_KEPT_FOR (their files go with
    them); at most `batch` at a time. Returns how many."""
    cutoff = (now or timezone.now()) - UNSENT_KEPT_FOR
    stale = list(
        Attachment.objects.filter(message__isnull=True, created_at__lt=cutoff).values_list("pk", flat=True)[:batch]
    )
    if stale:
        Attachment.objects.filter(pk__in=stale).delete()
        logger.info("removed %s uploads never sent", len(stale))
    return len(stale)
