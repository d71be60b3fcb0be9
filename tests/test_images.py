"""chat.images: uploads checked before decoding, normalised once into what the model is sent."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image, ImageChops, ImageCms, ImageDraw, ImageFont

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


def test_a_jpeg_holding_two_pictures_as_phone_cameras_write_is_taken_as_its_first():
    first, second = photo(320, 240), Image.new("RGB", (320, 240), (0, 0, 255))
    raw = encoded(first, "MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(raw)).format == "MPO"
    prepared = image_prepare(raw, **LIMITS)
    assert (prepared.original_format, prepared.media_type, prepared.width) == ("JPEG", "image/jpeg", 320)
    assert opened(prepared.data).getpixel((0, 0))[2] < 200  # the photo, not the blue second picture


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


def test_a_photo_whose_bytes_hold_zip_signatures_by_chance_is_taken():
    # Compressed data holds these four bytes by chance (about 3 in 1000 photos of 6 MB);
    # here a comment holds them, with the record's signature in the last 64 KiB.
    comment = b"scan PK\x03\x04 local header, PK\x05\x06 end record, PK\x01\x02 directory"
    data = encoded(photo(400, 300), "JPEG", comment=comment)
    assert b"PK\x03\x04" in data and b"PK\x05\x06" in data
    prepared = image_prepare(data, **LIMITS)
    assert (prepared.width, prepared.height, prepared.original_format) == (400, 300, "JPEG")


def test_an_archive_appended_to_an_image_is_refused_with_bytes_after_it_too():
    import zipfile

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("payload.txt", "hidden")
    # Zip readers find the archive's end record up to 64 KiB before the end of the file.
    data = encoded(photo(400, 300), "JPEG") + archive.getvalue() + b"\0" * 1000
    assert zipfile.ZipFile(io.BytesIO(data)).namelist() == ["payload.txt"]
    with pytest.raises(ImageRefused) as polyglot:
        image_prepare(data, **LIMITS)
    assert polyglot.value.message == (
        "That file holds something besides an image (an archive). Attach the picture alone."
    )


def test_the_model_gets_the_image_scaled_to_its_limit_never_enlarged():
    prepared = image_prepare(encoded(photo(3000, 2000), "JPEG"), **LIMITS)
    assert (prepared.width, prepared.height) == opened(prepared.data).size == (2048, 1365)  # stored as sent
    data, media_type = image_for_model(prepared.data, max_side=1536)  # a limit lowered since
    assert opened(data).size == (1536, 1024) and media_type == "image/jpeg"
    small = image_prepare(encoded(photo(300, 200), "JPEG"), **LIMITS)
    assert image_for_model(small.data, max_side=1536) == (small.data, "image/jpeg")
    assert max(opened(prepared.thumbnail).size) == 256


def test_the_same_picture_uploaded_twice_has_the_same_digest():
    data = encoded(photo(200, 100), "PNG")
    assert image_prepare(data, **LIMITS).digest == image_prepare(data, **LIMITS).digest


# --- what is stored is what is sent: photos at the photo limit, screenshots whole ---------


def red(pixel) -> bool:
    r, g, b = pixel[:3]
    return r > 200 and g < 70 and b < 70


@pytest.fixture(scope="module")
def phone_photo() -> bytes:
    """12 MP as a phone stores a portrait shot: landscape pixels with EXIF orientation 6,
    GPS, XMP, a comment and a colour profile. A red square marks the stored top left,
    which the phone shows at the top right."""
    image = photo(4032, 3024)
    image.paste((255, 0, 0), (0, 0, 300, 300))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to view
    exif[0x010F] = "PhoneMaker"
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}  # GPS
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b"<rdf:Description>SecretPlace</rdf:Description></rdf:RDF></x:xmpmeta>")
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return encoded(image, "JPEG", quality=92, exif=exif.tobytes(), xmp=xmp, comment=b"secret comment", icc_profile=srgb)


def test_a_12_mp_phone_photo_is_stored_upright_at_the_photo_limit_with_no_metadata_left(phone_photo):
    assert {"exif", "xmp", "icc_profile", "comment"} <= set(opened(phone_photo).info)  # all there before
    prepared = image_prepare(phone_photo, **LIMITS)
    image = opened(prepared.data)
    # Upright, and half of 4032 on the longer side: JPEG decodes at 1/2 scale, just under 2048.
    assert (prepared.width, prepared.height) == image.size == (1512, 2016)
    assert red(image.getpixel((1512 - 40, 40))) and not red(image.getpixel((40, 40)))
    assert (prepared.media_type, image.format) == ("image/jpeg", "JPEG")
    assert not image.getexif() and not {"exif", "xmp", "icc_profile", "comment"} & set(image.info)
    for trace in (b"Exif", b"PhoneMaker", b"SecretPlace", b"xmpmeta", b"ICC_PROFILE", b"secret comment"):
        assert trace not in prepared.data
    assert len(prepared.data) < len(phone_photo) / 5


def test_what_is_stored_is_sent_as_it_is(phone_photo):
    prepared = image_prepare(phone_photo, **LIMITS)
    assert image_for_model(prepared.data) == (prepared.data, "image/jpeg")


def test_a_phone_photo_cut_short_is_refused_though_decoded_at_a_smaller_scale(phone_photo):
    with pytest.raises(ImageRefused) as refused:
        image_prepare(phone_photo[: len(phone_photo) * 2 // 3], **LIMITS)
    assert refused.value.code == "truncated"


def test_a_photo_just_under_the_pixel_limit_is_taken_at_the_photo_limit():
    data = encoded(Image.linear_gradient("L").resize((8192, 6100)), "JPEG")  # 49.97 MP
    prepared = image_prepare(data, **LIMITS)
    assert (prepared.width, prepared.height) == opened(prepared.data).size == (2048, 1525)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_real_10000_by_10000_image_is_refused_by_its_header():
    data = encoded(Image.new("1", (10_000, 10_000)), "PNG")
    with pytest.raises(ImageRefused) as refused:
        image_prepare(data, **LIMITS)
    assert refused.value.message == (
        "That image is too big (10000×10000 pixels, 100.0 MP; the limit is 50.0 MP). Scale it down and attach it again."
    )


def screen(width: int = 3840, height: int = 2160) -> Image.Image:
    """A desktop: a title bar, a shaded side bar, and lines of small antialiased text in
    four colours, as an editor shows code."""
    image = Image.new("RGB", (width, height), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, 40), fill=(40, 44, 52))
    shade = Image.linear_gradient("L").resize((480, height - 40)).point(lambda v: 200 + v // 6)
    image.paste(shade.convert("RGB"), (0, 40))
    font = ImageFont.load_default(size=12)
    colours = [(20, 20, 20), (20, 90, 200), (160, 40, 120), (30, 130, 60)]
    for i, y in enumerate(range(60, height - 20, 16)):
        draw.text((500 + (i % 7) * 40, y), f"line {i}: the quarterly figures, revenue and window sizes " * 3,
                  font=font, fill=colours[i % 4])
    return image


def test_a_4k_screenshot_is_stored_whole_as_png_pixel_for_pixel():
    original = screen()
    assert original.getcolors(800) is None  # antialiased text and shading: far more than a palette's colours
    prepared = image_prepare(encoded(original, "PNG"), **LIMITS)
    stored = opened(prepared.data)
    assert (prepared.width, prepared.height, prepared.media_type) == (3840, 2160, "image/png")
    assert ImageChops.difference(stored.convert("RGB"), original).getbbox() is None
    assert image_for_model(prepared.data) == (prepared.data, "image/png")


def test_a_photo_saved_as_png_is_stored_as_jpeg_at_the_photo_limit():
    prepared = image_prepare(encoded(photo(3000, 2000), "PNG"), **LIMITS)
    assert (prepared.width, prepared.height, prepared.media_type) == (2048, 1365, "image/jpeg")


def test_a_picture_with_transparency_larger_than_the_sharp_limit_is_scaled_to_it_and_stays_png():
    drawing = Image.new("RGBA", (5000, 1000), (0, 0, 0, 0))
    ImageDraw.Draw(drawing).ellipse((100, 100, 4900, 900), fill=(255, 0, 0, 255))
    prepared = image_prepare(encoded(drawing, "PNG"), **LIMITS)
    stored = opened(prepared.data)
    assert (stored.size, stored.mode, prepared.media_type) == ((4096, 819), "RGBA", "image/png")
    assert stored.getpixel((0, 0))[3] == 0 and red(stored.getpixel((2048, 410)))


def test_a_heic_photo_is_turned_upright_scaled_and_stripped():
    image = photo(800, 600)
    image.paste((255, 0, 0), (0, 0, 80, 80))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0)}
    exif[0x010F] = "PhoneMaker"
    prepared = image_prepare(encoded(image, "HEIF", exif=exif.tobytes()), **LIMITS, max_side=400)
    stored = opened(prepared.data)
    assert (prepared.original_format, stored.format, stored.size) == ("HEIC", "JPEG", (300, 400))
    assert red(stored.getpixel((300 - 10, 10))) and not red(stored.getpixel((10, 10)))
    assert not stored.getexif() and b"PhoneMaker" not in prepared.data


def profile_with_red_and_blue_swapped() -> bytes:
    """sRGB, but saying that the first channel is blue and the third red."""
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    (count,) = struct.unpack(">I", profile[128:132])
    entries = {bytes(profile[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red_at, blue_at = entries[b"rXYZ"], entries[b"bXYZ"]
    profile[red_at + 4 : red_at + 12], profile[blue_at + 4 : blue_at + 12] = (
        profile[blue_at + 4 : blue_at + 12], profile[red_at + 4 : red_at + 12])
    return bytes(profile)


def test_colours_are_converted_from_the_pictures_profile_to_srgb():
    data = encoded(Image.new("RGB", (64, 48), (220, 20, 20)), "JPEG", icc_profile=profile_with_red_and_blue_swapped())
    r, g, b = opened(image_prepare(data, **LIMITS).data).getpixel((32, 24))
    assert b > 150 and r < 80  # what the profile says the numbers mean: blue
