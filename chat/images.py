"""Images people attach: checked, then normalised once into what the model is sent.

The only module that imports Pillow (and pillow-heif, the maintained HEIC/HEIF plugin:
iPhones send HEIC by default). Everything here is CPU work on bytes; callers run it off
the event loop (a worker thread), never on it.

Checking comes before decoding: the size in bytes, then the format Pillow recognises from
the header (never the file name or the browser's type), then the pixel count the header
declares, so that a decompression bomb is refused before a single pixel is decoded.
Normalising: EXIF orientation applied, every metadata block dropped (EXIF with GPS, XMP,
comments), a colour profile converted to sRGB, CMYK and 16-bit images made RGB, palettes
and transparency kept as such, animations cut to their first frame, and the picture scaled
to what the model is sent. The result is re-encoded, so nothing of the uploaded file but
its pixels survives.

What is stored is what is sent: the viewer shows exactly the picture the model got, and a
send is a base64 of the stored file, not a decode and re-encode of every earlier picture.
Photos are stored as JPEG at most `max_side` on their longer side; screenshots, drawings
and pictures with transparency as PNG at most `max_side_sharp`, which is large enough that
a 4K screen's small text is kept pixel for pixel: shrinking screenshots is how other chat
apps make text unreadable to the model.

It imports nothing from Django, so the offline simulator can describe the pixels it is
sent with the same code (`image_describe`). At send time a stored image becomes a
`data:<type>;base64,` URL (`data_url`) inside the user message's `content` list, which is
how yi-vision takes local images (reference, "Visual understanding", approach 3).
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import os
import signal
import struct
from collections.abc import Iterable
from dataclasses import dataclass

import pillow_heif
from django.utils.translation import gettext_noop
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

pillow_heif.register_heif_opener()

# Pillow's format name -> what it is called to a person.
# MPO is how Pillow names a JPEG holding more than one picture (many phone cameras write
# one: the photo and a depth map or a preview); its first picture is the photo. Pillow's
# JPEG opener makes it, so it is not a format to ask `Image.open` for.
ALLOWED_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WebP", "GIF": "GIF", "HEIF": "HEIC"}
_OPENERS = [name for name in ALLOWED_FORMATS if name != "MPO"]
# What cameras write: lossy already, so never sharp-edged; a JPEG is sized before it is
# decoded, which is what lets it decode straight at 1/2, 1/4 or 1/8 scale.
PHOTO_FORMATS = ("JPEG", "MPO", "HEIF")

# The longer side of a stored (and sent) photo. A phone photo of a receipt or a page keeps
# its small print readable at 2048 px, while the file is a small part of the phone's, whose
# pixels are mostly sensor noise at full size. Settings: IMAGE_SEND_MAX_SIDE.
SEND_MAX_SIDE = 2048
# The same for screenshots and drawings: a 4K screen (3840 px) is kept whole, because its
# 12-pixel text loses words at half size (tests/test_legibility.py reads it).
# Settings: IMAGE_SEND_MAX_SIDE_SHARP.
SEND_MAX_SIDE_SHARP = 4096
# A scale by a whole factor that lands at most this much under a limit is taken instead of
# the limit itself: JPEG decodes at 1/2, 1/4 and 1/8 scale for a fraction of a full decode,
# and `reduce` averages whole blocks, far cheaper than resampling. A phone's 4032 px
# become 2016, not 2048.
NEAR_LIMIT = 0.95

THUMBNAIL_SIDE = 256
# A photo's quality: its small print stays crisp while the file is a fraction of what the
# phone wrote (92 to 95).
JPEG_QUALITY = 85
# A screenshot or a drawing repeats its colours (flat backgrounds, text in a few colours
# with their antialiasing), where nearly every pixel of a photo has a colour of its own
# (light, noise). Counted on a sample taken without blending: at most FEW_COLOURS, or at
# most one distinct colour per DRAWN_PIXELS_PER_COLOUR pixels, is drawn: PNG keeps it sharp.
FEW_COLOURS = 256
DRAWN_PIXELS_PER_COLOUR = 8
COLOUR_SAMPLE_SIDE = 256

_SRGB = ImageCms.createProfile("sRGB")

# A zip's end-of-central-directory record: its signature, its size, and how far from the
# end of a file readers look for it (the record and a comment of up to 64 KiB).
_ZIP_END = b"PK\x05\x06"
_ZIP_END_SIZE = 22
_ZIP_TAIL = _ZIP_END_SIZE + 0xFFFF
_ZIP_DIRECTORY = b"PK\x01\x02"  # the first entry of the central directory
_ZIP64_LOCATOR = b"PK\x06\x07"  # 20 bytes, just before the record, in a zip64 archive


class ImageRefused(Exception):
    """An upload that is not taken; `message` says why, to the person: a template marked
    for translation and its `params`, said in the page's language by chat/refusals.py
    (it is raised in a worker process, which knows no page)."""

    def __init__(self, code: str, template: str, params: dict | None = None):
        self.template = template
        self.params = params
        self.message = template % params if params else template
        super().__init__(self.message)
        self.code = code

    def __reduce__(self):
        # Raised in an image worker process and read in the server (chat/attachments.py).
        return ImageRefused, (self.code, self.template, self.params)


@dataclass(frozen=True)
class PreparedImage:
    """An accepted image, normalised: what is stored, shown, and sent to the model."""

    data: bytes  # upright, no metadata, sRGB, scaled to its limit; PNG or JPEG
    media_type: str
    width: int
    height: int
    original_format: str  # as uploaded, e.g. "HEIC"
    digest: str  # sha256 of `data`: the same picture uploaded twice is stored once
    thumbnail: bytes  # JPEG or PNG, at most THUMBNAIL_SIDE on its longer side


def image_worker_start(niceness: int) -> None:
    """The start of an image worker process (chat/attachments.py), here because a worker
    imports this module and no Django. Ctrl+C in a terminal sends SIGINT to the whole
    process group: each idle worker died of it with a `KeyboardInterrupt` traceback over the
    server's clean stop. The server that owns the workers ends them when it stops."""
    os.nice(niceness)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def image_prepare(
    raw: bytes, *, max_bytes: int, max_pixels: int, max_side: int = SEND_MAX_SIDE,
    max_side_sharp: int = SEND_MAX_SIDE_SHARP,
) -> PreparedImage:
    """Check an uploaded file and normalise it into what the model is sent: a photo at most
    `max_side` on its longer side, a screenshot or drawing at most `max_side_sharp`;
    raises ImageRefused with the reason."""
    if not raw:
        raise ImageRefused("empty", gettext_noop("That file is empty."))
    if len(raw) > max_bytes:
        raise image_too_large(len(raw), max_bytes)
    if _zip_inside(raw):
        # A picture with an archive appended opens as either: re-encoding would drop the
        # archive, but a file made to be two things at once is not a photo someone took.
        raise ImageRefused("polyglot", gettext_noop(
            "That file holds something besides an image (an archive). Attach the picture alone."))
    try:
        image = Image.open(io.BytesIO(raw), formats=_OPENERS)
    except UnidentifiedImageError:
        raise _not_an_image(raw) from None
    except Image.DecompressionBombError:  # Pillow's own header check, for sizes far past ours
        raise _too_many_pixels(max_pixels) from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageRefused("too_many_pixels", gettext_noop(
            "That image is too big (%(width)s×%(height)s pixels, %(pixels)s; the limit is %(limit)s). "
            "Scale it down and attach it again."),
            {"width": width, "height": height, "pixels": _mp(width * height), "limit": _mp(max_pixels)})
    original_format = ALLOWED_FORMATS[image.format]
    try:
        image.seek(0)  # the first frame of an animation
        image, sharp = _normalised(image, max_side=max_side, max_side_sharp=max_side_sharp)
    except Image.DecompressionBombError:
        raise _too_many_pixels(max_pixels) from None
    except (OSError, SyntaxError, ValueError):
        raise ImageRefused("truncated", gettext_noop(
            "That image is damaged or cut short. Save it again and attach the new file.")) from None
    data, media_type = _encode(image, sharp=sharp)
    thumbnail = _fitted(image, THUMBNAIL_SIDE)
    return PreparedImage(
        data=data, media_type=media_type, width=image.width, height=image.height,
        original_format=original_format, digest=hashlib.sha256(data).hexdigest(),
        thumbnail=_encode(thumbnail, sharp=_transparent(thumbnail))[0],
    )


