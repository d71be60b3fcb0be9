"""chat.images: uploads checked before decoding, normalised once, scaled for the model."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image, ImageCms

from chat.images import ImageRefused, image_for_model, image_prepare

LIMITS = {"max_bytes": 20_000_000, "max_pixels": 50_000_000}


def encoded(image: Image.Image, image_format: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, image_format, **options)
    return out.getvalue()


def photo(width=640, height=480) -> Image.Image:
    """Many colours, as a photo has."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    return Image.merge("RGB", (image.getchannel(0), image.getchannel(0).rotate(90), image.getchannel(0).transpose(0)))


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_a_phone_photo_is_turned_upright_and_loses_its_gps_and_every_other_metadata_block():
    raw = photo(640, 480)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to view
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0)}  # GPS
    exif[0x010F] = "PhoneMaker"
    data = encoded(raw, "JPEG", exif=exif.tobytes(), comment=b"secret comment")
    prepared = image_prepare(data, **LIMITS)
    image = opened(prepared.data)
    assert (prepared.width, prepared.height) == image.size == (480, 640)  # upright
    assert prepared.media_type == "image/jpeg" and prepared.original_format == "JPEG"
    assert not image.getexif() and "comment" not in image.info and "icc_profile" not in image.info
    assert b"PhoneMaker" not in prepared.data and b"secret comment" not in prepared.data


def test_heic_from_an_iphone_is_taken():
    prepared = image_prepare(encoded(photo(320, 240), "HEIF"), **LIMITS)
    assert prepared.original_format == "HEIC" and (prepared.width, prepared.height) == (320, 240)
    assert opened(prepared.data).format in ("JPEG", "PNG")


def test_a_screenshot_with_few_colours_stays_png_and_sharp():
    screenshot = Image.new("RGB", (800, 600), "white")
    for x in range(0, 800, 8):
        screenshot.putpixel((x, 300), (0, 0, 0))
    prepared = image_prepare(encoded(screenshot, "PNG"), **LIMITS)
    assert prepared.media_type == "image/png"
    assert opened(prepared.data).getpixel((8, 300)) == (0, 0, 0)  # lossless


def test_transparency_is_kept_and_cmyk_becomes_rgb():
    transparent = Image.new("RGBA", (50, 50), (255, 0, 0, 0))
    assert image_prepare(encoded(transparent, "PNG"), **LIMITS).media_type == "image/png"
    assert opened(image_prepare(encoded(transparent, "PNG"), **LIMITS).data).mode == "RGBA"
    cmyk = Image.new("CMYK", (40, 30), (0, 255, 255, 0))
    assert opened(image_prepare(encoded(cmyk, "JPEG"), **LIMITS).data).mode in ("RGB", "L")


def test_a_colour_profile_is_applied_and_not_carried_along():
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encoded(photo(64, 64), "JPEG", icc_profile=srgb)
    assert opened(data).info.get("icc_profile")
    assert "icc_profile" not in opened(image_prepare(data, **LIMITS).data).info


def test_an_animation_is_cut_to_its_first_frame():
    frames = [Image.new("P", (20, 20), colour) for colour in (1, 2, 3)]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    image = opened(image_prepare(data, **LIMITS).data)
    assert getattr(image, "n_frames", 1) == 1


def test_webp_is_taken():
    assert image_prepare(encoded(photo(100, 80), "WEBP"), **LIMITS).original_format == "WebP"


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size: a decompression bomb's shape."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("raw, code, sentence", [
    (b"", "empty", "That file is empty."),
    (b"%PDF-1.7\n1 0 obj", "not_an_image", "That is a PDF, not an image. Attach a picture (JPEG, PNG, WebP, GIF or HEIC)."),
    (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
     "not_an_image", "SVG images are not accepted (they can carry script). Attach a picture (JPEG, PNG, WebP, GIF or HEIC)."),
    (b"<!DOCTYPE html><html><body>hi</body></html>", "not_an_image",
     "That file is a web page, not an image. Attach a picture (JPEG, PNG, WebP, GIF or HEIC)."),
    (b"just some notes, renamed to notes.png\n", "not_an_image",
     "That file is text, not an image. Attach a picture (JPEG, PNG, WebP, GIF or HEIC)."),
    (png_declaring(100_000, 100_000), "too_many_pixels",
     "That image is too big (the limit is 50.0 MP). Scale it down and attach it again."),
    (png_declaring(10_000, 6_000), "too_many_pixels", "That image is too big (10000×6000 pixels, 60.0 MP; "
     "the limit is 50.0 MP). Scale it down and attach it again."),
])
def test_each_kind_of_file_that_is_not_a_usable_image_gets_its_sentence(raw, code, sentence):
    with pytest.raises(ImageRefused) as refused:
        image_prepare(raw, **LIMITS)
    assert (refused.value.code, refused.value.message) == (code, sentence)


def test_a_file_over_the_byte_limit_is_refused_before_it_is_opened():
    with pytest.raises(ImageRefused) as refused:
        image_prepare(b"\xff" * 2_000_001, max_bytes=2_000_000, max_pixels=50_000_000)
    assert refused.value.message == "That image is too large (2.0 MB; the limit is 2.0 MB). Attach a smaller one."


def test_a_truncated_image_and_an_image_zip_polyglot_are_refused():
    whole = encoded(photo(400, 300), "JPEG")
    with pytest.raises(ImageRefused) as truncated:
        image_prepare(whole[: len(whole) // 2], **LIMITS)
    assert truncated.value.code == "truncated"
    archive = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("payload.txt", "hidden")
    with pytest.raises(ImageRefused) as polyglot:
        image_prepare(encoded(photo(40, 30), "PNG") + archive.getvalue(), **LIMITS)
    assert polyglot.value.code == "polyglot"


def test_the_model_gets_the_image_scaled_to_its_limit_never_enlarged():
    prepared = image_prepare(encoded(photo(3000, 2000), "JPEG"), **LIMITS)
    data, media_type = image_for_model(prepared.data, max_side=1536)
    assert opened(data).size == (1536, 1024) and media_type == "image/jpeg"
    small = image_prepare(encoded(photo(300, 200), "JPEG"), **LIMITS)
    assert image_for_model(small.data, max_side=1536) == (small.data, "image/jpeg")
    assert max(opened(prepared.thumbnail).size) == 256


def test_the_same_picture_uploaded_twice_has_the_same_digest():
    data = encoded(photo(200, 100), "PNG")
    assert image_prepare(data, **LIMITS).digest == image_prepare(data, **LIMITS).digest
