"""Tool use in Debian's Chromium (issue 16): the reference's revenue question asked of
yi-large-fc with tools on, each call a card inside the answer that made it (the tool, its
arguments, its exact result, the time it took), collapsed until opened, and back after a
reload; the Tools control remembered per conversation and for new chats; and the hint
when the model picked calls no tools, with its one-click switch.

Black box, as tests/test_browser.py: yiweb runs as a real Daphne process against the
simulator over HTTP, whose yi-large-fc reads the question's table and calls
percentage_change, which runs on the server.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time

import pytest

from tests.live_server import running_app_and_simulator
from tests.test_browser import (  # noqa: F401 (fixtures)
    CHROMIUM, GatedProxy, browser, network_down, network_up, page, port_of, sign_up,
)

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (apt-get install chromium)"
)

# The reference's tool-use example ("Tool Use"), word for word.
REVENUE_QUESTION = (
    "According to the table below, calculate the MoM and YoY data of April 2024: \n"
    "| Month     | Revenue  | \n|---------|---------|\n"
    + "".join(f"| {month} |   {value}   |\n" for month, value in [
        ("2023-01", "25.78"), ("2023-02", "20.23"), ("2023-03", "21.27"), ("2023-04", "20.96"),
        ("2023-05", "24.33"), ("2023-06", "22.51"), ("2023-07", "23.97"), ("2023-08", "25.86"),
        ("2023-09", "27.05"), ("2023-10", "28.23"), ("2023-11", "27.17"), ("2023-12", "28.88"),
        ("2024-01", "26.33"), ("2024-02", "25.25"), ("2024-03", "28.89"), ("2024-04", "29.12"),
        ("2024-05", "30.08"), ("2024-06", "29.75"),
    ])
    + "| 2024-07 |   28.83   |"
)

# April 2024 against March 2024 (28.89 -> 29.12) and against April 2023 (20.96 -> 29.12).
MOM = '{"time": "2024-04", "type": "MoM", "change": "0.80%"}'
YOY = '{"time": "2024-04", "type": "YoY", "change": "38.93%"}'

# Every value a card's data-state took, in order, from the moment this is installed.
RECORD_CARD_STATES = """() => {
  window.cardStates = [];
  new MutationObserver((records) => {
    for (const r of records) if (r.target.matches('.tool-card')) {
      window.cardStates.push(r.oldValue, r.target.dataset.state);
    }
  }).observe(document.getElementById('message-list'),
             {subtree: true, attributes: true, attributeFilter: ['data-state'], attributeOldValue: true});
}"""


@pytest.fixture(scope="module")
def app():
    """(base URL, path of its SQLite file). Tokens 20 ms apart: an answer's calls stream
    for a moment, as the API's do."""
    with running_app_and_simulator(delta_ms=20) as (base, _, database):
        yield base, database


@pytest.fixture(scope="module")
def app_url(app):
    return app[0]


def models_loaded(page):
    page.wait_for_function("() => document.querySelector('#model-select option[value=\"yi-large-fc\"]')")


def run_over(page):
    """The run's last answer has ended: an answer that did not end by asking for tools."""
    page.wait_for_function(
        "() => { const m = [...document.querySelectorAll('.message-assistant')].pop();"
        " return m && m.dataset.status === 'complete' && !m.querySelector('.tool-cards'); }",
        timeout=30_000,
    )


