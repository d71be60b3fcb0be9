"""Images people attach: checked, normalised once, and what the model is sent derived from it.

The only module that imports Pillow (and pillow-heif, the maintained HEIC/HEIF plugin:
iPhones send HEIC by default). Everything here is CPU work on bytes; callers run it off
the event loop (a worker thread), never on it.

Checking comes before decoding: the size in bytes, then the format Pillow recognises from
the header (never the file name or the browser's type), then the pixel count the header
declares, so that a decompression bomb is refused before a single pixel is decoded.
Normalising: EXIF orientation applied, every metadata block dropped (EXIF with GPS, XMP,
comments), a colour profile converted to sRGB, CMYK and 16-bit images made RGB, palettes
and transparency kept as such, animations cut to their first frame. The result is
re-encoded, so nothing of the uploaded file but its pixels survives.

It imports nothing from Django, so the offline simulator can describe the pixels it is
sent with the same code (`image_describe`). At send time a stored image becomes a
`data:<type>;base64,` URL (`data_url`) inside the user message's `content` list, which is
how yi-vision takes local images (reference, "Visual understanding", approach 3).
"""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass

import pillow_heif
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

pillow_heif.register_heif_opener()

# Pillow's format name -> what it is called to a person.
ALLOWED_FORMATS = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP", "GIF": "GIF", "HEIF": "HEIC"}
FORMATS_SENTENCE = "JPEG, PNG, WebP, GIF or HEIC"
THUMBNAIL_SIDE = 256
JPEG_QUALITY = 90
# An image with at most this many colours is a drawing or a screenshot: PNG keeps it sharp.
FEW_COLOURS = 256

_SRGB = ImageCms.createProfile("sRGB")


