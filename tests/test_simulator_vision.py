"""The simulator's yi-vision: it answers from the pixels it is sent, over real HTTP."""

import base64
import io

import httpx
import pytest
from PIL import ExifTags, Image

from tests.simulator_server import running_simulator
from tests.test_simulator import KEY, error_body, stream_chunks

RED_PHOTO_SEEN = ("image 1 is a JPEG, 640×480 pixels, mostly red, and it still carries "
                  "EXIF metadata")
BLUE_PNG_SEEN = "image 2 is a PNG, 32×32 pixels, mostly blue"


@pytest.fixture(scope="module")
def client():
    with running_simulator({"SIMULATOR_DELTA_MS": "0"}) as base_url, httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10) as client:
        yield client


def encoded(image: Image.Image, image_format: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, image_format, **options)
    return out.getvalue()


def red_photo() -> bytes:
    """A red 640×480 JPEG as a phone writes it: EXIF says to turn it a quarter, and where
    it was taken."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif.get_ifd(ExifTags.IFD.GPSInfo).update({
        ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (48.0, 51.0, 29.0)})
    return encoded(Image.new("RGB", (640, 480), (220, 30, 30)), "JPEG", exif=exif.tobytes())


def blue_png() -> bytes:
    """A 32×32 half-transparent blue PNG."""
    return encoded(Image.new("RGBA", (32, 32), (30, 60, 220, 128)), "PNG")


def data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64," + base64.b64encode(data).decode()


def user_message(text: str, *urls: str) -> dict:
    parts = [{"type": "text", "text": text}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return {"role": "user", "content": parts}


def ask(client: httpx.Client, *messages: dict, model: str = "yi-vision") -> httpx.Response:
    return client.post("/chat/completions", json={"model": model, "messages": list(messages)})


def answer_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


RED_AND_BLUE = user_message("What are these?", data_url("image/jpeg", red_photo()),
                            data_url("image/png", blue_png()))


# ---------------------------------------------------------------- what it sees

def test_the_answer_describes_each_image_from_its_pixels_in_order(client):
    answer = answer_of(ask(client, RED_AND_BLUE))

    assert answer.startswith(f"I see 2 images: {RED_PHOTO_SEEN}; {BLUE_PNG_SEEN}.\n\n")
    assert "You asked: “What are these?”" in answer


def test_a_follow_up_turn_describes_the_earlier_turns_images_again(client):
    follow_up = [RED_AND_BLUE, {"role": "assistant", "content": "A red photo and a blue square."},
                 user_message("Which one is red?")]

    answer = answer_of(ask(client, *follow_up))

    assert answer.startswith(f"I see 2 images: {RED_PHOTO_SEEN}; {BLUE_PNG_SEEN}.\n\n")
    assert "You asked: “Which one is red?”" in answer


def test_images_are_numbered_in_the_order_of_the_whole_history(client):
    history = [user_message("This?", data_url("image/png", blue_png())),
               {"role": "assistant", "content": "A blue square."},
               user_message("And this?", data_url("image/jpeg", red_photo()))]

    answer = answer_of(ask(client, *history))

    assert answer.startswith("I see 2 images: image 1 is a PNG, 32×32 pixels, mostly blue; "
                             "image 2 is a JPEG, 640×480 pixels, mostly red, and it still "
                             "carries EXIF metadata.\n\n")


def test_an_upright_image_without_metadata_is_described_as_such(client):
    # What the app sends once it has turned the photo upright and dropped its EXIF.
    upright = encoded(Image.new("RGB", (480, 640), (220, 30, 30)), "JPEG")

    answer = answer_of(ask(client, user_message("This?", data_url("image/jpeg", upright))))

    assert answer.startswith("I see 1 image: image 1 is a JPEG, 480×640 pixels, mostly "
                             "red.\n\n")


def test_each_image_costs_a_thousand_prompt_tokens(client):
    response = ask(client, RED_AND_BLUE)

    assert response.json()["usage"]["prompt_tokens"] == 2 * 1000 + 4  # ceil(15 characters / 4)


# ---------------------------------------------------------------- the reference's quirks

def test_a_completion_has_no_id_or_object_and_created_0_as_in_the_reference(client):
    response = client.post("/chat/completions", json={
        "model": "yi-vision", "messages": [user_message("Hi [sim deltas=2]")]})

    assert response.json() == {
        "created": 0, "model": "yi-vision",
        "usage": {"completion_tokens": 2, "prompt_tokens": 5, "total_tokens": 7},
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "t0 t1 "},
                     "finish_reason": "stop"}]}


def test_a_stream_opens_and_ends_with_an_empty_content_delta_and_no_role(client):
    chunks = stream_chunks(client, {"model": "yi-vision",
                                    "messages": [user_message("Hi [sim deltas=2]")]})

    assert [c["choices"] for c in chunks] == [
        [{"delta": {"content": ""}, "index": 0}],
        [{"delta": {"content": "t0 "}, "index": 0}],
        [{"delta": {"content": "t1 "}, "index": 0}],
        [{"delta": {"content": ""}, "index": 0, "finish_reason": "stop"}]]
    assert chunks[0]["object"] == "chat.completion.chunk" and chunks[-1]["lastOne"] is True


# ---------------------------------------------------------------- refusals

def test_an_image_sent_to_a_model_that_does_not_take_images_is_400(client):
    response = ask(client, RED_AND_BLUE, model="yi-large")

    assert response.status_code == 400
    assert response.json() == error_body(
        400, "Input format error: yi-large does not accept images; use yi-vision.",
        "invalid_request_error")


def test_an_image_whose_data_is_not_an_image_is_400(client):
    not_a_picture = data_url("image/png", b"these bytes are not a picture")

    response = ask(client, user_message("Hi", data_url("image/png", blue_png()), not_a_picture))

    assert response.status_code == 400
    assert response.json() == error_body(
        400, "Input format error: image 2 cannot be decoded: its data is not an image.",
        "invalid_request_error")


def test_an_image_whose_media_type_names_another_format_is_400(client):
    response = ask(client, user_message("Hi", data_url("image/png", red_photo())))

    assert response.status_code == 400
    assert response.json() == error_body(
        400, "Input format error: image 1 is sent as image/png, but its data is a JPEG "
             "image (image/jpeg). The media type of a data URL must match the image.",
        "invalid_request_error")


def test_an_image_that_is_not_valid_base64_is_400(client):
    response = ask(client, user_message("Hi", "data:image/png;base64,not*base64"))

    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "Input format error: image data is not valid base64.")