def image_for_model(
    data: bytes, *, max_side: int = SEND_MAX_SIDE, max_side_sharp: int = SEND_MAX_SIDE_SHARP
) -> tuple[bytes, str]:
    """What the model is sent of a stored image: the stored bytes themselves when they fit,
    else scaled down (never enlarged) to the limit of their kind, in the same format: for
    when the limits were lowered after the image was stored."""
    image = Image.open(io.BytesIO(data))
    sharp = image.format == "PNG"
    side = max_side_sharp if sharp else max_side
    if max(image.size) <= side:
        return data, Image.MIME[image.format]
    _draft(image, side)
    image.load()
    return _encode(_fitted(image, side), sharp=sharp)


def _zip_inside(raw: bytes) -> bool:
    """Whether `raw` also opens as a zip archive.

    Zip readers start from the end: they look for the end-of-central-directory record in
    the last _ZIP_TAIL bytes and follow it back to the central directory it closes, found
    `directory size` bytes before it (however much is prepended: an image). So that is what
    is looked for. The signatures alone are not: compressed data holds `PK\\x03\\x04` or
    `PK\\x05\\x06` by chance (about 3 in 1000 photos of 6 MB), and a search of the whole file
    refused real photos as archives.
    """
    tail = max(0, len(raw) - _ZIP_TAIL)
    end = raw.rfind(_ZIP_END, tail)
    while end != -1:
        if end + _ZIP_END_SIZE <= len(raw):
            directory_size = struct.unpack_from("<I", raw, end + 12)[0]
            directory = end - directory_size
            if 0 < directory_size <= end and raw.startswith(_ZIP_DIRECTORY, directory):
                return True
            if end >= 20 and raw.startswith(_ZIP64_LOCATOR, end - 20):  # zip64: the sizes are in a record it points to
                return True
        end = raw.rfind(_ZIP_END, tail, end)
    return False


