"""Accessibility, checked by axe-core in Debian's Chromium on every page, in both themes and
both languages: sign-in, sign-up, the chat (empty, with a conversation, with a dialog open),
usage and keys. No serious or critical violation is allowed (axe's own impact levels: a
missing label, text under WCAG AA contrast, a broken ARIA role, a focus trap...).

axe-core is vendored for the tests only (tests/vendor/axe-core, listed in
static/vendor/README.md) and handed to the page through Playwright's evaluate, which the
page's Content-Security-Policy does not govern; no page a person opens loads it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.live_server import running_app_and_simulator
from tests.readme_pictures import readme_pictures_untouched  # noqa: F401 (an autouse fixture)
from tests.test_browser import browser  # noqa: F401 (a fixture: Debian's Chromium, one per module)

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery staple"
AXE = (Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js").read_text(encoding="utf-8")

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def app_url():
    with running_app_and_simulator(delta_ms=5) as (base, _, _database):
        yield base


def axe_problems(page, where: str) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now, one line each
    (rule, impact, what it means, the first elements it found)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE)
    results = page.evaluate(
        "() => axe.run(document, { resultTypes: ['violations'] })"
        ".then((r) => r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ') + ': ' + n.failureSummary) })))"
    )
    return [
        f"{where}: {v['id']} ({v['impact']}): {v['help']}\n    " + "\n    ".join(v["nodes"])
        for v in results
        if v["impact"] in {"serious", "critical"}
    ]


def settled(page) -> None:
    """Wait for the page's scripts and fonts; transitions are off (reduced motion), so what
    axe measures is what stays on screen."""
    page.wait_for_load_state("load")
    page.evaluate("() => document.fonts.ready")


def sign_up(page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/signup/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.locator("form.auth-form button[type=submit]").click()
    page.wait_for_url(f"{base}/")


def every_page_problems(page, base: str, username: str) -> list[str]:
    """Visits every page in its states and returns what axe found on each."""
    problems = []
    page.goto(f"{base}/accounts/login/")
    settled(page)
    problems += axe_problems(page, "sign-in")
    page.locator("form.auth-form button[type=submit]").click()  # empty: the form's errors shown
    settled(page)
    problems += axe_problems(page, "sign-in with errors")
    page.goto(f"{base}/accounts/signup/")
    settled(page)
    problems += axe_problems(page, "sign-up")

    sign_up(page, base, username)
    page.wait_for_function("() => document.querySelector('#model-select').options.length > 1")
    settled(page)
    problems += axe_problems(page, "chat, empty")

    page.fill("#message-input", "Show me some code")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => { const m = [...document.querySelectorAll('[data-role=assistant]')].pop();"
        " return m && m.dataset.status === 'complete'; }",
        timeout=30_000,
    )
    page.wait_for_function("() => location.pathname.startsWith('/c/')")
    settled(page)
    problems += axe_problems(page, "chat with a conversation")

    page.reload()
    page.wait_for_selector("[data-role=assistant][data-status=complete]")
    settled(page)
    problems += axe_problems(page, "chat with a conversation, reloaded")

    page.locator(".conversation-more").first.click()
    page.wait_for_selector("#popup-menu:not([hidden])")
    problems += axe_problems(page, "chat with a conversation's menu open")
    page.keyboard.press("Escape")

    for opener, dialog in (("#settings-button", "#settings-dialog"), ("#shortcuts-button", "#shortcuts-dialog")):
        if page.locator(opener).count() and page.locator(opener).is_visible():
            page.click(opener)
            page.wait_for_selector(f"{dialog}[open]")
            problems += axe_problems(page, f"chat with {dialog} open")
            page.keyboard.press("Escape")
            page.wait_for_selector(f"{dialog}:not([open])", state="attached")
    page.evaluate("() => document.getElementById('delete-dialog').showModal()")
    problems += axe_problems(page, "chat with the delete dialog open")
    page.keyboard.press("Escape")

    page.goto(f"{base}/usage/")
    settled(page)
    problems += axe_problems(page, "usage")
    page.goto(f"{base}/keys/")
    settled(page)
    problems += axe_problems(page, "keys")
    page.locator(".key-form button[type=submit]").click()  # nothing typed: each field says what it needs
    settled(page)
    problems += axe_problems(page, "keys with the form's errors")
    return problems


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("language", ["en-US", "zh-CN"])
def test_no_serious_accessibility_problem_on_any_page(browser, app_url, language, theme):
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale=language,
                                  color_scheme=theme, reduced_motion="reduce")
    page = context.new_page()
    try:
        problems = every_page_problems(page, app_url, f"axe-{language}-{theme}".lower())
        assert page.evaluate("() => document.documentElement.lang") == ("zh-hans" if language == "zh-CN" else "en")
    finally:
        context.close()
    assert not problems, "axe-core found:\n" + "\n".join(problems)


def test_the_streaming_answer_is_announced_politely_once_it_is_written(browser, app_url):
    """The messages are a polite live region (a screen reader speaks a new answer when it
    is free, not interrupting); while an answer streams it is aria-busy, so it is read out
    once, whole, instead of word by word."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    try:
        sign_up(page, app_url, "listener")
        log = page.locator("#message-list")
        assert (log.get_attribute("role"), log.get_attribute("aria-live")) == ("log", "polite")
        page.fill("#message-input", "[sim deltas=60 interval=40] Tell me something")
        page.keyboard.press("Enter")
        page.wait_for_selector("[data-role=assistant][data-status=streaming]")
        assert page.locator("[data-role=assistant]").last.get_attribute("aria-busy") == "true"
        page.wait_for_selector("[data-role=assistant][data-status=complete]", timeout=30_000)
        assert page.locator("[data-role=assistant]").last.get_attribute("aria-busy") is None
    finally:
        context.close()