def test_the_revenue_question_shows_its_tool_cards_with_the_exact_figures(page, app_url):  # noqa: F811
    sign_up(page, app_url, "tilda")
    models_loaded(page)
    page.select_option("#model-select", "yi-large-fc")
    # Tools on from the keyboard; the choice is left to the model.
    page.focus("#tools-toggle")
    page.keyboard.press("Space")
    assert page.is_checked("#tools-toggle")
    assert page.get_by_label("Tool choice").input_value() == "auto"
    assert page.locator("#tool-hint").is_hidden()

    page.evaluate(RECORD_CARD_STATES)
    page.fill("#message-input", REVENUE_QUESTION)
    page.keyboard.press("Enter")
    run_over(page)

    # Question, the answer that called the tools, the final answer: no bubble for the tools.
    assert page.eval_on_selector_all(".message", "ms => ms.map(m => m.dataset.role)") == [
        "user", "assistant", "assistant"
    ]
    caller, final = page.locator(".message-assistant").all()
    cards = caller.locator(".tool-card")
    assert cards.count() == 2
    # Live: each card said it was running before its result came.
    states = page.evaluate("window.cardStates")
    assert "running" in states and states[-1] == "done"
    assert_cards(cards)

    # Collapsed: opened from the keyboard, it shows the arguments, pretty-printed, and the result.
    assert cards.nth(0).locator(".tool-card-arguments").is_hidden()
    cards.nth(0).locator("summary").focus()
    page.keyboard.press("Enter")
    arguments = cards.nth(0).locator(".tool-card-arguments")
    arguments.wait_for()
    assert arguments.inner_text() == (
        '{\n  "time": "2024-04",\n  "type": "MoM",\n  "pre_value": "28.89",\n  "current_value": "29.12"\n}'
    )
    assert cards.nth(0).locator(".tool-card-result").inner_text() == (
        '{\n  "time": "2024-04",\n  "type": "MoM",\n  "change": "0.80%"\n}'
    )
    assert cards.nth(1).locator(".tool-card-result").is_hidden()

    # The final answer, written from the results.
    answer = final.locator(".message-body").inner_text()
    assert "0.80%" in answer and "38.93%" in answer

    # Kept: the cards come back with the page, and the conversation keeps its settings.
    page.reload()
    run_over(page)
    models_loaded(page)
    assert page.locator(".message").count() == 3
    assert_cards(page.locator(".message-assistant").first.locator(".tool-card"))
    assert page.is_checked("#tools-toggle")
    assert page.input_value("#model-select") == "yi-large-fc"
    assert page.problems == []


def assert_cards(cards):
    """The two calls, in the order made: the tool, the result's exact figure, the time taken."""
    assert cards.count() == 2
    for card, result in zip(cards.all(), [MOM, YOY]):
        assert card.get_attribute("data-state") == "done"
        assert card.get_attribute("open") is None
        assert card.locator(".tool-card-name").inner_text() == "percentage_change"
        assert card.locator(".tool-card-state").inner_text() == result
        assert card.locator(".tool-card-time").inner_text().endswith(" ms")


def test_a_new_chat_starts_with_the_last_tool_choice_and_a_conversation_keeps_its_own(page, app_url):  # noqa: F811
    sign_up(page, app_url, "ulrike")
    models_loaded(page)
    page.select_option("#model-select", "yi-large-fc")
    page.check("#tools-toggle")
    page.get_by_label("Tool choice").select_option("function:current_time")
    page.fill("#message-input", "What time is it in Asia/Tokyo?")
    page.keyboard.press("Enter")
    run_over(page)
    card = page.locator(".tool-card")
    assert card.count() == 1 and card.locator(".tool-card-name").inner_text() == "current_time"
    assert "Asia/Tokyo" in card.locator(".tool-card-state").inner_text()
    conversation = page.url

    # A new chat starts from the last choice made.
    page.goto(app_url + "/")
    models_loaded(page)
    assert page.is_checked("#tools-toggle")
    assert page.get_by_label("Tool choice").input_value() == "function:current_time"
    page.get_by_label("Tool choice").select_option("none")
    page.uncheck("#tools-toggle")
    assert page.get_by_label("Tool choice").is_disabled()

    # The conversation keeps its own, whatever was picked since.
    page.goto(conversation)
    models_loaded(page)
    assert page.is_checked("#tools-toggle")
    assert page.get_by_label("Tool choice").input_value() == "function:current_time"
    assert page.problems == []


