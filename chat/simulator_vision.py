"""yi-vision in the simulator (chat/simulator.py) answers from the pixels it is sent.

Every `data:image/...;base64,` URL of the history, earlier turns included, is decoded with
chat.images (the one module that imports Pillow) and described in order, e.g. "I see 2
images: image 1 is a JPEG, 640×480 pixels, mostly red, and it still carries EXIF
metadata; image 2 is a PNG, 32×32 pixels, mostly blue." So a test can tell which picture
reached the model, whether it was turned upright and whether its metadata was stripped.
Data that is not an image, or a data URL naming another type than the image's own, is a
400 (image_decode); images sent to a model that does not take them are refused by
chat/simulator_request.py.
"""

import base64
import binascii
import re

from chat.images import ImageDescription, ImageRefused, image_describe
from chat.simulator_errors import SimulatedError

BASE64_SLICE = 1 << 20  # characters, a multiple of 4

# The media type a data URL should name for each format Pillow reads (others are
# image/<format>), the other names a data URL may use for it, and what a person calls it.
# Pillow reads a phone's multi-picture JPEG as MPO.
MEDIA_TYPES = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png",
               "WEBP": "image/webp", "GIF": "image/gif", "HEIF": "image/heic"}
MEDIA_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg",
                 "image/heif": "image/heic"}
FORMAT_NAMES = {"MPO": "JPEG", "WEBP": "WebP", "HEIF": "HEIC"}


def image_decode(part: dict, number: int) -> ImageDescription:
    """What image `number` of the request is, read from the pixels of its image_url part;
    only data: URLs, as we are offline."""
    url = part.get("image_url")
    url = url.get("url") if isinstance(url, dict) else url
    match = re.fullmatch(r"data:(image/[\w.+-]+);base64,(.*)", str(url or ""), re.DOTALL)
    if not match:
        raise SimulatedError(400, "Input format error: image_url must be a "
                                  "data:image/...;base64 URL.")
    try:
        data = base64_decode(match.group(2))
    except (binascii.Error, ValueError):
        raise SimulatedError(400, "Input format error: image data is not valid "
                                  "base64.") from None
    if not data:
        raise SimulatedError(400, "Input format error: image data is empty.")
    try:
        image = image_describe(data)
    except ImageRefused:
        raise SimulatedError(400, f"Input format error: image {number} cannot be decoded: "
                                  "its data is not an image.") from None
    declared = match.group(1).lower()
    actual = MEDIA_TYPES.get(image.format, f"image/{image.format.lower()}")
    if MEDIA_ALIASES.get(declared, declared) != actual:
        raise SimulatedError(
            400, f"Input format error: image {number} is sent as {match.group(1)}, but its "
                 f"data is {article(format_name(image))} {format_name(image)} image "
                 f"({actual}). The media type of a data URL must match the image.")
    return image


def base64_decode(text: str) -> bytes:
    """base64.b64decode(text, validate=True), a slice at a time: one call holds the GIL
    from start to end, and on a photo the event loop's thread would wait that long."""
    if text.find("=", 0, len(text) - 2) != -1:  # padding anywhere but at the end
        raise binascii.Error("Non-base64 digit found")
    return b"".join(base64.b64decode(text[i:i + BASE64_SLICE], validate=True)
                    for i in range(0, len(text), BASE64_SLICE))


def format_name(image: ImageDescription) -> str:
    return FORMAT_NAMES.get(image.format, image.format)


def article(word: str) -> str:
    return "an" if word[:1] in "AEIOU" else "a"


def vision_sentence(images: list[ImageDescription]) -> str:
    """e.g. "I see 2 images: image 1 is a JPEG, 640×480 pixels, mostly red, and it still
    carries EXIF metadata; image 2 is a PNG, 32×32 pixels, mostly blue." """
    if not images:
        return "I see no images."
    described = []
    for number, image in enumerate(images, 1):
        name = format_name(image)
        text = (f"image {number} is {article(name)} {name}, {image.width}×{image.height} "
                f"pixels, mostly {image.colour}")
        if image.exif:
            text += ", and it still carries EXIF metadata"
        described.append(text)
    noun = "image" if len(images) == 1 else "images"
    return f"I see {len(images)} {noun}: {'; '.join(described)}."
