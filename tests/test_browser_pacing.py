"""Pacing in Debian's Chromium: ten messages in a row on a Free-tier key, against a simulator
that refuses a key's fifth request in a minute (SIMULATOR_RPM=4): every answer completes,
none fails, and the page shows the queue in the waiting answer's place.

Both count a 2 s minute (PACING_WINDOW_SECONDS, for tests only); the app adds its 1 s
margin, so its key goes 4 requests per 3 s (the conversation's title request is one)."""

from __future__ import annotations

import os
import re
import time

import pytest

from tests.readme_pictures import readme_pictures_untouched  # noqa: F401 (an autouse fixture)
from tests.test_browser import CHROMIUM, browser, last_answer, page, sign_up, wait_last_answer_status  # noqa: F401
from tests.test_pacing import paced_app_and_simulator

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def paced_app(tmp_path_factory):
    with paced_app_and_simulator(tmp_path_factory.mktemp("pacing"), window=2) as running:
        yield running


# The queue notice as the page shows it, e.g. "Queued: starts in 3 s (1st in line)".
QUEUED = re.compile(r"^Queued: (starts in \d+ s|starts any moment) \((\d+)(st|nd|rd|th) in line\)$")


def test_ten_messages_in_a_row_on_a_free_key_all_complete_and_the_page_shows_the_queue(page, paced_app):
    base, simulator_log = paced_app
    sign_up(page, base, "tess")
    page.wait_for_function("() => document.querySelector('#model-select').options.length > 1")
    shown = []  # the queue notices seen, by message
    started = time.monotonic()
    for i in range(10):
        page.fill("#message-input", f"[sim deltas=4 interval=1] question {i}")
        page.keyboard.press("Enter")
        page.wait_for_function(
            f"() => document.querySelectorAll('[data-role=assistant]').length === {i + 1}"
        )
        answer = last_answer(page)
        notice = answer.locator(".retry-notice")
        # Either it goes at once, or it waits and the page says so, visibly.
        page.wait_for_function(
            "() => { const a = [...document.querySelectorAll('[data-role=assistant]')].pop();"
            " const n = a.querySelector('.retry-notice');"
            " return a.dataset.status === 'complete' || (n && !n.hidden && n.dataset.kind === 'queued'); }",
            timeout=30_000,
        )
        if answer.get_attribute("data-status") != "complete":
            assert notice.is_visible()
            text = notice.inner_text().strip()
            assert QUEUED.match(text), text
            shown.append((i, text))
        wait_last_answer_status(page, "complete")
        assert notice.is_hidden()
        assert answer.locator(".message-body").inner_text().strip() == "t0 t1 t2 t3"
    took = time.monotonic() - started

    answers = page.locator('[data-role="assistant"]')
    assert answers.count() == 10
    assert [answers.nth(i).get_attribute("data-status") for i in range(10)] == ["complete"] * 10
    assert page.locator(".message-error").filter(has_text=re.compile(".")).count() == 0
    # 11 requests (and the title's) at 4 per 3 s: two of the ten at least waited.
    assert len(shown) >= 2, shown
    assert "simulator: 429" not in simulator_log.read_text()
    assert page.problems == []
    print(f"ten messages in a row on a Free key, a 2 s minute: {took:.1f} s; queue shown for {shown}")


@pytest.fixture(scope="module")
def slow_paced_app(tmp_path_factory):
    """A 5 s minute (6 s with the margin): an answer stays queued long enough to reload the page."""
    with paced_app_and_simulator(tmp_path_factory.mktemp("pacing-slow"), window=5) as running:
        yield running


def test_a_page_reloaded_while_its_answer_waits_shows_the_queue_and_stop_ends_it(page, slow_paced_app):
    base, simulator_log = slow_paced_app
    sign_up(page, base, "uma")
    page.wait_for_function("() => document.querySelector('#model-select').options.length > 1")
    # The first answer and its title, then two more: the key's four requests of the minute.
    for i in range(3):
        page.fill("#message-input", f"[sim deltas=2 interval=1] question {i}")
        page.keyboard.press("Enter")
        page.wait_for_function(f"() => document.querySelectorAll('[data-role=assistant]').length === {i + 1}")
        wait_last_answer_status(page, "complete")
    page.fill("#message-input", "[sim deltas=2 interval=1] the one that waits")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelectorAll('[data-role=assistant]').length === 4")
    notice = last_answer(page).locator('.retry-notice[data-kind="queued"]')
    notice.wait_for(state="visible")
    assert QUEUED.match(notice.inner_text().strip())

    # A reload learns of the wait from the server (the snapshot's `queued`).
    page.reload()
    notice = last_answer(page).locator('.retry-notice[data-kind="queued"]')
    notice.wait_for(state="visible", timeout=5_000)
    assert QUEUED.match(notice.inner_text().strip()), notice.inner_text()
    assert last_answer(page).get_attribute("data-status") == "streaming"

    page.click("#stop-button")
    page.wait_for_selector('[data-role="assistant"][data-status="stopped"]')
    assert last_answer(page).locator(".message-body").inner_text().strip() == ""
    assert notice.is_hidden()
    assert "simulator: 429" not in simulator_log.read_text()
    assert page.problems == []