def test_a_failed_call_is_said_plainly_and_markup_in_a_call_stays_text(page, app_url):  # noqa: F811
    sign_up(page, app_url, "viola")
    models_loaded(page)
    page.select_option("#model-select", "yi-large-fc")
    page.check("#tools-toggle")
    page.fill("#message-input", '[sim-call calculator {"expression": "1/0"}] '
                                '[sim-call calculator {"expression": "<img src=x onerror=window.pwned=1>"}] divide')
    page.keyboard.press("Enter")
    run_over(page)
    divided, hostile = page.locator(".tool-card").all()
    assert divided.get_attribute("data-state") == "failed"
    state = divided.locator(".tool-card-state").inner_text()
    assert state.startswith("failed: ") and "zero" in state.lower()
    # What a model wrote (and a tool's sentence quoting it) is shown as text, never markup.
    hostile.locator("summary").click()
    assert "<img src=x onerror=window.pwned=1>" in hostile.locator(".tool-card-arguments").inner_text()
    assert page.locator(".tool-card img").count() == 0
    assert page.evaluate("window.pwned") is None
    assert page.problems == []


def test_tools_on_with_a_model_that_calls_none_says_so_and_switches_in_one_click(page, app_url):  # noqa: F811
    sign_up(page, app_url, "wanda")
    models_loaded(page)
    page.select_option("#model-select", "yi-large")
    hint = page.locator("#tool-hint")
    assert hint.is_hidden()
    page.check("#tools-toggle")
    assert hint.is_visible()
    assert hint.locator(".tool-hint-text").inner_text() == "yi-large does not call tools."

    hint.get_by_role("button", name="Use yi-large-fc").click()
    assert page.input_value("#model-select") == "yi-large-fc"
    assert hint.is_hidden()
    # Focus stays in the composer's controls, on the model just picked.
    assert page.evaluate("document.activeElement.id") == "model-select"

    # Tools off: nothing to say about any model.
    page.select_option("#model-select", "yi-vision")
    assert hint.is_visible()
    page.uncheck("#tools-toggle")
    assert hint.is_hidden()
    assert page.problems == []


def wait_run_stored(database: str, timeout: float = 30.0) -> None:
    """Every message of the database has ended, the last one an answer in text."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.closing(sqlite3.connect(database)) as db:
            streaming = db.execute("SELECT count(*) FROM chat_message WHERE status = 'streaming'").fetchone()[0]
            last = db.execute("SELECT role, finish_reason FROM chat_message ORDER BY id DESC LIMIT 1").fetchone()
        if not streaming and last == ("assistant", "stop"):
            return
        assert time.monotonic() < deadline, "the run did not end"
        time.sleep(0.1)


def test_a_tab_whose_socket_drops_during_the_calls_shows_them_when_it_is_back(page, app):  # noqa: F811
    base, database = app
    proxy = GatedProxy(port_of(base))
    with proxy.running() as proxied:
        sign_up(page, proxied, "xenia")
        models_loaded(page)
        page.select_option("#model-select", "yi-large-fc")
        page.check("#tools-toggle")
        page.fill("#message-input", REVENUE_QUESTION)
        page.keyboard.press("Enter")
        # The answer that will call the tools has begun: the network goes before its calls come.
        page.locator(".message-assistant").wait_for()
        network_down(page, proxy)
        assert page.locator(".tool-card").count() == 0
        wait_run_stored(database)
        network_up(page, proxy)
        run_over(page)
        assert page.locator("#connection-status").is_hidden()
    assert page.eval_on_selector_all(".message", "ms => ms.map(m => m.dataset.role)") == [
        "user", "assistant", "assistant"
    ]
    assert_cards(page.locator(".message-assistant").first.locator(".tool-card"))
    assert "38.93%" in page.locator(".message-assistant").last.locator(".message-body").inner_text()
