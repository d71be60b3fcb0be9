"""The Keys page in Debian's Chromium, on a phone: reached from the top bar, a refused key
said beside its field (and not filled back in), two keys saved, one deleted, nothing wider
than the screen, and no error or policy violation in the console. Black box, as
tests/test_browser.py: yiweb as a real Daphne process against the simulator."""

from __future__ import annotations

import os
import re

import pytest

from tests.first_run import readme_start
from tests.live_server import running_app_and_simulator
from tests.test_browser import CHROMIUM, browser, page, sign_up  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (apt-get install chromium)"
)

PHONE = {"width": 360, "height": 780}
OPTIONS = "sel => [...sel.options].map(o => o.textContent)"


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


def test_after_adding_a_key_the_key_menu_still_offers_the_simulator_and_a_conversation_can_use_it(
    page, tmp_path  # noqa: F811
):
    """The README's first command, then a key of one's own: it becomes the default, and the
    Key menu offers it and the offline simulator both (before: the simulator was gone from
    the menu until the Keys page's "Use the server's key by default")."""
    with readme_start(tmp_path) as (base, log):
        # Where the command says the simulator is, as the person reads it in the terminal.
        simulator_url = re.search(r"offline simulator at (\S+)\. ", log.read_text()).group(1)
        host = simulator_url.removeprefix("http://").removesuffix("/v1")
        sign_up(page, base, "lena")
        simulator = "Offline simulator · 127.0.0.1"
        assert page.eval_on_selector("#key-select", OPTIONS) == [simulator]

        page.get_by_role("link", name="Keys").click()
        page.get_by_label("Label").fill("Work")
        page.get_by_label("API key").fill("sk-work-0123456789abcdef")
        page.get_by_label("Base URL").fill(simulator_url)
        page.get_by_role("button", name="Check and save").click()
        page.wait_for_selector("text=Saved “Work”")
        assert "Default" in page.locator(".key-card").inner_text()  # the first key is the default

        page.get_by_role("link", name="← Back to the chat").click()
        page.wait_for_url(f"{base}/")
        work = f"Work · {host} ···cdef"
        assert page.eval_on_selector("#key-select", OPTIONS) == [f"Default: {work}", work, simulator]
        assert page.eval_on_selector("#key-select", "sel => sel.selectedOptions[0].textContent") == f"Default: {work}"

        page.select_option("#key-select", label=simulator)
        page.wait_for_function("() => document.querySelector('#model-select').options.length > 1")
        page.fill("#message-input", "Which key answers this?")
        page.keyboard.press("Enter")
        page.wait_for_selector('[data-role="assistant"][data-status="complete"]', timeout=30_000)
        answer = page.locator('[data-role="assistant"]').last
        answer.locator("summary.message-meta").click()
        facts = dict(zip(answer.locator(".facts-list dt").all_inner_texts(),
                         answer.locator(".facts-list dd").all_inner_texts()))
        assert facts["Key"] == simulator

        # The conversation keeps it; the key of one's own was not used.
        page.wait_for_url(re.compile(r".*/c/\d+/$"))
        page.reload()
        page.wait_for_function("() => document.querySelector('#model-select').options.length > 1")
        assert page.eval_on_selector("#key-select", "sel => sel.selectedOptions[0].textContent") == simulator
        page.goto(f"{base}/keys/")
        assert "Last used\nnever" in page.locator(".key-card").inner_text()
    assert page.problems == []