def _normalised(image: Image.Image, *, max_side: int, max_side_sharp: int) -> tuple[Image.Image, bool]:
    """Upright, sRGB, scaled to its limit; and whether it is sharp-edged (a screenshot, a
    drawing, transparency: stored as PNG) rather than a photo (JPEG)."""
    profile = image.info.get("icc_profile")
    photo = image.format in PHOTO_FORMATS and not _transparent(image)
    if photo:
        _draft(image, max_side)
    image.load()
    image = _workable(image)
    sharp = not photo and (_transparent(image) or _drawn(image))
    image = _fitted(image, max_side_sharp if sharp else max_side)
    ImageOps.exif_transpose(image, in_place=True)
    if profile:
        image = _in_srgb(image, profile)
    if image.mode not in ("RGB", "RGBA", "L", "LA", "P"):
        image = image.convert("RGB")
    return image, sharp


def _draft(image: Image.Image, side: int) -> None:
    """Have a JPEG decode at the smallest of its 1/2, 1/4, 1/8 scales that still reaches
    (nearly) `side` on its longer side. The longer side is the same whichever way up the
    picture is meant, so EXIF orientation does not change the choice."""
    if image.format in ("JPEG", "MPO") and max(image.size) > side:
        factor = _factor(max(image.size), side, (2, 4, 8))
        if factor > 1:
            image.draft(None, (image.width // factor, image.height // factor))


def _workable(image: Image.Image) -> Image.Image:
    """In a mode that can be scaled, colour-managed and saved as JPEG or PNG."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return image.convert("RGB")
    if "transparency" in image.info:
        return image.convert("LA" if image.mode in ("L", "LA") else "RGBA")
    if image.mode in ("RGB", "RGBA", "L", "LA", "P", "CMYK"):
        return image
    return image.convert("RGBA" if "A" in image.getbands() else "RGB")


def _transparent(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _drawn(image: Image.Image) -> bool:
    sample = image
    if max(image.size) > COLOUR_SAMPLE_SIDE:
        sample = image.resize(_fit(image.size, COLOUR_SAMPLE_SIDE), Image.Resampling.NEAREST)
    pixels = sample.width * sample.height
    return sample.getcolors(max(FEW_COLOURS, pixels // DRAWN_PIXELS_PER_COLOUR)) is not None


def _fitted(image: Image.Image, side: int) -> Image.Image:
    """Scaled so that its longer side is at most `side`, never enlarged."""
    longer = max(image.size)
    if longer <= side:
        return image
    if image.mode == "P":  # a palette cannot be resampled smoothly: scale its colours instead
        image = image.convert("RGB")
    factor = _factor(longer, side, range(2, 9))
    if factor > 1 and math.ceil(longer / factor) <= side:
        return image.reduce(factor)
    # Pillow reduces by whole blocks first, then resamples at least 3× the target: as good
    # as resampling all the way, for a fraction of the time.
    return image.resize(_fit(image.size, side), Image.Resampling.LANCZOS, reducing_gap=3.0)


def _factor(longer: int, side: int, factors: Iterable[int]) -> int:
    """The largest of `factors` that leaves the longer side at least NEAR_LIMIT × `side`."""
    return max((f for f in factors if math.ceil(longer / f) >= side * NEAR_LIMIT), default=1)


def _fit(size: tuple[int, int], side: int) -> tuple[int, int]:
    scale = side / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _in_srgb(image: Image.Image, profile: bytes) -> Image.Image:
    """`image` converted from its colour profile to sRGB; as it is when the profile cannot
    be read or does not fit its mode (CMYK is then made RGB plainly)."""
    output = "RGBA" if image.mode in ("RGBA", "LA") else "RGB"
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        if image.mode == output:
            ImageCms.profileToProfile(image, source, _SRGB, outputMode=output, inPlace=True)
            return image
        return ImageCms.profileToProfile(image, source, _SRGB, outputMode=output)
    except (ImageCms.PyCMSError, OSError):
        return image


def _encode(image: Image.Image, *, sharp: bool) -> tuple[bytes, str]:
    """PNG for a sharp-edged image (and any with transparency), JPEG for a photo."""
    # Pillow writes some blocks it finds in `info` (a JPEG's comment, a PNG's colour
    # profile): the encoder is given the pixels alone.
    image.info = {}
    out = io.BytesIO()
    if sharp or image.mode in ("RGBA", "LA"):
        # The default compression: `optimize` takes four times as long to save a few percent.
        image.save(out, "PNG")
        return out.getvalue(), "image/png"
    image = image if image.mode in ("RGB", "L") else image.convert("RGB")
    image.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue(), "image/jpeg"


def _not_an_image(raw: bytes) -> ImageRefused:
    head = raw[:1024].lstrip().lower()
    if head.startswith(b"%pdf"):
        said = gettext_noop("That is a PDF, not an image. "
                            "Attach a picture (JPEG, PNG, WebP, GIF or HEIC).")
    elif b"<svg" in head:
        said = gettext_noop("SVG images are not accepted (they can carry script). "
                            "Attach a picture (JPEG, PNG, WebP, GIF or HEIC).")
    elif head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        said = gettext_noop("That file is a web page, not an image. "
                            "Attach a picture (JPEG, PNG, WebP, GIF or HEIC).")
    elif _text(raw[:4096]):
        said = gettext_noop("That file is text, not an image. "
                            "Attach a picture (JPEG, PNG, WebP, GIF or HEIC).")
    else:
        said = gettext_noop("That file is not an image this app can read. "
                            "Attach a picture (JPEG, PNG, WebP, GIF or HEIC).")
    return ImageRefused("not_an_image", said)


def _too_many_pixels(max_pixels: int) -> ImageRefused:
    return ImageRefused("too_many_pixels", gettext_noop(
        "That image is too big (the limit is %(limit)s). Scale it down and attach it again."),
        {"limit": _mp(max_pixels)})


def _text(sample: bytes) -> bool:
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def image_too_large(size: int, limit: int) -> ImageRefused:
    return ImageRefused("too_large", gettext_noop(
        "That image is too large (%(size)s; the limit is %(limit)s). Attach a smaller one."),
        {"size": _bytes(size), "limit": _bytes(limit)})


def _bytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB" if size >= 1_000_000 else f"{size / 1000:.0f} KB"


def _mp(pixels: int) -> str:
    return f"{pixels / 1_000_000:.1f} MP"


def data_url(data: bytes, media_type: str) -> str:
    """`data:<type>;base64,...`: how the reference sends a local image."""
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


# Named colours a description can use; the nearest one (in RGB) names a dominant colour.
_COLOUR_NAMES = {
    "black": (0, 0, 0), "white": (255, 255, 255), "grey": (128, 128, 128), "red": (220, 30, 30),
    "green": (30, 160, 60), "blue": (30, 60, 220), "yellow": (240, 220, 40), "orange": (250, 140, 20),
    "purple": (130, 50, 160), "pink": (240, 130, 180), "brown": (120, 70, 30), "cyan": (40, 200, 220),
}


@dataclass(frozen=True)
class ImageDescription:
    """What an image is, read from its pixels: for the simulator's stand-in for yi-vision."""

    format: str  # Pillow's name: JPEG, PNG, ...
    width: int
    height: int
    colour: str  # the name of its most common colour
    exif: bool  # any EXIF block (orientation, GPS) left in the file


def image_describe(data: bytes) -> ImageDescription:
    """Decode `data` and describe it; raises ImageRefused when it is not an image."""
    try:
        image = Image.open(io.BytesIO(data))
        image_format, (width, height) = image.format or "", image.size
        exif = bool(image.getexif()) or "exif" in image.info
        image.draft("RGB", (64, 64))  # JPEG: decode at 1/8 scale, enough for a colour
        sample = image.convert("RGB")
        sample.thumbnail((64, 64))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise ImageRefused("not_an_image", gettext_noop("That is not an image this app can read.")) from None
    count, (r, g, b) = max(sample.getcolors(64 * 64))
    colour = min(_COLOUR_NAMES, key=lambda name: sum((x - y) ** 2 for x, y in zip(_COLOUR_NAMES[name], (r, g, b))))
    return ImageDescription(format=image_format, width=width, height=height, colour=colour, exif=exif)
