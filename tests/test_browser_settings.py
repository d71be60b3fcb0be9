"""The chat page's settings, theme and keyboard in Debian's Chromium, against yiweb on a
Daphne process of its own and the simulator: a conversation's settings edited in the page
and seen in the next answer's facts, the person's defaults, the theme switch kept across
reloads and browsers, and each keyboard shortcut."""

from __future__ import annotations

import os
import re

import pytest

from tests.live_server import running_app_and_simulator
from tests.test_browser import CHROMIUM, PASSWORD, browser, page  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (apt-get install chromium)"
)

LIGHT_BG, DARK_BG = "rgb(255, 255, 255)", "rgb(33, 33, 33)"


@pytest.fixture(scope="module")
def app_url():
    with running_app_and_simulator(delta_ms=5) as (base, _, _):
        yield base


def sign_up(page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/signup/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click(".auth-form button[type=submit]")
    page.wait_for_url(f"{base}/")


def models_loaded(page):
    page.wait_for_function("() => document.querySelector('#model-select').options.length > 1")


# What the page shows when an answer did not end as expected: its messages, its error
# line and the message box (a flaky failure here once gave nothing to go on).
PAGE_STATE = """() => ({
  messages: [...document.querySelectorAll('[data-role]')].map((m) =>
    `${m.dataset.role} ${m.dataset.status || ''}: ${m.textContent.trim().slice(0, 80)}`),
  error: document.querySelector('#send-error').textContent,
  input: document.querySelector('#message-input').value,
})"""


def answers_ended(page, count, status="complete"):
    try:
        page.wait_for_function(
            "([n, status]) => { const a = document.querySelectorAll('[data-role=assistant]');"
            " return a.length === n && a[n - 1].dataset.status === status; }",
            arg=[count, status], timeout=30_000,
        )
    except Exception as error:
        raise AssertionError(f"{count} answers ending {status} not seen: {page.evaluate(PAGE_STATE)}") from error


def answer_facts(page, index):
    """The facts of the index-th answer, as its details list them: {name: value}."""
    facts = page.locator('[data-role="assistant"]').nth(index).locator(".message-facts")
    facts.locator("summary").click()
    names = facts.locator("dt").all_inner_texts()
    return dict(zip(names, facts.locator("dd").all_inner_texts()))


def focused_id(page):
    return page.evaluate("() => document.activeElement && document.activeElement.id")


def test_settings_edited_in_the_page_go_with_the_next_answer_and_stay_with_the_conversation(page, app_url):
    sign_up(page, app_url, "sol")
    models_loaded(page)
    dialog = page.locator("#settings-dialog")

    page.click("#settings-button")
    assert dialog.is_visible() and focused_id(page) == "settings-system_prompt"
    # The reference's ranges and defaults are shown beside each field.
    assert page.locator("#settings-temperature-hint").inner_text().startswith(
        "From 0 to 2. The API's default is 0.3.")
    assert page.locator("#settings-max_tokens-hint").inner_text().startswith("From 1 to 32,768.")
    # Out of range: refused beside the field, with the range; the dialog stays.
    page.fill("#settings-system_prompt", "Be brief.")
    page.fill("#settings-temperature", "5")
    page.click("#settings-save")
    assert page.locator("#settings-temperature-error").inner_text() == "temperature must be a number from 0 to 2."
    assert page.locator("#settings-temperature").get_attribute("aria-invalid") == "true"
    assert dialog.is_visible() and focused_id(page) == "settings-temperature"
    page.fill("#settings-temperature", "1.2")
    page.fill("#settings-max_tokens", "50")
    page.click("#settings-save")
    assert not dialog.is_visible() and focused_id(page) == "settings-button"

    page.fill("#message-input", "[sim deltas=3] first")
    page.keyboard.press("Enter")
    answers_ended(page, 1)
    assert answer_facts(page, 0)["Parameters"] == "temperature 1.2 · max_tokens 50"

    # Esc closes the dialog, the changes in it dropped, and focus goes back to the button.
    page.click("#settings-button")
    page.fill("#settings-temperature", "1.9")
    page.keyboard.press("Escape")
    assert not dialog.is_visible() and focused_id(page) == "settings-button"

    # The conversation keeps them: after a reload they are its settings still.
    page.wait_for_url(re.compile(r".*/c/\d+/$"))
    page.reload()
    models_loaded(page)
    page.click("#settings-button")
    assert page.input_value("#settings-system_prompt") == "Be brief."
    assert (page.input_value("#settings-temperature"), page.input_value("#settings-max_tokens")) == ("1.2", "50")
    # A change applies to the next answer: the system prompt after the start too.
    page.fill("#settings-temperature", "0.4")
    page.fill("#settings-system_prompt", "Answer in French.")
    page.click("#settings-save")
    page.fill("#message-input", "[sim deltas=3] second")
    page.keyboard.press("Enter")
    answers_ended(page, 2)
    assert answer_facts(page, 1)["Parameters"] == "temperature 0.4 · max_tokens 50"
    assert answer_facts(page, 0)["Parameters"] == "temperature 1.2 · max_tokens 50"
    page.locator("#conversation-facts summary").click()
    assert "Answer in French." in page.locator("#conversation-facts").inner_text()

    # max_tokens is bounded by the picked model's window.
    page.select_option("#model-select", "yi-large-turbo")
    page.click("#settings-button")
    assert "4,096, yi-large-turbo's context window" in page.locator("#settings-max_tokens-hint").inner_text()
    page.fill("#settings-max_tokens", "5000")
    page.click("#settings-save")
    assert page.locator("#settings-max_tokens-error").inner_text() == (
        "max_tokens must be a number from 1 to 4096 (yi-large-turbo's context window).")
    page.click("#settings-cancel")
    # Settings that fit one model, sent to a smaller one: refused before sending, the text kept.
    page.select_option("#model-select", "yi-large")
    page.click("#settings-button")
    page.fill("#settings-max_tokens", "8000")
    page.click("#settings-save")
    page.select_option("#model-select", "yi-large-turbo")
    page.fill("#message-input", "[sim deltas=3] third")
    page.keyboard.press("Enter")
    assert page.locator("#send-error-text").inner_text() == (
        "max_tokens must be a number from 1 to 4096 (yi-large-turbo's context window). "
        "Change it in the conversation's settings.")
    assert page.input_value("#message-input") == "[sim deltas=3] third"
    assert page.locator('[data-role="assistant"]').count() == 2
    assert page.problems == []


def test_new_conversations_start_from_the_defaults_the_person_saved(page, app_url):
    sign_up(page, app_url, "dora")
    models_loaded(page)
    page.click("#settings-button")
    assert page.input_value("#settings-temperature") == ""  # the API's default
    page.fill("#settings-system_prompt", "Answer in Chinese.")
    page.fill("#settings-top_p", "0.5")
    page.click("#settings-defaults-save")
    page.wait_for_function(
        "() => document.querySelector('#settings-status').textContent.startsWith('Saved as your defaults')")
    page.click("#settings-cancel")

    page.goto(f"{app_url}/")  # a new chat, in a page loaded afresh
    models_loaded(page)
    page.click("#settings-button")
    assert (page.input_value("#settings-system_prompt"), page.input_value("#settings-top_p")) == (
        "Answer in Chinese.", "0.5")
    page.click("#settings-cancel")
    page.fill("#message-input", "[sim deltas=2] hi")
    page.keyboard.press("Enter")
    answers_ended(page, 1)
    assert answer_facts(page, 0)["Parameters"] == "top_p 0.5"
    assert page.problems == []


def background(page):
    return page.evaluate("() => getComputedStyle(document.body).backgroundColor")


def test_the_theme_switch_is_kept_across_reloads_and_browsers(browser, app_url):  # noqa: F811
    context = browser.new_context(color_scheme="light")
    page = context.new_page()
    sign_up(page, app_url, "theo")
    assert page.locator("html").get_attribute("data-theme") == "system" and background(page) == LIGHT_BG
    with page.expect_response(lambda r: r.url.endswith("/preferences/theme/") and r.status == 200):
        page.select_option("#theme-select", "dark")
    assert background(page) == DARK_BG  # at once
    page.reload()
    assert page.locator("html").get_attribute("data-theme") == "dark" and background(page) == DARK_BG
    assert page.input_value("#theme-select") == "dark"
    # Highlighted code follows the theme, not the system.
    assert page.locator('link[data-theme-media="dark"]').get_attribute("media") == "all"

    # Another browser, with a dark system: signed in, it comes with the person's theme.
    other = browser.new_context(color_scheme="dark")
    elsewhere = other.new_page()
    elsewhere.goto(f"{app_url}/accounts/login/")
    elsewhere.fill("input[name=username]", "theo")
    elsewhere.fill("input[name=password]", PASSWORD)
    elsewhere.click(".auth-form button[type=submit]")
    elsewhere.wait_for_url(f"{app_url}/")
    assert background(elsewhere) == DARK_BG
    with elsewhere.expect_response(lambda r: r.url.endswith("/preferences/theme/") and r.status == 200):
        elsewhere.select_option("#theme-select", "light")
    assert background(elsewhere) == LIGHT_BG  # light, though the system is dark
    # Following the system again: this browser's system is dark.
    with elsewhere.expect_response(lambda r: r.url.endswith("/preferences/theme/") and r.status == 200):
        elsewhere.select_option("#theme-select", "system")
    assert background(elsewhere) == DARK_BG
    page.reload()
    assert background(page) == LIGHT_BG  # the first browser's system is light
    context.close()
    other.close()


def test_each_keyboard_shortcut(page, app_url):
    sign_up(page, app_url, "kit")
    models_loaded(page)
    box = page.locator("#message-input")

    # Shift+Enter is a new line, Enter sends.
    box.click()
    page.keyboard.type("[sim deltas=2] line one")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("line two")
    assert box.input_value() == "[sim deltas=2] line one\nline two"
    page.keyboard.press("Enter")
    answers_ended(page, 1)
    assert box.input_value() == ""
    assert "line two" in page.locator('[data-role="user"] .message-body').last.inner_text()

    # Esc stops the answer being written.
    box.fill("[sim deltas=400 interval=25] a long one")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => { const a = [...document.querySelectorAll('[data-role=assistant]')].pop();"
        " return a.dataset.status === 'streaming' && a.innerText.length > 10; }"
    )
    box.focus()
    page.keyboard.press("Escape")
    answers_ended(page, 2, status="stopped")

    # Up in the empty message box edits the last question; Esc leaves the editor alone.
    box.focus()
    page.keyboard.press("ArrowUp")
    editor = page.locator(".question-editor-input")
    editor.wait_for()
    assert editor.input_value() == "[sim deltas=400 interval=25] a long one"
    assert page.evaluate("() => document.activeElement.classList.contains('question-editor-input')")
    page.keyboard.press("Escape")
    assert editor.count() == 0
    # Up in a box with text moves the caret, as ever.
    box.fill("draft")
    box.focus()
    page.keyboard.press("ArrowUp")
    assert page.locator(".question-editor-input").count() == 0
    box.fill("")

    # Ctrl+K (Cmd+K on a Mac) goes to the search box.
    page.keyboard.press("Control+k")
    assert focused_id(page) == "search-input"
    page.keyboard.press("Escape")

    # `?` lists the shortcuts, when not typing; Esc closes the list and focus comes back.
    page.locator("#message-scroller").click()
    page.keyboard.press("?")
    shortcuts = page.locator("#shortcuts-dialog")
    assert shortcuts.is_visible()
    assert "Stop the answer being written" in shortcuts.inner_text()
    page.keyboard.press("Escape")
    assert not shortcuts.is_visible()
    box.focus()
    page.keyboard.type("why?")
    assert not shortcuts.is_visible() and box.input_value() == "why?"
    assert page.problems == []
