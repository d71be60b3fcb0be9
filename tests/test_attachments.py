"""The upload view and the image URLs: checked, stored once, served to their owner alone."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image

from chat.models import Attachment

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def jpeg_with_gps() -> bytes:
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0)}
    exif[0x010F] = "PhoneMaker"
    out = io.BytesIO()
    grey = Image.radial_gradient("L")
    photo = Image.merge("RGB", (grey, grey.rotate(90), Image.linear_gradient("L")))  # many colours, as a photo
    photo.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def signed_in(user, **options) -> Client:
    client = Client(**options)
    client.force_login(user)
    return client


def upload(client: Client, data: bytes, name: str = "photo.jpg"):
    return client.post("/attachments/", {"file": SimpleUploadedFile(name, data)})


def test_an_uploaded_photo_is_stored_stripped_and_served_to_its_owner_only(user, other_user, media):
    response = upload(signed_in(user), jpeg_with_gps())
    assert response.status_code == 201
    body = response.json()
    assert (body["width"], body["height"], body["media_type"], body["original_format"]) == (256, 256, "image/jpeg", "JPEG")

    served = signed_in(user).get(body["url"])
    assert served.status_code == 200 and served["Content-Type"] == "image/jpeg"
    assert served["X-Content-Type-Options"] == "nosniff"
    data = b"".join(served.streaming_content)
    assert b"PhoneMaker" not in data and not Image.open(io.BytesIO(data)).getexif()
    thumbnail = signed_in(user).get(body["thumbnail_url"])
    assert thumbnail.status_code == 200 and thumbnail["X-Content-Type-Options"] == "nosniff"

    assert signed_in(other_user).get(body["url"]).status_code == 404
    assert signed_in(other_user).get(body["thumbnail_url"]).status_code == 404
    assert Client().get(body["url"]).status_code == 302  # to the sign-in page
    # Nothing under MEDIA_ROOT has a public URL.
    assert Client().get(f"/media/attachments/{user.pk}/").status_code in (302, 404)


def test_the_same_picture_uploaded_twice_is_one_file(user, media):
    client = signed_in(user)
    first, second = upload(client, jpeg_with_gps()).json(), upload(client, jpeg_with_gps()).json()
    assert first["id"] != second["id"]
    files = Attachment.objects.values_list("file", flat=True)
    assert len(set(files)) == 1
    assert len(list((media / "attachments" / str(user.pk)).iterdir())) == 2  # the image and its thumbnail


@pytest.mark.parametrize("data, name, code", [
    (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "x.svg", "not_an_image"),
    (b"notes, renamed", "notes.png", "not_an_image"),
    (b"", "empty.png", "empty"),
])
def test_a_refused_file_gets_its_sentence_and_nothing_is_stored(user, media, data, name, code):
    response = upload(signed_in(user), data, name)
    assert response.status_code == 400 and response.json()["code"] == code
    assert response.json()["message"]
    assert not Attachment.objects.exists()
    assert not (media / "attachments").exists()


def test_a_file_over_the_byte_limit_is_refused_before_it_is_read(user, settings):
    settings.IMAGE_MAX_BYTES = 1000
    response = upload(signed_in(user), jpeg_with_gps())
    assert response.status_code == 400
    assert response.json() == {
        "code": "too_large",
        "message": f"That image is too large ({len(jpeg_with_gps()) / 1000:.0f} KB; the limit is 1 KB). Attach a smaller one.",
    }


def test_uploading_needs_a_signed_in_user_and_the_csrf_token(user):
    assert upload(Client(), jpeg_with_gps()).status_code == 302
    assert upload(signed_in(user, enforce_csrf_checks=True), jpeg_with_gps()).status_code == 403
    assert signed_in(user).get("/attachments/").status_code == 405


def test_the_page_sends_the_file_as_the_body_with_its_name_in_a_header(user, media):
    raw = jpeg_with_gps()
    response = signed_in(user).post("/attachments/", raw, content_type="application/octet-stream",
                                    headers={"X-File-Name": "%E5%8C%97%E4%BA%AC%20photo.jpg"})
    assert response.status_code == 201
    assert response.json()["original_name"] == "北京 photo.jpg"
    # Larger than Django's DATA_UPLOAD_MAX_MEMORY_SIZE for a body is still taken (up to IMAGE_MAX_BYTES).
    big = io.BytesIO()
    Image.effect_noise((1800, 1800), 80).convert("RGB").save(big, "JPEG", quality=100)
    assert len(big.getvalue()) > 2_621_440
    assert signed_in(user).post("/attachments/", big.getvalue(), content_type="image/jpeg").status_code == 201


def test_a_body_over_the_byte_limit_is_refused_before_it_is_read(user, media, settings):
    settings.IMAGE_MAX_BYTES = 1000
    response = signed_in(user).post("/attachments/", b"x" * 2000, content_type="application/octet-stream")
    assert response.status_code == 400 and response.json()["code"] == "too_large"
    assert not Attachment.objects.exists()


def _polyglot() -> bytes:
    import zipfile

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("payload.txt", "hidden")
    return jpeg_with_gps() + archive.getvalue()


def _bad_kinds():
    from tests.test_images import png_declaring

    whole = jpeg_with_gps()
    return [
        (b"", "That file is empty."),
        (b"notes, renamed to a .png\n", "That file is text, not an image. Attach a picture (JPEG, PNG, WebP, GIF or HEIC)."),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
         "SVG images are not accepted (they can carry script). Attach a picture (JPEG, PNG, WebP, GIF or HEIC)."),
        (b"%PDF-1.7\n", "That is a PDF, not an image. Attach a picture (JPEG, PNG, WebP, GIF or HEIC)."),
        (png_declaring(100_000, 100_000), "That image is too big (the limit is 50.0 MP). Scale it down and attach it again."),
        (whole[: len(whole) // 2], "That image is damaged or cut short. Save it again and attach the new file."),
        (_polyglot(), "That file holds something besides an image (an archive). Attach the picture alone."),
    ]


@pytest.mark.parametrize("index", range(7))
def test_each_bad_file_sent_as_the_page_sends_it_gets_its_sentence_and_nothing_is_stored(user, media, index):
    data, sentence = _bad_kinds()[index]
    response = signed_in(user).post("/attachments/", data, content_type="application/octet-stream",
                                    headers={"X-File-Name": "upload.png"})
    assert response.status_code == 400 and response.json()["message"] == sentence
    assert not Attachment.objects.exists() and not (media / "attachments").exists()


def test_a_one_pixel_image_is_taken(user, media):
    one = io.BytesIO()
    Image.new("RGB", (1, 1), (255, 0, 0)).save(one, "PNG")
    response = signed_in(user).post("/attachments/", one.getvalue(), content_type="application/octet-stream")
    assert response.status_code == 201 and (response.json()["width"], response.json()["height"]) == (1, 1)
