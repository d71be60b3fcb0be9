"""The Keys page in Debian's Chromium, on a phone: reached from the top bar, a refused key
said beside its field (and not filled back in), two keys saved, one deleted, nothing wider
than the screen, and no error or policy violation in the console. Black box, as
tests/test_browser.py: yiweb as a real Daphne process against the simulator."""

from __future__ import annotations

import os

import pytest

from tests.live_server import running_app_and_simulator
from tests.test_browser import CHROMIUM, browser, page, sign_up  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (apt-get install chromium)"
)

PHONE = {"width": 360, "height": 780}


@pytest.fixture(scope="module")
def keys_app():
    """(yiweb's base URL, its simulator's base URL)."""
    with running_app_and_simulator(delta_ms=1) as (base, env, _):
        yield base, env["YI_API_BASE"]


def test_keys_on_a_phone_from_the_top_bar_to_a_refusal_a_save_and_a_deletion(page, keys_app):  # noqa: F811
    base, simulator = keys_app
    sign_up(page, base, "kim")  # the first account: an administrator, so the top bar has four buttons
    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    sign_out = page.get_by_role("button", name="Sign out")
    box = sign_out.bounding_box()
    assert box["height"] <= 40 and box["x"] + box["width"] <= PHONE["width"]  # whole, on one line

    page.get_by_role("link", name="Keys").click()
    page.wait_for_url(f"{base}/keys/")
    page.get_by_label("Label").fill("Work")
    page.get_by_label("API key").fill("invalid-sk-0123456789abcdef")
    page.get_by_label("Base URL").fill("ftp://example.com/v1")
    page.get_by_role("button", name="Check and save").click()
    page.wait_for_selector("#id_base_url_error")
    assert page.locator("#id_base_url_error").inner_text() == (
        "The base URL must start with https:// (or http://), for example https://api.01.ai/v1.")
    assert page.get_by_label("API key").input_value() == ""  # typed again, never sent back
    assert page.get_by_label("Label").input_value() == "Work"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    for label, key in (("Work", "sk-work-0123456789abcdef"), ("Home", "sk-home-0123456789abcd12")):
        page.get_by_label("Label").fill(label)
        page.get_by_label("API key").fill(key)
        page.get_by_label("Base URL").fill(simulator)
        page.get_by_role("button", name="Check and save").click()
        page.wait_for_selector(f"text=Saved “{label}”")
    cards = page.locator(".key-card")
    assert cards.count() == 2
    assert [c.locator(".key-label").inner_text() for c in cards.all()] == ["Work", "Home"]
    assert "…cdef" in cards.nth(0).inner_text() and "Default" in cards.nth(0).inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    home = cards.nth(1)
    home.get_by_text("Delete…").click()
    home.get_by_role("button", name="Delete “Home”").click()
    page.wait_for_selector("text=Deleted “Home”.")
    assert page.locator(".key-card").count() == 1
    assert "sk-work" not in page.content()
    assert page.problems == []
