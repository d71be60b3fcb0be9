"""Attachments: storing an uploaded image for its owner, and reading it back for them alone.

The checking and normalising is chat.images; this module decides where the bytes live.
Files are named by their digest inside the owner's folder under MEDIA_ROOT, which no URL
serves: the same picture uploaded twice is one file, and a picture is reached only
through `attachment_get`, which asks who is asking.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

from chat.images import PreparedImage, data_url, image_prepare
from chat.models import Attachment

_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png"}
PNG_SIGNATURE = b"\x89PNG"


def image_prepare_upload(raw: bytes) -> PreparedImage:
    """chat.images.image_prepare with this deployment's limits; raises ImageRefused."""
    return image_prepare(raw, max_bytes=settings.IMAGE_MAX_BYTES, max_pixels=settings.IMAGE_MAX_PIXELS)


def attachment_create(*, user: AbstractBaseUser, image: PreparedImage, original_name: str) -> Attachment:
    """An unsent attachment of `user` for `image`, its file written once per digest."""
    folder = f"attachments/{user.pk}"
    name = f"{folder}/{image.digest}.{_EXTENSIONS[image.media_type]}"
    thumbnail = f"{folder}/{image.digest}.thumb.{'png' if image.thumbnail.startswith(PNG_SIGNATURE) else 'jpg'}"
    for path, data in ((name, image.data), (thumbnail, image.thumbnail)):
        if not default_storage.exists(path):
            default_storage.save(path, ContentFile(data))
    return Attachment.objects.create(
        user=user, file=name, thumbnail=thumbnail, digest=image.digest, original_format=image.original_format,
        media_type=image.media_type, width=image.width, height=image.height, size_bytes=len(image.data),
        original_name=original_name[:255],
    )


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
