"""Legibility, tested rather than assumed: the 12-pixel text of a 4K screenshot reaches the
model as readable as it was uploaded.

An OCR reader (Debian's tesseract-ocr, which .ci/run installs) stands in for the model: it
reads the screenshot as uploaded, and as the model is sent it after the upload's
normalising, with this deployment's settings. It must read the same words from both. The
same screenshot shrunk to 1024 pixels, as other chat apps send it, loses its words.
"""

from __future__ import annotations

import io
import os
import subprocess

import pytest
from django.conf import settings
from PIL import Image, ImageDraw, ImageFont

from chat.attachments import image_prepare_upload
from chat.images import image_for_model

TESSERACT = "/usr/bin/tesseract"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"  # fonts-dejavu-core
SCREEN = (3840, 2160)
WORDS = (
    "harbour lantern quarterly invoice granite meadow orchard parcel voyage timber copper falcon "
    "juniper marble nectar pillow saddle thimble walnut zephyr anchor blossom candle dolphin ember "
    "fossil glacier hammock island jigsaw"
).split()


@pytest.fixture(scope="module")
def reader():
    for path, package in ((TESSERACT, "tesseract-ocr"), (FONT, "fonts-dejavu-core")):
        if not os.path.exists(path):
            if os.environ.get("CI"):  # .ci/run installs both: missing there is a broken CI
                pytest.fail(f"{path} is missing: .ci/run should have installed Debian's {package}")
            pytest.skip(f"{path} is missing: install Debian's {package} to run the legibility tests")


@pytest.fixture(scope="module")
def screenshot(reader) -> bytes:
    """A desktop at 4K: a title bar, a side bar, and a pane with lines of the words in
    12-pixel DejaVu Sans, the size of a dense editor or spreadsheet at 100 % zoom."""
    image = Image.new("RGB", SCREEN, (250, 250, 250))
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(FONT, 12)
    draw.rectangle((0, 0, SCREEN[0], 40), fill=(40, 44, 52))
    draw.text((20, 12), "Report - Editor", font=ImageFont.truetype(FONT, 16), fill=(230, 230, 230))
    draw.rectangle((0, 40, 480, SCREEN[1]), fill=(236, 238, 242))
    colours = [(20, 20, 20), (20, 90, 200), (30, 120, 60)]
    for i in range(6):
        line = " ".join(WORDS[i * 5 : (i + 1) * 5])
        draw.text((1600 + 40 * (i % 3), 900 + 18 * i), line, font=font, fill=colours[i % 3])
    return png(image)


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def words_read(data: bytes) -> set[str]:
    """The words of WORDS that the reader finds in `data`, shown at the screen's size (a
    smaller copy is enlarged to it: its best chance)."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if image.size != SCREEN:
        image = image.resize(SCREEN, Image.Resampling.LANCZOS)
    done = subprocess.run(
        [TESSERACT, "stdin", "stdout", "-l", "eng"], input=png(image), capture_output=True, check=True, timeout=120
    )
    return {word.strip(".,;:!?|'\"()[]").lower() for word in done.stdout.decode().split()} & set(WORDS)


def test_the_model_is_sent_a_4k_screenshot_whose_small_text_reads_as_well_as_the_original(screenshot):
    prepared = image_prepare_upload(screenshot)
    sent, _ = image_for_model(
        prepared.data, max_side=settings.IMAGE_SEND_MAX_SIDE, max_side_sharp=settings.IMAGE_SEND_MAX_SIDE_SHARP
    )
    original = words_read(screenshot)
    assert len(original) >= 0.8 * len(WORDS)  # the reader itself reads 12-pixel text
    assert words_read(sent) == original


def test_the_same_screenshot_shrunk_to_1024_pixels_as_other_apps_send_it_loses_its_words(screenshot):
    shrunk = Image.open(io.BytesIO(screenshot))
    shrunk.thumbnail((1024, 1024), Image.Resampling.LANCZOS)
    assert len(words_read(png(shrunk))) < len(WORDS) / 2