class ImageRefused(Exception):
    """An upload that is not taken; `message` says why, to the person."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class PreparedImage:
    """An accepted image, normalised: what is stored and what the page shows."""

    data: bytes  # upright, no metadata, sRGB; PNG or JPEG
    media_type: str
    width: int
    height: int
    original_format: str  # as uploaded, e.g. "HEIC"
    digest: str  # sha256 of `data`: the same picture uploaded twice is stored once
    thumbnail: bytes  # JPEG or PNG, at most THUMBNAIL_SIDE on its longer side


def image_prepare(raw: bytes, *, max_bytes: int, max_pixels: int) -> PreparedImage:
    """Check an uploaded file and normalise it; raises ImageRefused with the reason."""
    if not raw:
        raise ImageRefused("empty", "That file is empty.")
    if len(raw) > max_bytes:
        raise image_too_large(len(raw), max_bytes)
    if b"PK\x03\x04" in raw or b"PK\x05\x06" in raw:
        # A picture with an archive appended opens as either: re-encoding would drop the
        # archive, but a file made to be two things at once is not a photo someone took.
        raise ImageRefused("polyglot", "That file holds something besides an image (an archive). Attach the picture alone.")
    try:
        image = Image.open(io.BytesIO(raw), formats=list(ALLOWED_FORMATS))
    except UnidentifiedImageError:
        raise _not_an_image(raw) from None
    except Image.DecompressionBombError:  # Pillow's own header check, for sizes far past ours
        raise _too_many_pixels(max_pixels) from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageRefused(
            "too_many_pixels", f"That image is too big ({width}×{height} pixels, {_mp(width * height)}; "
            f"the limit is {_mp(max_pixels)}). Scale it down and attach it again."
        )
    original_format = ALLOWED_FORMATS[image.format]
    try:
        image.seek(0)  # the first frame of an animation
        image.load()
        image = _normalised(image)
    except Image.DecompressionBombError:
        raise _too_many_pixels(max_pixels) from None
    except (OSError, SyntaxError, ValueError):
        raise ImageRefused("truncated", "That image is damaged or cut short. Save it again and attach the new file.") from None
    data, media_type = _encode(image)
    return PreparedImage(
        data=data, media_type=media_type, width=image.width, height=image.height,
        original_format=original_format, digest=hashlib.sha256(data).hexdigest(),
        thumbnail=_encode(_scaled(image, THUMBNAIL_SIDE))[0],
    )


def image_for_model(data: bytes, *, max_side: int) -> tuple[bytes, str]:
    """What the model is sent of a stored image: scaled so that its longer side is at most
    `max_side` (never enlarged), as JPEG or PNG, whichever keeps it sharper for its size."""
    image = Image.open(io.BytesIO(data))
    if max(image.size) <= max_side:
        return data, Image.MIME[image.format]
    return _encode(_scaled(image, max_side))


def _normalised(image: Image.Image) -> Image.Image:
    image = ImageOps.exif_transpose(image)
    profile = image.info.get("icc_profile")
    if image.mode in ("I;16", "I;16B", "I", "F"):
        image = image.convert("RGB")
    if image.mode == "CMYK" or (profile and image.mode not in ("RGB", "RGBA")):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    if profile:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            image = ImageCms.profileToProfile(image, source, _SRGB, outputMode=image.mode)
        except (ImageCms.PyCMSError, OSError):
            pass  # a profile that cannot be read: the pixels as they are
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    elif image.mode not in ("RGB", "RGBA", "L", "LA", "P"):
        image = image.convert("RGB")
    # A new image holds the pixels only: no EXIF, XMP, comments or profile come along.
    clean = Image.new(image.mode, image.size)
    if image.mode == "P":
        clean.putpalette(image.getpalette())
    clean.paste(image)
    return clean


def _scaled(image: Image.Image, side: int) -> Image.Image:
    if max(image.size) <= side:
        return image
    # A palette cannot be resampled smoothly: scale its colours instead.
    scaled = image.convert("RGBA" if "transparency" in image.info else "RGB") if image.mode == "P" else image.copy()
    scaled.thumbnail((side, side), Image.Resampling.LANCZOS)
    return scaled


def _encode(image: Image.Image) -> tuple[bytes, str]:
    """PNG for transparency, palettes and few colours (screenshots, drawings: sharp
    edges); JPEG for photos, unless the PNG is smaller."""
    if image.mode in ("RGBA", "LA", "P") or _few_colours(image):
        return _save(image, "PNG"), "image/png"
    jpeg = _save(image.convert("RGB") if image.mode != "L" else image, "JPEG")
    return jpeg, "image/jpeg"


def _few_colours(image: Image.Image) -> bool:
    sample = image if max(image.size) <= 512 else _scaled(image, 512)
    return sample.getcolors(FEW_COLOURS) is not None


def _save(image: Image.Image, image_format: str) -> bytes:
    out = io.BytesIO()
    if image_format == "JPEG":
        image.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    else:
        image.save(out, "PNG", optimize=True)
    return out.getvalue()


def _not_an_image(raw: bytes) -> ImageRefused:
    head = raw[:1024].lstrip().lower()
    if head.startswith(b"%pdf"):
        what = "That is a PDF, not an image."
    elif b"<svg" in head:
        what = "SVG images are not accepted (they can carry script)."
    elif head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        what = "That file is a web page, not an image."
    elif _text(raw[:4096]):
        what = "That file is text, not an image."
    else:
        what = "That file is not an image this app can read."
    return ImageRefused("not_an_image", f"{what} Attach a picture ({FORMATS_SENTENCE}).")


def _too_many_pixels(max_pixels: int) -> ImageRefused:
    return ImageRefused(
        "too_many_pixels", f"That image is too big (the limit is {_mp(max_pixels)}). Scale it down and attach it again."
    )


def _text(sample: bytes) -> bool:
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def image_too_large(size: int, limit: int) -> ImageRefused:
    return ImageRefused(
        "too_large", f"That image is too large ({_bytes(size)}; the limit is {_bytes(limit)}). Attach a smaller one."
    )


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
        raise ImageRefused("not_an_image", "That is not an image this app can read.") from None
    count, (r, g, b) = max(sample.getcolors(64 * 64))
    colour = min(_COLOUR_NAMES, key=lambda name: sum((x - y) ** 2 for x, y in zip(_COLOUR_NAMES[name], (r, g, b))))
    return ImageDescription(format=image_format, width=width, height=height, colour=colour, exif=exif)
